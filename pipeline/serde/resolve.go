package serde

import (
	"fmt"
)

// resolve projects a value decoded with the writer's schema onto the reader's
// schema, following the Avro specification's resolution rules for what a
// compatible evolution can produce: reader fields missing from the writer take
// their default, writer fields unknown to the reader are dropped, numeric
// values are promoted, and union branches are matched by type name.
func resolve(schema any, v any, ns string) (any, error) {
	switch s := schema.(type) {
	case string:
		return promote(s, v)
	case []any: // union
		return resolveUnion(s, v, ns)
	case map[string]any:
		t, _ := s["type"].(string)
		switch t {
		case "record":
			if n, ok := s["namespace"].(string); ok {
				ns = n
			}
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("record %v: got %T", s["name"], v)
			}
			fields, _ := s["fields"].([]any)
			out := make(map[string]any, len(fields))
			for _, f := range fields {
				fm := f.(map[string]any)
				name := fm["name"].(string)
				if val, ok := m[name]; ok {
					r, err := resolve(fm["type"], val, ns)
					if err != nil {
						return nil, fmt.Errorf("field %s: %w", name, err)
					}
					out[name] = r
					continue
				}
				def, ok := fm["default"]
				if !ok {
					return nil, fmt.Errorf("field %s: absent in the writer's record and has no default", name)
				}
				d, err := fromDefault(fm["type"], def, ns)
				if err != nil {
					return nil, fmt.Errorf("default of field %s: %w", name, err)
				}
				out[name] = d
			}
			return out, nil
		case "map":
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("map: got %T", v)
			}
			out := make(map[string]any, len(m))
			for k, x := range m {
				r, err := resolve(s["values"], x, ns)
				if err != nil {
					return nil, fmt.Errorf("map value %q: %w", k, err)
				}
				out[k] = r
			}
			return out, nil
		case "array":
			a, ok := v.([]any)
			if !ok {
				return nil, fmt.Errorf("array: got %T", v)
			}
			out := make([]any, len(a))
			for i, x := range a {
				r, err := resolve(s["items"], x, ns)
				if err != nil {
					return nil, fmt.Errorf("array item %d: %w", i, err)
				}
				out[i] = r
			}
			return out, nil
		case "enum", "fixed":
			return v, nil
		default:
			return promote(t, v)
		}
	}
	return v, nil
}

func resolveUnion(branches []any, v any, ns string) (any, error) {
	if v == nil {
		for _, b := range branches {
			if b == "null" {
				return nil, nil
			}
		}
		return nil, fmt.Errorf("null is not a branch of the reader's union")
	}
	// goavro wraps a non-null union value as {typeName: value}. A map with
	// one entry looks the same, so only a key that names a type counts.
	if m, ok := v.(map[string]any); ok && len(m) == 1 && isTypeName(m, branches, ns) {
		for wname, inner := range m {
			for _, b := range branches {
				if branchName(b, ns) == wname {
					r, err := resolve(b, inner, ns)
					if err != nil {
						return nil, err
					}
					return map[string]any{wname: r}, nil
				}
			}
			// A promotable primitive branch (e.g. int written, long read).
			for _, b := range branches {
				if name, ok := b.(string); ok && name != "null" {
					if r, err := promote(name, inner); err == nil {
						return map[string]any{name: r}, nil
					}
				}
			}
		}
	}
	// The writer did not use a union: pick the first branch that takes it.
	for _, b := range branches {
		if b == "null" {
			continue
		}
		if r, err := resolve(b, v, ns); err == nil {
			return map[string]any{branchName(b, ns): r}, nil
		}
	}
	return nil, fmt.Errorf("no branch of the reader's union takes %T", v)
}

var primitives = map[string]bool{"null": true, "boolean": true, "int": true, "long": true, "float": true, "double": true, "bytes": true, "string": true}

func isTypeName(m map[string]any, branches []any, ns string) bool {
	for k := range m {
		if primitives[k] {
			return true
		}
		for _, b := range branches {
			if branchName(b, ns) == k {
				return true
			}
		}
	}
	return false
}

