// Package serde reads and writes records in the Confluent wire format: a
// zero magic byte, the writer schema's registry id (4 bytes, big endian), then
// the Avro binary body. Readers fetch the writer's schema by id and resolve it
// to their own reader schema, so a producer that adds a field with a default
// never breaks a stage built before it.
package serde

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/linkedin/goavro/v2"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
)

// ErrDecode marks a record that cannot be decoded: a poison record for the
// dead-letter topic, never a reason to stop a stage.
var ErrDecode = errors.New("undecodable record")

// ErrUnknownSchema may be returned by a Registry for an id it does not
// hold; registry.ErrNotFound is recognised too.
var ErrUnknownSchema = errors.New("unknown schema id")

// Registry is the part of the schema registry the serde needs.
type Registry interface {
	SchemaByID(ctx context.Context, id int) (string, error)
	Register(ctx context.Context, subject, schema string) (int, error)
}

// Schema is a parsed Avro schema.
type Schema struct {
	Text  string
	Codec *goavro.Codec
	tree  any // the schema as JSON, for resolution
	// canonical is the Parsing Canonical Form: two schemas with the same
	// one read and write the same bytes as the same values.
	canonical string
	// identity caches, per writer schema, whether records written with it
	// need no resolution to this (reader) schema.
	identity sync.Map // *Schema -> bool
	// dec decodes records written with this schema; nil leaves them to
	// goavro (see decoder).
	dec decoder
}

// Parse compiles an Avro schema.
func Parse(text string) (*Schema, error) {
	codec, err := goavro.NewCodec(text)
	if err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	var tree any
	if err := json.Unmarshal([]byte(text), &tree); err != nil {
		return nil, fmt.Errorf("parse schema json: %w", err)
	}
	dec, err := compileDecoder(tree)
	if err != nil {
		dec = nil // goavro parsed it, so goavro decodes it
	}
	return &Schema{Text: text, Codec: codec, tree: tree, canonical: codec.CanonicalSchema(), dec: dec}, nil
}

// readsAsIs reports whether a record written with w is already in r's
// form. Registries store a schema normalised (Confluent's and the embedded
// one compact the JSON), so the writer's text fetched by id almost never
// equals the reader's own text even when the schemas are the same; the
// canonical forms do. Resolving such a record would copy it field by field
// for nothing, several times the cost of decoding it.
func (r *Schema) readsAsIs(w *Schema) bool {
	if v, ok := r.identity.Load(w); ok {
		return v.(bool)
	}
	same := r.Text == w.Text || r.canonical == w.canonical
	r.identity.Store(w, same)
	return same
}

// Serde encodes with registered schemas and decodes any registered writer
// schema into a reader schema. Safe for concurrent use.
type Serde struct {
	reg     Registry
	writers sync.Map // int -> *Schema
}

// New returns a Serde over a registry.
func New(reg Registry) *Serde { return &Serde{reg: reg} }

// Encoder writes records of one subject with one schema.
type Encoder struct {
	ID     int
	Schema *Schema
}

// Encoder registers schema under subject (an identical schema returns its
// existing id) and returns an encoder for it.
func (s *Serde) Encoder(ctx context.Context, subject, schema string) (*Encoder, error) {
	sc, err := Parse(schema)
	if err != nil {
		return nil, fmt.Errorf("subject %s: %w", subject, err)
	}
	id, err := s.reg.Register(ctx, subject, schema)
	if err != nil {
		return nil, fmt.Errorf("register subject %s: %w", subject, err)
	}
	s.writers.Store(id, sc)
	return &Encoder{ID: id, Schema: sc}, nil
}

// Encode appends the wire-format encoding of native to buf.
func (e *Encoder) Encode(buf []byte, native map[string]any) ([]byte, error) {
	buf = append(buf, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(buf[len(buf)-4:], uint32(e.ID))
	out, err := e.Schema.Codec.BinaryFromNative(buf, native)
	if err != nil {
		return nil, fmt.Errorf("encode with schema %d: %w", e.ID, err)
	}
	return out, nil
}

// SchemaID reads the writer schema id from a wire-format record.
func SchemaID(data []byte) (int, error) {
	if len(data) < 5 {
		return 0, fmt.Errorf("%w: %d bytes is shorter than the 5-byte wire-format header", ErrDecode, len(data))
	}
	if data[0] != 0 {
		return 0, fmt.Errorf("%w: magic byte is %d, want 0 (not Confluent wire format)", ErrDecode, data[0])
	}
	return int(binary.BigEndian.Uint32(data[1:5])), nil
}

// Writer returns the writer schema with a registry id, fetching it once.
func (s *Serde) Writer(ctx context.Context, id int) (*Schema, error) {
	if v, ok := s.writers.Load(id); ok {
		return v.(*Schema), nil
	}
	text, err := s.reg.SchemaByID(ctx, id)
	if err != nil {
		if errors.Is(err, ErrUnknownSchema) || errors.Is(err, registry.ErrNotFound) {
			return nil, fmt.Errorf("%w: writer schema %d is not in the registry: %w", ErrDecode, id, err)
		}
		// The registry is unreachable or slow: not the record's fault, so
		// not a reason to dead-letter it. The caller retries.
		return nil, fmt.Errorf("fetch writer schema %d: %w", id, err)
	}
	sc, err := Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%w: writer schema %d: %w", ErrDecode, id, err)
	}
	s.writers.Store(id, sc)
	return sc, nil
}

// Decode reads a wire-format record and resolves it to reader. A nil reader
// returns the record as the writer wrote it.
func (s *Serde) Decode(ctx context.Context, data []byte, reader *Schema) (map[string]any, error) {
	id, err := SchemaID(data)
	if err != nil {
		return nil, err
	}
	w, err := s.Writer(ctx, id)
	if err != nil {
		return nil, err
	}
	var native any
	var rest []byte
	if w.dec != nil {
		native, rest, err = w.dec(data[5:])
	} else {
		native, rest, err = w.Codec.NativeFromBinary(data[5:])
	}
	if err != nil {
		return nil, fmt.Errorf("%w: body does not match writer schema %d: %w", ErrDecode, id, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after the record (schema %d)", ErrDecode, len(rest), id)
	}
	m, ok := native.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: schema %d is not a record", ErrDecode, id)
	}
	if reader == nil || reader.readsAsIs(w) {
		return m, nil
	}
	out, err := resolve(reader.tree, m, "")
	if err != nil {
		return nil, fmt.Errorf("%w: resolve writer schema %d to the reader schema: %w", ErrDecode, id, err)
	}
	return out.(map[string]any), nil
}
