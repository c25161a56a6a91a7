package esfake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"
	"go.uber.org/goleak"

	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness starts a server and a plain HTTP client for it.
type harness struct {
	t   *testing.T
	s   *esfake.Server
	url string
	tr  *http.Transport
	hc  *http.Client
}

func start(t *testing.T, opts ...esfake.Option) *harness {
	t.Helper()
	s := esfake.New(opts...)
	url, err := s.Start("")
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	h := &harness{t: t, s: s, url: url, tr: tr, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		s.Close()
	})
	return h
}

// do sends a request; a body starting with '{' or '[' is JSON, otherwise NDJSON.
func (h *harness) do(method, path, body string) (int, map[string]any, http.Header) {
	h.t.Helper()
	status, raw, hdr := h.doRaw(method, path, body)
	var m map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &m); err != nil {
			h.t.Fatalf("%s %s: bad JSON %q: %v", method, path, raw, err)
		}
	}
	return status, m, hdr
}

func (h *harness) doRaw(method, path, body string) (int, []byte, http.Header) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, h.url+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
		if strings.Contains(path, "_bulk") {
			req.Header.Set("Content-Type", "application/x-ndjson")
		}
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, resp.Header
}

func (h *harness) putTemplate(name, body string) {
	h.t.Helper()
	if st, m, _ := h.do("PUT", "/_index_template/"+name, body); st != 200 {
		h.t.Fatalf("put template %s: %d %v", name, st, m)
	}
}

// path walks a decoded JSON value: path(m, "items", 0, "index", "status").
func path(v any, keys ...any) any {
	for _, k := range keys {
		switch kk := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[kk]
		case int:
			a, ok := v.([]any)
			if !ok || kk >= len(a) {
				return nil
			}
			v = a[kk]
		}
	}
	return v
}

const decisionTemplate = `{
  "index_patterns": ["score-log*"],
  "priority": 100,
  "template": {
    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
    "mappings": {
      "dynamic": "strict",
      "properties": {
        "decision_id": {"type": "keyword"},
        "@timestamp":  {"type": "date"},
        "score":       {"type": "double"},
        "count":       {"type": "long"},
        "model":       {"type": "keyword"},
        "client_ip":   {"type": "ip"},
        "approved":    {"type": "boolean"},
        "features":    {"type": "object", "dynamic": "true"},
        "note":        {"type": "text", "fields": {"raw": {"type": "keyword"}}}
      }
    }
  }
}`

func TestInfoAndProductHeader(t *testing.T) {
	h := start(t)
	st, m, hdr := h.do("GET", "/", "")
	if st != 200 || hdr.Get("X-Elastic-Product") != "Elasticsearch" {
		t.Fatalf("GET /: %d %v", st, hdr)
	}
	if v := path(m, "version", "number"); v != "8.19.0" {
		t.Errorf("version = %v", v)
	}
	// Errors carry the header too.
	st, m, hdr = h.do("GET", "/missing/_doc/1", "")
	if st != 404 || hdr.Get("X-Elastic-Product") != "Elasticsearch" || path(m, "error", "type") != "index_not_found_exception" {
		t.Errorf("GET missing doc: %d %v %v", st, hdr, m)
	}
	if path(m, "error", "root_cause", 0, "type") != "index_not_found_exception" || path(m, "status") != float64(404) {
		t.Errorf("error body shape: %v", m)
	}

	// The official client accepts the server.
	es, tr := newES(t, h.url)
	defer tr.CloseIdleConnections()
	res, err := es.Info()
	if err != nil || res.IsError() {
		t.Fatalf("client Info: %v %v", err, res)
	}
	res.Body.Close()
}

func newES(t *testing.T, url string) (*elasticsearch.Client, *http.Transport) {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{url}, Transport: tr, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	return es, tr
}

