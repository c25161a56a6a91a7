package esfake

import (
	"bytes"
	"encoding/json"
	"strings"
)

// applyFilterPath implements the common inclusive form of the filter_path
// parameter ("took,items.*.error", "hits.hits._id", "**.status"). Exclusions
// ("-path") are applied after inclusions.
func applyFilterPath(body []byte, spec string) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return body
	}
	var inc, exc [][]string
	for _, p := range strings.Split(spec, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if strings.HasPrefix(p, "-") {
			exc = append(exc, strings.Split(p[1:], "."))
		} else {
			inc = append(inc, strings.Split(p, "."))
		}
	}
	if len(inc) > 0 {
		out, ok := includePaths(v, inc)
		if !ok {
			return []byte("{}\n")
		}
		v = out
	}
	for _, e := range exc {
		v = excludePath(v, e)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return body
	}
	return append(b, '\n')
}

// includePaths keeps the parts of v selected by any of the paths. Arrays
// are transparent: a path applies to each element.
func includePaths(v any, paths [][]string) (any, bool) {
	for _, p := range paths {
		if len(p) == 0 {
			return v, true
		}
	}
	switch t := v.(type) {
	case []any:
		var out []any
		for _, e := range t {
			if r, ok := includePaths(e, paths); ok {
				out = append(out, r)
			}
		}
		return out, len(out) > 0
	case map[string]any:
		out := map[string]any{}
		for k, e := range t {
			var next [][]string
			for _, p := range paths {
				switch {
				case p[0] == "**":
					next = append(next, p) // may match deeper
					if len(p) > 1 && globMatch(p[1], k) {
						next = append(next, p[2:])
					}
				case globMatch(p[0], k):
					next = append(next, p[1:])
				}
			}
			if len(next) == 0 {
				continue
			}
			if r, ok := includePaths(e, next); ok {
				out[k] = r
			}
		}
		return out, len(out) > 0
	}
	return nil, false
}

func excludePath(v any, p []string) any {
	switch t := v.(type) {
	case []any:
		for i, e := range t {
			t[i] = excludePath(e, p)
		}
		return t
	case map[string]any:
		for k, e := range t {
			if globMatch(p[0], k) {
				if len(p) == 1 {
					delete(t, k)
				} else {
					t[k] = excludePath(e, p[1:])
				}
			}
		}
		return t
	}
	return v
}
