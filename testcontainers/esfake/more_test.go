package esfake_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake"
)

func TestDynamicTemplatesAndDataStreams(t *testing.T) {
	h := start(t)
	h.putTemplate("dt", `{"index_patterns":["dt-*"],"priority":1,"template":{"mappings":{
	  "dynamic_templates":[
	    {"strings_as_keyword":{"match_mapping_type":"string","mapping":{"type":"keyword"}}},
	    {"scores":{"path_match":"scores.*","mapping":{"type":"double"}}}
	  ]}}}`)
	it := bulkItem(t, h, `{"index":{"_index":"dt-1","_id":"1"}}`+"\n"+`{"name":"x","scores":{"a":1}}`+"\n")
	if it["status"] != float64(201) {
		t.Fatal(it)
	}
	_, m, _ := h.do("GET", "/dt-1/_mapping", "")
	props := path(m, "dt-1", "mappings", "properties")
	if path(props, "name", "type") != "keyword" || path(props, "scores", "properties", "a", "type") != "double" {
		t.Errorf("dynamic templates not applied: %v", props)
	}

	h.putTemplate("ds", `{"index_patterns":["logs-rdv-*"],"priority":1,"data_stream":{},"template":{"mappings":{"properties":{"@timestamp":{"type":"date"}}}}}`)
	it = bulkItem(t, h, `{"index":{"_index":"logs-rdv-x"}}`+"\n"+`{"@timestamp":"2024-05-01T00:00:00Z"}`+"\n")
	if it["status"] != float64(400) || path(it, "error", "reason") != "only write ops with an op_type of create are allowed in data streams" {
		t.Errorf("index op on data stream: %v", it)
	}
	it = bulkItem(t, h, `{"create":{"_index":"logs-rdv-x"}}`+"\n"+`{"msg":"no ts"}`+"\n")
	if it["status"] != float64(400) || !strings.Contains(fmt.Sprint(path(it, "error", "reason")), "data stream timestamp field [@timestamp] is missing") {
		t.Errorf("missing @timestamp: %v", it)
	}
	it = bulkItem(t, h, `{"create":{"_index":"logs-rdv-x"}}`+"\n"+`{"@timestamp":"2024-05-01T00:00:00Z"}`+"\n")
	if it["status"] != float64(201) {
		t.Errorf("create on data stream: %v", it)
	}
}

func TestIndexAdminAPIs(t *testing.T) {
	h := start(t, esfake.WithAutoCreateIndex(false))
	it := bulkItem(t, h, `{"index":{"_index":"a","_id":"1"}}`+"\n{}\n")
	if path(it, "error", "type") != "index_not_found_exception" {
		t.Errorf("auto create off: %v", it)
	}
	st, m, _ := h.do("PUT", "/a", `{"settings":{"number_of_replicas":0},"mappings":{"properties":{"n":{"type":"integer"}}}}`)
	if st != 200 || m["acknowledged"] != true {
		t.Fatalf("create index: %d %v", st, m)
	}
	st, m, _ = h.do("PUT", "/a", "")
	if st != 400 || path(m, "error", "type") != "resource_already_exists_exception" {
		t.Errorf("create twice: %d %v", st, m)
	}
	st, m, _ = h.do("PUT", "/b", `{"mappings":{"_doc":{"properties":{}}}}`)
	if st != 400 || !strings.Contains(fmt.Sprint(m), "Root mapping definition has unsupported parameters:  [_doc : {properties={}}]") {
		t.Errorf("typed mapping: %d %v", st, m)
	}
	it = bulkItem(t, h, `{"index":{"_index":"a","_id":"1"}}`+"\n"+`{"n":3000000000}`+"\n")
	if !strings.Contains(fmt.Sprint(path(it, "error", "caused_by", "reason")), "out of range for an integer") {
		t.Errorf("integer range: %v", it)
	}
	bulkItem(t, h, `{"index":{"_index":"a","_id":"1"}}`+"\n"+`{"n":3}`+"\n")
	st, m, _ = h.do("GET", "/a", "")
	if st != 200 || path(m, "a", "settings", "index", "number_of_replicas") != "0" || path(m, "a", "mappings", "properties", "n", "type") != "integer" {
		t.Errorf("get index: %d %v", st, m)
	}
	if st, _, _ := h.do("HEAD", "/zzz", ""); st != 404 {
		t.Errorf("HEAD missing index: %d", st)
	}
	_, m, _ = h.do("GET", "/_cluster/health", "")
	if m["status"] != "green" {
		t.Errorf("health: %v", m)
	}
	st, m, _ = h.do("POST", "/a/_search", `{"query":{"bool":{"must":[{"exists":{"field":"n"}},{"wildcard":{"n":"3*"}}]}}}`)
	if st != 200 || path(m, "hits", "total", "value") != float64(1) {
		t.Errorf("exists/wildcard: %d %v", st, m)
	}
	st, m, _ = h.do("DELETE", "/a/_doc/1", "")
	if st != 200 || m["result"] != "deleted" {
		t.Errorf("delete doc: %d %v", st, m)
	}
	st, m, _ = h.do("DELETE", "/a*", "")
	if st != 400 || path(m, "error", "reason") != "Wildcard expressions or all indices are not allowed" {
		t.Errorf("wildcard delete: %d %v", st, m)
	}
	if st, _, _ = h.do("DELETE", "/a", ""); st != 200 {
		t.Errorf("delete index: %d", st)
	}
	if got := h.s.Indices(); len(got) != 0 {
		t.Errorf("indices after delete: %v", got)
	}
	st, m, _ = h.do("DELETE", "/a", "")
	if st != 404 || path(m, "error", "type") != "index_not_found_exception" {
		t.Errorf("delete missing: %d %v", st, m)
	}
	st, m, _ = h.do("PUT", "/_component_template/c", `{"template":{"settings":{"number_of_shards":1}}}`)
	if st != 200 {
		t.Errorf("component: %d %v", st, m)
	}
	if st, m, _ = h.do("GET", "/_component_template/c", ""); st != 200 || path(m, "component_templates", 0, "name") != "c" {
		t.Errorf("get component: %d %v", st, m)
	}
}

// A test of a component that must survive an Elasticsearch outage and
// per-document rejections.
func Example() {
	fake := esfake.New()
	url, err := fake.Start("") // loopback, free port
	if err != nil {
		panic(err)
	}
	defer fake.Close()

	bulk := func(ctx context.Context, id string) int {
		body := `{"index":{"_index":"score-log-1","_id":"` + id + `"}}` + "\n" + `{"score":1}` + "\n"
		req, _ := http.NewRequestWithContext(ctx, "POST", url+"/_bulk", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0 // connection refused while down
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	ctx := context.Background()

	fake.FailNext(1, http.StatusTooManyRequests) // the next request is rejected whole
	fmt.Println(bulk(ctx, "a"), bulk(ctx, "a"))

	_ = fake.SetDown(true) // connections refused
	fmt.Println(bulk(ctx, "b"))
	_ = fake.SetDown(false)
	fmt.Println(bulk(ctx, "b"))

	fmt.Println(fake.VerifyIDs("score-log*", []string{"a", "b"}))
	st := fake.Stats()
	fmt.Println(st.BulkCalls, st.InjectedFailures, st.DocsIndexed)
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// 429 200
	// 0
	// 200
	// <nil>
	// 3 1 2
}
