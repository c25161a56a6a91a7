package esfake

import (
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// docParser checks one document against an index mapping the way ES's
// DocumentParser does, collecting dynamic mapping additions that are only
// applied when the whole document is accepted.
type docParser struct {
	src     []byte
	id      string
	root    *fieldMapping
	legacy  bool // ES < 8.8: mapper_parsing_exception without a location
	ignMal  bool // index.mapping.ignore_malformed
	limit   int  // index.mapping.total_fields.limit
	private map[*fieldMapping]bool
	pending map[*fieldMapping]map[string]*fieldMapping
	added   int

	dateDetection    bool
	numericDetection bool
	dynDateFormats   []*dateFormat
	dynTemplates     []dynTemplate
}

type dynTemplate struct {
	name        string
	matchTypes  []string
	match       []string
	unmatch     []string
	pathMatch   []string
	pathUnmatch []string
	mapping     map[string]any
}

// parseConfig is what a docParser takes from the index's settings and root
// mapping parameters, which do not change once the index exists.
type parseConfig struct {
	ignMal           bool
	limit            int
	dateDetection    bool
	numericDetection bool
	dynDateFormats   []*dateFormat
	dynTemplates     []dynTemplate
}

func newParseConfig(ix *index) *parseConfig {
	c := &parseConfig{dateDetection: true, limit: 1000}
	if v, ok := ix.setting("mapping.ignore_malformed"); ok {
		c.ignMal = truthy(v)
	}
	if v, ok := ix.setting("mapping.total_fields.limit"); ok {
		if n, err := strconv.Atoi(fmt.Sprint(v)); err == nil {
			c.limit = n
		}
	}
	rp := ix.mapping.Params
	if v, ok := rp["date_detection"]; ok {
		c.dateDetection = truthy(v)
	}
	if v, ok := rp["numeric_detection"]; ok {
		c.numericDetection = truthy(v)
	}
	formats := []string{"strict_date_optional_time", "yyyy/MM/dd HH:mm:ss Z||yyyy/MM/dd Z"}
	if v, ok := rp["dynamic_date_formats"].([]any); ok {
		formats = formats[:0]
		for _, f := range v {
			formats = append(formats, fmt.Sprint(f))
		}
	}
	for _, f := range formats {
		if df, err := compileDateFormat(f); err == nil {
			c.dynDateFormats = append(c.dynDateFormats, df)
		}
	}
	c.dynTemplates = parseDynTemplates(rp["dynamic_templates"])
	return c
}

func newDocParser(ix *index, src []byte, id string, legacy bool) *docParser {
	if ix.parse == nil {
		ix.parse = newParseConfig(ix)
	}
	c := ix.parse
	return &docParser{
		src: src, id: id, root: ix.mapping, legacy: legacy,
		private: map[*fieldMapping]bool{}, pending: map[*fieldMapping]map[string]*fieldMapping{},
		ignMal: c.ignMal, limit: c.limit, dateDetection: c.dateDetection, numericDetection: c.numericDetection,
		dynDateFormats: c.dynDateFormats, dynTemplates: c.dynTemplates,
	}
}

func truthy(v any) bool {
	switch t := v.(type) {
	case bool:
		return t
	case string:
		return t == "true"
	}
	return false
}

func strList(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

func parseDynTemplates(v any) []dynTemplate {
	list, _ := v.([]any)
	var out []dynTemplate
	for _, item := range list {
		m, _ := item.(map[string]any)
		for name, body := range m {
			b, _ := body.(map[string]any)
			if b == nil {
				continue
			}
			mp, _ := b["mapping"].(map[string]any)
			if mp == nil {
				continue
			}
			out = append(out, dynTemplate{
				name: name, matchTypes: strList(b["match_mapping_type"]), match: strList(b["match"]),
				unmatch: strList(b["unmatch"]), pathMatch: strList(b["path_match"]),
				pathUnmatch: strList(b["path_unmatch"]), mapping: mp,
			})
		}
	}
	return out
}

// parse walks the document. On success the caller applies commit().
func (p *docParser) parse(doc *jnode) *esError {
	if doc.kind != jObject {
		return p.fail(doc.start, "failed to parse: Malformed content, must start with an object")
	}
	return p.walkObject(p.root, "", doc, orDefault(p.root.Dynamic, "true"))
}

// commit applies the dynamic mapping additions. It fails when they would
// exceed the total fields limit.
func (p *docParser) commit() *esError {
	if p.added > 0 {
		current := p.root.countFields()
		if current+p.added > p.limit {
			return newErr("illegal_argument_exception",
				"Limit of total fields [%d] has been exceeded while adding new fields [%d]", p.limit, p.added)
		}
	}
	for parent, fields := range p.pending {
		for name, fm := range fields {
			parent.Properties[name] = fm
		}
	}
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (p *docParser) desc() string {
	if p.id == "" {
		return "document"
	}
	return fmt.Sprintf("document with id '%s'", p.id)
}

// fail builds a document parsing error at a byte offset.
func (p *docParser) fail(off int, format string, args ...any) *esError {
	msg := fmt.Sprintf(format, args...)
	if p.legacy {
		return newErr("mapper_parsing_exception", "%s", msg)
	}
	return newErr("document_parsing_exception", "[%s] %s", location(p.src, off), msg)
}

func (p *docParser) lookup(parent *fieldMapping, name string) *fieldMapping {
	if fm := parent.Properties[name]; fm != nil {
		return fm
	}
	return p.pending[parent][name]
}

func (p *docParser) add(parent *fieldMapping, name string, fm *fieldMapping) {
	p.added += 1 + len(fm.Fields)
	p.markPrivate(fm)
	if p.private[parent] {
		parent.Properties[name] = fm
		return
	}
	if p.pending[parent] == nil {
		p.pending[parent] = map[string]*fieldMapping{}
	}
	p.pending[parent][name] = fm
}

func (p *docParser) markPrivate(fm *fieldMapping) {
	p.private[fm] = true
	for _, c := range fm.Properties {
		p.markPrivate(c)
	}
}

var metadataFields = map[string]bool{
	"_id": true, "_index": true, "_source": true, "_routing": true, "_version": true, "_seq_no": true,
	"_primary_term": true, "_field_names": true, "_ignored": true, "_tier": true, "_data_stream_timestamp": true,
	"_doc_count": false, "_type": false,
}

func (p *docParser) walkObject(obj *fieldMapping, path string, n *jnode, dyn string) *esError {
	for _, kv := range n.obj {
		name := kv.key
		if strings.TrimSpace(name) == "" {
			if name == "" {
				return p.fail(kv.keyStart, "field name cannot be an empty string")
			}
			return p.fail(kv.keyStart, "field name cannot contain only whitespace: ['%s']", name)
		}
		if path == "" && metadataFields[name] {
			return p.fail(kv.keyStart, "Field [%s] is a metadata field and cannot be added inside a document. Use the index API request parameters.", name)
		}
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
			return p.fail(kv.keyStart, "field name starting or ending with a [.] makes object resolution ambiguous: [%s]", name)
		}
		parent, parentPath, pdyn := obj, path, dyn
		parts := strings.Split(name, ".")
		skip := false
		for _, part := range parts[:len(parts)-1] {
			full := joinPath(parentPath, part)
			next := p.lookup(parent, part)
			if next == nil {
				switch pdyn {
				case "strict":
					return p.strict(kv.val.start, part, parentPath)
				case "false", "runtime":
					skip = true
				default:
					next = newObjectMapping()
					p.add(parent, part, next)
				}
			} else if !next.isObject() {
				return p.fail(kv.keyStart, "Could not dynamically add mapping for field [%s]. Existing mapping for [%s] must be of type object but found [%s].",
					joinPath(path, name), full, next.Type)
			}
			if skip {
				break
			}
			parent, parentPath = next, full
			pdyn = orDefault(next.Dynamic, pdyn)
			if !next.Enabled {
				skip = true
				break
			}
		}
		if skip {
			continue
		}
		if err := p.walkValue(parent, parentPath, parts[len(parts)-1], kv.val, pdyn); err != nil {
			return err
		}
	}
	return nil
}

func (p *docParser) strict(off int, name, within string) *esError {
	if within == "" {
		within = "_doc"
	}
	msg := fmt.Sprintf("mapping set to strict, dynamic introduction of [%s] within [%s] is not allowed", name, within)
	if p.legacy {
		return newErr("strict_dynamic_mapping_exception", "%s", msg)
	}
	return newErr("strict_dynamic_mapping_exception", "[%s] %s", location(p.src, off), msg)
}

func (p *docParser) walkValue(parent *fieldMapping, parentPath, name string, v *jnode, dyn string) *esError {
	full := joinPath(parentPath, name)
	if v.kind == jNull {
		return nil
	}
	if v.kind == jArray {
		for _, e := range v.arr {
			if err := p.walkValue(parent, parentPath, name, e, dyn); err != nil {
				return err
			}
		}
		return nil
	}
	fm := p.lookup(parent, name)
	if fm == nil {
		switch dyn {
		case "strict":
			return p.strict(v.start, name, parentPath)
		case "false", "runtime":
			return nil
		}
		var err *esError
		fm, err = p.dynamicMapping(full, name, v)
		if err != nil {
			return err
		}
		if fm == nil {
			return nil
		}
		p.add(parent, name, fm)
	}
	if fm.isObject() {
		if v.kind != jObject {
			return p.fail(v.start, "object mapping for [%s] tried to parse field [%s] as object, but found a concrete value", full, name)
		}
		if !fm.Enabled {
			return nil
		}
		return p.walkObject(fm, full, v, orDefault(fm.Dynamic, dyn))
	}
	if err := p.checkField(fm, full, v); err != nil {
		return err
	}
	for sn, sub := range fm.Fields {
		if err := p.checkField(sub, full+"."+sn, v); err != nil {
			return err
		}
	}
	return nil
}

func (p *docParser) checkField(fm *fieldMapping, full string, v *jnode) *esError {
	cause := checkValue(fm, full, v, p.src)
	if cause == nil {
		return nil
	}
	ign := p.ignMal
	if b, ok := fm.Params["ignore_malformed"].(bool); ok {
		ign = b
	}
	if ign && v.kind != jObject && fm.Type != "keyword" && fm.Type != "text" {
		return nil
	}
	e := p.fail(v.start, "failed to parse field [%s] of type [%s] in %s. Preview of field's value: '%s'",
		full, fm.Type, p.desc(), v.preview())
	return e.withCause(cause)
}

// dynamicMapping picks the mapping ES would add for a new field.
func (p *docParser) dynamicMapping(full, name string, v *jnode) (*fieldMapping, *esError) {
	var mtype string // dynamic template "match_mapping_type"
	var def map[string]any
	switch v.kind {
	case jObject:
		mtype, def = "object", map[string]any{"type": "object"}
	case jBool:
		mtype, def = "boolean", map[string]any{"type": "boolean"}
	case jNumber:
		if strings.ContainsAny(v.str, ".eE") {
			mtype, def = "double", map[string]any{"type": "float"}
		} else {
			mtype, def = "long", map[string]any{"type": "long"}
		}
	case jString:
		mtype = "string"
		def = map[string]any{"type": "text", "fields": map[string]any{"keyword": map[string]any{"type": "keyword", "ignore_above": 256}}}
		if p.dateDetection {
			for _, df := range p.dynDateFormats {
				if _, err := df.parseDate(v.str); err == nil && !df.lenient {
					mtype = "date"
					def = map[string]any{"type": "date"}
					if df.src != "strict_date_optional_time" {
						def["format"] = df.src
					}
					break
				}
			}
		}
		if mtype == "string" && p.numericDetection {
			if _, err := strconv.ParseInt(v.str, 10, 64); err == nil {
				mtype, def = "long", map[string]any{"type": "long"}
			} else if _, err := strconv.ParseFloat(v.str, 64); err == nil {
				mtype, def = "double", map[string]any{"type": "float"}
			}
		}
	default:
		return nil, nil
	}
	for _, t := range p.dynTemplates {
		if !t.matches(full, name, mtype) {
			continue
		}
		m := substitute(t.mapping, name, mtype).(map[string]any)
		if _, ok := m["type"]; !ok {
			if mtype == "object" {
				m["type"] = "object"
			} else {
				m["type"] = def["type"]
			}
		}
		fm, err := parseField(full, m)
		if err != nil {
			return nil, p.fail(v.start, "failed to parse: %s", err.Reason)
		}
		return fm, nil
	}
	fm, err := parseField(full, def)
	if err != nil {
		return nil, err
	}
	return fm, nil
}

func (t dynTemplate) matches(full, name, mtype string) bool {
	if len(t.matchTypes) > 0 {
		ok := false
		for _, m := range t.matchTypes {
			if m == "*" || m == mtype {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	anyGlob := func(pats []string, s string) bool {
		for _, p := range pats {
			if globMatch(p, s) {
				return true
			}
		}
		return false
	}
	if len(t.match) > 0 && !anyGlob(t.match, name) {
		return false
	}
	if anyGlob(t.unmatch, name) {
		return false
	}
	if len(t.pathMatch) > 0 && !anyGlob(t.pathMatch, full) {
		return false
	}
	if anyGlob(t.pathUnmatch, full) {
		return false
	}
	return true
}

func substitute(v any, name, dynType string) any {
	switch t := v.(type) {
	case string:
		t = strings.ReplaceAll(t, "{name}", name)
		return strings.ReplaceAll(t, "{dynamic_type}", dynType)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = substitute(e, name, dynType)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = substitute(e, name, dynType)
		}
		return out
	}
	return v
}

// checkValue validates one scalar (or object) value against a concrete
// field type and returns the underlying exception ES would report as
// "caused_by", or nil.
func checkValue(fm *fieldMapping, full string, v *jnode, src []byte) *esError {
	switch fm.Type {
	case "text", "keyword", "constant_keyword", "wildcard", "match_only_text", "search_as_you_type",
		"binary", "completion", "counted_keyword", "semantic_text", "version", "token_count":
		if v.kind == jObject {
			return newErr("illegal_state_exception", "Can't get text on a START_OBJECT at %s", location(src, v.start))
		}
		if fm.Type == "constant_keyword" {
			if want, ok := fm.Params["value"]; ok && fmt.Sprint(want) != textOf(v) {
				return newErr("illegal_argument_exception",
					"[constant_keyword] field [%s] only accepts values that are equal to the value defined in the mappings [%v], but got [%s]",
					full, want, textOf(v))
			}
		}
		return nil
	case "long", "integer", "short", "byte", "unsigned_long":
		return checkInteger(fm, v)
	case "double", "float", "half_float", "scaled_float":
		return checkFloat(fm, v)
	case "boolean":
		switch v.kind {
		case jBool:
			return nil
		case jString:
			if v.str == "true" || v.str == "false" || v.str == "" {
				return nil
			}
		}
		return newErr("illegal_argument_exception", "Failed to parse value [%s] as only [true] or [false] are allowed.", v.preview())
	case "date", "date_nanos":
		if v.kind == jObject || v.kind == jBool {
			return newErr("illegal_argument_exception", "failed to parse date field [%s] with format [%s]", v.preview(), fm.dateFmt.src)
		}
		t, err := fm.dateFmt.parseDate(v.str)
		if err != nil {
			return err
		}
		if fm.Type == "date_nanos" && !fm.dateFmt.lenient {
			if t.Before(time.Unix(0, 0)) {
				return newErr("illegal_argument_exception",
					"date[%s] is before the epoch in 1970 and cannot be stored in nanosecond resolution", t.UTC().Format(time.RFC3339Nano))
			}
			if t.After(time.Unix(0, math.MaxInt64)) {
				return newErr("illegal_argument_exception",
					"date[%s] is after 2262-04-11T23:47:16.854775807 and cannot be stored in nanosecond resolution", t.UTC().Format(time.RFC3339Nano))
			}
		}
		return nil
	case "ip":
		if v.kind == jObject {
			return newErr("illegal_state_exception", "Can't get text on a START_OBJECT at %s", location(src, v.start))
		}
		if _, err := netip.ParseAddr(textOf(v)); err != nil {
			return newErr("illegal_argument_exception", "'%s' is not an IP string literal.", textOf(v))
		}
		return nil
	}
	return nil
}

func textOf(v *jnode) string {
	switch v.kind {
	case jString, jNumber:
		return v.str
	case jBool:
		return strconv.FormatBool(v.b)
	}
	return v.preview()
}

func coerceOn(fm *fieldMapping) bool {
	if b, ok := fm.Params["coerce"].(bool); ok {
		return b
	}
	return true
}

var intRanges = map[string][2]*big.Int{
	"long":          {big.NewInt(math.MinInt64), big.NewInt(math.MaxInt64)},
	"integer":       {big.NewInt(math.MinInt32), big.NewInt(math.MaxInt32)},
	"short":         {big.NewInt(math.MinInt16), big.NewInt(math.MaxInt16)},
	"byte":          {big.NewInt(math.MinInt8), big.NewInt(math.MaxInt8)},
	"unsigned_long": {big.NewInt(0), new(big.Int).SetUint64(math.MaxUint64)},
}

var typeArticle = map[string]string{"long": "a long", "integer": "an integer", "short": "a short", "byte": "a byte", "unsigned_long": "unsigned long"}

func checkInteger(fm *fieldMapping, v *jnode) *esError {
	var text string
	switch v.kind {
	case jNumber:
		text = v.str
	case jString:
		if v.str == "" {
			return nil // an empty string is treated as null
		}
		if !coerceOn(fm) {
			return newErr("illegal_argument_exception", "[coerce] is false, the value [%s] cannot be coerced to a number", v.str)
		}
		text = v.str
	default:
		return newErr("illegal_argument_exception", "Current token (%s) not numeric, can not use numeric value accessors", v.tokenName())
	}
	bi, ok := new(big.Int).SetString(strings.TrimPrefix(text, "+"), 10)
	if !ok {
		bf, _, err := big.ParseFloat(text, 10, 256, big.ToZero)
		if err != nil || strings.ContainsAny(text, "xXpP_") || bf.IsInf() {
			return newErr("illegal_argument_exception", "For input string: \"%s\"", text)
		}
		if !coerceOn(fm) && !bf.IsInt() {
			return newErr("illegal_argument_exception", "Value [%s] has a decimal part", text)
		}
		bi, _ = bf.Int(nil)
	}
	r := intRanges[fm.Type]
	if bi.Cmp(r[0]) < 0 || bi.Cmp(r[1]) > 0 {
		return newErr("illegal_argument_exception", "Value [%s] is out of range for %s", text, typeArticle[fm.Type])
	}
	return nil
}

func checkFloat(fm *fieldMapping, v *jnode) *esError {
	var text string
	switch v.kind {
	case jNumber:
		text = v.str
	case jString:
		if v.str == "" {
			return nil
		}
		if !coerceOn(fm) {
			return newErr("illegal_argument_exception", "[coerce] is false, the value [%s] cannot be coerced to a number", v.str)
		}
		text = strings.TrimSpace(v.str)
		text = strings.TrimRight(text, "fFdD")
	default:
		return newErr("illegal_argument_exception", "Current token (%s) not numeric, can not use numeric value accessors", v.tokenName())
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !isRangeErr(err) {
		return newErr("number_format_exception", "For input string: \"%s\"", v.str)
	}
	switch fm.Type {
	case "float":
		if math.Abs(f) > math.MaxFloat32 {
			f = math.Inf(1)
		}
	case "half_float":
		if math.Abs(f) > 65504 {
			f = math.Inf(1)
		}
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return newErr("illegal_argument_exception", "[%s] supports only finite values, but got [%s]", fm.Type, javaFloat(f))
	}
	return nil
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

func javaFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
