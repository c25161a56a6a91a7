package stage_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

func get(t *testing.T, h http.Handler, method, path string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String(), rec.Header()
}

func decodeJSON(t *testing.T, body string) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return m
}

func TestMuxHealthz(t *testing.T) {
	mux := stage.Mux(&stage.Health{}, stage.NewRegistry())
	code, body, hdr := get(t, mux, http.MethodGet, "/healthz")
	if code != http.StatusOK || decodeJSON(t, body)["status"] != "ok" {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if code, _, _ := get(t, mux, http.MethodPost, "/healthz"); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz = %d, want 405", code)
	}
}

func TestMuxReadyz(t *testing.T) {
	h := &stage.Health{}
	mux := stage.Mux(h, stage.NewRegistry())

	code, body, _ := get(t, mux, http.MethodGet, "/readyz")
	if got := decodeJSON(t, body); code != http.StatusServiceUnavailable || got["status"] != "not ready" || got["reason"] != "starting" {
		t.Fatalf("before anything: /readyz = %d %v", code, got)
	}

	h.SetNotReady("loading context table rdv.iris.context")
	code, body, _ = get(t, mux, http.MethodGet, "/readyz")
	if got := decodeJSON(t, body); code != http.StatusServiceUnavailable || got["reason"] != "loading context table rdv.iris.context" {
		t.Fatalf("not ready: /readyz = %d %v", code, got)
	}
	if h.Ready() {
		t.Fatal("Ready() after SetNotReady")
	}

	h.SetReady()
	code, body, _ = get(t, mux, http.MethodGet, "/readyz")
	if got := decodeJSON(t, body); code != http.StatusOK || got["status"] != "ready" || got["reason"] != "" {
		t.Fatalf("ready: /readyz = %d %v", code, got)
	}
	if !h.Ready() {
		t.Fatal("not Ready() after SetReady")
	}

	h.SetNotReady("partitions lost")
	code, body, _ = get(t, mux, http.MethodGet, "/readyz")
	if got := decodeJSON(t, body); code != http.StatusServiceUnavailable || got["reason"] != "partitions lost" {
		t.Fatalf("not ready again: /readyz = %d %v", code, got)
	}
}

func TestMuxMetrics(t *testing.T) {
	reg := stage.NewRegistry()
	m := stage.NewMetrics(reg, "log-connector")
	m.Records.WithLabelValues("rdv.iris.decisions", "ok").Add(3)
	m.Lag.WithLabelValues("rdv.iris.decisions", "1").Set(42)
	mux := stage.Mux(&stage.Health{}, reg)
	code, body, _ := get(t, mux, http.MethodGet, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`rdv_log_connector_records_total{outcome="ok",topic="rdv.iris.decisions"} 3`,
		`rdv_log_connector_consumer_lag_records{partition="1",topic="rdv.iris.decisions"} 42`,
		`# TYPE rdv_log_connector_handle_seconds histogram`,
		`go_goroutines `,             // the Go collector of NewRegistry
		`process_start_time_seconds`, // and the process collector
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _, _ := get(t, mux, http.MethodGet, "/nope"); code != http.StatusNotFound {
		t.Fatalf("/nope = %d", code)
	}
}

func TestNewMetricsNames(t *testing.T) {
	m, reg := newMetrics(t, "model.dt-v2")
	m.Produced.WithLabelValues("out").Inc()
	m.Errors.WithLabelValues("fetch").Inc()
	if got := metric(t, reg, "rdv_model_dt_v2_produced_total", "topic", "out"); got != 1 {
		t.Fatalf("produced = %v (dots and dashes become underscores)", got)
	}
	if got := metric(t, reg, "rdv_model_dt_v2_errors_total", "reason", "fetch"); got != 1 {
		t.Fatalf("errors = %v", got)
	}
}

// addrLog captures the address Serve logs it listens on.
type addrLog struct {
	slog.Handler
	addr chan string
}

func (h *addrLog) Handle(ctx context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "addr" {
			h.addr <- a.Value.String()
		}
		return true
	})
	return nil
}

func TestServe(t *testing.T) {
	al := &addrLog{Handler: slog.NewTextHandler(io.Discard, nil), addr: make(chan string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &stage.Health{}
	h.SetReady()
	done := make(chan error, 1)
	go func() { done <- stage.Serve(ctx, "127.0.0.1:0", stage.Mux(h, stage.NewRegistry()), slog.New(al)) }()

	var addr string
	select {
	case addr = <-al.addr:
	case err := <-done:
		t.Fatalf("Serve returned %v before listening", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not log its address")
	}
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("logged %s, not the port it picked", addr)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz over the wire = %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := client.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("still serving after Serve returned")
	}
}

func TestServeBadAddress(t *testing.T) {
	err := stage.Serve(context.Background(), "256.0.0.1:http", http.NotFoundHandler(), quietLog())
	if err == nil || !strings.Contains(err.Error(), "listen 256.0.0.1:http") {
		t.Fatalf("err = %v", err)
	}
}
