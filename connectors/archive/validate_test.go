package archive

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/linkedin/goavro/v2"

	"github.com/rendezvous-ml/rendezvous/schemas"
)

// allTypes exercises every Avro type, named references across
// namespaces, logical types and a recursive record.
const allTypes = `{"type":"record","name":"All","namespace":"t","fields":[
	{"name":"n","type":"null"},
	{"name":"b","type":"boolean"},
	{"name":"i","type":"int"},
	{"name":"l","type":"long"},
	{"name":"f","type":"float"},
	{"name":"d","type":"double"},
	{"name":"by","type":"bytes"},
	{"name":"s","type":"string"},
	{"name":"fx","type":{"type":"fixed","name":"F4","size":4}},
	{"name":"fx2","type":"F4"},
	{"name":"e","type":{"type":"enum","name":"Color","symbols":["R","G","B"]}},
	{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
	{"name":"day","type":{"type":"int","logicalType":"date"}},
	{"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
	{"name":"uuid","type":{"type":"string","logicalType":"uuid"}},
	{"name":"arr","type":{"type":"array","items":"long"}},
	{"name":"m","type":{"type":"map","values":{"type":"record","name":"Inner","namespace":"other","fields":[
		{"name":"x","type":["null","string","t.Color"]}]}}},
	{"name":"inner2","type":"other.Inner"},
	{"name":"list","type":["null",{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}]},
	{"name":"nested","type":{"type":"array","items":{"type":"map","values":{"type":"array","items":"string"}}}},
	{"name":"u","type":["int","long","float","double","bytes","boolean","null","string"]},
	{"name":"last","type":"boolean"}
]}`

func testSchemas(t *testing.T) map[string]string {
	set, err := schemas.For("iris")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{"all types": allTypes, "test decision": valueSchema}
	for k, text := range set.Text {
		out["iris "+string(k)] = text
	}
	return out
}

// gen appends a random valid encoding of a datum of n.
func gen(rng *rand.Rand, n *vnode, b []byte, depth int) []byte {
	switch n.kind {
	case vNull:
		return b
	case vBool:
		return append(b, byte(rng.IntN(2)))
	case vInt:
		if rng.IntN(2) == 0 {
			return appendLong(b, int64(rng.IntN(200)-100))
		}
		return appendLong(b, int64(int32(rng.Uint32())))
	case vLong:
		if rng.IntN(2) == 0 {
			return appendLong(b, int64(rng.IntN(200)-100))
		}
		return appendLong(b, int64(rng.Uint64()))
	case vFloat:
		return append(b, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()))
	case vDouble:
		for i := 0; i < 8; i++ {
			b = append(b, byte(rng.Uint32()))
		}
		return b
	case vBytes:
		p := make([]byte, rng.IntN(12))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return appendBytes(b, p)
	case vString:
		return appendString(b, randString(rng))
	case vFixed:
		for i := 0; i < n.n; i++ {
			b = append(b, byte(rng.Uint32()))
		}
		return b
	case vEnum:
		return appendLong(b, int64(rng.IntN(n.n)))
	case vUnion:
		i := rng.IntN(len(n.branches))
		if depth > 6 { // end recursion: take the narrowest branch
			for j, br := range n.branches {
				if br.min < n.branches[i].min {
					i = j
				}
			}
		}
		return gen(rng, n.branches[i], appendLong(b, int64(i)), depth+1)
	case vRecord:
		for _, f := range n.branches {
			b = gen(rng, f, b, depth+1)
		}
		return b
	case vArray, vMap:
		blocks := rng.IntN(3)
		if depth > 6 {
			blocks = 0
		}
		k := 0
		for ; blocks > 0; blocks-- {
			count := 1 + rng.IntN(3)
			var items []byte
			for i := 0; i < count; i++ {
				if n.kind == vMap {
					items = appendString(items, fmt.Sprintf("k%d", k))
					k++
				}
				items = gen(rng, n.items, items, depth+1)
			}
			if rng.IntN(2) == 0 {
				b = appendLong(b, int64(count))
			} else { // the block form with its size
				b = appendLong(b, -int64(count))
				b = appendLong(b, int64(len(items)))
			}
			b = append(b, items...)
		}
		return appendLong(b, 0)
	}
	panic("unknown kind")
}

