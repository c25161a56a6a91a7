package esfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// query is a parsed query clause.
type query interface {
	match(ix *index, d *docView) bool
}

// docView is a stored document being searched. Its values are decoded
// from the source when a clause first needs them, and only for as long as
// the search runs: keeping decoded trees for every document would cost
// several times the memory of the sources.
type docView struct {
	*doc
	val     map[string]any
	decoded bool
}

// value is the source as generic values (numbers as json.Number).
func (v *docView) value() map[string]any {
	if !v.decoded {
		v.decoded = true
		dec := json.NewDecoder(bytes.NewReader(v.source))
		dec.UseNumber()
		_ = dec.Decode(&v.val)
	}
	return v.val
}

type matchAll struct{}
type matchNone struct{}

func (matchAll) match(*index, *docView) bool  { return true }
func (matchNone) match(*index, *docView) bool { return false }

type boolQuery struct {
	must, filter, should, mustNot []query
	minShould                     int
}

func (q *boolQuery) match(ix *index, d *docView) bool {
	for _, c := range q.must {
		if !c.match(ix, d) {
			return false
		}
	}
	for _, c := range q.filter {
		if !c.match(ix, d) {
			return false
		}
	}
	for _, c := range q.mustNot {
		if c.match(ix, d) {
			return false
		}
	}
	if len(q.should) == 0 {
		return true
	}
	n := 0
	for _, c := range q.should {
		if c.match(ix, d) {
			n++
		}
	}
	return n >= q.minShould
}

type idsQuery struct{ ids map[string]bool }

func (q idsQuery) match(_ *index, d *docView) bool { return q.ids[d.id] }

// fieldQuery matches documents whose field values satisfy pred. The field
// is resolved against each index's mapping; unmapped fields match nothing,
// as in ES.
type fieldQuery struct {
	field string
	pred  func(fm *fieldMapping, v any) bool
	// pred == nil makes an exists query
}

func (q fieldQuery) match(ix *index, d *docView) bool {
	fm, path := ix.mapping.resolveField(q.field)
	if fm == nil {
		return false
	}
	vals := extract(d.value(), strings.Split(path, "."))
	if q.pred == nil { // exists
		return len(vals) > 0
	}
	if fm.isObject() {
		return false
	}
	for _, v := range vals {
		if q.pred(fm, v) {
			return true
		}
	}
	return false
}

// extract returns the values at a dotted path, flattening arrays and
// accepting dotted keys in the source.
func extract(v any, parts []string) []any {
	if len(parts) == 0 {
		switch t := v.(type) {
		case nil:
			return nil
		case []any:
			var out []any
			for _, e := range t {
				out = append(out, extract(e, nil)...)
			}
			return out
		}
		return []any{v}
	}
	switch t := v.(type) {
	case map[string]any:
		var out []any
		for i := 1; i <= len(parts); i++ {
			if c, ok := t[strings.Join(parts[:i], ".")]; ok {
				out = append(out, extract(c, parts[i:])...)
			}
		}
		return out
	case []any:
		var out []any
		for _, e := range t {
			out = append(out, extract(e, parts)...)
		}
		return out
	}
	return nil
}

func scalarString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

