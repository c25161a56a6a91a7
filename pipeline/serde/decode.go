package serde

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/linkedin/goavro/v2"
)

// A decoder reads one value of a schema from the front of buf and returns
// it in goavro's native form with the rest of buf.
//
// Every stage decodes every record it reads, several times per predict
// call, so decoding is on the hot path. goavro builds each value through
// generic codec closures that box and re-box every field; these decoders
// are compiled once per writer schema into straight-line closures that
// produce exactly goavro's values (records as map[string]any, unions as
// map[string]any{type: value} or nil, enums as their symbol, bytes and
// fixed as []byte) with about half the allocations. A schema with anything
// they do not model (a logical type) is left to goavro.
type decoder func(buf []byte) (any, []byte, error)

var errUnsupported = errors.New("not compiled: left to goavro")

// compileDecoder compiles a parsed schema, or reports that it cannot.
func compileDecoder(tree any) (decoder, error) {
	c := &compiler{named: map[string]*decoder{}, names: map[string]string{}}
	return c.compile(tree, "")
}

type compiler struct {
	named map[string]*decoder // named types by full name, for references
	names map[string]string   // full names of the named types, for unions
}

func (c *compiler) compile(schema any, ns string) (decoder, error) {
	switch s := schema.(type) {
	case string:
		if d := primitive(s); d != nil {
			return d, nil
		}
		full := fullName(s, "", ns)
		ref, ok := c.named[full]
		if !ok {
			if ref, ok = c.named[s]; !ok {
				return nil, fmt.Errorf("unknown type %q", s)
			}
		}
		// The pointer is filled once the named type is compiled, which
		// lets a record refer to itself.
		return func(buf []byte) (any, []byte, error) { return (*ref)(buf) }, nil
	case []any:
		return c.union(s, ns)
	case map[string]any:
		if _, ok := s["logicalType"]; ok {
			return nil, errUnsupported
		}
		t, _ := s["type"].(string)
		switch t {
		case "record", "error":
			return c.record(s, ns)
		case "enum":
			return c.enum(s, ns)
		case "fixed":
			return c.fixed(s, ns)
		case "array":
			items, err := c.compile(s["items"], ns)
			if err != nil {
				return nil, err
			}
			return arrayDecoder(items), nil
		case "map":
			values, err := c.compile(s["values"], ns)
			if err != nil {
				return nil, err
			}
			return mapDecoder(values), nil
		}
		if d := primitive(t); d != nil {
			return d, nil
		}
		if _, ok := s["type"].(map[string]any); ok {
			return c.compile(s["type"], ns)
		}
		if _, ok := s["type"].([]any); ok {
			return c.compile(s["type"], ns)
		}
		return nil, fmt.Errorf("unknown type %v", s["type"])
	}
	return nil, fmt.Errorf("unknown schema %T", schema)
}

// fullName applies the specification's naming rules: a dotted name is
// already full; otherwise the schema's own namespace, else the enclosing
// one, prefixes it.
func fullName(name, namespace, enclosing string) string {
	if strings.Contains(name, ".") {
		return name
	}
	if namespace != "" {
		return namespace + "." + name
	}
	if enclosing != "" {
		return enclosing + "." + name
	}
	return name
}

func namespaceOf(full string) string {
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		return full[:i]
	}
	return ""
}

// declare registers a named type before its body is compiled.
func (c *compiler) declare(s map[string]any, ns string) (string, *decoder, error) {
	name, _ := s["name"].(string)
	if name == "" {
		return "", nil, errors.New("named type without a name")
	}
	namespace, _ := s["namespace"].(string)
	full := fullName(name, namespace, ns)
	slot := new(decoder)
	c.named[full] = slot
	c.names[full] = full
	return full, slot, nil
}

func (c *compiler) record(s map[string]any, ns string) (decoder, error) {
	full, slot, err := c.declare(s, ns)
	if err != nil {
		return nil, err
	}
	fields, _ := s["fields"].([]any)
	names := make([]string, len(fields))
	decs := make([]decoder, len(fields))
	for i, f := range fields {
		fm, ok := f.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("record %s: field %d is not an object", full, i)
		}
		names[i], _ = fm["name"].(string)
		if decs[i], err = c.compile(fm["type"], namespaceOf(full)); err != nil {
			return nil, fmt.Errorf("record %s field %s: %w", full, names[i], err)
		}
	}
	d := decoder(func(buf []byte) (any, []byte, error) {
		m := make(map[string]any, len(decs))
		for i, dec := range decs {
			v, rest, err := dec(buf)
			if err != nil {
				return nil, nil, fmt.Errorf("record %s field %s: %w", full, names[i], err)
			}
			m[names[i]] = v
			buf = rest
		}
		return m, buf, nil
	})
	*slot = d
	return d, nil
}