func randString(rng *rand.Rand) string {
	runes := []rune{'a', 'Z', '0', ' ', 'é', '€', '𝄞', '"'}
	var sb strings.Builder
	for i := rng.IntN(8); i > 0; i-- {
		sb.WriteRune(runes[rng.IntN(len(runes))])
	}
	return sb.String()
}

func mutate(rng *rand.Rand, d []byte) []byte {
	m := append([]byte(nil), d...)
	switch op := rng.IntN(6); {
	case len(m) == 0 || op == 0:
		return append(m, byte(rng.Uint32()))
	case op == 1: // truncate
		return m[:rng.IntN(len(m))]
	case op == 2: // flip a bit
		m[rng.IntN(len(m))] ^= 1 << rng.IntN(8)
	case op == 3: // set a byte
		m[rng.IntN(len(m))] = []byte{0, 1, 2, 0x7f, 0x80, 0xff, 0xfe, 0x0f}[rng.IntN(8)]
	case op == 4: // delete a byte
		i := rng.IntN(len(m))
		return append(m[:i], m[i+1:]...)
	default: // insert a byte
		i := rng.IntN(len(m))
		return append(m[:i], append([]byte{byte(rng.Uint32())}, m[i:]...)...)
	}
	return m
}

// TestBodyCheckAgreesWithGoavro: on valid data and on mutations of it, the
// validator never accepts what goavro (the archive's reader) rejects, and
// rejects what goavro accepts only where it is deliberately stricter.
func TestBodyCheckAgreesWithGoavro(t *testing.T) {
	// goavro sizes a slice by a block count before it reads the items: a
	// mutated count could ask it for gigabytes.
	defer func(n int64) { goavro.MaxBlockCount = n }(goavro.MaxBlockCount)
	goavro.MaxBlockCount = 1 << 16

	for name, text := range testSchemas(t) {
		t.Run(name, func(t *testing.T) {
			c, err := newBodyCheck(text)
			if err != nil {
				t.Fatal(err)
			}
			if c.root == nil {
				t.Fatal("fell back to goavro")
			}
			codec, err := goavro.NewCodec(text)
			if err != nil {
				t.Fatal(err)
			}
			goavroOK := func(d []byte) error {
				_, rest, err := codec.NativeFromBinary(d)
				if err == nil && len(rest) != 0 {
					err = fmt.Errorf("%d trailing bytes", len(rest))
				}
				return err
			}
			rng := rand.New(rand.NewPCG(1, uint64(len(name))))
			strict, agreed := 0, 0
			for i := 0; i < 1500; i++ {
				d := gen(rng, c.root, nil, 0)
				if err := goavroOK(d); err != nil {
					t.Fatalf("goavro rejects a generated datum % x: %v", d, err)
				}
				if err := c.validate(d); err != nil {
					t.Fatalf("validator rejects a valid datum % x: %v", d, err)
				}
				for j := 0; j < 20; j++ {
					m := mutate(rng, d)
					verr, gerr := c.validate(m), goavroOK(m)
					switch {
					case verr == nil && gerr != nil:
						t.Fatalf("validator accepts % x, goavro rejects it: %v", m, gerr)
					case verr != nil && gerr == nil && !errors.Is(verr, errStrict):
						t.Fatalf("validator rejects % x, which goavro accepts: %v", m, verr)
					case verr != nil && gerr == nil:
						strict++
					default:
						agreed++
					}
				}
			}
			t.Logf("%d mutations agreed, %d refused only by the stricter rules", agreed, strict)
		})
	}
}