func tokenize(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

func isTextType(t string) bool {
	return t == "text" || t == "match_only_text" || t == "search_as_you_type" || t == "semantic_text"
}

func isNumericType(t string) bool {
	switch t {
	case "long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long":
		return true
	}
	return false
}

func toRat(v any) (*big.Rat, bool) {
	s := strings.TrimSpace(scalarString(v))
	if s == "" {
		return nil, false
	}
	r, ok := new(big.Rat).SetString(s)
	return r, ok
}

// compareValues orders a document value against a query value for the
// field's type. ok is false when they are not comparable.
func compareValues(fm *fieldMapping, docVal, qVal any, qFormat string, roundUp bool) (int, bool) {
	switch {
	case isNumericType(fm.Type):
		a, ok1 := toRat(docVal)
		b, ok2 := toRat(qVal)
		if !ok1 || !ok2 {
			return 0, false
		}
		return a.Cmp(b), true
	case fm.Type == "date" || fm.Type == "date_nanos":
		a, err := fm.dateFmt.parseDate(scalarString(docVal))
		if err != nil {
			return 0, false
		}
		qf := fm.dateFmt
		if qFormat != "" {
			if f, err := compileDateFormat(qFormat); err == nil {
				qf = f
			}
		}
		b, ok := parseDateMath(scalarString(qVal), qf, roundUp)
		if !ok {
			return 0, false
		}
		return a.Compare(b), true
	case fm.Type == "ip":
		a, err1 := netip.ParseAddr(scalarString(docVal))
		b, err2 := netip.ParseAddr(scalarString(qVal))
		if err1 != nil || err2 != nil {
			return 0, false
		}
		return a.Compare(b), true
	case fm.Type == "boolean":
		a, b := scalarString(docVal) == "true", scalarString(qVal) == "true"
		switch {
		case a == b:
			return 0, true
		case !a:
			return -1, true
		}
		return 1, true
	}
	return strings.Compare(scalarString(docVal), scalarString(qVal)), true
}

func termPred(qv any, caseInsensitive bool) func(fm *fieldMapping, v any) bool {
	return func(fm *fieldMapping, v any) bool {
		if isTextType(fm.Type) {
			want := scalarString(qv)
			for _, tok := range tokenize(scalarString(v)) {
				if tok == want || caseInsensitive && strings.EqualFold(tok, want) {
					return true
				}
			}
			return false
		}
		if caseInsensitive {
			return strings.EqualFold(scalarString(v), scalarString(qv))
		}
		c, ok := compareValues(fm, v, qv, "", false)
		return ok && c == 0
	}
}

// parseDateMath parses "now-1d/d", "2024-01-01||+1M" or a plain date.
func parseDateMath(expr string, df *dateFormat, roundUp bool) (time.Time, bool) {
	var anchor time.Time
	rest := ""
	switch {
	case strings.HasPrefix(expr, "now"):
		anchor, rest = time.Now().UTC(), expr[3:]
	case strings.Contains(expr, "||"):
		i := strings.Index(expr, "||")
		t, err := df.parseDate(expr[:i])
		if err != nil {
			return time.Time{}, false
		}
		anchor, rest = t, expr[i+2:]
	default:
		t, err := df.parseDate(expr)
		if err != nil {
			// a date in the default format is accepted too
			def, _ := compileDateFormat("")
			if t2, err2 := def.parseDate(expr); err2 == nil {
				return t2, true
			}
			return time.Time{}, false
		}
		return t, true
	}
	for len(rest) > 0 {
		op := rest[0]
		rest = rest[1:]
		n := 1
		if op == '+' || op == '-' {
			j := 0
			for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
				j++
			}
			if j > 0 {
				n, _ = strconv.Atoi(rest[:j])
			}
			rest = rest[j:]
		}
		if len(rest) == 0 {
			return time.Time{}, false
		}
		unit := rest[0]
		rest = rest[1:]
		switch op {
		case '+', '-':
			if op == '-' {
				n = -n
			}
			anchor = addUnit(anchor, unit, n)
		case '/':
			anchor = roundUnit(anchor, unit)
			if roundUp {
				anchor = addUnit(anchor, unit, 1).Add(-time.Millisecond)
			}
		default:
			return time.Time{}, false
		}
	}
	return anchor, true
}

func addUnit(t time.Time, unit byte, n int) time.Time {
	switch unit {
	case 'y':
		return t.AddDate(n, 0, 0)
	case 'M':
		return t.AddDate(0, n, 0)
	case 'w':
		return t.AddDate(0, 0, 7*n)
	case 'd':
		return t.AddDate(0, 0, n)
	case 'h', 'H':
		return t.Add(time.Duration(n) * time.Hour)
	case 'm':
		return t.Add(time.Duration(n) * time.Minute)
	case 's':
		return t.Add(time.Duration(n) * time.Second)
	}
	return t
}

func roundUnit(t time.Time, unit byte) time.Time {
	y, mo, d := t.Date()
	switch unit {
	case 'y':
		return time.Date(y, 1, 1, 0, 0, 0, 0, t.Location())
	case 'M':
		return time.Date(y, mo, 1, 0, 0, 0, 0, t.Location())
	case 'w':
		wd := (int(t.Weekday()) + 6) % 7
		return time.Date(y, mo, d-wd, 0, 0, 0, 0, t.Location())
	case 'd':
		return time.Date(y, mo, d, 0, 0, 0, 0, t.Location())
	case 'h', 'H':
		return t.Truncate(time.Hour)
	case 'm':
		return t.Truncate(time.Minute)
	case 's':
		return t.Truncate(time.Second)
	}
	return t
}

