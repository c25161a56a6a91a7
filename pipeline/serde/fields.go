package serde

// Accessors for goavro's native values. A stage reads a record resolved to
// its own reader schema, so a missing or mistyped field is a programming
// error that the zero value makes visible in tests, never a panic in
// production.

// Str reads a string field.
func Str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// Long reads a long field.
func Long(m map[string]any, k string) int64 {
	switch x := m[k].(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	}
	return 0
}

// Int reads an int field.
func Int(m map[string]any, k string) int32 {
	switch x := m[k].(type) {
	case int32:
		return x
	case int64:
		return int32(x)
	}
	return 0
}

// OptStr reads a ["null","string"] union.
func OptStr(m map[string]any, k string) (string, bool) {
	u, ok := m[k].(map[string]any)
	if !ok {
		return "", false
	}
	s, ok := u["string"].(string)
	return s, ok
}

// Opt wraps a string for a ["null","string"] union; empty means null.
func Opt(s string) any {
	if s == "" {
		return nil
	}
	return map[string]any{"string": s}
}

// Rec reads a nested record field.
func Rec(m map[string]any, k string) map[string]any { r, _ := m[k].(map[string]any); return r }

// Doubles reads a map<double> or a record of numeric fields as float64s.
func Doubles(m map[string]any, k string) map[string]float64 {
	r, _ := m[k].(map[string]any)
	return AsDoubles(r)
}

// AsDoubles converts a map<double> or a record of numeric fields to
// float64s; fields of other types are left out.
func AsDoubles(r map[string]any) map[string]float64 {
	out := make(map[string]float64, len(r))
	for name, v := range r {
		switch x := v.(type) {
		case float64:
			out[name] = x
		case float32:
			out[name] = float64(x)
		case int32:
			out[name] = float64(x)
		case int64:
			out[name] = float64(x)
		}
	}
	return out
}

// DoubleMap converts float64s to a native map<double>.
func DoubleMap(in map[string]float64) map[string]any {
	out := make(map[string]any, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}
