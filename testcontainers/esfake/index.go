package esfake

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

type index struct {
	name       string
	uuid       string
	created    time.Time
	mapping    *fieldMapping
	settings   map[string]any // flattened, without the "index." prefix
	aliases    map[string]any
	docs       map[string]*doc
	tomb       map[string]int64 // versions of deleted documents
	seq        int64
	dataStream bool
	template   string

	visible     map[string]*doc // NRT snapshot; nil when writes are visible at once
	lastRefresh time.Time

	// Settings and root mapping parameters do not change once the index
	// exists, so what is derived from them is worked out once.
	copies int          // 1 + number_of_replicas, for _shards.total
	parse  *parseConfig // nil until the full document parser first runs
}

// doc is a stored document. Only the source is kept: search decodes it
// when it needs values (docView), so an index costs little more than the
// bytes it was sent.
type doc struct {
	id      string
	version int64
	seqNo   int64
	source  []byte
}

// docArena allocates documents and their sources in blocks, so that storing
// one costs no allocation of its own and the sources sit in a few large
// blocks without pointers, which the collector does not scan. A block lives
// as long as any document in it: deleted and replaced documents leave their
// bytes behind until then, a fair price for a test server.
type docArena struct {
	docs []doc
	src  []byte
}

const (
	arenaDocs      = 512
	arenaSrcBlock  = 256 << 10
	arenaSrcOwnMin = 16 << 10 // sources at least this large get their own allocation
)

func (a *docArena) newDoc() *doc {
	if len(a.docs) == 0 {
		a.docs = make([]doc, arenaDocs)
	}
	d := &a.docs[0]
	a.docs = a.docs[1:]
	return d
}

// copySource returns a copy of b that nothing else refers to.
func (a *docArena) copySource(b []byte) []byte {
	if len(b) >= arenaSrcOwnMin {
		return append([]byte(nil), b...)
	}
	if cap(a.src)-len(a.src) < len(b) {
		a.src = make([]byte, 0, arenaSrcBlock)
	}
	n := len(a.src)
	a.src = append(a.src, b...)
	return a.src[n:len(a.src):len(a.src)]
}

func (ix *index) setting(key string) (any, bool) {
	v, ok := ix.settings[key]
	return v, ok
}

func (ix *index) replicas() int {
	if v, ok := ix.settings["number_of_replicas"]; ok {
		if n, err := strconv.Atoi(fmt.Sprint(v)); err == nil {
			return n
		}
	}
	return 1
}

func (ix *index) shards() int {
	if v, ok := ix.settings["number_of_shards"]; ok {
		if n, err := strconv.Atoi(fmt.Sprint(v)); err == nil && n > 0 {
			return n
		}
	}
	return 1
}

// searchable returns the documents search and count see.
func (ix *index) searchable(s *Server) map[string]*doc {
	if s.cfg.refreshInterval <= 0 {
		return ix.docs
	}
	if ix.visible == nil { // a new index starts with nothing searchable
		ix.visible, ix.lastRefresh = map[string]*doc{}, ix.created
	}
	if time.Since(ix.lastRefresh) >= s.cfg.refreshInterval {
		ix.refresh()
	}
	return ix.visible
}

func (ix *index) refresh() {
	ix.visible = make(map[string]*doc, len(ix.docs))
	for k, v := range ix.docs {
		ix.visible[k] = v
	}
	ix.lastRefresh = time.Now()
}

func randomID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:]) // 20 characters, like ES ids
}

func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])[:22]
}

// validIndexName applies ES's index naming rules.
func validIndexName(name string) *esError {
	bad := func(why string) *esError {
		return newErr("invalid_index_name_exception", "Invalid index name [%s], %s", name, why).
			withMeta("index_uuid", "_na_", "index", name)
	}
	if name == "" {
		return bad("must not be empty")
	}
	if name != strings.ToLower(name) {
		return bad("must be lowercase")
	}
	if strings.ContainsAny(name, "\\/*?\"<>| ,#") {
		return bad(`must not contain the following characters [' ','"','*',',','/','<','>','?','\','|']`)
	}
	if strings.Contains(name, ":") {
		return bad("must not contain ':'")
	}
	if name == "." || name == ".." {
		return bad("must not be '.' or '..'")
	}
	if strings.HasPrefix(name, "_") || strings.HasPrefix(name, "-") || strings.HasPrefix(name, "+") {
		return bad("must not start with '_', '-', or '+'")
	}
	if len(name) > 255 {
		return bad("index name is too long, (" + strconv.Itoa(len(name)) + " > 255)")
	}
	return nil
}

