package serde_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
)

// record builds a record schema t.R from field declarations.
func record(fields ...string) string {
	return `{"type":"record","name":"R","namespace":"t","fields":[` + strings.Join(fields, ",") + `]}`
}

const idField = `{"name":"id","type":"string"}`

// evolve writes value with writer and reads it back with reader, through the
// wire format and an in-memory registry.
func evolve(t *testing.T, writer string, value map[string]any, reader string) (map[string]any, error) {
	t.Helper()
	ctx := context.Background()
	reg := newMemRegistry()
	enc, err := serde.New(reg).Encoder(ctx, "w-value", writer)
	if err != nil {
		t.Fatalf("writer schema: %v", err)
	}
	data, err := enc.Encode(nil, value)
	if err != nil {
		t.Fatalf("encode with the writer schema: %v", err)
	}
	rd, err := serde.Parse(reader)
	if err != nil {
		t.Fatalf("reader schema: %v", err)
	}
	// A fresh Serde, so the writer schema comes from the registry by id.
	return serde.New(reg).Decode(ctx, data, rd)
}

func TestResolveReaderDefaults(t *testing.T) {
	writer := record(idField)
	value := map[string]any{"id": "a"}
	tests := []struct {
		name  string
		field string
		want  any
	}{
		{"string", `{"name":"f","type":"string","default":"x"}`, "x"},
		{"double", `{"name":"f","type":"double","default":1.5}`, 1.5},
		{"float", `{"name":"f","type":"float","default":0.5}`, float32(0.5)},
		{"int", `{"name":"f","type":"int","default":7}`, int32(7)},
		{"long", `{"name":"f","type":"long","default":9007199254740}`, int64(9007199254740)},
		{"boolean", `{"name":"f","type":"boolean","default":true}`, true},
		{"bytes ascii", `{"name":"f","type":"bytes","default":"ab"}`, []byte("ab")},
		{"primitive as object", `{"name":"f","type":{"type":"int"},"default":3}`, int32(3)},
		{"map", `{"name":"f","type":{"type":"map","values":"string"},"default":{"a":"b","c":"d"}}`,
			map[string]any{"a": "b", "c": "d"}},
		{"empty map", `{"name":"f","type":{"type":"map","values":"double"},"default":{}}`, map[string]any{}},
		{"map of long", `{"name":"f","type":{"type":"map","values":"long"},"default":{"n":4}}`,
			map[string]any{"n": int64(4)}},
		{"array", `{"name":"f","type":{"type":"array","items":"long"},"default":[1,2]}`, []any{int64(1), int64(2)}},
		{"empty array", `{"name":"f","type":{"type":"array","items":"string"},"default":[]}`, []any{}},
		{"union null default", `{"name":"f","type":["null","string"],"default":null}`, nil},
		{"union first branch default", `{"name":"f","type":["string","null"],"default":"x"}`,
			map[string]any{"string": "x"}},
		{"union int first", `{"name":"f","type":["int","null"],"default":5}`, map[string]any{"int": int32(5)}},
		{"enum", `{"name":"f","type":{"type":"enum","name":"E","symbols":["A","B"]},"default":"B"}`, "B"},
		{"nested record", `{"name":"f","type":{"type":"record","name":"Inner","fields":[
				{"name":"x","type":"int"},
				{"name":"y","type":"string","default":"d"},
				{"name":"z","type":["null","double"],"default":null}
			]},"default":{"x":3}}`,
			map[string]any{"x": int32(3), "y": "d", "z": nil}},
		{"nested record overriding inner default", `{"name":"f","type":{"type":"record","name":"Inner","fields":[
				{"name":"y","type":"string","default":"d"}
			]},"default":{"y":"given"}}`,
			map[string]any{"y": "given"}},
		{"array of records", `{"name":"f","type":{"type":"array","items":{"type":"record","name":"It","fields":[
				{"name":"n","type":"int"}]}},"default":[{"n":1},{"n":2}]}`,
			[]any{map[string]any{"n": int32(1)}, map[string]any{"n": int32(2)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := evolve(t, writer, value, record(idField, tt.field))
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"id": "a", "f": tt.want}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %#v\nwant %#v", got, want)
			}
		})
	}
}

