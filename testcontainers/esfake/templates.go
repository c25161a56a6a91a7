package esfake

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

type indexTemplate struct {
	name       string
	patterns   []string
	priority   int64
	composedOf []string
	dataStream bool
	raw        map[string]any // as sent, for GET
	tmpl       templateBody
}

type componentTemplate struct {
	name string
	raw  map[string]any
	tmpl templateBody
}

// templateBody is the parsed "template" section.
type templateBody struct {
	mapping  *fieldMapping // nil when absent
	settings map[string]any
	aliases  map[string]any
}

type ilmPolicy struct {
	version  int64
	modified time.Time
	policy   map[string]any
}

func parseTemplateSection(raw any) (templateBody, *esError) {
	var tb templateBody
	if raw == nil {
		return tb, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return tb, newErr("x_content_parse_exception", "[template] expected an object")
	}
	for k := range m {
		switch k {
		case "settings", "mappings", "aliases", "lifecycle", "data_stream_options":
		default:
			return tb, newErr("x_content_parse_exception", "[1:2] [template] unknown field [%s]", k)
		}
	}
	if v, ok := m["mappings"]; ok {
		mp, err := parseRootMapping(v)
		if err != nil {
			return tb, err
		}
		tb.mapping = mp
	}
	if v, ok := m["settings"]; ok {
		tb.settings = flattenSettings(v)
	}
	if v, ok := m["aliases"].(map[string]any); ok {
		tb.aliases = v
	}
	return tb, nil
}

