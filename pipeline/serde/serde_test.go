package serde_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
)

const personV1 = `{"type":"record","name":"Person","namespace":"t","fields":[
	{"name":"name","type":"string"},
	{"name":"age","type":"int"},
	{"name":"nick","type":["null","string"],"default":null},
	{"name":"tags","type":{"type":"array","items":"string"}},
	{"name":"scores","type":{"type":"map","values":"double"}}
]}`

func person() map[string]any {
	return map[string]any{
		"name":   "ada",
		"age":    int32(36),
		"nick":   map[string]any{"string": "countess"},
		"tags":   []any{"math", "engines"},
		"scores": map[string]any{"x": 1.5},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	ctx := context.Background()
	reg := newMemRegistry()
	s := serde.New(reg)
	enc, err := s.Encoder(ctx, "people-value", personV1)
	if err != nil {
		t.Fatal(err)
	}
	if enc.ID != 1 {
		t.Fatalf("first registered schema has id %d, want 1", enc.ID)
	}

	prefix := []byte("keep")
	data, err := enc.Encode(append([]byte(nil), prefix...), person())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, prefix) {
		t.Fatalf("Encode did not append to buf: % x", data[:8])
	}
	data = data[len(prefix):]
	if data[0] != 0 {
		t.Fatalf("magic byte %d, want 0", data[0])
	}
	if id := binary.BigEndian.Uint32(data[1:5]); id != uint32(enc.ID) {
		t.Fatalf("schema id in header %d, want %d", id, enc.ID)
	}
	if id, err := serde.SchemaID(data); err != nil || id != enc.ID {
		t.Fatalf("SchemaID = %d, %v; want %d", id, err, enc.ID)
	}

	reader, err := serde.Parse(personV1)
	if err != nil {
		t.Fatal(err)
	}
	for name, rd := range map[string]*serde.Schema{"nil reader": nil, "same reader": reader} {
		got, err := s.Decode(ctx, data, rd)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, person()) {
			t.Errorf("%s: decoded %#v\nwant %#v", name, got, person())
		}
	}

	// A second Serde over the same registry has not seen the schema: it
	// fetches the writer by id.
	other := serde.New(reg)
	got, err := other.Decode(ctx, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, person()) {
		t.Errorf("fresh serde decoded %#v", got)
	}
}

