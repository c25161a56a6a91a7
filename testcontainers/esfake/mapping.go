package esfake

import (
	"fmt"
	"sort"
	"strings"
)

// fieldMapping is one node of an index mapping: the root, an object, or a
// concrete field.
type fieldMapping struct {
	Type       string                   // "object" for objects (including the root)
	Params     map[string]any           // every other parameter, kept for GET _mapping
	Properties map[string]*fieldMapping // object / nested children
	Fields     map[string]*fieldMapping // multi-fields
	Dynamic    string                   // objects only; "" means inherit
	Enabled    bool                     // objects only
	dateFmt    *dateFormat
	seen       []seenProp // see prop
}

type seenProp struct {
	name string
	fm   *fieldMapping
}

func (f *fieldMapping) isObject() bool { return f.Type == "object" || f.Type == "nested" }

// prop returns the child mapped under name, the i-th field of an object in
// a document, and remembers it in seen for that position (docScan.key).
// What is remembered stays right: once mapped, a name is never removed nor
// remapped (dynamic mapping only adds names, and new mappings are built
// afresh). Only plain names (docScan.plainKey) are passed.
func (f *fieldMapping) prop(i int, name []byte) *fieldMapping {
	fm := f.Properties[string(name)]
	switch {
	case fm == nil || i > len(f.seen) || i >= 64:
	case i == len(f.seen):
		f.seen = append(f.seen, seenProp{string(name), fm})
	default:
		f.seen[i] = seenProp{string(name), fm}
	}
	return fm
}

var rootParams = map[string]bool{
	"dynamic": true, "properties": true, "date_detection": true, "numeric_detection": true,
	"dynamic_date_formats": true, "dynamic_templates": true, "_source": true, "_meta": true,
	"_routing": true, "runtime": true, "enabled": true, "subobjects": true, "_data_stream_timestamp": true,
	"_field_names": true, "_size": true,
}

var knownTypes = map[string]bool{
	"text": true, "keyword": true, "constant_keyword": true, "wildcard": true, "match_only_text": true,
	"long": true, "integer": true, "short": true, "byte": true, "double": true, "float": true,
	"half_float": true, "scaled_float": true, "unsigned_long": true, "date": true, "date_nanos": true,
	"boolean": true, "binary": true, "ip": true, "object": true, "nested": true, "flattened": true,
	"geo_point": true, "geo_shape": true, "point": true, "shape": true, "alias": true, "completion": true,
	"search_as_you_type": true, "token_count": true, "dense_vector": true, "sparse_vector": true,
	"rank_feature": true, "rank_features": true, "integer_range": true, "float_range": true,
	"long_range": true, "double_range": true, "date_range": true, "ip_range": true, "version": true,
	"histogram": true, "aggregate_metric_double": true, "semantic_text": true, "percolator": true,
	"join": true, "passthrough": true, "counted_keyword": true,
}

func newObjectMapping() *fieldMapping {
	return &fieldMapping{Type: "object", Enabled: true, Properties: map[string]*fieldMapping{}, Params: map[string]any{}}
}

// mappingError is a mapper_parsing_exception raised while reading a mapping.
func mappingError(format string, args ...any) *esError {
	return newErr("mapper_parsing_exception", format, args...)
}

// parseRootMapping reads the "mappings" object of a template or create-index
// request.
func parseRootMapping(raw any) (*fieldMapping, *esError) {
	root := newObjectMapping()
	if raw == nil {
		return root, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, mappingError("Failed to parse mapping: Expected map for property [mappings] but got a %T", raw)
	}
	var unsupported []string
	keys := sortedKeys(m)
	for _, k := range keys {
		if !rootParams[k] {
			unsupported = append(unsupported, fmt.Sprintf("%s : %s", k, javaString(m[k])))
		}
	}
	if len(unsupported) > 0 {
		inner := mappingError("Root mapping definition has unsupported parameters:  [%s]", strings.Join(unsupported, "] ["))
		return nil, mappingError("Failed to parse mapping: %s", inner.Reason).withCause(inner)
	}
	for _, k := range keys {
		v := m[k]
		switch k {
		case "properties":
			if err := parseProperties(root, "", v); err != nil {
				return nil, mappingError("Failed to parse mapping: %s", err.Reason).withCause(err)
			}
		case "dynamic":
			d, err := parseDynamic(v)
			if err != nil {
				return nil, mappingError("Failed to parse mapping: %s", err.Reason).withCause(err)
			}
			root.Dynamic = d
		case "dynamic_date_formats":
			list, _ := v.([]any)
			for _, f := range list {
				s, _ := f.(string)
				if _, err := compileDateFormat(s); err != nil {
					inner := newErr("illegal_argument_exception", "%s", err.Error())
					return nil, mappingError("Failed to parse mapping: %s", inner.Reason).withCause(inner)
				}
			}
			root.Params[k] = v
		default:
			root.Params[k] = v
		}
	}
	return root, nil
}