func (c *compiler) enum(s map[string]any, ns string) (decoder, error) {
	full, slot, err := c.declare(s, ns)
	if err != nil {
		return nil, err
	}
	raw, _ := s["symbols"].([]any)
	symbols := make([]any, len(raw))
	for i, x := range raw {
		symbols[i], _ = x.(string)
	}
	d := decoder(func(buf []byte) (any, []byte, error) {
		i, rest, err := readLong(buf)
		if err != nil {
			return nil, nil, fmt.Errorf("enum %s: %w", full, err)
		}
		if i < 0 || i >= int64(len(symbols)) {
			return nil, nil, fmt.Errorf("enum %s: index %d is not between 0 and %d", full, i, len(symbols)-1)
		}
		return symbols[i], rest, nil
	})
	*slot = d
	return d, nil
}

func (c *compiler) fixed(s map[string]any, ns string) (decoder, error) {
	full, slot, err := c.declare(s, ns)
	if err != nil {
		return nil, err
	}
	size, ok := s["size"].(float64)
	if !ok || size < 0 {
		return nil, fmt.Errorf("fixed %s: bad size %v", full, s["size"])
	}
	n := int(size)
	d := decoder(func(buf []byte) (any, []byte, error) {
		if len(buf) < n {
			return nil, nil, fmt.Errorf("fixed %s: %w", full, io.ErrShortBuffer)
		}
		return copyBytes(buf[:n]), buf[n:], nil
	})
	*slot = d
	return d, nil
}

func (c *compiler) union(branches []any, ns string) (decoder, error) {
	decs := make([]decoder, len(branches))
	names := make([]string, len(branches))
	for i, b := range branches {
		d, err := c.compile(b, ns)
		if err != nil {
			return nil, err
		}
		decs[i] = d
		names[i] = c.branchName(b, ns)
	}
	return func(buf []byte) (any, []byte, error) {
		i, rest, err := readLong(buf)
		if err != nil {
			return nil, nil, fmt.Errorf("union index: %w", err)
		}
		if i < 0 || i >= int64(len(decs)) {
			return nil, nil, fmt.Errorf("union index %d is not between 0 and %d", i, len(decs)-1)
		}
		v, rest, err := decs[i](rest)
		if err != nil {
			return nil, nil, err
		}
		if names[i] == "null" {
			return nil, rest, nil
		}
		return map[string]any{names[i]: v}, rest, nil
	}, nil
}

// branchName is the key goavro wraps a union value in: the type's full
// name, or "array" and "map".
func (c *compiler) branchName(b any, ns string) string {
	switch s := b.(type) {
	case string:
		if primitive(s) != nil {
			return s
		}
		if full, ok := c.names[fullName(s, "", ns)]; ok {
			return full
		}
		return s
	case map[string]any:
		t, _ := s["type"].(string)
		switch t {
		case "record", "error", "enum", "fixed":
			name, _ := s["name"].(string)
			namespace, _ := s["namespace"].(string)
			return fullName(name, namespace, ns)
		}
		return t
	}
	return ""
}

func primitive(t string) decoder {
	switch t {
	case "null":
		return func(buf []byte) (any, []byte, error) { return nil, buf, nil }
	case "boolean":
		return func(buf []byte) (any, []byte, error) {
			if len(buf) < 1 {
				return nil, nil, fmt.Errorf("boolean: %w", io.ErrShortBuffer)
			}
			switch buf[0] {
			case 0:
				return false, buf[1:], nil
			case 1:
				return true, buf[1:], nil
			}
			return nil, nil, fmt.Errorf("boolean: byte %d is neither 0 nor 1", buf[0])
		}
	case "int":
		return func(buf []byte) (any, []byte, error) {
			v, rest, err := readLong(buf)
			if err != nil {
				return nil, nil, fmt.Errorf("int: %w", err)
			}
			return int32(v), rest, nil
		}
	case "long":
		return func(buf []byte) (any, []byte, error) {
			v, rest, err := readLong(buf)
			if err != nil {
				return nil, nil, fmt.Errorf("long: %w", err)
			}
			return v, rest, nil
		}
	case "float":
		return func(buf []byte) (any, []byte, error) {
			if len(buf) < 4 {
				return nil, nil, fmt.Errorf("float: %w", io.ErrShortBuffer)
			}
			return math.Float32frombits(binary.LittleEndian.Uint32(buf)), buf[4:], nil
		}
	case "double":
		return func(buf []byte) (any, []byte, error) {
			if len(buf) < 8 {
				return nil, nil, fmt.Errorf("double: %w", io.ErrShortBuffer)
			}
			return math.Float64frombits(binary.LittleEndian.Uint64(buf)), buf[8:], nil
		}
	case "bytes":
		return func(buf []byte) (any, []byte, error) {
			b, rest, err := readBytes(buf)
			if err != nil {
				return nil, nil, fmt.Errorf("bytes: %w", err)
			}
			return copyBytes(b), rest, nil
		}
	case "string":
		return func(buf []byte) (any, []byte, error) {
			b, rest, err := readBytes(buf)
			if err != nil {
				return nil, nil, fmt.Errorf("string: %w", err)
			}
			return string(b), rest, nil
		}
	}
	return nil
}