func TestBodyCheckStricterThanGoavro(t *testing.T) {
	c, err := newBodyCheck(`{"type":"record","name":"R","fields":[{"name":"i","type":"int"},{"name":"s","type":"string"},{"name":"l","type":"long"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		d    []byte
	}{
		{"int of 6 bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0, 0}},
		{"int over 32 bits", []byte{0xff, 0xff, 0xff, 0xff, 0x1f, 0, 0}},
		{"string not UTF-8", []byte{0, 4, 0xc3, 0x28, 0}},
		{"long over 64 bits", []byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
	} {
		if err := c.validate(tt.d); !errors.Is(err, errStrict) {
			t.Errorf("%s: %v, want a strictness error", tt.name, err)
		}
	}
	if err := c.validate([]byte{0xfe, 0xff, 0xff, 0xff, 0x0f, 4, 'o', 'k', 0x01}); err != nil {
		t.Errorf("largest int: %v", err)
	}
	if !utf8.ValidString("€") {
		t.Fatal("test file is not UTF-8")
	}
}

func TestBodyCheckDuplicateMapKeys(t *testing.T) {
	c, err := newBodyCheck(`{"type":"map","values":"int"}`)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(k string) []byte { return append(appendString(nil, k), 2) }
	for _, n := range []int{2, 9, 50} { // both duplicate searches
		var d []byte
		d = appendLong(d, int64(n))
		for i := 0; i < n-1; i++ {
			d = append(d, entry(fmt.Sprint("k", i))...)
		}
		ok := append(append([]byte(nil), d...), entry("last")...)
		ok = append(ok, 0)
		dup := append(append([]byte(nil), d...), entry("k0")...)
		dup = append(dup, 0)
		if err := c.validate(ok); err != nil {
			t.Errorf("%d distinct keys: %v", n, err)
		}
		if err := c.validate(dup); err == nil || !strings.Contains(err.Error(), `duplicate map key "k0"`) {
			t.Errorf("%d keys with a duplicate: %v", n, err)
		}
	}
	// Keys of nested maps are not confused with their parent's.
	c, err = newBodyCheck(`{"type":"map","values":{"type":"map","values":"int"}}`)
	if err != nil {
		t.Fatal(err)
	}
	inner := append(append(appendLong(nil, 1), entry("a")...), 0)
	d := appendLong(nil, 2)
	d = append(appendString(d, "a"), inner...)
	d = append(appendString(d, "b"), inner...)
	d = append(d, 0)
	if err := c.validate(d); err != nil {
		t.Errorf("nested maps sharing a key name: %v", err)
	}
}

func TestBodyCheckFallsBackToGoavro(t *testing.T) {
	c, err := newBodyCheck(`{"type":"record","name":"R","fields":[{"name":"s","type":{"type":"string","name":"AOnly","logicalType":"validated-string","pattern":"^a+$"}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if c.root != nil || c.codec == nil {
		t.Fatal("validated-string is goavro's own: it must use goavro")
	}
	if err := c.validate(appendString(nil, "aaa")); err != nil {
		t.Errorf("matching string: %v", err)
	}
	if err := c.validate(appendString(nil, "b")); err == nil {
		t.Error("a string that does not match the pattern passed")
	}
	if err := c.validate(append(appendString(nil, "a"), 0)); err == nil {
		t.Error("trailing bytes passed")
	}
	if _, err := newBodyCheck(`{"type":"nonsense"}`); err == nil {
		t.Error("an invalid schema compiled")
	}
}

// BenchmarkBodyCheck checks an iris decision with three scores, against
// decoding it with goavro.
func BenchmarkBodyCheck(b *testing.B) {
	set, err := schemas.For("iris")
	if err != nil {
		b.Fatal(err)
	}
	text := set.Text[schemas.Decision]
	codec, err := goavro.NewCodec(text)
	if err != nil {
		b.Fatal(err)
	}
	score := func(model, role string) map[string]any {
		return map[string]any{"model": model, "version": "1", "role": role, "result": map[string]any{"string": "setosa"},
			"error": nil, "compute_us": int64(41), "arrived_us": int64(873), "late": false, "duplicates": int32(0)}
	}
	d, err := codec.BinaryFromNative(nil, map[string]any{
		"request_id": "27a927cc-2b82-4119-a0f7-519483654517", "objective": "iris", "key": "",
		"received_us": int64(1_795_000_000_000_000), "deadline_us": int64(1_795_000_000_100_000),
		"decided_us": int64(1_795_000_000_001_100), "closed_us": int64(1_795_000_001_000_000),
		"reason": "champion", "policy": "priority", "model": "dt", "version": "1", "result": map[string]any{"string": "setosa"},
		"features": map[string]any{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2},
		"scores":   []any{score("dt", "champion"), score("canary", "canary"), score("challenger", "shadow")},
		"missing":  []any{},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("check", func(b *testing.B) {
		c, err := newBodyCheck(text)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(d)))
		b.ReportAllocs()
		for b.Loop() {
			if err := c.validate(d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goavro", func(b *testing.B) {
		b.SetBytes(int64(len(d)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := codec.NativeFromBinary(d); err != nil {
				b.Fatal(err)
			}
		}
	})
}