func TestBulkIndexerEndToEnd(t *testing.T) {
	h := start(t)
	h.putTemplate("decisions", decisionTemplate)
	es, tr := newES(t, h.url)
	defer tr.CloseIdleConnections()

	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: es, NumWorkers: 4, FlushBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	var failed atomic.Int64
	for i := 0; i < 1500; i++ {
		id := fmt.Sprintf("dec-%04d", i)
		ids = append(ids, id)
		index := "score-log-2024.05.01"
		if i%2 == 1 {
			index = "score-log-2024.05.02"
		}
		body := fmt.Sprintf(`{"decision_id":%q,"@timestamp":"2024-05-01T10:00:%02dZ","score":0.%d,"model":"m%d","features":{"f%d":1}}`, id, i%60, i%10, i%3, i%5)
		err := bi.Add(context.Background(), esutil.BulkIndexerItem{
			Action: "index", Index: index, DocumentID: id, Body: strings.NewReader(body),
			OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, r esutil.BulkIndexerResponseItem, err error) {
				failed.Add(1)
				t.Errorf("item failed: %v %+v", err, r)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := bi.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := bi.Stats()
	if st.NumFlushed != 1500 || st.NumFailed != 0 || failed.Load() != 0 {
		t.Errorf("bulk indexer stats %+v", st)
	}
	if err := h.s.VerifyIDs("score-log*", ids); err != nil {
		t.Error(err)
	}
	if c := h.s.DocCounts(); c["score-log-2024.05.01"] != 750 || len(c) != 2 {
		t.Errorf("DocCounts = %v", c)
	}
	if n := h.s.DocCount("score-log-2024.05.02"); n != 750 {
		t.Errorf("DocCount = %d", n)
	}
	if _, m, _ := h.do("GET", "/score-log*/_count", ""); path(m, "count") != float64(1500) {
		t.Errorf("count = %v", m)
	}
	s := h.s.Stats()
	if s.BulkCalls < 2 || s.BulkItems != 1500 || s.ItemErrors != 0 || s.DocsIndexed != 1500 {
		t.Errorf("server stats %+v", s)
	}
	// Re-sending everything keeps one document per id.
	bi2, _ := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: es, NumWorkers: 2})
	for _, id := range ids[:100] {
		_ = bi2.Add(context.Background(), esutil.BulkIndexerItem{Action: "index", Index: "score-log-2024.05.01", DocumentID: id,
			Body: strings.NewReader(`{"decision_id":"` + id + `"}`)})
	}
	_ = bi2.Close(context.Background())
	if err := h.s.VerifyIDs("score-log*", ids); err == nil || !strings.Contains(err.Error(), "50 duplicated") {
		t.Errorf("VerifyIDs after cross-index rewrite = %v, want 50 duplicated", err)
	}
}

func bulkItem(t *testing.T, h *harness, body string) map[string]any {
	t.Helper()
	st, m, _ := h.do("POST", "/_bulk", body)
	if st != 200 {
		t.Fatalf("bulk: %d %v", st, m)
	}
	items, _ := m["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("bulk: %v", m)
	}
	for _, v := range items[0].(map[string]any) {
		return v.(map[string]any)
	}
	return nil
}

func TestMappingErrors(t *testing.T) {
	h := start(t)
	h.putTemplate("decisions", decisionTemplate)
	cases := []struct {
		name, doc, errType, reason, causeType, cause string
	}{
		{"bad date", `{"@timestamp":"nope"}`, "document_parsing_exception",
			"[1:15] failed to parse field [@timestamp] of type [date] in document with id 'x'. Preview of field's value: 'nope'",
			"illegal_argument_exception", "failed to parse date field [nope] with format [strict_date_optional_time||epoch_millis]"},
		{"date with space", `{"@timestamp":"2024-05-01 10:00:00"}`, "document_parsing_exception",
			"[1:15] failed to parse field [@timestamp] of type [date]", "illegal_argument_exception", "failed to parse date field"},
		{"bad long", `{"count":"many"}`, "document_parsing_exception",
			"[1:10] failed to parse field [count] of type [long] in document with id 'x'. Preview of field's value: 'many'",
			"illegal_argument_exception", `For input string: "many"`},
		{"long out of range", `{"count":9223372036854775808}`, "document_parsing_exception",
			"failed to parse field [count] of type [long]", "illegal_argument_exception", "Value [9223372036854775808] is out of range for a long"},
		{"bad double", `{"score":"high"}`, "document_parsing_exception",
			"failed to parse field [score] of type [double]", "number_format_exception", `For input string: "high"`},
		{"bool in number", `{"score":true}`, "document_parsing_exception",
			"failed to parse field [score] of type [double]", "illegal_argument_exception", "Current token (VALUE_TRUE) not numeric"},
		{"bad ip", `{"client_ip":"10.0.0.300"}`, "document_parsing_exception",
			"failed to parse field [client_ip] of type [ip]", "illegal_argument_exception", "'10.0.0.300' is not an IP string literal."},
		{"bad boolean", `{"approved":"yes"}`, "document_parsing_exception",
			"failed to parse field [approved] of type [boolean]", "illegal_argument_exception", "Failed to parse value [yes] as only [true] or [false] are allowed."},
		{"object into keyword", `{"model":{"name":"m"}}`, "document_parsing_exception",
			"Preview of field's value: '{name=m}'", "illegal_state_exception", "Can't get text on a START_OBJECT"},
		{"scalar into object", `{"features":3}`, "document_parsing_exception",
			"object mapping for [features] tried to parse field [features] as object, but found a concrete value", "", ""},
		{"strict", `{"decision_id":"x","extra":1}`, "strict_dynamic_mapping_exception",
			"mapping set to strict, dynamic introduction of [extra] within [_doc] is not allowed", "", ""},
		{"metadata field", `{"_id":"x"}`, "document_parsing_exception",
			"Field [_id] is a metadata field and cannot be added inside a document.", "", ""},
		{"array element", `{"count":[1,2,"three"]}`, "document_parsing_exception",
			"Preview of field's value: 'three'", "illegal_argument_exception", `For input string: "three"`},
		{"not json", `{"count":}`, "document_parsing_exception", "failed to parse", "json_parse_exception", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			it := bulkItem(t, h, `{"index":{"_index":"score-log-a","_id":"x"}}`+"\n"+c.doc+"\n")
			if it["status"] != float64(400) {
				t.Fatalf("status %v: %v", it["status"], it)
			}
			if got := path(it, "error", "type"); got != c.errType {
				t.Errorf("type %v, want %s", got, c.errType)
			}
			if got, _ := path(it, "error", "reason").(string); !strings.Contains(got, c.reason) {
				t.Errorf("reason %q, want it to contain %q", got, c.reason)
			}
			if c.causeType != "" {
				if got := path(it, "error", "caused_by", "type"); got != c.causeType {
					t.Errorf("cause type %v, want %s", got, c.causeType)
				}
				if got, _ := path(it, "error", "caused_by", "reason").(string); !strings.Contains(got, c.cause) {
					t.Errorf("cause %q, want %q", got, c.cause)
				}
			}
		})
	}
	// The date cause has ES's third level.
	it := bulkItem(t, h, `{"index":{"_index":"score-log-a","_id":"x"}}`+"\n"+`{"@timestamp":"nope"}`+"\n")
	if path(it, "error", "caused_by", "caused_by", "reason") != "Failed to parse with all enclosed parsers" {
		t.Errorf("date cause chain: %v", it)
	}
	// Valid values of every kind pass, including coercion ES does.
	ok := `{"decision_id":"y","@timestamp":"2024-05-01T10:00:00.123456+02:00","score":"0.5","count":"42",` +
		`"client_ip":"::1","approved":"false","features":{"a.b":1},"note":"Hello World","model":7}`
	if it := bulkItem(t, h, `{"index":{"_index":"score-log-a","_id":"y"}}`+"\n"+ok+"\n"); it["status"] != float64(201) {
		t.Errorf("valid doc: %v", it)
	}
	if n := h.s.Stats().ItemErrors; n != int64(len(cases)+1) {
		t.Errorf("ItemErrors = %d", n)
	}
	if n := h.s.ItemErrorTypes()["strict_dynamic_mapping_exception"]; n != 1 {
		t.Errorf("ItemErrorTypes = %v", h.s.ItemErrorTypes())
	}
}