// copyBytes copies, so that a decoded record does not pin the fetch
// buffer it came from; empty stays non-nil, as goavro gives it.
func copyBytes(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}

// readLong reads a zig-zag varint. A varint longer than a long's ten
// bytes is an error, not a silently wrapped number.
func readLong(buf []byte) (int64, []byte, error) {
	var v uint64
	var shift uint
	for i := 0; i < len(buf) && i < 10; i++ {
		b := buf[i]
		v |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			return int64(v>>1) ^ -int64(v&1), buf[i+1:], nil
		}
		shift += 7
	}
	if len(buf) >= 10 {
		return 0, nil, errors.New("varint longer than 10 bytes")
	}
	return 0, nil, io.ErrShortBuffer
}

func readBytes(buf []byte) ([]byte, []byte, error) {
	n, rest, err := readLong(buf)
	if err != nil {
		return nil, nil, err
	}
	if n < 0 {
		return nil, nil, fmt.Errorf("negative size %d", n)
	}
	if n > int64(len(rest)) {
		return nil, nil, io.ErrShortBuffer
	}
	return rest[:n], rest[n:], nil
}

// blockCount reads an array's or map's block header: the item count, and
// for a negative count the block's byte size, which is skipped.
func blockCount(buf []byte) (int64, []byte, error) {
	n, rest, err := readLong(buf)
	if err != nil {
		return 0, nil, err
	}
	if n < 0 {
		if n == math.MinInt64 {
			return 0, nil, fmt.Errorf("block count %d", n)
		}
		n = -n
		if _, rest, err = readLong(rest); err != nil {
			return 0, nil, fmt.Errorf("block size: %w", err)
		}
	}
	if n > int64(goavro.MaxBlockCount) {
		return 0, nil, fmt.Errorf("block count %d exceeds %d", n, goavro.MaxBlockCount)
	}
	return n, rest, nil
}

func arrayDecoder(items decoder) decoder {
	return func(buf []byte) (any, []byte, error) {
		var out []any
		for {
			n, rest, err := blockCount(buf)
			if err != nil {
				return nil, nil, fmt.Errorf("array: %w", err)
			}
			buf = rest
			if n == 0 {
				if out == nil {
					out = []any{}
				}
				return out, buf, nil
			}
			if out == nil {
				// A count cannot promise more items than there are bytes,
				// except for zero-byte items: do not trust it for capacity.
				out = make([]any, 0, min(n, int64(len(buf))+1))
			}
			for ; n > 0; n-- {
				v, rest, err := items(buf)
				if err != nil {
					return nil, nil, fmt.Errorf("array item %d: %w", len(out), err)
				}
				out = append(out, v)
				buf = rest
			}
		}
	}
}

func mapDecoder(values decoder) decoder {
	return func(buf []byte) (any, []byte, error) {
		var out map[string]any
		for {
			n, rest, err := blockCount(buf)
			if err != nil {
				return nil, nil, fmt.Errorf("map: %w", err)
			}
			buf = rest
			if n == 0 {
				if out == nil {
					out = map[string]any{}
				}
				return out, buf, nil
			}
			if out == nil {
				out = make(map[string]any, min(n, int64(len(buf))/2+1))
			}
			for ; n > 0; n-- {
				k, rest, err := readBytes(buf)
				if err != nil {
					return nil, nil, fmt.Errorf("map key: %w", err)
				}
				v, rest, err := values(rest)
				if err != nil {
					return nil, nil, fmt.Errorf("map value %q: %w", k, err)
				}
				out[string(k)] = v
				buf = rest
			}
		}
	}
}