func TestEncoderRegistersOnce(t *testing.T) {
	ctx := context.Background()
	reg := newMemRegistry()
	s := serde.New(reg)
	a, err := s.Encoder(ctx, "a-value", personV1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Encoder(ctx, "a-value", personV1)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID {
		t.Fatalf("identical schema got ids %d and %d", a.ID, b.ID)
	}
	c, err := s.Encoder(ctx, "b-value", `{"type":"record","name":"B","fields":[{"name":"x","type":"long"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == a.ID {
		t.Fatalf("different schemas share id %d", c.ID)
	}
	// The encoder's schema is cached: decoding needs no registry lookup.
	data, err := a.Encode(nil, person())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decode(ctx, data, nil); err != nil {
		t.Fatal(err)
	}
	if reg.lookups != 0 {
		t.Fatalf("registry looked up %d times, want 0", reg.lookups)
	}
}

func TestEncoderRejectsInvalidSchema(t *testing.T) {
	s := serde.New(newMemRegistry())
	_, err := s.Encoder(context.Background(), "bad-value", `{"type":"record","name":"X","fields":[{"name":"a","type":"nope"}]}`)
	if err == nil || !strings.Contains(err.Error(), "bad-value") {
		t.Fatalf("err = %v, want a parse error naming the subject", err)
	}
	if _, err := serde.Parse(`{not json`); err == nil {
		t.Fatal("Parse accepted malformed JSON")
	}
}

func TestEncodeRejectsNativeNotMatchingSchema(t *testing.T) {
	s := serde.New(newMemRegistry())
	enc, err := s.Encoder(context.Background(), "p-value", personV1)
	if err != nil {
		t.Fatal(err)
	}
	bad := person()
	delete(bad, "name")
	if out, err := enc.Encode(nil, bad); err == nil {
		t.Fatalf("encoded a record missing a required field: % x", out)
	}
	bad = person()
	bad["age"] = "old"
	if _, err := enc.Encode(nil, bad); err == nil {
		t.Fatal("encoded a string as an int")
	}
}

func TestWriterIsFetchedOnce(t *testing.T) {
	ctx := context.Background()
	reg := newMemRegistry()
	reg.add(42, personV1)
	producer := serde.New(newMemRegistry())
	enc, err := producer.Encoder(ctx, "p-value", personV1)
	if err != nil {
		t.Fatal(err)
	}
	enc.ID = 42 // as if registered in the consumer's registry under 42
	data, err := enc.Encode(nil, person())
	if err != nil {
		t.Fatal(err)
	}
	s := serde.New(reg)
	for i := 0; i < 3; i++ {
		if _, err := s.Decode(ctx, data, nil); err != nil {
			t.Fatal(err)
		}
	}
	if reg.lookups != 1 {
		t.Fatalf("registry looked up %d times for one writer schema, want 1", reg.lookups)
	}
	w, err := s.Writer(ctx, 42)
	if err != nil || w.Text != personV1 {
		t.Fatalf("Writer(42) = %v, %v", w, err)
	}
}

func TestDecodeWireFormatErrors(t *testing.T) {
	ctx := context.Background()
	reg := newMemRegistry()
	s := serde.New(reg)
	enc, err := s.Encoder(ctx, "p-value", personV1)
	if err != nil {
		t.Fatal(err)
	}
	good, err := enc.Encode(nil, person())
	if err != nil {
		t.Fatal(err)
	}
	reg.add(7, `"string"`) // a registered schema that is not a record
	notRecord := append([]byte{0, 0, 0, 0, 7}, 0x06, 'a', 'b', 'c')

	withID := func(id uint32, body []byte) []byte {
		b := []byte{0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], id)
		return append(b, body...)
	}
	tests := []struct {
		name string
		data []byte
		want string // in the message
	}{
		{"nil", nil, "0 bytes"},
		{"short record", []byte{0, 0, 0, 1}, "4 bytes is shorter"},
		{"wrong magic byte", append([]byte{1}, good[1:]...), "magic byte is 1"},
		{"JSON instead of Avro", []byte(`{"name":"ada"}`), "magic byte is 123"},
		{"unknown schema id", withID(99, good[5:]), "writer schema 99"},
		{"header only", good[:5], "body does not match writer schema 1"},
		{"truncated body", good[:len(good)-3], "body does not match writer schema 1"},
		{"trailing bytes", append(append([]byte(nil), good...), 1, 2), "2 trailing bytes"},
		{"writer schema not a record", notRecord, "schema 7 is not a record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Decode(ctx, tt.data, nil)
			if err == nil {
				t.Fatalf("decoded %v, want an error", got)
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

func TestRegistryNotFoundIsErrDecode(t *testing.T) {
	ctx := context.Background()
	reg := newMemRegistry()
	reg.fail = &registry.Error{Op: "schema by id", ID: 5, Code: 40403, Message: "Schema 5 not found"}
	_, err := serde.New(reg).Decode(ctx, []byte{0, 0, 0, 0, 5, 0}, nil)
	if !errors.Is(err, serde.ErrDecode) || !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("err = %v, want both ErrDecode and registry.ErrNotFound", err)
	}
}

func TestSchemaIDErrors(t *testing.T) {
	for _, data := range [][]byte{nil, {0}, {0, 0, 0, 0}, {2, 0, 0, 0, 1}} {
		if _, err := serde.SchemaID(data); !errors.Is(err, serde.ErrDecode) {
			t.Errorf("SchemaID(% x) err = %v, want ErrDecode", data, err)
		}
	}
	id, err := serde.SchemaID([]byte{0, 0x01, 0x02, 0x03, 0x04})
	if err != nil || id != 0x01020304 {
		t.Fatalf("SchemaID = %#x, %v; want 0x01020304 (big endian)", id, err)
	}
}

// A registry that cannot answer is not a property of the record: a record
// that decodes fine once the registry is back should not be dead-lettered
// because of a blip. serde.Writer wraps every registry error in ErrDecode,
// so stage.WithRetry does not retry it and stage.WithDeadLetter sends a good
// record to the dead-letter topic.
func TestTransientRegistryErrorIsNotErrDecode(t *testing.T) {
	ctx := context.Background()
	producer := serde.New(newMemRegistry())
	enc, err := producer.Encoder(ctx, "p-value", personV1)
	if err != nil {
		t.Fatal(err)
	}
	data, err := enc.Encode(nil, person())
	if err != nil {
		t.Fatal(err)
	}
	reg := newMemRegistry()
	reg.add(enc.ID, personV1)
	reg.fail = &registry.Error{Op: "schema by id", ID: enc.ID, Err: context.DeadlineExceeded}
	_, err = serde.New(reg).Decode(ctx, data, nil)
	if err == nil {
		t.Fatal("decoded without a registry")
	}
	if errors.Is(err, serde.ErrDecode) {
		t.Fatalf("a registry timeout is classified as an undecodable record: %v", err)
	}
}

func TestAccessors(t *testing.T) {
	m := map[string]any{
		"s":  "x",
		"l":  int64(5),
		"i":  int32(6),
		"u":  map[string]any{"string": "y"},
		"n":  nil,
		"r":  map[string]any{"a": 1},
		"d":  map[string]any{"a": 1.5, "b": float32(2), "c": int32(3), "e": int64(4), "z": "no"},
		"li": int32(7),
		"il": int64(8),
	}
	if serde.Str(m, "s") != "x" || serde.Str(m, "l") != "" || serde.Str(m, "absent") != "" {
		t.Error("Str")
	}
	if serde.Long(m, "l") != 5 || serde.Long(m, "li") != 7 || serde.Long(m, "s") != 0 {
		t.Error("Long")
	}
	if serde.Int(m, "i") != 6 || serde.Int(m, "il") != 8 || serde.Int(m, "s") != 0 {
		t.Error("Int")
	}
	if v, ok := serde.OptStr(m, "u"); !ok || v != "y" {
		t.Errorf("OptStr(u) = %q, %v", v, ok)
	}
	if v, ok := serde.OptStr(m, "n"); ok || v != "" {
		t.Errorf("OptStr(null) = %q, %v", v, ok)
	}
	if serde.Opt("") != nil {
		t.Error(`Opt("") is not null`)
	}
	if got := serde.Opt("a"); !reflect.DeepEqual(got, map[string]any{"string": "a"}) {
		t.Errorf("Opt(a) = %v", got)
	}
	if r := serde.Rec(m, "r"); r["a"] != 1 {
		t.Errorf("Rec = %v", r)
	}
	if r := serde.Rec(m, "s"); r != nil {
		t.Errorf("Rec of a string = %v", r)
	}
	want := map[string]float64{"a": 1.5, "b": 2, "c": 3, "e": 4}
	if got := serde.Doubles(m, "d"); !reflect.DeepEqual(got, want) {
		t.Errorf("Doubles = %v, want %v", got, want)
	}
	if got := serde.Doubles(m, "absent"); got == nil || len(got) != 0 {
		t.Errorf("Doubles(absent) = %#v, want an empty map", got)
	}
	dm := serde.DoubleMap(map[string]float64{"p": 0.25})
	if !reflect.DeepEqual(dm, map[string]any{"p": 0.25}) {
		t.Errorf("DoubleMap = %v", dm)
	}
}