func TestLegacyMapperParsingException(t *testing.T) {
	h := start(t, esfake.WithVersion("8.6.2"))
	h.putTemplate("decisions", decisionTemplate)
	it := bulkItem(t, h, `{"index":{"_index":"score-log-a","_id":"x"}}`+"\n"+`{"@timestamp":"nope"}`+"\n")
	if path(it, "error", "type") != "mapper_parsing_exception" ||
		path(it, "error", "reason") != "failed to parse field [@timestamp] of type [date] in document with id 'x'. Preview of field's value: 'nope'" {
		t.Errorf("legacy error: %v", it)
	}
}

func TestDynamicMapping(t *testing.T) {
	h := start(t)
	it := bulkItem(t, h, `{"index":{"_index":"dyn","_id":"1"}}`+"\n"+`{"n":1,"f":1.5,"s":"text","d":"2024-05-01T00:00:00Z","o":{"b":true}}`+"\n")
	if it["status"] != float64(201) {
		t.Fatal(it)
	}
	_, m, _ := h.do("GET", "/dyn/_mapping", "")
	props := path(m, "dyn", "mappings", "properties")
	want := map[string]string{"n": "long", "f": "float", "s": "text", "d": "date"}
	for f, typ := range want {
		if got := path(props, f, "type"); got != typ {
			t.Errorf("%s mapped %v, want %s", f, got, typ)
		}
	}
	if path(props, "s", "fields", "keyword", "type") != "keyword" || path(props, "o", "properties", "b", "type") != "boolean" {
		t.Errorf("mapping %v", props)
	}
	it = bulkItem(t, h, `{"index":{"_index":"dyn","_id":"2"}}`+"\n"+`{"n":"x"}`+"\n")
	if it["status"] != float64(400) || !strings.Contains(path(it, "error", "reason").(string), "[n] of type [long]") {
		t.Errorf("conflicting dynamic type: %v", it)
	}
	// A rejected document adds no mapping.
	bulkItem(t, h, `{"index":{"_index":"dyn","_id":"3"}}`+"\n"+`{"newfield":1,"n":"bad"}`+"\n")
	_, m, _ = h.do("GET", "/dyn/_mapping", "")
	if path(m, "dyn", "mappings", "properties", "newfield") != nil {
		t.Error("mapping of a rejected document was kept")
	}
	// Total fields limit.
	h.do("PUT", "/small", `{"settings":{"index.mapping.total_fields.limit":2}}`)
	it = bulkItem(t, h, `{"index":{"_index":"small","_id":"1"}}`+"\n"+`{"a":1,"b":2,"c":3}`+"\n")
	if path(it, "error", "reason") != "Limit of total fields [2] has been exceeded while adding new fields [3]" {
		t.Errorf("field limit: %v", it)
	}
}