func unsupportedQuery(name string) *esError {
	return newErr("parsing_exception", "esfake does not support query [%s]", name)
}

var esQueryNames = map[string]bool{
	"query_string": true, "simple_query_string": true, "nested": true, "has_child": true, "has_parent": true,
	"function_score": true, "script_score": true, "script": true, "geo_distance": true, "geo_bounding_box": true,
	"geo_shape": true, "more_like_this": true, "fuzzy": true, "regexp": true, "multi_match": true,
	"match_bool_prefix": true, "match_phrase_prefix": true, "dis_max": true, "constant_score": true,
	"boosting": true, "intervals": true, "span_term": true, "terms_set": true, "combined_fields": true,
	"knn": true, "pinned": true, "rank_feature": true, "distance_feature": true, "percolate": true,
	"wrapper": true, "sparse_vector": true, "semantic": true, "text_expansion": true,
}

// parseQuery parses the subset of the query DSL esfake evaluates.
func parseQuery(raw any) (query, *esError) {
	if raw == nil {
		return matchAll{}, nil
	}
	m, ok := raw.(map[string]any)
	if !ok || len(m) != 1 {
		if ok && len(m) == 0 {
			return matchAll{}, nil
		}
		return nil, newErr("parsing_exception", "[_na] query malformed, must start with start_object")
	}
	for name, body := range m {
		switch name {
		case "match_all":
			return matchAll{}, nil
		case "match_none":
			return matchNone{}, nil
		case "bool":
			return parseBool(body)
		case "ids":
			b, _ := body.(map[string]any)
			ids := map[string]bool{}
			for _, v := range strList(b["values"]) {
				ids[v] = true
			}
			return idsQuery{ids}, nil
		case "exists":
			b, _ := body.(map[string]any)
			f, _ := b["field"].(string)
			if f == "" {
				return nil, newErr("parsing_exception", "[exists] must be provided with a [field]")
			}
			return fieldQuery{field: f}, nil
		case "term", "prefix", "wildcard":
			f, v, opts, e := singleField(name, body, "value")
			if e != nil {
				return nil, e
			}
			ci, _ := opts["case_insensitive"].(bool)
			switch name {
			case "term":
				return fieldQuery{field: f, pred: termPred(v, ci)}, nil
			case "prefix":
				p := scalarString(v)
				return fieldQuery{field: f, pred: func(fm *fieldMapping, dv any) bool {
					for _, s := range candidates(fm, dv) {
						if strings.HasPrefix(s, p) || ci && strings.HasPrefix(strings.ToLower(s), strings.ToLower(p)) {
							return true
						}
					}
					return false
				}}, nil
			default:
				p := scalarString(v)
				return fieldQuery{field: f, pred: func(fm *fieldMapping, dv any) bool {
					for _, s := range candidates(fm, dv) {
						if wildcardMatch(p, s) || ci && wildcardMatch(strings.ToLower(p), strings.ToLower(s)) {
							return true
						}
					}
					return false
				}}, nil
			}
		case "terms":
			b, _ := body.(map[string]any)
			for f, vals := range b {
				if f == "boost" || f == "_name" {
					continue
				}
				list, ok := vals.([]any)
				if !ok {
					return nil, newErr("parsing_exception", "[terms] query does not support [%s]", f)
				}
				preds := make([]func(*fieldMapping, any) bool, len(list))
				for i, v := range list {
					preds[i] = termPred(v, false)
				}
				return fieldQuery{field: f, pred: func(fm *fieldMapping, dv any) bool {
					for _, p := range preds {
						if p(fm, dv) {
							return true
						}
					}
					return false
				}}, nil
			}
			return nil, newErr("parsing_exception", "[terms] query requires a field")
		case "match", "match_phrase":
			f, v, opts, e := singleField(name, body, "query")
			if e != nil {
				return nil, e
			}
			and := strings.EqualFold(fmt.Sprint(opts["operator"]), "and")
			phrase := name == "match_phrase"
			return fieldQuery{field: f, pred: func(fm *fieldMapping, dv any) bool {
				if !isTextType(fm.Type) {
					return termPred(v, false)(fm, dv)
				}
				qt, dt := tokenize(scalarString(v)), tokenize(scalarString(dv))
				if phrase {
					return len(qt) > 0 && strings.Contains(" "+strings.Join(dt, " ")+" ", " "+strings.Join(qt, " ")+" ")
				}
				have := map[string]bool{}
				for _, t := range dt {
					have[t] = true
				}
				n := 0
				for _, t := range qt {
					if have[t] {
						n++
					}
				}
				if and {
					return len(qt) > 0 && n == len(qt)
				}
				return n > 0
			}}, nil
		case "range":
			b, _ := body.(map[string]any)
			for f, spec := range b {
				sm, ok := spec.(map[string]any)
				if !ok {
					return nil, newErr("parsing_exception", "[range] query malformed, no start_object after query name")
				}
				format, _ := sm["format"].(string)
				type bound struct {
					v       any
					op      string
					roundUp bool
				}
				var bounds []bound
				for k, v := range sm {
					switch k {
					case "gt":
						bounds = append(bounds, bound{v, k, true})
					case "gte", "from":
						bounds = append(bounds, bound{v, "gte", false})
					case "lt":
						bounds = append(bounds, bound{v, k, false})
					case "lte", "to":
						bounds = append(bounds, bound{v, "lte", true})
					case "format", "boost", "time_zone", "relation", "_name", "include_lower", "include_upper":
					default:
						return nil, newErr("parsing_exception", "[range] query does not support [%s]", k)
					}
				}
				return fieldQuery{field: f, pred: func(fm *fieldMapping, dv any) bool {
					for _, bd := range bounds {
						if bd.v == nil {
							continue
						}
						c, ok := compareValues(fm, dv, bd.v, format, bd.roundUp)
						if !ok {
							return false
						}
						switch bd.op {
						case "gt":
							ok = c > 0
						case "gte":
							ok = c >= 0
						case "lt":
							ok = c < 0
						case "lte":
							ok = c <= 0
						}
						if !ok {
							return false
						}
					}
					return true
				}}, nil
			}
			return nil, newErr("parsing_exception", "[range] query requires a field")
		default:
			if esQueryNames[name] {
				return nil, unsupportedQuery(name)
			}
			return nil, newErr("parsing_exception", "unknown query [%s]", name).withMeta("line", 1, "col", 1)
		}
	}
	return matchAll{}, nil
}