// flattenSettings turns {"index":{"number_of_shards":1}} or
// {"index.number_of_shards":"1"} into {"number_of_shards": "1"}.
func flattenSettings(raw any) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, e := range m {
				walk(joinPath(prefix, k), e)
			}
			return
		}
		key := strings.TrimPrefix(prefix, "index.")
		switch t := v.(type) {
		case []any:
			out[key] = t
		case nil:
			out[key] = nil
		default:
			out[key] = fmt.Sprint(t)
		}
	}
	walk("", raw)
	return out
}

// nestSettings renders flattened settings as ES returns them:
// {"index":{"number_of_shards":"1",...}}.
func nestSettings(flat map[string]any) map[string]any {
	root := map[string]any{}
	for _, k := range sortedKeys(flat) {
		cur := root
		parts := strings.Split("index."+k, ".")
		for _, p := range parts[:len(parts)-1] {
			next, ok := cur[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[p] = next
			}
			cur = next
		}
		cur[parts[len(parts)-1]] = flat[k]
	}
	return root
}

// indexBody is the parsed body of PUT /{index}.
type indexBody struct {
	settings map[string]any
	mappings any
	aliases  map[string]any
}

// createIndex creates an index, applying the highest-priority matching
// composable template. Caller holds s.mu.
func (s *Server) createIndex(name string, body *indexBody) (*index, *esError) {
	if err := validIndexName(name); err != nil {
		return nil, err
	}
	if ix, ok := s.indices[name]; ok {
		return nil, newErr("resource_already_exists_exception", "index [%s/%s] already exists", name, ix.uuid).
			withMeta("index_uuid", ix.uuid, "index", name)
	}
	ix := &index{
		name: name, uuid: randomUUID(), created: time.Now(),
		mapping: newObjectMapping(), settings: map[string]any{}, aliases: map[string]any{},
		docs: map[string]*doc{}, tomb: map[string]int64{},
	}
	if t := s.matchTemplate(name); t != nil {
		ix.template = t.name
		comp, err := s.compose(t)
		if err != nil {
			return nil, err
		}
		ix.mapping = comp.mapping
		for k, v := range comp.settings {
			ix.settings[k] = v
		}
		for k, v := range comp.aliases {
			ix.aliases[k] = v
		}
		ix.dataStream = t.dataStream
	}
	if body != nil {
		if body.mappings != nil {
			m, err := parseRootMapping(body.mappings)
			if err != nil {
				return nil, err
			}
			ix.mapping = mergeMapping(ix.mapping, m)
		}
		for k, v := range body.settings {
			ix.settings[k] = v
		}
		for k, v := range body.aliases {
			ix.aliases[k] = v
		}
	}
	if _, ok := ix.settings["number_of_shards"]; !ok {
		ix.settings["number_of_shards"] = "1"
	}
	if _, ok := ix.settings["number_of_replicas"]; !ok {
		ix.settings["number_of_replicas"] = "1"
	}
	ix.settings["uuid"] = ix.uuid
	ix.settings["provided_name"] = name
	ix.settings["creation_date"] = strconv.FormatInt(ix.created.UnixMilli(), 10)
	ix.copies = 1 + ix.replicas()
	s.indices[name] = ix
	return ix, nil
}

// resolve expands an index expression: comma-separated names, * patterns,
// _all, and -exclusions. Concrete names that do not exist are an
// index_not_found_exception unless ignoreUnavailable. Caller holds s.mu.
func (s *Server) resolve(expr string, ignoreUnavailable, allowNoIndices bool) ([]*index, *esError) {
	if expr == "" || expr == "_all" {
		expr = "*"
	}
	set := map[string]bool{}
	var order []string
	for i, part := range strings.Split(expr, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if strings.HasPrefix(part, "-") && i > 0 {
			pat := part[1:]
			for n := range set {
				if globMatch(pat, n) {
					delete(set, n)
				}
			}
			continue
		}
		if part == "_all" {
			part = "*"
		}
		if strings.Contains(part, "*") {
			matched := false
			for n := range s.indices {
				if strings.HasPrefix(n, ".") && !strings.HasPrefix(part, ".") {
					continue // hidden / system indices need an explicit leading dot
				}
				if globMatch(part, n) {
					matched = true
					if !set[n] {
						set[n] = true
						order = append(order, n)
					}
				}
			}
			if !matched && !allowNoIndices {
				return nil, indexNotFound(part)
			}
			continue
		}
		if _, ok := s.indices[part]; !ok {
			if ignoreUnavailable {
				continue
			}
			return nil, indexNotFound(part)
		}
		if !set[part] {
			set[part] = true
			order = append(order, part)
		}
	}
	sort.Strings(order)
	var out []*index
	for _, n := range order {
		if set[n] {
			out = append(out, s.indices[n])
		}
	}
	return out, nil
}

// globMatch matches s against a pattern where * stands for any run of
// characters.
func globMatch(pattern, s string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == s
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, last)
}
