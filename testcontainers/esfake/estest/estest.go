// Package estest holds the contract suite that esfake and a real
// Elasticsearch 8 cluster must both pass, so the fake cannot drift from the
// real thing unnoticed. Run it against a real cluster by setting
// RDV_TEST_ES_URL (credentials may be given in the URL, or with
// RDV_TEST_ES_API_KEY; RDV_TEST_ES_CA_CERT names a CA file for https).
//
// The suite creates an index template and an index whose names start with
// "rdv-contract-" and a random suffix, and deletes them when it ends.
package estest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"
)

// Environment variables for running the suite against a real cluster.
const (
	EnvURL    = "RDV_TEST_ES_URL"
	EnvAPIKey = "RDV_TEST_ES_API_KEY"
	EnvCACert = "RDV_TEST_ES_CA_CERT"
)

// ConfigFromEnv returns the esclient configuration for the cluster named by
// RDV_TEST_ES_URL, and false when it is unset.
func ConfigFromEnv() (esclient.Config, bool) {
	u := strings.TrimSpace(os.Getenv(EnvURL))
	if u == "" {
		return esclient.Config{}, false
	}
	cfg := esclient.Config{URLs: []string{u}, APIKey: os.Getenv(EnvAPIKey), CACert: os.Getenv(EnvCACert)}
	return cfg, true
}

// RunContractTests runs the suite against the cluster at url (credentials
// may be embedded as http://user:pass@host:9200).
func RunContractTests(t *testing.T, url string) {
	t.Helper()
	RunContractTestsConfig(t, esclient.Config{URLs: []string{url}})
}

// TemplateBody returns the index template the suite installs for pattern.
func TemplateBody(pattern string) []byte {
	b, _ := json.Marshal(map[string]any{
		"index_patterns": []string{pattern},
		"priority":       200,
		"template": map[string]any{
			"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0},
			"mappings": map[string]any{
				"dynamic": "true",
				"properties": map[string]any{
					"decision_id": map[string]any{"type": "keyword"},
					"ts":          map[string]any{"type": "date"},
					"model":       map[string]any{"type": "keyword"},
					"score":       map[string]any{"type": "double"},
					"count":       map[string]any{"type": "long"},
					"note":        map[string]any{"type": "text"},
				},
			},
		},
	})
	return b
}