func TestVersionsConflictsDeletes(t *testing.T) {
	h := start(t)
	create := `{"create":{"_index":"v","_id":"1"}}` + "\n" + `{"a":1}` + "\n"
	if it := bulkItem(t, h, create); it["result"] != "created" || it["_version"] != float64(1) || it["status"] != float64(201) {
		t.Fatalf("create: %v", it)
	}
	it := bulkItem(t, h, create)
	if it["status"] != float64(409) || path(it, "error", "type") != "version_conflict_engine_exception" ||
		path(it, "error", "reason") != "[1]: version conflict, document already exists (current version [1])" {
		t.Errorf("second create: %v", it)
	}
	it = bulkItem(t, h, `{"index":{"_index":"v","_id":"1"}}`+"\n"+`{"a":2}`+"\n")
	if it["result"] != "updated" || it["_version"] != float64(2) || it["status"] != float64(200) {
		t.Errorf("overwrite: %v", it)
	}
	it = bulkItem(t, h, `{"delete":{"_index":"v","_id":"1"}}`+"\n")
	if it["result"] != "deleted" || it["_version"] != float64(3) {
		t.Errorf("delete: %v", it)
	}
	it = bulkItem(t, h, `{"delete":{"_index":"v","_id":"1"}}`+"\n")
	if it["result"] != "not_found" || it["status"] != float64(404) {
		t.Errorf("second delete: %v", it)
	}
	it = bulkItem(t, h, `{"delete":{"_index":"nope","_id":"1"}}`+"\n")
	if path(it, "error", "type") != "index_not_found_exception" {
		t.Errorf("delete in missing index: %v", it)
	}
	it = bulkItem(t, h, `{"index":{"_index":"v","_id":"2","if_seq_no":99,"if_primary_term":1}}`+"\n"+`{"a":1}`+"\n")
	if it["status"] != float64(409) {
		t.Errorf("if_seq_no on missing doc: %v", it)
	}
	it = bulkItem(t, h, `{"update":{"_index":"v","_id":"3"}}`+"\n"+`{"doc":{"a":1},"doc_as_upsert":true}`+"\n")
	if it["result"] != "created" {
		t.Errorf("upsert: %v", it)
	}
	it = bulkItem(t, h, `{"update":{"_index":"v","_id":"3"}}`+"\n"+`{"doc":{"a":1}}`+"\n")
	if it["result"] != "noop" {
		t.Errorf("noop update: %v", it)
	}
	it = bulkItem(t, h, `{"update":{"_index":"v","_id":"4"}}`+"\n"+`{"doc":{"a":1}}`+"\n")
	if path(it, "error", "type") != "document_missing_exception" || it["status"] != float64(404) {
		t.Errorf("update missing: %v", it)
	}
	it = bulkItem(t, h, `{"index":{"_index":"BadName","_id":"1"}}`+"\n"+`{}`+"\n")
	if path(it, "error", "type") != "invalid_index_name_exception" || path(it, "error", "reason") != "Invalid index name [BadName], must be lowercase" {
		t.Errorf("bad index name: %v", it)
	}
	it = bulkItem(t, h, `{"index":{"_index":"v"}}`+"\n"+`{"a":1}`+"\n")
	if id, _ := it["_id"].(string); len(id) != 20 || it["status"] != float64(201) {
		t.Errorf("auto id: %v", it)
	}
	// Single-document APIs.
	st, m, _ := h.do("PUT", "/v/_doc/9?refresh=true", `{"a":9}`)
	if st != 201 || m["result"] != "created" || m["status"] != nil {
		t.Errorf("PUT _doc: %d %v", st, m)
	}
	st, m, _ = h.do("PUT", "/v/_create/9", `{"a":9}`)
	if st != 409 || path(m, "error", "type") != "version_conflict_engine_exception" {
		t.Errorf("PUT _create: %d %v", st, m)
	}
	st, m, _ = h.do("GET", "/v/_doc/9", "")
	if st != 200 || m["found"] != true || path(m, "_source", "a") != float64(9) {
		t.Errorf("GET _doc: %d %v", st, m)
	}
	st, m, _ = h.do("GET", "/v/_doc/404", "")
	if st != 404 || m["found"] != false {
		t.Errorf("GET missing _doc: %d %v", st, m)
	}
}

