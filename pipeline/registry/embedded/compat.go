package embedded

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/hamba/avro/v2"
)

// Compatibility levels, as named by the Confluent REST API.
const (
	LevelNone               = "NONE"
	LevelBackward           = "BACKWARD"
	LevelBackwardTransitive = "BACKWARD_TRANSITIVE"
	LevelForward            = "FORWARD"
	LevelForwardTransitive  = "FORWARD_TRANSITIVE"
	LevelFull               = "FULL"
	LevelFullTransitive     = "FULL_TRANSITIVE"
)

// normalizeLevel returns the canonical spelling of a compatibility level, or
// false when s names none.
func normalizeLevel(s string) (string, bool) {
	l := strings.ToUpper(strings.TrimSpace(s))
	switch l {
	case LevelNone, LevelBackward, LevelBackwardTransitive, LevelForward,
		LevelForwardTransitive, LevelFull, LevelFullTransitive:
		return l, true
	}
	return "", false
}

func levelChecksBackward(l string) bool {
	return l == LevelBackward || l == LevelBackwardTransitive || l == LevelFull || l == LevelFullTransitive
}

func levelChecksForward(l string) bool {
	return l == LevelForward || l == LevelForwardTransitive || l == LevelFull || l == LevelFullTransitive
}

func levelIsTransitive(l string) bool { return strings.HasSuffix(l, "_TRANSITIVE") }

// parseAvro parses an Avro schema text. Named types defined by referenced
// schemas must already be in cache; a fresh cache is used otherwise so that
// no type leaks from one schema into another (hamba's package-level cache
// would make an undefined name resolve to whatever was parsed last).
func parseAvro(text string, cache *avro.SchemaCache) (avro.Schema, error) {
	if !json.Valid([]byte(text)) {
		return nil, fmt.Errorf("schema is not valid JSON")
	}
	if cache == nil {
		cache = &avro.SchemaCache{}
	}
	s, err := avro.ParseWithCache(text, "", cache)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// identityKey is what makes two submitted schemas "the same schema": the
// parsed schema re-encoded in a fixed attribute order (so whitespace, key
// order and equivalent spellings such as {"type":"string"} vs "string" do
// not matter, while field order, defaults, docs and custom properties do),
// plus the schema type and the references.
func identityKey(schemaType string, parsed avro.Schema, refs []reference) (string, error) {
	canon, err := json.Marshal(parsed)
	if err != nil {
		return "", fmt.Errorf("canonicalize schema: %w", err)
	}
	refJSON, err := json.Marshal(refs)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(schemaType))
	h.Write([]byte{0})
	h.Write(canon)
	h.Write([]byte{0})
	h.Write(refJSON)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// compactJSON removes insignificant whitespace from a JSON text, keeping
// key order, which is how the schema text is stored and served.
func compactJSON(text string) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(text)); err != nil {
		return text
	}
	return buf.String()
}

// previousSchema is a registered version a candidate is checked against.
type previousSchema struct {
	version int
	schema  avro.Schema
}

// checkCompatibility checks candidate against previous (ascending by
// version, soft-deleted versions already excluded) under level. Non-transitive
// levels look at the newest previous schema only. It returns one message per
// failed check; none means compatible.
func checkCompatibility(level string, candidate avro.Schema, previous []previousSchema) []string {
	if level == LevelNone || len(previous) == 0 {
		return nil
	}
	against := previous
	if !levelIsTransitive(level) {
		against = previous[len(previous)-1:]
	}
	var msgs []string
	for i := len(against) - 1; i >= 0; i-- {
		p := against[i]
		old := fmt.Sprintf("version %d", p.version)
		if levelChecksBackward(level) {
			if reason := compatible(candidate, p.schema, "the new schema", old); reason != "" {
				msgs = append(msgs, fmt.Sprintf("%s: backward check against %s failed (the new schema must read data written with %s): %s",
					level, old, old, reason))
			}
		}
		if levelChecksForward(level) {
			if reason := compatible(p.schema, candidate, old, "the new schema"); reason != "" {
				msgs = append(msgs, fmt.Sprintf("%s: forward check against %s failed (%s must read data written with the new schema): %s",
					level, old, old, reason))
			}
		}
	}
	return msgs
}

// compatible reports why data written with writer cannot be read with reader
// according to the Avro specification's schema resolution rules, or "" when
// it can. The verdict is hamba/avro's; this function only walks the two
// schemas to name the field where resolution breaks.
func compatible(reader, writer avro.Schema, readerName, writerName string) string {
	if avro.NewSchemaCompatibility().Compatible(reader, writer) == nil {
		return ""
	}
	e := explainer{readerName: readerName, writerName: writerName}
	return e.explain(reader, writer, "", 0)
}

type explainer struct {
	readerName, writerName string
}

const maxExplainDepth = 64

func deref(s avro.Schema) avro.Schema {
	for s != nil && s.Type() == avro.Ref {
		s = s.(*avro.RefSchema).Schema()
	}
	return s
}

func typeLabel(s avro.Schema) string {
	s = deref(s)
	if n, ok := s.(avro.NamedSchema); ok {
		return fmt.Sprintf("%s %s", s.Type(), n.FullName())
	}
	if l, ok := s.(avro.LogicalTypeSchema); ok && l.Logical() != nil {
		return fmt.Sprintf("%s (%s)", s.Type(), l.Logical().Type())
	}
	return string(s.Type())
}

func pathLabel(path string) string {
	if path == "" {
		return "/"
	}
	return path
}