func branchName(b any, ns string) string {
	switch s := b.(type) {
	case string:
		return s
	case map[string]any:
		t, _ := s["type"].(string)
		name, ok := s["name"].(string)
		if !ok {
			return t
		}
		if n, ok := s["namespace"].(string); ok {
			ns = n
		}
		if ns != "" && !containsDot(name) {
			return ns + "." + name
		}
		return name
	}
	return ""
}

func containsDot(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return true
		}
	}
	return false
}

// promote applies the specification's primitive promotions.
func promote(t string, v any) (any, error) {
	switch t {
	case "null":
		return nil, nil
	case "long":
		switch x := v.(type) {
		case int64:
			return x, nil
		case int32:
			return int64(x), nil
		}
	case "float":
		switch x := v.(type) {
		case float32:
			return x, nil
		case int32:
			return float32(x), nil
		case int64:
			return float32(x), nil
		}
	case "double":
		switch x := v.(type) {
		case float64:
			return x, nil
		case float32:
			return float64(x), nil
		case int32:
			return float64(x), nil
		case int64:
			return float64(x), nil
		}
	case "string":
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		}
	case "bytes":
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
	case "int":
		if x, ok := v.(int32); ok {
			return x, nil
		}
	case "boolean":
		if x, ok := v.(bool); ok {
			return x, nil
		}
	default:
		return v, nil // named type reference
	}
	return nil, fmt.Errorf("cannot read %T as %s", v, t)
}

// fromDefault turns a JSON default into goavro's native form.
func fromDefault(schema any, def any, ns string) (any, error) {
	switch s := schema.(type) {
	case []any:
		if len(s) == 0 {
			return nil, fmt.Errorf("empty union")
		}
		// A union's default belongs to its first branch.
		if s[0] == "null" {
			return nil, nil
		}
		d, err := fromDefault(s[0], def, ns)
		if err != nil {
			return nil, err
		}
		return map[string]any{branchName(s[0], ns): d}, nil
	case string:
		return defaultPrimitive(s, def)
	case map[string]any:
		t, _ := s["type"].(string)
		switch t {
		case "record":
			m, _ := def.(map[string]any)
			return resolveDefaultRecord(s, m, ns)
		case "map":
			m, _ := def.(map[string]any)
			out := make(map[string]any, len(m))
			for k, x := range m {
				d, err := fromDefault(s["values"], x, ns)
				if err != nil {
					return nil, err
				}
				out[k] = d
			}
			return out, nil
		case "array":
			a, _ := def.([]any)
			out := make([]any, len(a))
			for i, x := range a {
				d, err := fromDefault(s["items"], x, ns)
				if err != nil {
					return nil, err
				}
				out[i] = d
			}
			return out, nil
		case "enum":
			return def, nil
		default:
			return defaultPrimitive(t, def)
		}
	}
	return def, nil
}

func resolveDefaultRecord(s map[string]any, m map[string]any, ns string) (any, error) {
	fields, _ := s["fields"].([]any)
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		fm := f.(map[string]any)
		name := fm["name"].(string)
		val, ok := m[name]
		if !ok {
			if val, ok = fm["default"]; !ok {
				return nil, fmt.Errorf("record default lacks field %s", name)
			}
		}
		d, err := fromDefault(fm["type"], val, ns)
		if err != nil {
			return nil, err
		}
		out[name] = d
	}
	return out, nil
}

func defaultPrimitive(t string, def any) (any, error) {
	switch t {
	case "null":
		return nil, nil
	case "boolean":
		b, _ := def.(bool)
		return b, nil
	case "int":
		f, _ := def.(float64)
		return int32(f), nil
	case "long":
		f, _ := def.(float64)
		return int64(f), nil
	case "float":
		f, _ := def.(float64)
		return float32(f), nil
	case "double":
		f, _ := def.(float64)
		return f, nil
	case "string":
		s, _ := def.(string)
		return s, nil
	case "bytes":
		// The specification writes a bytes default as a string whose code
		// points 0-255 are the bytes.
		s, _ := def.(string)
		b := make([]byte, 0, len(s))
		for _, r := range s {
			if r > 255 {
				return nil, fmt.Errorf("bytes default has code point %U above 255", r)
			}
			b = append(b, byte(r))
		}
		return b, nil
	}
	return def, nil
}