func parseDynamic(v any) (string, *esError) {
	switch t := v.(type) {
	case bool:
		if t {
			return "true", nil
		}
		return "false", nil
	case string:
		switch t {
		case "true", "false", "strict", "runtime":
			return t, nil
		}
	}
	return "", mappingError("Unknown value [%v] for dynamic", v)
}

func parseProperties(obj *fieldMapping, path string, raw any) *esError {
	props, ok := raw.(map[string]any)
	if !ok {
		return mappingError("Expected map for property [properties] on field [%s] but got a %T", path, raw)
	}
	for _, name := range sortedKeys(props) {
		full := joinPath(path, name)
		def, ok := props[name].(map[string]any)
		if !ok {
			return mappingError("Expected map for property [%s] but got a %s", full, javaTypeName(props[name]))
		}
		fm, err := parseField(full, def)
		if err != nil {
			return err
		}
		// A dotted name in a mapping ("a.b") defines nested objects.
		parent := obj
		parts := strings.Split(name, ".")
		for _, p := range parts[:len(parts)-1] {
			next := parent.Properties[p]
			if next == nil {
				next = newObjectMapping()
				parent.Properties[p] = next
			}
			parent = next
		}
		parent.Properties[parts[len(parts)-1]] = fm
	}
	return nil
}

func parseField(full string, def map[string]any) (*fieldMapping, *esError) {
	fm := &fieldMapping{Params: map[string]any{}, Enabled: true}
	typ, hasType := def["type"]
	if hasType {
		s, ok := typ.(string)
		if !ok {
			return nil, mappingError("No type specified for field [%s]", full)
		}
		if !knownTypes[s] {
			return nil, mappingError("No handler for type [%s] declared on field [%s]", s, full)
		}
		fm.Type = s
	} else {
		fm.Type = "object"
	}
	for _, k := range sortedKeys(def) {
		v := def[k]
		switch k {
		case "type":
		case "properties":
			if !fm.isObject() {
				return nil, mappingError("unknown parameter [properties] on mapper [%s] of type [%s]", full, fm.Type)
			}
			fm.Properties = map[string]*fieldMapping{}
			if err := parseProperties(fm, full, v); err != nil {
				return nil, err
			}
		case "fields":
			subs, ok := v.(map[string]any)
			if !ok {
				return nil, mappingError("Expected map for property [fields] on field [%s] but got a %T", full, v)
			}
			fm.Fields = map[string]*fieldMapping{}
			for _, sn := range sortedKeys(subs) {
				sd, ok := subs[sn].(map[string]any)
				if !ok {
					return nil, mappingError("Expected map for property [fields] on field [%s]", full+"."+sn)
				}
				sub, err := parseField(full+"."+sn, sd)
				if err != nil {
					return nil, err
				}
				if sub.isObject() {
					return nil, mappingError("Type [%s] cannot be used in multi field", sub.Type)
				}
				fm.Fields[sn] = sub
			}
		case "dynamic":
			if !fm.isObject() {
				return nil, mappingError("unknown parameter [dynamic] on mapper [%s] of type [%s]", full, fm.Type)
			}
			d, err := parseDynamic(v)
			if err != nil {
				return nil, err
			}
			fm.Dynamic = d
		case "enabled":
			if b, ok := v.(bool); ok && fm.isObject() {
				fm.Enabled = b
			}
			fm.Params[k] = v
		default:
			fm.Params[k] = v
		}
	}
	if fm.isObject() && fm.Properties == nil {
		fm.Properties = map[string]*fieldMapping{}
	}
	if fm.Type == "date" || fm.Type == "date_nanos" {
		f, _ := fm.Params["format"].(string)
		df, err := compileDateFormat(f)
		if err != nil {
			inner := newErr("illegal_argument_exception", "%s", err.Error())
			return nil, mappingError("Error parsing [format] on field [%s]: %s", full, err.Error()).withCause(inner)
		}
		fm.dateFmt = df
	}
	return fm, nil
}