// where describes a location for messages: `field "b" (path /a/b)` for a
// record field, or `path /a[]` elsewhere.
func where(path string) string {
	if path == "" {
		return "the top-level schema"
	}
	i := strings.LastIndexByte(path, '/')
	last := path[i+1:]
	if last != "" && !strings.ContainsAny(last, "[]{}<>") {
		return fmt.Sprintf("field %q (path %s)", last, path)
	}
	return "path " + path
}

func (e explainer) mismatch(reader, writer avro.Schema, path string) string {
	return fmt.Sprintf("%s: type %s in %s cannot read type %s written with %s",
		where(path), typeLabel(reader), e.readerName, typeLabel(writer), e.writerName)
}

func (e explainer) explain(reader, writer avro.Schema, path string, depth int) string {
	r, w := deref(reader), deref(writer)
	fallback := func() string {
		err := avro.NewSchemaCompatibility().Compatible(r, w)
		if err == nil {
			return ""
		}
		return fmt.Sprintf("%s: %v (reader: %s, writer: %s)", where(path), err, e.readerName, e.writerName)
	}
	if depth > maxExplainDepth {
		return fallback()
	}
	c := avro.NewSchemaCompatibility()

	if r.Type() != w.Type() {
		switch {
		case w.Type() == avro.Union:
			// Every branch the writer may have used must be readable.
			for _, wb := range w.(*avro.UnionSchema).Types() {
				if c.Compatible(r, wb) != nil {
					return e.explain(r, wb, path, depth+1)
				}
			}
			return fallback()
		case r.Type() == avro.Union:
			// Some reader branch must read the writer's type; point at the
			// branch of the same kind when there is one.
			for _, rb := range r.(*avro.UnionSchema).Types() {
				if sameKind(rb, w) {
					return e.explain(rb, w, path, depth+1)
				}
			}
			return fmt.Sprintf("%s: the union in %s has no branch that can read type %s written with %s",
				where(path), e.readerName, typeLabel(w), e.writerName)
		default:
			return e.mismatch(r, w, path)
		}
	}

	switch r.Type() {
	case avro.Record, avro.Error:
		rr, wr := r.(*avro.RecordSchema), w.(*avro.RecordSchema)
		if rr.Name() != wr.Name() && !slices.Contains(rr.Aliases(), wr.FullName()) {
			return fmt.Sprintf("%s: record name %s in %s does not match record name %s in %s",
				where(path), rr.FullName(), e.readerName, wr.FullName(), e.writerName)
		}
		for _, rf := range rr.Fields() {
			fpath := path + "/" + rf.Name()
			wf := findField(wr.Fields(), rf)
			if wf == nil {
				if rf.HasDefault() {
					continue
				}
				return fmt.Sprintf("field %q (path %s) is in %s without a default value but is missing from %s",
					rf.Name(), fpath, e.readerName, e.writerName)
			}
			if c.Compatible(rf.Type(), wf.Type()) != nil {
				return e.explain(rf.Type(), wf.Type(), fpath, depth+1)
			}
		}
	case avro.Array:
		return e.explain(r.(*avro.ArraySchema).Items(), w.(*avro.ArraySchema).Items(), path+"[]", depth+1)
	case avro.Map:
		return e.explain(r.(*avro.MapSchema).Values(), w.(*avro.MapSchema).Values(), path+"{}", depth+1)
	case avro.Enum:
		re, we := r.(*avro.EnumSchema), w.(*avro.EnumSchema)
		if re.Name() == we.Name() || slices.Contains(re.Aliases(), we.FullName()) {
			var missing []string
			for _, sym := range we.Symbols() {
				if !slices.Contains(re.Symbols(), sym) {
					missing = append(missing, sym)
				}
			}
			if len(missing) > 0 && !re.HasDefault() {
				return fmt.Sprintf("%s: enum %s in %s lacks symbol(s) %s written with %s and has no default symbol",
					where(path), re.FullName(), e.readerName, strings.Join(missing, ", "), e.writerName)
			}
		}
	case avro.Fixed:
		rf, wf := r.(*avro.FixedSchema), w.(*avro.FixedSchema)
		if rf.Size() != wf.Size() {
			return fmt.Sprintf("%s: fixed %s has size %d in %s but size %d in %s",
				where(path), rf.FullName(), rf.Size(), e.readerName, wf.Size(), e.writerName)
		}
	case avro.Union:
		ru := r.(*avro.UnionSchema)
		for _, wb := range w.(*avro.UnionSchema).Types() {
			if c.Compatible(ru, wb) == nil {
				continue
			}
			for _, rb := range ru.Types() {
				if sameKind(rb, wb) {
					return e.explain(rb, wb, path, depth+1)
				}
			}
			return fmt.Sprintf("%s: the union in %s has no branch that can read type %s written with %s",
				where(path), e.readerName, typeLabel(wb), e.writerName)
		}
	}
	return fallback()
}

// findField returns the writer field the reader field resolves to: same
// name, or a writer field named by one of the reader field's aliases.
func findField(writerFields []*avro.Field, rf *avro.Field) *avro.Field {
	for _, wf := range writerFields {
		if wf.Name() == rf.Name() {
			return wf
		}
	}
	for _, wf := range writerFields {
		if slices.Contains(rf.Aliases(), wf.Name()) {
			return wf
		}
	}
	return nil
}

// sameKind reports whether two schemas are of the same type and, for named
// types, have the same full name.
func sameKind(a, b avro.Schema) bool {
	a, b = deref(a), deref(b)
	if a.Type() != b.Type() {
		return false
	}
	an, aok := a.(avro.NamedSchema)
	bn, bok := b.(avro.NamedSchema)
	if aok && bok {
		return an.FullName() == bn.FullName()
	}
	return true
}