func TestResolveValues(t *testing.T) {
	inner := func(fields ...string) string {
		return `{"type":"record","name":"Inner","fields":[` + strings.Join(fields, ",") + `]}`
	}
	tests := []struct {
		name          string
		writer, value string // value: the writer field's type
		native        any
		reader        string // the reader field's type
		want          any
	}{
		{"int to long", `"int"`, "", int32(5), `"long"`, int64(5)},
		{"int to float", `"int"`, "", int32(-5), `"float"`, float32(-5)},
		{"int to double", `"int"`, "", int32(7), `"double"`, float64(7)},
		{"long to float", `"long"`, "", int64(1 << 40), `"float"`, float32(1 << 40)},
		{"long to double", `"long"`, "", int64(-3), `"double"`, float64(-3)},
		{"float to double", `"float"`, "", float32(0.25), `"double"`, float64(0.25)},
		{"string to bytes", `"string"`, "", "héllo", `"bytes"`, []byte("héllo")},
		{"bytes to string", `"bytes"`, "", []byte("abc"), `"string"`, "abc"},
		{"same type", `"boolean"`, "", true, `"boolean"`, true},
		{"union string passes through", `["null","string"]`, "", map[string]any{"string": "hi"},
			`["null","string"]`, map[string]any{"string": "hi"}},
		{"union null passes through", `["null","string"]`, "", nil, `["null","string"]`, nil},
		{"union branches reordered", `["null","string"]`, "", map[string]any{"string": "hi"},
			`["string","null"]`, map[string]any{"string": "hi"}},
		{"non-union string read as union", `"string"`, "", "hi", `["null","string"]`, map[string]any{"string": "hi"}},
		{"non-union int read as union long", `"int"`, "", int32(5), `["null","long"]`, map[string]any{"long": int64(5)}},
		{"union int read as union long", `["null","int"]`, "", map[string]any{"int": int32(5)},
			`["null","long"]`, map[string]any{"long": int64(5)}},
		{"non-union map read as optional map", `{"type":"map","values":"double"}`, "", map[string]any{"p": 0.5},
			`["null",{"type":"map","values":"double"}]`, map[string]any{"map": map[string]any{"p": 0.5}}},
		{"map of int to map of long", `{"type":"map","values":"int"}`, "", map[string]any{"a": int32(1), "b": int32(2)},
			`{"type":"map","values":"long"}`, map[string]any{"a": int64(1), "b": int64(2)}},
		{"array of int to array of double", `{"type":"array","items":"int"}`, "", []any{int32(1), int32(2)},
			`{"type":"array","items":"double"}`, []any{1.0, 2.0}},
		{"enum passes through", `{"type":"enum","name":"E","symbols":["A","B"]}`, "", "B",
			`{"type":"enum","name":"E","symbols":["A","B","C"]}`, "B"},
		{"nested record gains a field", inner(`{"name":"a","type":"int"}`), "", map[string]any{"a": int32(1)},
			inner(`{"name":"a","type":"long"}`, `{"name":"b","type":"string","default":"z"}`),
			map[string]any{"a": int64(1), "b": "z"}},
		{"nested record loses a field", inner(`{"name":"a","type":"int"}`, `{"name":"gone","type":"string"}`), "",
			map[string]any{"a": int32(1), "gone": "x"},
			inner(`{"name":"a","type":"int"}`), map[string]any{"a": int32(1)}},
		{"record in a union, by its full name", `["null",` + inner(`{"name":"a","type":"int"}`) + `]`, "",
			map[string]any{"t.Inner": map[string]any{"a": int32(1)}},
			`["null",` + inner(`{"name":"a","type":"int"}`, `{"name":"b","type":"string","default":"z"}`) + `]`,
			map[string]any{"t.Inner": map[string]any{"a": int32(1), "b": "z"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writer := record(idField, `{"name":"v","type":`+tt.writer+`}`)
			// The extra defaulted field keeps the reader's text different
			// from the writer's, so resolution always runs.
			reader := record(idField, `{"name":"v","type":`+tt.reader+`}`, `{"name":"extra","type":"int","default":1}`)
			got, err := evolve(t, writer, map[string]any{"id": "a", "v": tt.native}, reader)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"id": "a", "v": tt.want, "extra": int32(1)}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %#v\nwant %#v", got, want)
			}
		})
	}
}