// candidates returns the strings a prefix/wildcard query looks at.
func candidates(fm *fieldMapping, v any) []string {
	if isTextType(fm.Type) {
		return tokenize(scalarString(v))
	}
	return []string{scalarString(v)}
}

func wildcardMatch(pattern, s string) bool {
	if pattern == "" {
		return s == ""
	}
	switch pattern[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if wildcardMatch(pattern[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && wildcardMatch(pattern[1:], s[1:])
	}
	return s != "" && s[0] == pattern[0] && wildcardMatch(pattern[1:], s[1:])
}

// singleField reads {"field": value} or {"field": {key: value, ...}}.
func singleField(qname string, body any, key string) (string, any, map[string]any, *esError) {
	b, ok := body.(map[string]any)
	if !ok {
		return "", nil, nil, newErr("parsing_exception", "[%s] query malformed, no start_object after query name", qname)
	}
	var fields []string
	for k := range b {
		if k != "boost" && k != "_name" {
			fields = append(fields, k)
		}
	}
	if len(fields) != 1 {
		return "", nil, nil, newErr("parsing_exception", "[%s] query doesn't support multiple fields, found [%s]", qname, strings.Join(fields, "] and ["))
	}
	f := fields[0]
	v := b[f]
	if opts, ok := v.(map[string]any); ok {
		qv, ok := opts[key]
		if !ok && key == "value" {
			qv, ok = opts["term"]
		}
		if !ok {
			return "", nil, nil, newErr("parsing_exception", "[%s] query does not support [%s]", qname, f)
		}
		return f, qv, opts, nil
	}
	return f, v, map[string]any{}, nil
}

func parseBool(body any) (query, *esError) {
	b, ok := body.(map[string]any)
	if !ok {
		return nil, newErr("parsing_exception", "[bool] query malformed, no start_object after query name")
	}
	q := &boolQuery{}
	clauses := func(v any) ([]query, *esError) {
		var list []any
		switch t := v.(type) {
		case []any:
			list = t
		default:
			list = []any{t}
		}
		var out []query
		for _, c := range list {
			cq, e := parseQuery(c)
			if e != nil {
				return nil, e
			}
			out = append(out, cq)
		}
		return out, nil
	}
	var e *esError
	msm := -1
	for k, v := range b {
		switch k {
		case "must":
			q.must, e = clauses(v)
		case "filter":
			q.filter, e = clauses(v)
		case "should":
			q.should, e = clauses(v)
		case "must_not", "mustNot":
			q.mustNot, e = clauses(v)
		case "minimum_should_match":
			n, err := strconv.Atoi(scalarString(v))
			if err != nil {
				return nil, newErr("parsing_exception", "esfake supports only integer minimum_should_match")
			}
			msm = n
		case "boost", "_name", "adjust_pure_negative":
		default:
			return nil, newErr("parsing_exception", "[bool] query does not support [%s]", k)
		}
		if e != nil {
			return nil, e
		}
	}
	switch {
	case msm >= 0:
		q.minShould = msm
	case len(q.must) == 0 && len(q.filter) == 0:
		q.minShould = 1
	default:
		q.minShould = 0
	}
	return q, nil
}

// --- search and count handlers ------------------------------------------

func decodeSearchBody(body []byte) (map[string]any, *esError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, newErr("x_content_parse_exception", "[1:1] %s", err.Error())
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

func (s *Server) handleCount(w http.ResponseWriter, r *http.Request, target string, body []byte) {
	req, e := decodeSearchBody(body)
	if e != nil {
		s.writeError(w, r, http.StatusBadRequest, e)
		return
	}
	for k := range req {
		if k != "query" {
			s.writeError(w, r, http.StatusBadRequest, newErr("parsing_exception", "request does not support [%s]", k))
			return
		}
	}
	if r.URL.Query().Get("q") != "" {
		s.writeError(w, r, http.StatusBadRequest, unsupportedQuery("q (query_string)"))
		return
	}
	q, e := parseQuery(req["query"])
	if e != nil {
		s.writeError(w, r, http.StatusBadRequest, e)
		return
	}
	params := r.URL.Query()
	s.mu.Lock()
	list, e := s.resolve(target, params.Get("ignore_unavailable") == "true", params.Get("allow_no_indices") != "false")
	count, shards := 0, 0
	for _, ix := range list {
		shards += ix.shards()
		for _, d := range ix.searchable(s) {
			if q.match(ix, &docView{doc: d}) {
				count++
			}
		}
	}
	s.mu.Unlock()
	if e != nil {
		s.writeError(w, r, http.StatusNotFound, e)
		return
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{
		"count":   count,
		"_shards": map[string]any{"total": shards, "successful": shards, "skipped": 0, "failed": 0},
	})
}

type hit struct {
	ix   *index
	d    *docView
	sort []any
}

type sortSpec struct {
	field        string
	desc         bool
	unmappedTyp  string
	missingFirst bool
}

var supportedSearchKeys = map[string]bool{
	"query": true, "size": true, "from": true, "sort": true, "_source": true, "track_total_hits": true,
	"timeout": true, "seq_no_primary_term": true, "version": true, "track_scores": true,
}

var knownSearchKeys = map[string]bool{
	"aggs": true, "aggregations": true, "search_after": true, "fields": true, "stored_fields": true,
	"highlight": true, "explain": true, "min_score": true, "post_filter": true, "collapse": true, "pit": true,
	"runtime_mappings": true, "docvalue_fields": true, "terminate_after": true, "profile": true,
	"indices_boost": true, "rescore": true, "suggest": true, "script_fields": true, "stats": true, "ext": true,
	"knn": true, "rank": true, "retriever": true, "slice": true,
}

func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request, target string, body []byte) {
	req, e := decodeSearchBody(body)
	if e != nil {
		s.writeError(w, r, http.StatusBadRequest, e)
		return
	}
	params := r.URL.Query()
	for k := range req {
		switch {
		case supportedSearchKeys[k]:
		case knownSearchKeys[k]:
			s.writeError(w, r, http.StatusBadRequest, newErr("illegal_argument_exception", "esfake does not support search option [%s]", k))
			return
		default:
			s.writeError(w, r, http.StatusBadRequest, newErr("parsing_exception", "Unknown key for a START_OBJECT in [%s].", k).withMeta("line", 1, "col", 1))
			return
		}
	}
	if params.Get("q") != "" {
		s.writeError(w, r, http.StatusBadRequest, unsupportedQuery("q (query_string)"))
		return
	}
	q, e := parseQuery(req["query"])
	if e != nil {
		s.writeError(w, r, http.StatusBadRequest, e)
		return
	}
	size, from := 10, 0
	if v, ok := req["size"]; ok {
		size, _ = strconv.Atoi(scalarString(v))
	}
	if v := params.Get("size"); v != "" {
		size, _ = strconv.Atoi(v)
	}
	if v, ok := req["from"]; ok {
		from, _ = strconv.Atoi(scalarString(v))
	}
	if v := params.Get("from"); v != "" {
		from, _ = strconv.Atoi(v)
	}
	if size < 0 {
		s.writeError(w, r, http.StatusBadRequest, newErr("illegal_argument_exception", "[size] parameter cannot be negative, found [%d]", size))
		return
	}
	if from < 0 {
		s.writeError(w, r, http.StatusBadRequest, newErr("illegal_argument_exception", "[from] parameter cannot be negative, found [%d]", from))
		return
	}
	if from+size > 10000 {
		s.writeError(w, r, http.StatusBadRequest, newErr("search_phase_execution_exception", "all shards failed").withCause(
			newErr("illegal_argument_exception", "Result window is too large, from + size must be less than or equal to: [10000] but was [%d]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting.", from+size)))
		return
	}
	sorts, e := parseSort(req["sort"], params.Get("sort"))
	if e != nil {
		s.writeError(w, r, http.StatusBadRequest, e)
		return
	}
	trackLimit := 10000
	if v, ok := req["track_total_hits"]; ok {
		switch scalarString(v) {
		case "true":
			trackLimit = -1
		case "false":
			trackLimit = 0
		default:
			trackLimit, _ = strconv.Atoi(scalarString(v))
		}
	}
	if v := params.Get("track_total_hits"); v != "" {
		switch v {
		case "true":
			trackLimit = -1
		case "false":
			trackLimit = 0
		default:
			trackLimit, _ = strconv.Atoi(v)
		}
	}
	srcFilter := parseSourceFilter(req["_source"], params.Get("_source"))
	start := time.Now()

	s.mu.Lock()
	list, e := s.resolve(target, params.Get("ignore_unavailable") == "true", params.Get("allow_no_indices") != "false")
	if e != nil {
		s.mu.Unlock()
		s.writeError(w, r, http.StatusNotFound, e)
		return
	}
	var hits []hit
	shards := 0
	for _, ix := range list {
		shards += ix.shards()
		for _, d := range ix.searchable(s) {
			if v := (&docView{doc: d}); q.match(ix, v) {
				hits = append(hits, hit{ix: ix, d: v})
			}
		}
	}
	if e := computeSortValues(hits, list, sorts); e != nil {
		s.mu.Unlock()
		s.writeError(w, r, http.StatusBadRequest, e)
		return
	}
	s.mu.Unlock()

	sort.SliceStable(hits, func(i, j int) bool {
		for k, sp := range sorts {
			c := compareSortValues(hits[i].sort[k], hits[j].sort[k], sp)
			if c != 0 {
				return c < 0
			}
		}
		if hits[i].ix.name != hits[j].ix.name {
			return hits[i].ix.name < hits[j].ix.name
		}
		return hits[i].d.seqNo < hits[j].d.seqNo
	})
	total := len(hits)
	page := []hit{}
	if from < len(hits) {
		end := from + size
		if end > len(hits) {
			end = len(hits)
		}
		page = hits[from:end]
	}
	seqNo := truthy(req["seq_no_primary_term"]) || scalarString(req["seq_no_primary_term"]) == "true"
	withVersion := scalarString(req["version"]) == "true"
	outHits := make([]map[string]any, 0, len(page))
	for _, h := range page {
		o := map[string]any{"_index": h.ix.name, "_id": h.d.id}
		if len(sorts) > 0 {
			o["_score"] = nil
			o["sort"] = h.sort
		} else {
			o["_score"] = 1.0
		}
		if withVersion {
			o["_version"] = h.d.version
		}
		if seqNo {
			o["_seq_no"] = h.d.seqNo
			o["_primary_term"] = 1
		}
		if src, ok := srcFilter.apply(h.d); ok {
			o["_source"] = src
		}
		outHits = append(outHits, o)
	}
	hitsObj := map[string]any{"hits": outHits}
	if len(sorts) > 0 || total == 0 {
		hitsObj["max_score"] = nil
	} else {
		hitsObj["max_score"] = 1.0
	}
	if trackLimit != 0 {
		value, rel := total, "eq"
		if trackLimit > 0 && total > trackLimit {
			value, rel = trackLimit, "gte"
		}
		if params.Get("rest_total_hits_as_int") == "true" {
			hitsObj["total"] = value
		} else {
			hitsObj["total"] = map[string]any{"value": value, "relation": rel}
		}
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{
		"took":      time.Since(start).Milliseconds(),
		"timed_out": false,
		"_shards":   map[string]any{"total": shards, "successful": shards, "skipped": 0, "failed": 0},
		"hits":      hitsObj,
	})
}

func parseSort(raw any, param string) ([]sortSpec, *esError) {
	var out []sortSpec
	if param != "" {
		for _, p := range strings.Split(param, ",") {
			f, dir, _ := strings.Cut(p, ":")
			out = append(out, sortSpec{field: f, desc: dir == "desc"})
		}
		return out, nil
	}
	if raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		list = []any{raw}
	}
	for _, item := range list {
		switch t := item.(type) {
		case string:
			out = append(out, sortSpec{field: t, desc: t == "_score"})
		case map[string]any:
			for f, spec := range t {
				sp := sortSpec{field: f, desc: f == "_score"}
				switch sv := spec.(type) {
				case string:
					sp.desc = sv == "desc"
				case map[string]any:
					if o, ok := sv["order"].(string); ok {
						sp.desc = o == "desc"
					}
					if u, ok := sv["unmapped_type"].(string); ok {
						sp.unmappedTyp = u
					}
					if m, ok := sv["missing"].(string); ok {
						sp.missingFirst = m == "_first"
					}
				}
				out = append(out, sp)
			}
		default:
			return nil, newErr("parsing_exception", "malformed sort format, within the sort array, an object, or an actual string are allowed")
		}
	}
	return out, nil
}

func computeSortValues(hits []hit, list []*index, sorts []sortSpec) *esError {
	if len(sorts) == 0 {
		return nil
	}
	for _, sp := range sorts {
		if sp.field == "_score" || sp.field == "_doc" {
			continue
		}
		if sp.field == "_id" {
			return shardFailure(newErr("illegal_argument_exception",
				"Fielddata access on the _id field is disallowed, you can re-enable it by updating the dynamic cluster setting: indices.id_field_data.enabled"))
		}
		for _, ix := range list {
			fm, _ := ix.mapping.resolveField(sp.field)
			if fm == nil && sp.unmappedTyp == "" {
				return shardFailure(newErr("query_shard_exception", "No mapping found for [%s] in order to sort on", sp.field).
					withMeta("index_uuid", ix.uuid, "index", ix.name))
			}
			if fm != nil && isTextType(fm.Type) && !truthy(fm.Params["fielddata"]) {
				return shardFailure(newErr("illegal_argument_exception",
					"Fielddata is disabled on [%s] in [%s]. Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on [%s] in order to load field data by uninverting the inverted index. Note that this can use significant memory.",
					sp.field, ix.name, sp.field))
			}
		}
	}
	for i := range hits {
		h := &hits[i]
		h.sort = make([]any, len(sorts))
		for k, sp := range sorts {
			switch sp.field {
			case "_score":
				h.sort[k] = 1.0
				continue
			case "_doc":
				h.sort[k] = h.d.seqNo
				continue
			}
			fm, path := h.ix.mapping.resolveField(sp.field)
			if fm == nil {
				h.sort[k] = nil
				continue
			}
			var best any
			for _, v := range extract(h.d.value(), strings.Split(path, ".")) {
				sv := sortValue(fm, v)
				if sv == nil {
					continue
				}
				if best == nil || (compareSortValues(sv, best, sortSpec{}) < 0) != sp.desc {
					best = sv
				}
			}
			h.sort[k] = best
		}
	}
	return nil
}

func shardFailure(cause *esError) *esError {
	return newErr("search_phase_execution_exception", "all shards failed").withCause(cause)
}

// sortValue converts a value to what ES returns in "sort": epoch millis for
// dates, numbers for numeric fields, strings otherwise.
func sortValue(fm *fieldMapping, v any) any {
	switch {
	case fm.Type == "date" || fm.Type == "date_nanos":
		t, err := fm.dateFmt.parseDate(scalarString(v))
		if err != nil {
			return nil
		}
		if fm.Type == "date_nanos" {
			return t.UnixNano()
		}
		return t.UnixMilli()
	case isNumericType(fm.Type):
		r, ok := toRat(v)
		if !ok {
			return nil
		}
		if r.IsInt() && (fm.Type == "long" || fm.Type == "integer" || fm.Type == "short" || fm.Type == "byte") {
			return r.Num().Int64()
		}
		f, _ := r.Float64()
		return f
	case fm.Type == "boolean":
		if scalarString(v) == "true" {
			return int64(1)
		}
		return int64(0)
	}
	return scalarString(v)
}

func compareSortValues(a, b any, sp sortSpec) int {
	// missing values sort last (or first with "missing": "_first") whatever the order
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		if sp.missingFirst {
			return -1
		}
		return 1
	case b == nil:
		if sp.missingFirst {
			return 1
		}
		return -1
	}
	c := 0
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			c = cmpOrdered(x, y)
		case float64:
			c = cmpOrdered(float64(x), y)
		}
	case float64:
		switch y := b.(type) {
		case int64:
			c = cmpOrdered(x, float64(y))
		case float64:
			c = cmpOrdered(x, y)
		}
	case string:
		c = strings.Compare(x, fmt.Sprint(b))
	}
	if sp.desc {
		return -c
	}
	return c
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sourceFilter implements _source: true|false|"field"|["a","b*"]|{includes,excludes}.
type sourceFilter struct {
	off      bool
	includes []string
	excludes []string
}

