package contract

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Change is one difference between two versions of a schema.
type Change struct {
	Path string // dotted field path, e.g. features.petalRatio
	What string // added, removed, type, default
	From string
	To   string
}

func (c Change) String() string {
	switch c.What {
	case "added":
		return fmt.Sprintf("+ %s %s", c.Path, c.To)
	case "removed":
		return fmt.Sprintf("- %s %s", c.Path, c.From)
	default:
		return fmt.Sprintf("~ %s %s: %s -> %s", c.Path, c.What, c.From, c.To)
	}
}

// Diff lists the field-level changes from old to new, through nested
// records: what `rdv schemas diff` prints.
func Diff(old, new string) ([]Change, error) {
	var a, b any
	if err := json.Unmarshal([]byte(old), &a); err != nil {
		return nil, fmt.Errorf("old schema: %w", err)
	}
	if err := json.Unmarshal([]byte(new), &b); err != nil {
		return nil, fmt.Errorf("new schema: %w", err)
	}
	var out []Change
	diffType("", a, b, &out)
	return out, nil
}

func fieldsOf(t any) (map[string]map[string]any, []string, bool) {
	m, ok := t.(map[string]any)
	if !ok || m["type"] != "record" {
		return nil, nil, false
	}
	list, _ := m["fields"].([]any)
	byName := map[string]map[string]any{}
	var order []string
	for _, f := range list {
		fm, _ := f.(map[string]any)
		name, _ := fm["name"].(string)
		byName[name] = fm
		order = append(order, name)
	}
	return byName, order, true
}

func describe(t any) string {
	switch x := t.(type) {
	case string:
		return x
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = describe(p)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case map[string]any:
		switch x["type"] {
		case "record", "enum", "fixed":
			return fmt.Sprint(x["name"])
		case "map":
			return "map<" + describe(x["values"]) + ">"
		case "array":
			return "array<" + describe(x["items"]) + ">"
		}
		return fmt.Sprint(x["type"])
	}
	return fmt.Sprint(t)
}

func withDefault(f map[string]any) string {
	s := describe(f["type"])
	if d, ok := f["default"]; ok {
		b, _ := json.Marshal(d)
		s += " default " + string(b)
	}
	return s
}

func diffType(path string, a, b any, out *[]Change) {
	af, aorder, aok := fieldsOf(a)
	bf, border, bok := fieldsOf(b)
	if !aok || !bok {
		if da, db := describe(a), describe(b); da != db {
			*out = append(*out, Change{Path: path, What: "type", From: da, To: db})
		}
		return
	}
	join := func(n string) string {
		if path == "" {
			return n
		}
		return path + "." + n
	}
	for _, n := range aorder {
		if _, ok := bf[n]; !ok {
			*out = append(*out, Change{Path: join(n), What: "removed", From: withDefault(af[n])})
		}
	}
	for _, n := range border {
		fb := bf[n]
		fa, ok := af[n]
		if !ok {
			*out = append(*out, Change{Path: join(n), What: "added", To: withDefault(fb)})
			continue
		}
		diffType(join(n), fa["type"], fb["type"], out)
		da, hasA := fa["default"]
		db, hasB := fb["default"]
		ja, _ := json.Marshal(da)
		jb, _ := json.Marshal(db)
		if hasA != hasB || string(ja) != string(jb) {
			from, to := "none", "none"
			if hasA {
				from = string(ja)
			}
			if hasB {
				to = string(jb)
			}
			*out = append(*out, Change{Path: join(n), What: "default", From: from, To: to})
		}
	}
}