func TestResolveDropsWriterOnlyFields(t *testing.T) {
	writer := record(idField, `{"name":"added","type":"long"}`, `{"name":"opt","type":["null","string"],"default":null}`)
	got, err := evolve(t, writer, map[string]any{"id": "a", "added": int64(3), "opt": map[string]any{"string": "s"}}, record(idField))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"id": "a"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name           string
		writer, reader string
		value          map[string]any
		want           string
	}{
		{"reader field without default missing from writer",
			record(idField), record(idField, `{"name":"required","type":"long"}`),
			map[string]any{"id": "a"}, "field required: absent in the writer's record and has no default"},
		{"string read as int",
			record(idField, `{"name":"v","type":"string"}`), record(idField, `{"name":"v","type":"int"}`),
			map[string]any{"id": "a", "v": "x"}, "field v: cannot read string as int"},
		{"long read as int (a demotion)",
			record(idField, `{"name":"v","type":"long"}`), record(idField, `{"name":"v","type":"int"}`),
			map[string]any{"id": "a", "v": int64(1)}, "field v"},
		{"double read as float (a demotion)",
			record(idField, `{"name":"v","type":"double"}`), record(idField, `{"name":"v","type":"float"}`),
			map[string]any{"id": "a", "v": 1.0}, "field v"},
		{"null written, reader union has no null",
			record(idField, `{"name":"v","type":["null","string"]}`), record(idField, `{"name":"v","type":["string","long"]}`),
			map[string]any{"id": "a", "v": nil}, "null is not a branch"},
		{"no reader branch takes the value",
			record(idField, `{"name":"v","type":"boolean"}`), record(idField, `{"name":"v","type":["null","string"]}`),
			map[string]any{"id": "a", "v": true}, "no branch of the reader's union takes bool"},
		{"nested record field without default",
			record(idField, `{"name":"n","type":{"type":"record","name":"N","fields":[{"name":"a","type":"int"}]}}`),
			record(idField, `{"name":"n","type":{"type":"record","name":"N","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}}`),
			map[string]any{"id": "a", "n": map[string]any{"a": int32(1)}}, "field n: field b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := evolve(t, tt.writer, tt.value, tt.reader)
			if err == nil {
				t.Fatalf("resolved to %#v, want an error", got)
			}
			if !errors.Is(err, serde.ErrDecode) {
				t.Fatalf("err %v is not ErrDecode", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %q does not say %q", err, tt.want)
			}
		})
	}
}

// The Avro specification maps a bytes default's code points 0-255 to single
// bytes; "\u00ff" is the one byte 0xff, not its two-byte UTF-8 encoding.
func TestResolveBytesDefaultIsLatin1(t *testing.T) {
	got, err := evolve(t, record(idField), map[string]any{"id": "a"},
		record(idField, `{"name":"f","type":"bytes","default":"\u00ff\u0000"}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0xff, 0x00}; !reflect.DeepEqual(got["f"], want) {
		t.Fatalf("bytes default = % x, want % x", got["f"], want)
	}
}

// A map that happens to hold one entry looks like goavro's union wrapper to
// resolveUnion, which then reads the map's single value as a primitive
// branch of the reader's union instead of taking the map branch.
func TestResolveSingleEntryMapIntoUnionWithMapBranch(t *testing.T) {
	writer := record(idField, `{"name":"v","type":{"type":"map","values":"string"}}`)
	reader := record(idField, `{"name":"v","type":["null","string",{"type":"map","values":"string"}]}`)
	got, err := evolve(t, writer, map[string]any{"id": "a", "v": map[string]any{"k": "v"}}, reader)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"map": map[string]any{"k": "v"}}
	if !reflect.DeepEqual(got["v"], want) {
		t.Fatalf("v = %#v, want %#v", got["v"], want)
	}
}