func TestBulkRequestErrors(t *testing.T) {
	h := start(t)
	cases := []struct{ body, typ, reason string }{
		{`{"index":{"_index":"a"}}` + "\n" + `{}`, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"},
		{`{"frob":{"_index":"a"}}` + "\n", "illegal_argument_exception", "Malformed action/metadata line [1], expected field [create], [delete], [index] or [update] but found [frob]"},
		{`"x"` + "\n", "illegal_argument_exception", "Malformed action/metadata line [1], expected START_OBJECT or END_OBJECT but found [VALUE_STRING]"},
		{`{"index":{"_id":"1"}}` + "\n" + `{}` + "\n", "action_request_validation_exception", "Validation Failed: 1: index is missing;"},
		{`{"index":{"_index":"a","_type":"doc"}}` + "\n" + `{}` + "\n", "illegal_argument_exception", "Action/metadata line [1] contains an unknown parameter [_type]"},
		{"\n", "action_request_validation_exception", "Validation Failed: 1: no requests added;"},
	}
	for _, c := range cases {
		st, m, _ := h.do("POST", "/_bulk", c.body)
		if st != 400 || path(m, "error", "type") != c.typ || path(m, "error", "reason") != c.reason {
			t.Errorf("body %q: %d %v", c.body, st, m)
		}
	}
	// Index from the path.
	st, m, _ := h.do("POST", "/from-path/_bulk", `{"index":{"_id":"1"}}`+"\n"+`{}`+"\n")
	if st != 200 || path(m, "items", 0, "index", "_index") != "from-path" {
		t.Errorf("path index: %v", m)
	}
	// Content-Type is required, as in ES.
	req, _ := http.NewRequest("POST", h.url+"/_bulk", strings.NewReader(`{"index":{"_index":"a"}}`+"\n{}\n"))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := h.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotAcceptable {
		t.Errorf("text/plain: %d", resp.StatusCode)
	}
	if st, _, _ := h.do("GET", "/_bulk", ""); st != 405 {
		t.Errorf("GET /_bulk: %d", st)
	}
	if st, m, _ := h.do("GET", "/_nope/x/y/z", ""); st != 400 || !strings.Contains(fmt.Sprint(m["error"]), "no handler found for uri") {
		t.Errorf("unknown uri: %d %v", st, m)
	}
}

func TestTemplatesAndILM(t *testing.T) {
	h := start(t)
	h.putTemplate("low", `{"index_patterns":["logs-x*"],"priority":1,"template":{"mappings":{"properties":{"a":{"type":"keyword"}}}}}`)
	h.putTemplate("high", `{"index_patterns":["logs-x-*"],"priority":5,"template":{"mappings":{"properties":{"a":{"type":"long"}}}}}`)
	st, m, _ := h.do("PUT", "/_index_template/clash", `{"index_patterns":["logs-*"],"priority":5}`)
	if st != 400 || !strings.Contains(fmt.Sprint(path(m, "error", "reason")), "that have the same priority [5]") {
		t.Errorf("priority clash: %d %v", st, m)
	}
	it := bulkItem(t, h, `{"index":{"_index":"logs-x-1","_id":"1"}}`+"\n"+`{"a":"text"}`+"\n")
	if it["status"] != float64(400) {
		t.Errorf("highest priority template not applied: %v", it)
	}
	st, m, _ = h.do("PUT", "/_index_template/bad", `{"index_patterns":["b*"],"template":{"mappings":{"properties":{"x":{"type":"strnig"}}}}}`)
	if st != 400 || !strings.Contains(fmt.Sprint(m), "No handler for type [strnig] declared on field [x]") {
		t.Errorf("bad type: %d %v", st, m)
	}
	st, m, _ = h.do("PUT", "/_index_template/bad", `{"index_patterns":["b*"],"template":{"mappings":{"properties":{"x":{"type":"date","format":"yyyy-MM-dd qq"}}}}}`)
	if st != 200 {
		t.Errorf("valid java letters esfake does not model must be accepted: %d %v", st, m)
	}
	st, m, _ = h.do("PUT", "/_index_template/bad2", `{"index_patterns":["c*"],"template":{"mappings":{"properties":{"x":{"type":"date","format":"yyyy-MM-dd bb"}}}}}`)
	if st != 400 || !strings.Contains(fmt.Sprint(m), "Unknown pattern letter: b") {
		t.Errorf("bad date format: %d %v", st, m)
	}
	st, m, _ = h.do("PUT", "/_index_template/nocomp", `{"index_patterns":["d*"],"composed_of":["missing"]}`)
	if st != 400 || path(m, "error", "type") != "invalid_index_template_exception" {
		t.Errorf("missing component: %d %v", st, m)
	}
	st, m, _ = h.do("PUT", "/_index_template/nopat", `{"template":{}}`)
	if st != 400 || path(m, "error", "reason") != "Validation Failed: 1: index patterns are missing;" {
		t.Errorf("no patterns: %d %v", st, m)
	}
	st, m, _ = h.do("GET", "/_index_template/nothere", "")
	if st != 404 || path(m, "error", "type") != "resource_not_found_exception" {
		t.Errorf("get missing: %d %v", st, m)
	}
	// Component templates compose.
	h.do("PUT", "/_component_template/ts", `{"template":{"mappings":{"properties":{"@timestamp":{"type":"date"}}}}}`)
	h.putTemplate("composed", `{"index_patterns":["comp-*"],"composed_of":["ts"],"priority":3,"template":{"mappings":{"properties":{"m":{"type":"keyword"}}}}}`)
	it = bulkItem(t, h, `{"index":{"_index":"comp-1","_id":"1"}}`+"\n"+`{"@timestamp":"yesterday"}`+"\n")
	if it["status"] != float64(400) {
		t.Errorf("component mapping not applied: %v", it)
	}
	// ILM.
	st, m, _ = h.do("PUT", "/_ilm/policy/rdv", `{"policy":{"phases":{"hot":{"actions":{"rollover":{"max_age":"1d"}}},"delete":{"min_age":"30d","actions":{"delete":{}}}}}}`)
	if st != 200 || m["acknowledged"] != true {
		t.Errorf("put ILM: %d %v", st, m)
	}
	st, m, _ = h.do("PUT", "/_ilm/policy/bad", `{"policy":{"phases":{"lukewarm":{}}}}`)
	if st != 400 {
		t.Errorf("bad phase: %d %v", st, m)
	}
	st, m, _ = h.do("GET", "/_ilm/policy/rdv", "")
	if st != 200 || path(m, "rdv", "version") != float64(1) || path(m, "rdv", "policy", "phases", "delete", "min_age") != "30d" {
		t.Errorf("get ILM: %d %v", st, m)
	}
	// _cat/indices, health from replicas.
	raw := func() []map[string]any {
		_, b, _ := h.doRaw("GET", "/_cat/indices?format=json&s=index", "")
		var rows []map[string]any
		_ = json.Unmarshal(b, &rows)
		return rows
	}()
	if len(raw) != 2 || raw[0]["index"] != "comp-1" || raw[0]["health"] != "yellow" {
		t.Errorf("_cat/indices: %v", raw)
	}
}

func TestSearch(t *testing.T) {
	h := start(t)
	h.putTemplate("decisions", decisionTemplate)
	var sb strings.Builder
	for i := 0; i < 30; i++ {
		index := "score-log-1"
		if i >= 20 {
			index = "score-log-2"
		}
		fmt.Fprintf(&sb, `{"index":{"_index":%q,"_id":"d%02d"}}`+"\n", index, i)
		fmt.Fprintf(&sb, `{"decision_id":"d%02d","@timestamp":"2024-05-01T10:%02d:00Z","score":%d.5,"model":"m%d","note":"Fraud check number %d"}`+"\n", i, i, i, i%3, i)
	}
	if st, m, _ := h.do("POST", "/_bulk?refresh=wait_for", sb.String()); st != 200 || m["errors"] != false {
		t.Fatalf("bulk: %v", m)
	}
	h.do("PUT", "/other", "")
	search := func(target, q string) (float64, []string, map[string]any) {
		t.Helper()
		st, m, _ := h.do("POST", "/"+target+"/_search", q)
		if st != 200 {
			t.Fatalf("search %s: %d %v", q, st, m)
		}
		var ids []string
		for _, hh := range path(m, "hits", "hits").([]any) {
			ids = append(ids, path(hh, "_id").(string))
		}
		total, _ := path(m, "hits", "total", "value").(float64)
		return total, ids, m
	}
	total, ids, _ := search("score-log*", `{"query":{"match_all":{}}}`)
	if total != 30 || len(ids) != 10 {
		t.Errorf("match_all: %v %v", total, ids)
	}
	total, _, _ = search("score-log*", `{"query":{"term":{"model":"m1"}},"size":0}`)
	if total != 10 {
		t.Errorf("term: %v", total)
	}
	total, ids, _ = search("score-log*,-score-log-2", `{"query":{"bool":{"filter":[{"range":{"score":{"gte":5,"lt":8}}}],"must_not":[{"term":{"model":"m0"}}]}},"sort":[{"score":"desc"}]}`)
	if total != 2 || strings.Join(ids, ",") != "d07,d05" {
		t.Errorf("bool/range/sort: %v %v", total, ids)
	}
	total, ids, _ = search("score-log-2", `{"query":{"range":{"@timestamp":{"gte":"2024-05-01T10:25:00Z"}}},"sort":["decision_id"],"from":1,"size":2}`)
	if total != 5 || strings.Join(ids, ",") != "d26,d27" {
		t.Errorf("date range/from: %v %v", total, ids)
	}
	total, _, _ = search("score-log*", `{"query":{"match":{"note":"FRAUD number"}}}`)
	if total != 30 {
		t.Errorf("match text: %v", total)
	}
	total, _, _ = search("score-log*", `{"query":{"term":{"note.raw":"Fraud check number 3"}}}`)
	if total != 1 {
		t.Errorf("term multi-field: %v", total)
	}
	total, _, _ = search("score-log*", `{"query":{"ids":{"values":["d01","d29","zz"]}}}`)
	if total != 2 {
		t.Errorf("ids: %v", total)
	}
	total, _, _ = search("score-log*", `{"query":{"range":{"@timestamp":{"lt":"now-1d/d"}}}}`)
	if total != 30 {
		t.Errorf("date math: %v", total)
	}
	_, _, m := search("score-log-1", `{"query":{"term":{"decision_id":"d03"}},"_source":["score"]}`)
	if src := path(m, "hits", "hits", 0, "_source"); fmt.Sprint(src) != "map[score:3.5]" {
		t.Errorf("_source filter: %v", src)
	}
	st, m, _ := h.do("POST", "/score-log*/_search", `{"sort":["note"]}`)
	if st != 400 || path(m, "error", "caused_by", "type") != "illegal_argument_exception" {
		t.Errorf("sort on text: %d %v", st, m)
	}
	st, m, _ = h.do("POST", "/score-log*/_search", `{"query":{"frobnicate":{}}}`)
	if st != 400 || path(m, "error", "reason") != "unknown query [frobnicate]" {
		t.Errorf("unknown query: %d %v", st, m)
	}
	st, m, _ = h.do("POST", "/missing/_search", `{}`)
	if st != 404 || path(m, "error", "type") != "index_not_found_exception" {
		t.Errorf("missing index: %d %v", st, m)
	}
	_, m, _ = h.do("POST", "/missing*/_count", `{"query":{"match_all":{}}}`)
	if m["count"] != float64(0) {
		t.Errorf("count on empty pattern: %v", m)
	}
	_, m, _ = h.do("POST", "/score-log*/_count", `{"query":{"term":{"model":"m2"}}}`)
	if m["count"] != float64(10) {
		t.Errorf("count with query: %v", m)
	}
	_, b, _ := h.doRaw("POST", "/score-log*/_search?filter_path=hits.total,hits.hits._id&size=1", `{}`)
	if string(b) != `{"hits":{"hits":[{"_id":"d00"}],"total":{"relation":"eq","value":30}}}`+"\n" {
		t.Errorf("filter_path: %s", b)
	}
}

func TestNearRealTime(t *testing.T) {
	h := start(t, esfake.WithRefreshInterval(time.Hour))
	h.do("POST", "/_bulk", `{"index":{"_index":"nrt","_id":"1"}}`+"\n{}\n")
	if _, m, _ := h.do("GET", "/nrt/_count", ""); m["count"] != float64(0) {
		t.Errorf("visible before refresh: %v", m)
	}
	if st, m, _ := h.do("GET", "/nrt/_doc/1", ""); st != 200 || m["found"] != true {
		t.Errorf("GET is real time: %v", m)
	}
	h.do("POST", "/nrt/_refresh", "")
	if _, m, _ := h.do("GET", "/nrt/_count", ""); m["count"] != float64(1) {
		t.Errorf("after refresh: %v", m)
	}
	h.do("POST", "/_bulk?refresh=true", `{"index":{"_index":"nrt","_id":"2"}}`+"\n{}\n")
	if _, m, _ := h.do("GET", "/nrt/_count", ""); m["count"] != float64(2) {
		t.Errorf("after ?refresh: %v", m)
	}
}

func TestFailNextAndRejections(t *testing.T) {
	h := start(t)
	one := `{"index":{"_index":"f","_id":"1"}}` + "\n{}\n"
	h.s.FailNext(1, 503)
	h.s.FailNext(1, 429)
	st, m, hdr := h.do("POST", "/_bulk", one)
	if st != 503 || path(m, "error", "type") != "cluster_block_exception" || hdr.Get("X-Elastic-Product") != "Elasticsearch" {
		t.Errorf("first: %d %v", st, m)
	}
	st, m, _ = h.do("POST", "/_bulk", one)
	if st != 429 || path(m, "error", "type") != "es_rejected_execution_exception" || path(m, "status") != float64(429) {
		t.Errorf("second: %d %v", st, m)
	}
	if st, _, _ = h.do("POST", "/_bulk", one); st != 200 {
		t.Errorf("third: %d", st)
	}
	h.s.FailNextBulk(1, 500)
	if st, _, _ := h.do("GET", "/", ""); st != 200 {
		t.Errorf("FailNextBulk hit a non-bulk request: %d", st)
	}
	if st, _, _ := h.do("POST", "/_bulk", one); st != 500 {
		t.Errorf("FailNextBulk: %d", st)
	}
	if n := h.s.DocCount("f"); n != 1 {
		t.Errorf("docs after failures: %d", n)
	}

	h.s.RejectItemsFunc(func(index, id string) int {
		if id == "b" {
			return 429
		}
		return 0
	})
	st, m, _ = h.do("POST", "/_bulk", `{"index":{"_index":"f","_id":"a"}}`+"\n{}\n"+`{"index":{"_index":"f","_id":"b"}}`+"\n{}\n")
	if st != 200 || m["errors"] != true || path(m, "items", 1, "index", "status") != float64(429) ||
		path(m, "items", 1, "index", "error", "type") != "es_rejected_execution_exception" || path(m, "items", 0, "index", "status") != float64(201) {
		t.Errorf("RejectItemsFunc: %v", m)
	}
	h.s.RejectItemsFunc(nil)
	h.s.RejectItems(1)
	_, m, _ = h.do("POST", "/_bulk", `{"index":{"_index":"f","_id":"c"}}`+"\n{}\n")
	if path(m, "items", 0, "index", "status") != float64(429) {
		t.Errorf("RejectItems(1): %v", m)
	}
	h.s.RejectItems(0)
	st2 := h.s.Stats()
	if st2.InjectedFailures != 3 || st2.RejectedItems != 2 || st2.BulkCalls != 6 {
		t.Errorf("stats %+v", st2)
	}
	h.s.FailFunc(func(method, p string) int {
		if strings.HasSuffix(p, "/_count") {
			return 502
		}
		return 0
	})
	if st, _, _ := h.do("GET", "/f/_count", ""); st != 502 {
		t.Errorf("FailFunc: %d", st)
	}
	h.s.ResetFaults()
	if st, _, _ := h.do("GET", "/f/_count", ""); st != 200 {
		t.Errorf("after ResetFaults: %d", st)
	}
}

func TestSetDownRefusesAndRecovers(t *testing.T) {
	h := start(t)
	h.do("POST", "/_bulk", `{"index":{"_index":"d","_id":"1"}}`+"\n{}\n")
	if err := h.s.SetDown(true); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", h.url+"/", nil)
	if _, err := h.hc.Do(req); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("request while down: %v, want connection refused", err)
	}
	if err := h.s.SetDown(false); err != nil {
		t.Fatal(err)
	}
	if st, m, _ := h.do("GET", "/d/_count", ""); st != 200 || m["count"] != float64(1) {
		t.Errorf("after recovery: %d %v", st, m)
	}
}

