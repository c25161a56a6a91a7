package serde

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/rendezvous-ml/rendezvous/schemas"
)

// testSchemas are the project's schemas plus shapes they do not use yet:
// enums, fixed, nested and recursive records, namespaces, unions of named
// types, arrays and maps of everything.
func testSchemas(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	set, err := schemas.For("iris")
	if err != nil {
		t.Fatal(err)
	}
	for k, text := range set.Text {
		out[string(k)] = text
	}
	if b, err := os.ReadFile("../fleet/model.avsc"); err == nil {
		out["fleet model"] = string(b)
	}
	out["kitchen sink"] = `{"type":"record","name":"Sink","namespace":"t.ns","fields":[
		{"name":"b","type":"boolean"},
		{"name":"i","type":"int"},
		{"name":"l","type":"long"},
		{"name":"f","type":"float"},
		{"name":"d","type":"double"},
		{"name":"s","type":"string"},
		{"name":"by","type":"bytes"},
		{"name":"e","type":{"type":"enum","name":"Colour","symbols":["RED","GREEN","BLUE"]}},
		{"name":"fx","type":{"type":"fixed","name":"Hash","namespace":"other","size":4}},
		{"name":"again","type":"other.Hash"},
		{"name":"inner","type":{"type":"record","name":"Inner","fields":[{"name":"x","type":["null","t.ns.Colour","string"]}]}},
		{"name":"arr","type":{"type":"array","items":["null","long","Inner"]}},
		{"name":"m","type":{"type":"map","values":{"type":"array","items":"double"}}},
		{"name":"u","type":["null",{"type":"map","values":"string"},{"type":"array","items":"int"},"other.Hash"]},
		{"name":"dotted","type":{"type":"record","name":"a.b.Dotted","fields":[{"name":"y","type":["null","Dotted"]}]}},
		{"name":"n","type":"null"}
	]}`
	out["recursive list"] = `{"type":"record","name":"Node","fields":[
		{"name":"v","type":"int"},
		{"name":"next","type":["null","Node"]}]}`
	return out
}

// gen makes a random native value of a schema, as goavro would accept it.
type gen struct {
	r     *rand.Rand
	named map[string]map[string]any
	depth int
}

func (g *gen) value(schema any, ns string) any {
	switch s := schema.(type) {
	case string:
		switch s {
		case "null":
			return nil
		case "boolean":
			return g.r.Intn(2) == 1
		case "int":
			return int32(g.r.Int63()) * int32(1-2*g.r.Intn(2))
		case "long":
			return g.r.Int63() >> uint(g.r.Intn(63)) * int64(1-2*g.r.Intn(2))
		case "float":
			return float32(g.r.NormFloat64() * 1e3)
		case "double":
			return g.r.NormFloat64() * 1e6
		case "string":
			return g.str()
		case "bytes":
			return []byte(g.str())
		}
		full := fullName(s, "", ns)
		if def, ok := g.named[full]; ok {
			return g.value(def, namespaceOf(full))
		}
		return g.value(g.named[s], namespaceOf(s))
	case []any:
		// Deep recursive types end on their null branch.
		i := g.r.Intn(len(s))
		if g.depth > 4 {
			for j, b := range s {
				if b == "null" {
					i = j
				}
			}
		}
		if s[i] == "null" {
			return nil
		}
		g.depth++
		v := g.value(s[i], ns)
		g.depth--
		c := &compiler{names: map[string]string{}}
		for full := range g.named {
			c.names[full] = full
		}
		return map[string]any{c.branchName(s[i], ns): v}
	case map[string]any:
		t, _ := s["type"].(string)
		switch t {
		case "record":
			name, _ := s["name"].(string)
			namespace, _ := s["namespace"].(string)
			full := fullName(name, namespace, ns)
			g.named[full] = s
			m := map[string]any{}
			for _, f := range s["fields"].([]any) {
				fm := f.(map[string]any)
				m[fm["name"].(string)] = g.value(fm["type"], namespaceOf(full))
			}
			return m
		case "enum":
			name, _ := s["name"].(string)
			namespace, _ := s["namespace"].(string)
			g.named[fullName(name, namespace, ns)] = s
			syms := s["symbols"].([]any)
			return syms[g.r.Intn(len(syms))].(string)
		case "fixed":
			name, _ := s["name"].(string)
			namespace, _ := s["namespace"].(string)
			g.named[fullName(name, namespace, ns)] = s
			b := make([]byte, int(s["size"].(float64)))
			g.r.Read(b)
			return b
		case "array":
			n := g.r.Intn(4)
			a := make([]any, n)
			for i := range a {
				a[i] = g.value(s["items"], ns)
			}
			return a
		case "map":
			n := g.r.Intn(4)
			m := make(map[string]any, n)
			for i := 0; i < n; i++ {
				m[g.str()] = g.value(s["values"], ns)
			}
			return m
		}
		return g.value(t, ns)
	}
	panic(fmt.Sprintf("schema %T", schema))
}

