package esclient_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"
	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake"
	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake/estest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T, opts ...esfake.Option) (*esfake.Server, esclient.Indexer, string) {
	t.Helper()
	s := esfake.New(opts...)
	url, err := s.Start("")
	if err != nil {
		t.Fatal(err)
	}
	ix := newIndexer(t, esclient.Config{URLs: []string{url}, Timeout: 5 * time.Second})
	t.Cleanup(s.Close)
	return s, ix, url
}

func newIndexer(t *testing.T, cfg esclient.Config) esclient.Indexer {
	t.Helper()
	ix, err := esclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ix.(io.Closer).Close() })
	return ix
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		cfg   esclient.Config
		field string
	}{
		{esclient.Config{URLs: []string{"http://a:9200", "es-2:9200"}}, "URLs[1]"},
		{esclient.Config{URLs: []string{"https://"}}, "URLs[0]"},
		{esclient.Config{URLs: []string{"http://a"}, Username: "u"}, "Password"},
		{esclient.Config{URLs: []string{"http://a"}, Password: "p"}, "Username"},
		{esclient.Config{URLs: []string{"http://a"}, Username: "u", Password: "p", APIKey: "k"}, "APIKey"},
		{esclient.Config{URLs: []string{"http://a"}, Timeout: -time.Second}, "Timeout"},
		{esclient.Config{URLs: []string{"http://a"}, CACert: "/no/such/ca.pem"}, "CACert"},
		{esclient.Config{URLs: []string{"http://a"}, CACert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "CACert"},
		{esclient.Config{}, "URLs"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		var ce *esclient.ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("Validate(%+v) = %v, want a ConfigError for %s", c.cfg, err, c.field)
		} else if !strings.Contains(err.Error(), "Config."+c.field) {
			t.Errorf("error %q does not name Config.%s", err, c.field)
		}
	}
	var cfg esclient.Config
	cfg.Defaults()
	if len(cfg.URLs) != 1 || cfg.URLs[0] != esclient.DefaultURL || cfg.Timeout != esclient.DefaultTimeout {
		t.Errorf("Defaults: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	if _, err := esclient.New(esclient.Config{URLs: []string{"ftp://x"}}); err == nil {
		t.Error("New accepted an ftp URL")
	}
}

func TestBulkOutcomes(t *testing.T) {
	s, ix, _ := setup(t)
	ctx := context.Background()
	if err := ix.EnsureTemplate(ctx, "decisions", estest.TemplateBody("score-log*")); err != nil {
		t.Fatal(err)
	}
	docs := []esclient.Doc{
		{Index: "score-log-1", ID: "a", Body: []byte("{\n  \"decision_id\": \"a\",\n  \"score\": 0.5\n}")},
		{Index: "score-log-1", ID: "b", Body: []byte(`{"ts":"yesterday"}`)},
		{Index: "", ID: "c", Body: []byte(`{}`)},
		{Index: "score-log-1", ID: "d", Body: []byte(`not json`)},
		{Index: "score-log-1", Body: []byte(`{"decision_id":"auto"}`)},
		{Index: "score-log-1", ID: "e", Body: []byte(`[1,2]`)},
	}
	res, err := ix.Bulk(ctx, docs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(docs) {
		t.Fatalf("%d results for %d docs", len(res), len(docs))
	}
	if !res[0].OK() || res[0].Result != "created" || res[0].Status != 201 {
		t.Errorf("a: %+v", res[0])
	}
	if r := res[1]; r.OK() || !r.Permanent() || r.Retryable() || r.ErrType != "document_parsing_exception" ||
		!strings.Contains(r.Reason, "[ts]") || !strings.HasPrefix(r.Cause, "illegal_argument_exception: failed to parse date field [yesterday]") {
		t.Errorf("b: %+v", r)
	}
	for _, i := range []int{2, 3, 5} {
		if r := res[i]; r.Status != 400 || r.ErrType != esclient.ErrTypeInvalidDoc || !r.Permanent() {
			t.Errorf("%d: %+v", i, r)
		}
	}
	if r := res[4]; !r.OK() || len(r.Doc.ID) != 20 {
		t.Errorf("auto id: %+v", r)
	}
	if st := s.Stats(); st.BulkCalls != 1 || st.BulkItems != 3 {
		t.Errorf("server saw %+v; invalid documents must not be sent", st)
	}
	// Overwrite by id.
	res, err = ix.Bulk(ctx, []esclient.Doc{{Index: "score-log-1", ID: "a", Body: []byte(`{"score":0.7}`)}})
	if err != nil || res[0].Status != 200 || res[0].Result != "updated" {
		t.Errorf("overwrite: %+v %v", res, err)
	}
	if d, ok := s.Doc("score-log-1", "a"); !ok || d.Version != 2 || string(d.Source) != `{"score":0.7}` {
		t.Errorf("stored: %+v", d)
	}
	// Nothing valid: no request at all.
	res, err = ix.Bulk(ctx, []esclient.Doc{{Index: "x", Body: []byte("")}})
	if err != nil || res[0].ErrType != esclient.ErrTypeInvalidDoc || s.Stats().BulkCalls != 2 {
		t.Errorf("all invalid: %+v %v %+v", res, err, s.Stats())
	}
}

func TestItemRejectionsAreRetryable(t *testing.T) {
	s, ix, _ := setup(t)
	s.RejectItemsFunc(func(index, id string) int {
		switch id {
		case "busy":
			return 429
		case "shard":
			return 503
		}
		return 0
	})
	res, err := ix.Bulk(context.Background(), []esclient.Doc{
		{Index: "i", ID: "ok", Body: []byte(`{}`)},
		{Index: "i", ID: "busy", Body: []byte(`{}`)},
		{Index: "i", ID: "shard", Body: []byte(`{}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].OK() {
		t.Errorf("ok: %+v", res[0])
	}
	if r := res[1]; r.Status != 429 || !r.Retryable() || r.Permanent() || r.ErrType != "es_rejected_execution_exception" {
		t.Errorf("busy: %+v", r)
	}
	if r := res[2]; r.Status != 503 || !r.Retryable() || r.ErrType != "unavailable_shards_exception" {
		t.Errorf("shard: %+v", r)
	}
	if err := s.VerifyIDs("i", []string{"ok"}); err != nil {
		t.Error(err)
	}
}

func TestWholeRequestErrors(t *testing.T) {
	s, ix, url := setup(t)
	ctx := context.Background()
	one := []esclient.Doc{{Index: "i", ID: "1", Body: []byte(`{}`)}}

	s.FailNext(1, 503)
	_, err := ix.Bulk(ctx, one)
	var re *esclient.RequestError
	if !errors.Is(err, esclient.ErrUnavailable) || !esclient.IsRetryable(err) || !errors.As(err, &re) ||
		re.Status != 503 || re.ErrType != "cluster_block_exception" {
		t.Errorf("503: %v", err)
	}

	s.FailNext(1, 429)
	_, err = ix.Bulk(ctx, one)
	if errors.Is(err, esclient.ErrUnavailable) || !esclient.IsRetryable(err) || !errors.As(err, &re) ||
		re.Status != 429 || re.ErrType != "es_rejected_execution_exception" {
		t.Errorf("429: %v", err)
	}

	s.FailNext(1, 401)
	err = ix.Ping(ctx)
	if esclient.IsRetryable(err) || !errors.As(err, &re) || re.Status != 401 || !esclient.Permanent(re.Status) {
		t.Errorf("401: %v", err)
	}

	if err := s.SetDown(true); err != nil {
		t.Fatal(err)
	}
	// A kept-alive connection dropped by the outage may show as EOF first;
	// new connections are refused.
	_, err = ix.Bulk(ctx, one)
	if !errors.Is(err, esclient.ErrUnavailable) || !esclient.IsRetryable(err) {
		t.Errorf("down: %v", err)
	}
	_, err = ix.Bulk(ctx, one)
	if !errors.Is(err, esclient.ErrUnavailable) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("down, second call: %v", err)
	}
	if err := ix.Ping(ctx); !errors.Is(err, esclient.ErrUnavailable) {
		t.Errorf("ping while down: %v", err)
	}
	if err := s.SetDown(false); err != nil {
		t.Fatal(err)
	}
	if err := ix.Ping(ctx); err != nil {
		t.Errorf("ping after recovery: %v", err)
	}

	// Our own timeout: unavailable (and a deadline).
	s.SetLatency(3 * time.Second)
	slow := newIndexer(t, esclient.Config{URLs: []string{url}, Timeout: 100 * time.Millisecond})
	_, err = slow.Bulk(ctx, one)
	if !errors.Is(err, esclient.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout: %v", err)
	}
	// The caller giving up: not retryable.
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err = ix.Bulk(cctx, one)
	if !errors.Is(err, context.Canceled) || esclient.IsRetryable(err) {
		t.Errorf("cancelled: %v", err)
	}
	s.SetLatency(0)

	if st := s.Stats(); st.DocsIndexed != 0 {
		t.Errorf("documents stored despite whole-request failures: %+v", st)
	}
	if _, err := ix.Bulk(ctx, one); err != nil {
		t.Errorf("after faults: %v", err)
	}
}

func TestEnsureTemplateErrors(t *testing.T) {
	s, ix, _ := setup(t)
	ctx := context.Background()
	if err := ix.EnsureTemplate(ctx, "t", []byte(`{`)); err == nil {
		t.Error("invalid JSON accepted")
	}
	err := ix.EnsureTemplate(ctx, "t", []byte(`{"index_patterns":["a*"],"template":{"mappings":{"properties":{"x":{"type":"date","format":"nope_format"}}}}}`))
	var re *esclient.RequestError
	if !errors.As(err, &re) || re.Status != 400 || esclient.IsRetryable(err) {
		t.Errorf("bad format: %v", err)
	}
	s.FailNext(1, 503)
	if err := ix.EnsureTemplate(ctx, "t", estest.TemplateBody("a*")); !errors.Is(err, esclient.ErrUnavailable) {
		t.Errorf("503: %v", err)
	}
	if err := ix.EnsureTemplate(ctx, "t", estest.TemplateBody("a*")); err != nil {
		t.Error(err)
	}
}

func TestNotElasticsearch(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"version":{"number":"8.0.0"},"took":1,"errors":false,"items":[{"index":{"status":201}}]}`)
	}))
	defer ts.Close()
	ix := newIndexer(t, esclient.Config{URLs: []string{ts.URL}})
	if err := ix.Ping(context.Background()); !errors.Is(err, esclient.ErrNotElasticsearch) || esclient.IsRetryable(err) {
		t.Errorf("Ping: %v", err)
	}
	if _, err := ix.Bulk(context.Background(), []esclient.Doc{{Index: "i", Body: []byte(`{}`)}}); !errors.Is(err, esclient.ErrNotElasticsearch) {
		t.Errorf("Bulk: %v", err)
	}
	_ = ix.(io.Closer).Close()
}

func TestOldVersionRejected(t *testing.T) {
	_, _, url := setup(t, esfake.WithVersion("7.17.0"))
	ix := newIndexer(t, esclient.Config{URLs: []string{url}})
	if err := ix.Ping(context.Background()); !errors.Is(err, esclient.ErrNotElasticsearch) {
		t.Errorf("Ping on 7.17: %v", err)
	}
}

func TestTLSAndAuth(t *testing.T) {
	s := esfake.New(esfake.WithBasicAuth("elastic", "pw"))
	url, err := s.StartTLS("")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	// CA as PEM text and as a file.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, s.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ca := range []string{string(s.CACertPEM()), caFile} {
		ix := newIndexer(t, esclient.Config{URLs: []string{url}, Username: "elastic", Password: "pw", CACert: ca})
		if err := ix.Ping(ctx); err != nil {
			t.Errorf("Ping with CA %.20q: %v", ca, err)
		}
	}
	// Unknown CA: a TLS error, not "unavailable".
	ix := newIndexer(t, esclient.Config{URLs: []string{url}, Username: "elastic", Password: "pw"})
	if err := ix.Ping(ctx); err == nil || errors.Is(err, esclient.ErrUnavailable) || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("Ping without CA: %v", err)
	}
	// Wrong password: 401, permanent.
	ix = newIndexer(t, esclient.Config{URLs: []string{url}, Username: "elastic", Password: "nope", CACert: caFile})
	err = ix.Ping(ctx)
	var re *esclient.RequestError
	if !errors.As(err, &re) || re.Status != 401 || re.ErrType != "security_exception" || esclient.IsRetryable(err) {
		t.Errorf("wrong password: %v", err)
	}
}

func TestClassifiers(t *testing.T) {
	for st, want := range map[int][2]bool{
		200: {false, false}, 201: {false, false}, 400: {false, true}, 404: {false, true}, 409: {false, true},
		413: {false, true}, 429: {true, false}, 500: {true, false}, 503: {true, false},
	} {
		if esclient.Retryable(st) != want[0] || esclient.Permanent(st) != want[1] {
			t.Errorf("status %d: Retryable=%v Permanent=%v", st, esclient.Retryable(st), esclient.Permanent(st))
		}
	}
	if esclient.IsRetryable(nil) || esclient.IsRetryable(errors.New("x")) {
		t.Error("IsRetryable of plain errors")
	}
}