func TestDown503WithHTTPTest(t *testing.T) {
	s := esfake.New()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	defer s.Close()
	if err := s.SetDown(true); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !bytes.Contains(b, []byte("cluster_block_exception")) {
		t.Errorf("down: %d %s", resp.StatusCode, b)
	}
	_ = s.SetDown(false)
	resp, err = http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("up: %d", resp.StatusCode)
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

func TestLatencyAndClientTimeout(t *testing.T) {
	h := start(t)
	h.s.SetLatency(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"/", nil)
	began := time.Now()
	_, err := h.hc.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
	if time.Since(began) > time.Second {
		t.Errorf("timeout took %v", time.Since(began))
	}
	h.s.SetLatency(0)
	if st, _, _ := h.do("GET", "/", ""); st != 200 {
		t.Errorf("after latency off: %d", st)
	}
}

func TestAuth(t *testing.T) {
	h := start(t, esfake.WithBasicAuth("elastic", "pw"))
	st, m, hdr := h.do("GET", "/", "")
	if st != 401 || path(m, "error", "type") != "security_exception" || hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("no credentials: %d %v", st, m)
	}
	req, _ := http.NewRequest("GET", h.url+"/", nil)
	req.SetBasicAuth("elastic", "pw")
	resp, err := h.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("with credentials: %d", resp.StatusCode)
	}
}