// RunContractTestsConfig runs the suite with a full client configuration.
func RunContractTestsConfig(t *testing.T, cfg esclient.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ix, err := esclient.New(cfg)
	if err != nil {
		t.Fatalf("esclient.New: %v", err)
	}
	if c, ok := ix.(io.Closer); ok {
		defer c.Close()
	}
	raw, err := newRaw(cfg)
	if err != nil {
		t.Fatalf("raw client: %v", err)
	}
	defer raw.close()

	prefix := "rdv-contract-" + randomSuffix()
	index := prefix + "-000001"
	pattern := prefix + "*"
	tmpl := prefix

	defer func() {
		// Best effort cleanup, also after failures.
		_, _, _ = raw.do(context.Background(), "DELETE", "/"+index+"?ignore_unavailable=true", nil)
		_, _, _ = raw.do(context.Background(), "DELETE", "/_index_template/"+tmpl, nil)
	}()

	doc := func(id, model string, score float64, ts string) esclient.Doc {
		b, _ := json.Marshal(map[string]any{"decision_id": id, "model": model, "score": score, "ts": ts, "count": 1, "note": "contract run"})
		return esclient.Doc{Index: index, ID: id, Body: b}
	}

	t.Run("ping and product header", func(t *testing.T) {
		if err := ix.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		status, body, hdr := raw.mustDo(t, ctx, "GET", "/", nil)
		if status != http.StatusOK {
			t.Fatalf("GET /: status %d: %s", status, body)
		}
		if got := hdr.Get("X-Elastic-Product"); got != "Elasticsearch" {
			t.Errorf("X-Elastic-Product = %q, want Elasticsearch", got)
		}
		var info struct {
			Version struct{ Number string } `json:"version"`
		}
		_ = json.Unmarshal(body, &info)
		if !strings.HasPrefix(info.Version.Number, "8.") && !strings.HasPrefix(info.Version.Number, "9.") {
			t.Errorf("version.number = %q, want 8.x", info.Version.Number)
		}
	})

	t.Run("template install", func(t *testing.T) {
		if err := ix.EnsureTemplate(ctx, tmpl, TemplateBody(pattern)); err != nil {
			t.Fatalf("EnsureTemplate: %v", err)
		}
		// Installing again is fine (replace).
		if err := ix.EnsureTemplate(ctx, tmpl, TemplateBody(pattern)); err != nil {
			t.Fatalf("EnsureTemplate again: %v", err)
		}
		status, body, _ := raw.mustDo(t, ctx, "GET", "/_index_template/"+tmpl, nil)
		if status != http.StatusOK {
			t.Fatalf("GET template: status %d: %s", status, body)
		}
		var got struct {
			IndexTemplates []struct {
				Name          string `json:"name"`
				IndexTemplate struct {
					IndexPatterns []string `json:"index_patterns"`
				} `json:"index_template"`
			} `json:"index_templates"`
		}
		if err := json.Unmarshal(body, &got); err != nil || len(got.IndexTemplates) != 1 {
			t.Fatalf("GET template: unexpected body %s (%v)", body, err)
		}
		if p := got.IndexTemplates[0].IndexTemplate.IndexPatterns; len(p) != 1 || p[0] != pattern {
			t.Errorf("index_patterns = %v, want [%s]", p, pattern)
		}
		// A template with an unknown field type is refused with a 400.
		bad := []byte(`{"index_patterns":["` + prefix + `-bad*"],"priority":201,"template":{"mappings":{"properties":{"x":{"type":"no_such_type"}}}}}`)
		err := ix.EnsureTemplate(ctx, tmpl+"-bad", bad)
		var re *esclient.RequestError
		if !errors.As(err, &re) || re.Status != http.StatusBadRequest {
			_, _, _ = raw.do(context.Background(), "DELETE", "/_index_template/"+tmpl+"-bad", nil)
			t.Fatalf("EnsureTemplate(bad type) = %v, want a 400 RequestError", err)
		}
		if !strings.Contains(re.Reason, "no_such_type") && !strings.Contains(re.Reason, "invalid") {
			t.Errorf("bad template reason %q names neither the type nor the template", re.Reason)
		}
	})

	t.Run("bulk index with ids", func(t *testing.T) {
		docs := []esclient.Doc{
			doc("d1", "m-a", 0.1, "2024-05-01T10:00:00Z"),
			doc("d2", "m-a", 0.2, "2024-05-01T10:00:01.123Z"),
			doc("d3", "m-b", 0.3, "1714557602000"),
		}
		res, err := ix.Bulk(ctx, docs)
		if err != nil {
			t.Fatalf("Bulk: %v", err)
		}
		for i, r := range res {
			if !r.OK() || r.Status != http.StatusCreated || r.Result != "created" || r.Doc.ID != docs[i].ID {
				t.Errorf("item %d: %+v, want 201 created", i, r)
			}
		}
	})

	t.Run("overwrite by id keeps one doc", func(t *testing.T) {
		res, err := ix.Bulk(ctx, []esclient.Doc{doc("d1", "m-a", 0.9, "2024-05-01T10:00:00Z")})
		if err != nil {
			t.Fatalf("Bulk: %v", err)
		}
		if r := res[0]; r.Status != http.StatusOK || r.Result != "updated" {
			t.Errorf("overwrite: %+v, want 200 updated", r)
		}
		status, body, _ := raw.mustDo(t, ctx, "GET", "/"+index+"/_doc/d1", nil)
		if status != http.StatusOK {
			t.Fatalf("GET _doc/d1: %d %s", status, body)
		}
		var got struct {
			Found   bool           `json:"found"`
			Version int64          `json:"_version"`
			Source  map[string]any `json:"_source"`
		}
		_ = json.Unmarshal(body, &got)
		if !got.Found || got.Version != 2 || got.Source["score"] != 0.9 {
			t.Errorf("GET _doc/d1 = %s, want found, _version 2, score 0.9", body)
		}
		raw.refresh(t, ctx, pattern)
		if n := raw.count(t, ctx, pattern, nil); n != 3 {
			t.Errorf("count after overwrite = %d, want 3", n)
		}
	})

	t.Run("create on an existing id conflicts", func(t *testing.T) {
		body := []byte(`{"create":{"_index":"` + index + `","_id":"d2"}}` + "\n" + `{"decision_id":"d2","model":"m-a","score":0.2}` + "\n")
		status, resp, _ := raw.mustDo(t, ctx, "POST", "/_bulk", body)
		if status != http.StatusOK {
			t.Fatalf("bulk create: %d %s", status, resp)
		}
		var got struct {
			Errors bool `json:"errors"`
			Items  []map[string]struct {
				Status int `json:"status"`
				Error  struct {
					Type string `json:"type"`
				} `json:"error"`
			} `json:"items"`
		}
		_ = json.Unmarshal(resp, &got)
		if !got.Errors || len(got.Items) != 1 || got.Items[0]["create"].Status != http.StatusConflict ||
			got.Items[0]["create"].Error.Type != "version_conflict_engine_exception" {
			t.Errorf("create on existing id: %s, want a 409 version_conflict_engine_exception item", resp)
		}
	})

	t.Run("mapping error item names the field", func(t *testing.T) {
		badDate := esclient.Doc{Index: index, ID: "bad-date", Body: []byte(`{"decision_id":"bad-date","ts":"not-a-date"}`)}
		badNum := esclient.Doc{Index: index, ID: "bad-count", Body: []byte(`{"decision_id":"bad-count","count":"many"}`)}
		good := doc("d4", "m-b", 0.4, "2024-05-01T10:00:03Z")
		res, err := ix.Bulk(ctx, []esclient.Doc{badDate, good, badNum})
		if err != nil {
			t.Fatalf("Bulk: %v", err)
		}
		check := func(r esclient.ItemResult, field string) {
			t.Helper()
			if r.Status != http.StatusBadRequest || !r.Permanent() || r.Retryable() {
				t.Errorf("%s: %+v, want a permanent 400", r.Doc.ID, r)
			}
			if r.ErrType != "document_parsing_exception" && r.ErrType != "mapper_parsing_exception" {
				t.Errorf("%s: ErrType %q, want document_parsing_exception or mapper_parsing_exception", r.Doc.ID, r.ErrType)
			}
			if !strings.Contains(r.Reason, "["+field+"]") {
				t.Errorf("%s: reason %q does not name [%s]", r.Doc.ID, r.Reason, field)
			}
		}
		check(res[0], "ts")
		check(res[2], "count")
		if !res[1].OK() {
			t.Errorf("good document in the same batch: %+v", res[1])
		}
	})

	t.Run("bulk without id gets a generated id", func(t *testing.T) {
		d := doc("", "m-c", 0.5, "2024-05-01T10:00:04Z")
		res, err := ix.Bulk(ctx, []esclient.Doc{d})
		if err != nil {
			t.Fatalf("Bulk: %v", err)
		}
		if !res[0].OK() || res[0].Doc.ID == "" {
			t.Errorf("auto id: %+v, want stored with a generated id", res[0])
		}
	})

	t.Run("count and search", func(t *testing.T) {
		raw.refresh(t, ctx, pattern)
		if n := raw.count(t, ctx, pattern, nil); n != 5 {
			t.Errorf("count(%s) = %d, want 5", pattern, n)
		}
		if n := raw.count(t, ctx, index, map[string]any{"term": map[string]any{"model": "m-a"}}); n != 2 {
			t.Errorf("count(model=m-a) = %d, want 2", n)
		}
		total, hits := raw.search(t, ctx, pattern, map[string]any{
			"query": map[string]any{"term": map[string]any{"model": "m-b"}}, "size": 10,
		})
		if total != 2 || len(hits) != 2 {
			t.Fatalf("search model=m-b: total %d, %d hits, want 2 and 2", total, len(hits))
		}
		for _, h := range hits {
			if h.ID == "" || h.Source["model"] != "m-b" {
				t.Errorf("hit %+v: want an _id and _source.model m-b", h)
			}
		}
		total, hits = raw.search(t, ctx, pattern, map[string]any{"query": map[string]any{"match_all": map[string]any{}}, "size": 2})
		if total != 5 || len(hits) != 2 {
			t.Errorf("match_all size 2: total %d, %d hits, want 5 and 2", total, len(hits))
		}
		status, body, _ := raw.mustDo(t, ctx, "GET", "/_cat/indices/"+index+"?format=json", nil)
		var rows []map[string]any
		if status != http.StatusOK || json.Unmarshal(body, &rows) != nil || len(rows) != 1 {
			t.Fatalf("_cat/indices: %d %s", status, body)
		}
		if rows[0]["index"] != index || rows[0]["docs.count"] != "5" {
			t.Errorf("_cat/indices row %v, want index %s with docs.count \"5\"", rows[0], index)
		}
	})
}