func (g *gen) str() string {
	words := []string{"", "a", "setosa", "ünïcode", "a\"quote", strings.Repeat("x", 70)}
	return words[g.r.Intn(len(words))]
}

// The compiled decoders must give exactly goavro's values for everything
// goavro writes.
func TestCompiledDecoderMatchesGoavro(t *testing.T) {
	for name, text := range testSchemas(t) {
		t.Run(name, func(t *testing.T) {
			codec, err := goavro.NewCodec(text)
			if err != nil {
				t.Fatal(err)
			}
			var tree any
			if err := json.Unmarshal([]byte(text), &tree); err != nil {
				t.Fatal(err)
			}
			dec, err := compileDecoder(tree)
			if err != nil {
				t.Fatalf("not compiled: %v", err)
			}
			g := &gen{r: rand.New(rand.NewSource(1)), named: map[string]map[string]any{}}
			for i := 0; i < 300; i++ {
				native := g.value(tree, "")
				bin, err := codec.BinaryFromNative(nil, native)
				if err != nil {
					t.Fatalf("goavro cannot encode the generated %v: %v", native, err)
				}
				want, wantRest, err := codec.NativeFromBinary(bin)
				if err != nil {
					t.Fatal(err)
				}
				got, rest, err := dec(bin)
				if err != nil {
					t.Fatalf("decode: %v (goavro read %v)", err, want)
				}
				if len(rest) != len(wantRest) {
					t.Fatalf("%d bytes left, goavro leaves %d", len(rest), len(wantRest))
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("decoded\n%#v\ngoavro\n%#v", got, want)
				}
			}
		})
	}
}

func TestCompiledDecoderRejectsBadInput(t *testing.T) {
	var tree any
	_ = json.Unmarshal([]byte(`{"type":"record","name":"R","fields":[
		{"name":"s","type":"string"},
		{"name":"u","type":["null","long"]},
		{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}},
		{"name":"b","type":"boolean"}]}`), &tree)
	dec, err := compileDecoder(tree)
	if err != nil {
		t.Fatal(err)
	}
	for name, bin := range map[string][]byte{
		"empty":             {},
		"string too long":   {0x10, 'a'},
		"negative length":   {0x01},
		"union index":       {0x00, 0x04},
		"enum index":        {0x00, 0x00, 0x02},
		"boolean byte":      {0x00, 0x00, 0x00, 0x07},
		"varint overlong":   {0x00, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"short after union": {0x00, 0x02},
	} {
		if v, _, err := dec(bin); err == nil {
			t.Errorf("%s: decoded % x as %v", name, bin, v)
		}
	}
}

// A logical type is goavro's to decode: the schema is not compiled.
func TestLogicalTypesAreLeftToGoavro(t *testing.T) {
	var tree any
	_ = json.Unmarshal([]byte(`{"type":"record","name":"R","fields":[{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}]}`), &tree)
	if _, err := compileDecoder(tree); err == nil {
		t.Fatal("a logical type was compiled")
	}
}