func TestMaxContentLength(t *testing.T) {
	h := start(t, esfake.WithMaxContentLength(64))
	st, _, _ := h.doRaw("POST", "/_bulk", `{"index":{"_index":"a","_id":"1"}}`+"\n"+`{"padding":"`+strings.Repeat("x", 100)+`"}`+"\n")
	if st != 413 {
		t.Errorf("status %d, want 413", st)
	}
}

func TestConcurrentWriters(t *testing.T) {
	h := start(t)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				body := fmt.Sprintf(`{"index":{"_index":"c-%d","_id":"%d-%d"}}`+"\n"+`{"w":%d}`+"\n", w%2, w, i, w)
				req, _ := http.NewRequest("POST", h.url+"/_bulk", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/x-ndjson")
				resp, err := h.hc.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}(w)
		go func() { _ = h.s.Stats(); _ = h.s.Docs("c-*") }()
	}
	wg.Wait()
	if n := h.s.DocCount("c-*"); n != 200 {
		t.Errorf("DocCount = %d", n)
	}
	if got := h.s.IDCounts("c-*"); len(got) != 200 {
		t.Errorf("IDCounts has %d ids", len(got))
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	s := esfake.New()
	defer s.Close()
	if _, err := s.Start("0.0.0.0:0"); err == nil {
		t.Error("Start on 0.0.0.0 succeeded")
	}
}