func randomSuffix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// raw is a minimal HTTP client for the calls esclient does not offer.
type raw struct {
	base   *url.URL
	user   string
	pass   string
	apiKey string
	hc     *http.Client
	tr     *http.Transport
}

func newRaw(cfg esclient.Config) (*raw, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.URLs[0])
	if err != nil {
		return nil, err
	}
	r := &raw{base: u, user: cfg.Username, pass: cfg.Password, apiKey: cfg.APIKey}
	if u.User != nil {
		r.user = u.User.Username()
		r.pass, _ = u.User.Password()
		u.User = nil
	}
	r.tr = http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CACert != "" {
		data := []byte(cfg.CACert)
		if !strings.Contains(cfg.CACert, "-----BEGIN") {
			if data, err = os.ReadFile(cfg.CACert); err != nil {
				return nil, err
			}
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(data)
		r.tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	r.hc = &http.Client{Transport: r.tr, Timeout: 30 * time.Second}
	return r, nil
}

func (r *raw) close() { r.tr.CloseIdleConnections() }

func (r *raw) do(ctx context.Context, method, path string, body []byte) (int, []byte, http.Header) {
	u := *r.base
	p, q, _ := strings.Cut(path, "?")
	u.Path = strings.TrimSuffix(u.Path, "/") + p
	u.RawQuery = q
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, []byte(err.Error()), nil
	}
	if body != nil {
		ct := "application/json"
		if strings.HasSuffix(p, "/_bulk") {
			ct = "application/x-ndjson"
		}
		req.Header.Set("Content-Type", ct)
	}
	switch {
	case r.apiKey != "":
		req.Header.Set("Authorization", "ApiKey "+r.apiKey)
	case r.user != "":
		req.SetBasicAuth(r.user, r.pass)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return 0, []byte(err.Error()), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func (r *raw) mustDo(t *testing.T, ctx context.Context, method, path string, body []byte) (int, []byte, http.Header) {
	t.Helper()
	status, b, h := r.do(ctx, method, path, body)
	if status == 0 {
		t.Fatalf("%s %s: %s", method, path, b)
	}
	return status, b, h
}

func (r *raw) refresh(t *testing.T, ctx context.Context, target string) {
	t.Helper()
	if status, body, _ := r.mustDo(t, ctx, "POST", "/"+target+"/_refresh", nil); status != http.StatusOK {
		t.Fatalf("refresh %s: %d %s", target, status, body)
	}
}

func (r *raw) count(t *testing.T, ctx context.Context, target string, query map[string]any) int {
	t.Helper()
	var body []byte
	if query != nil {
		body, _ = json.Marshal(map[string]any{"query": query})
	}
	method := "GET"
	if body != nil {
		method = "POST"
	}
	status, resp, _ := r.mustDo(t, ctx, method, "/"+target+"/_count", body)
	var got struct {
		Count *int `json:"count"`
	}
	if status != http.StatusOK || json.Unmarshal(resp, &got) != nil || got.Count == nil {
		t.Fatalf("count %s: %d %s", target, status, resp)
	}
	return *got.Count
}

type searchHit struct {
	Index  string         `json:"_index"`
	ID     string         `json:"_id"`
	Source map[string]any `json:"_source"`
}

func (r *raw) search(t *testing.T, ctx context.Context, target string, req map[string]any) (int, []searchHit) {
	t.Helper()
	body, _ := json.Marshal(req)
	status, resp, _ := r.mustDo(t, ctx, "POST", "/"+target+"/_search", body)
	var got struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
			Hits []searchHit `json:"hits"`
		} `json:"hits"`
	}
	if status != http.StatusOK || json.Unmarshal(resp, &got) != nil {
		t.Fatalf("search %s: %d %s", target, status, resp)
	}
	return got.Hits.Total.Value, got.Hits.Hits
}