// clone returns a deep copy.
func (f *fieldMapping) clone() *fieldMapping {
	if f == nil {
		return nil
	}
	c := *f
	c.seen = nil
	c.Params = make(map[string]any, len(f.Params))
	for k, v := range f.Params {
		c.Params[k] = v
	}
	if f.Properties != nil {
		c.Properties = make(map[string]*fieldMapping, len(f.Properties))
		for k, v := range f.Properties {
			c.Properties[k] = v.clone()
		}
	}
	if f.Fields != nil {
		c.Fields = make(map[string]*fieldMapping, len(f.Fields))
		for k, v := range f.Fields {
			c.Fields[k] = v.clone()
		}
	}
	return &c
}

// mergeMapping overlays src onto dst (both roots or objects), the way
// composed templates and explicit mappings layer in ES.
func mergeMapping(dst, src *fieldMapping) *fieldMapping {
	if dst == nil {
		return src.clone()
	}
	if src == nil {
		return dst
	}
	if !dst.isObject() || !src.isObject() {
		return src.clone()
	}
	out := dst.clone()
	for k, v := range src.Params {
		out.Params[k] = v
	}
	if src.Dynamic != "" {
		out.Dynamic = src.Dynamic
	}
	out.Enabled = src.Enabled
	for name, sp := range src.Properties {
		out.Properties[name] = mergeMapping(out.Properties[name], sp)
	}
	return out
}

// toJSON renders a mapping node as ES returns it from GET _mapping.
func (f *fieldMapping) toJSON(root bool) map[string]any {
	out := map[string]any{}
	for k, v := range f.Params {
		out[k] = v
	}
	if !root && (f.Type != "object" || len(f.Properties) == 0) {
		out["type"] = f.Type
	}
	if f.Dynamic != "" {
		out["dynamic"] = f.Dynamic
	}
	if len(f.Properties) > 0 {
		props := map[string]any{}
		for k, v := range f.Properties {
			props[k] = v.toJSON(false)
		}
		out["properties"] = props
	}
	if len(f.Fields) > 0 {
		fields := map[string]any{}
		for k, v := range f.Fields {
			fields[k] = v.toJSON(false)
		}
		out["fields"] = fields
	}
	return out
}

// countFields counts mapped fields the way index.mapping.total_fields.limit
// does: objects, concrete fields and multi-fields.
func (f *fieldMapping) countFields() int {
	n := 0
	for _, p := range f.Properties {
		n++
		n += p.countFields()
		n += len(p.Fields)
	}
	return n
}

// resolveField finds the mapping for a dotted field name, including
// multi-fields ("msg.keyword"). srcPath is the path of the value in _source.
func (f *fieldMapping) resolveField(name string) (fm *fieldMapping, srcPath string) {
	parts := strings.Split(name, ".")
	cur := f
	for i, p := range parts {
		if cur.isObject() {
			next := cur.Properties[p]
			if next == nil {
				// a dotted leaf stored under an object with subobjects, try joined names
				for j := len(parts); j > i+1; j-- {
					if n := cur.Properties[strings.Join(parts[i:j], ".")]; n != nil {
						if j == len(parts) {
							return n, name
						}
					}
				}
				return nil, ""
			}
			cur = next
			continue
		}
		// cur is concrete: the rest must name a multi-field
		rest := strings.Join(parts[i:], ".")
		if sub := cur.Fields[rest]; sub != nil {
			return sub, strings.Join(parts[:i], ".")
		}
		return nil, ""
	}
	if cur == f {
		return nil, ""
	}
	return cur, name
}

func javaTypeName(v any) string {
	switch v.(type) {
	case string:
		return "class java.lang.String"
	case bool:
		return "class java.lang.Boolean"
	case []any:
		return "class java.util.ArrayList"
	case nil:
		return "null"
	default:
		return "class java.lang.Integer"
	}
}

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