// putIndexTemplate validates and stores a composable index template.
// Caller holds s.mu.
func (s *Server) putIndexTemplate(name string, body map[string]any, create bool) *esError {
	if create {
		if _, ok := s.templates[name]; ok {
			return newErr("illegal_argument_exception", "index template [%s] already exists", name)
		}
	}
	for k := range body {
		switch k {
		case "index_patterns", "template", "composed_of", "priority", "version", "_meta", "data_stream",
			"allow_auto_create", "ignore_missing_component_templates", "deprecated":
		default:
			return newErr("x_content_parse_exception", "[1:2] [index_template] unknown field [%s]", k)
		}
	}
	t := &indexTemplate{name: name, raw: body}
	t.patterns = strList(body["index_patterns"])
	if len(t.patterns) == 0 {
		return actionValidation("index patterns are missing")
	}
	for _, p := range t.patterns {
		if strings.ContainsAny(p, " \\/?\"<>|,#") || p != strings.ToLower(p) {
			return newErr("invalid_index_template_exception",
				"index_template [%s] invalid, cause [Validation Failed: 1: index_pattern [%s] must be lowercase and must not contain the following characters [' ','\"',',','/','<','>','?','\\','|'];]", name, p)
		}
	}
	if p, ok := body["priority"]; ok {
		f, isNum := p.(float64)
		if !isNum || f < 0 || f != float64(int64(f)) {
			return newErr("x_content_parse_exception", "[1:2] [index_template] failed to parse field [priority]")
		}
		t.priority = int64(f)
	}
	t.composedOf = strList(body["composed_of"])
	var missing []string
	for _, c := range t.composedOf {
		if _, ok := s.components[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return newErr("invalid_index_template_exception",
			"index_template [%s] invalid, cause [index template [%s] specifies component templates %s that do not exist]",
			name, name, "["+strings.Join(missing, ", ")+"]")
	}
	if _, ok := body["data_stream"]; ok {
		t.dataStream = true
	}
	tb, err := parseTemplateSection(body["template"])
	if err != nil {
		if err.Type == "mapper_parsing_exception" {
			return newErr("illegal_argument_exception", "composable template [%s] template after composition is invalid", name).withCause(err)
		}
		return err
	}
	t.tmpl = tb
	if _, err := s.compose(t); err != nil {
		return newErr("illegal_argument_exception", "composable template [%s] template after composition is invalid", name).withCause(err)
	}
	// Two templates with the same priority may not match the same index.
	var clash []string
	var clashDesc []string
	for _, other := range sortedTemplates(s.templates) {
		if other.name == name || other.priority != t.priority {
			continue
		}
		if patternsOverlap(t.patterns, other.patterns) {
			clash = append(clash, other.name)
			clashDesc = append(clashDesc, fmt.Sprintf("%s => [%s]", other.name, strings.Join(other.patterns, ", ")))
		}
	}
	if len(clash) > 0 {
		return newErr("illegal_argument_exception",
			"index template [%s] has index patterns [%s] matching patterns from existing templates [%s] with patterns (%s) that have the same priority [%d], multiple index templates may not match during index creation, please use a different priority",
			name, strings.Join(t.patterns, ", "), strings.Join(clash, ","), strings.Join(clashDesc, ","), t.priority)
	}
	s.templates[name] = t
	return nil
}

func sortedTemplates(m map[string]*indexTemplate) []*indexTemplate {
	out := make([]*indexTemplate, 0, len(m))
	for _, t := range m {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// patternsOverlap approximates whether two lists of index patterns can
// match a common index name.
func patternsOverlap(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if patternOverlap(x, y) {
				return true
			}
		}
	}
	return false
}

func patternOverlap(x, y string) bool {
	xs, ys := strings.Contains(x, "*"), strings.Contains(y, "*")
	switch {
	case !xs && !ys:
		return x == y
	case !xs:
		return globMatch(y, x)
	case !ys:
		return globMatch(x, y)
	}
	xp, yp := x[:strings.Index(x, "*")], y[:strings.Index(y, "*")]
	xsuf, ysuf := x[strings.LastIndex(x, "*")+1:], y[strings.LastIndex(y, "*")+1:]
	prefixOK := strings.HasPrefix(xp, yp) || strings.HasPrefix(yp, xp)
	suffixOK := strings.HasSuffix(xsuf, ysuf) || strings.HasSuffix(ysuf, xsuf)
	return prefixOK && suffixOK
}

// matchTemplate returns the highest-priority template matching an index
// name. Caller holds s.mu.
func (s *Server) matchTemplate(name string) *indexTemplate {
	var best *indexTemplate
	for _, t := range sortedTemplates(s.templates) {
		for _, p := range t.patterns {
			if strings.HasPrefix(name, ".") && p == "*" {
				continue
			}
			if globMatch(p, name) {
				if best == nil || t.priority > best.priority {
					best = t
				}
				break
			}
		}
	}
	return best
}

type composed struct {
	mapping  *fieldMapping
	settings map[string]any
	aliases  map[string]any
}

// compose layers the component templates and the template's own section.
func (s *Server) compose(t *indexTemplate) (composed, *esError) {
	c := composed{mapping: newObjectMapping(), settings: map[string]any{}, aliases: map[string]any{}}
	layer := func(tb templateBody) {
		if tb.mapping != nil {
			c.mapping = mergeMapping(c.mapping, tb.mapping)
		}
		for k, v := range tb.settings {
			c.settings[k] = v
		}
		for k, v := range tb.aliases {
			c.aliases[k] = v
		}
	}
	for _, name := range t.composedOf {
		if ct := s.components[name]; ct != nil {
			layer(ct.tmpl)
		}
	}
	layer(t.tmpl)
	// A composed mapping must itself be valid; re-reading it catches e.g. a
	// date format that only fails after merging.
	if _, err := parseRootMapping(c.mapping.toJSON(true)); err != nil {
		return c, err
	}
	return c, nil
}

func (s *Server) putComponentTemplate(name string, body map[string]any) *esError {
	for k := range body {
		switch k {
		case "template", "version", "_meta", "deprecated":
		default:
			return newErr("x_content_parse_exception", "[1:2] [component_template] unknown field [%s]", k)
		}
	}
	if _, ok := body["template"]; !ok {
		return newErr("x_content_parse_exception", "[1:2] Required [template]")
	}
	tb, err := parseTemplateSection(body["template"])
	if err != nil {
		return err
	}
	s.components[name] = &componentTemplate{name: name, raw: body, tmpl: tb}
	return nil
}

var ilmPhases = map[string]bool{"hot": true, "warm": true, "cold": true, "frozen": true, "delete": true}

func (s *Server) putILMPolicy(name string, body map[string]any) *esError {
	for k := range body {
		if k != "policy" {
			return newErr("x_content_parse_exception", "[1:2] [put_lifecycle_request] unknown field [%s]", k)
		}
	}
	pol, ok := body["policy"].(map[string]any)
	if !ok {
		return newErr("x_content_parse_exception", "[1:2] [put_lifecycle_request] policy not specified")
	}
	if phases, ok := pol["phases"].(map[string]any); ok {
		for ph := range phases {
			if !ilmPhases[ph] {
				return newErr("illegal_argument_exception", "Timeseries lifecycle does not support phase [%s]", ph)
			}
		}
	}
	p := s.policies[name]
	if p == nil {
		p = &ilmPolicy{}
		s.policies[name] = p
	}
	p.version++
	p.modified = time.Now().UTC()
	p.policy = pol
	return nil
}

// templateJSON renders a template for GET _index_template.
func (t *indexTemplate) toJSON() map[string]any {
	out := map[string]any{}
	for k, v := range t.raw {
		out[k] = v
	}
	out["index_patterns"] = t.patterns
	out["composed_of"] = append([]string{}, t.composedOf...)
	if tmpl, ok := out["template"].(map[string]any); ok {
		cp := map[string]any{}
		for k, v := range tmpl {
			cp[k] = v
		}
		if t.tmpl.settings != nil {
			cp["settings"] = nestSettings(t.tmpl.settings)
		}
		out["template"] = cp
	}
	return out
}

func decodeObject(body []byte) (map[string]any, *esError) {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, newErr("parse_exception", "request body is required")
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, newErr("x_content_parse_exception", "[1:1] %s", err.Error())
	}
	if m == nil {
		return nil, newErr("parse_exception", "request body is required")
	}
	return m, nil
}