func parseSourceFilter(raw any, param string) sourceFilter {
	var f sourceFilter
	switch t := raw.(type) {
	case bool:
		f.off = !t
	case string:
		f.includes = []string{t}
	case []any:
		f.includes = strList(t)
	case map[string]any:
		f.includes = strList(t["includes"])
		f.excludes = strList(t["excludes"])
	}
	switch param {
	case "":
	case "false":
		f.off = true
	case "true":
		f.off = false
	default:
		f.includes = strings.Split(param, ",")
	}
	return f
}

func (f sourceFilter) apply(d *docView) (any, bool) {
	if f.off {
		return nil, false
	}
	if len(f.includes) == 0 && len(f.excludes) == 0 {
		return json.RawMessage(d.source), true
	}
	return filterMap(d.value(), "", f.includes, f.excludes), true
}

func filterMap(m map[string]any, prefix string, inc, exc []string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		p := joinPath(prefix, k)
		if matchesAnyPath(exc, p) {
			continue
		}
		if sub, ok := v.(map[string]any); ok {
			if len(inc) == 0 || matchesAnyPath(inc, p) {
				out[k] = filterMap(sub, p, nil, exc)
				continue
			}
			if child := filterMap(sub, p, inc, exc); len(child) > 0 {
				out[k] = child
			}
			continue
		}
		if len(inc) == 0 || matchesAnyPath(inc, p) {
			out[k] = v
		}
	}
	return out
}

func matchesAnyPath(patterns []string, p string) bool {
	for _, pat := range patterns {
		if globMatch(pat, p) || strings.HasPrefix(p, pat+".") {
			return true
		}
	}
	return false
}
