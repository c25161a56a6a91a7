package stage_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

// Every stage serves the Go profiler on its health address, to loopback
// clients only.
func TestMuxServesProfiler(t *testing.T) {
	mux := stage.Mux(&stage.Health{}, stage.NewRegistry())
	from := func(remote, path string) (int, string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = remote
		mux.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	code, body := from("127.0.0.1:5000", "/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/ = %d %.80q", code, body)
	}
	if code, _ := from("[::1]:5000", "/debug/pprof/goroutine?debug=1"); code != http.StatusOK {
		t.Fatalf("/debug/pprof/goroutine from ::1 = %d", code)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
		if code, body := from("10.1.2.3:5000", path); code != http.StatusForbidden || !strings.Contains(body, "loopback") {
			t.Fatalf("%s from 10.1.2.3 = %d %q, want 403 naming loopback", path, code, body)
		}
	}
	// Health and metrics stay open to scrapers.
	if code, _ := from("10.1.2.3:5000", "/metrics"); code != http.StatusOK {
		t.Fatalf("/metrics from 10.1.2.3 = %d", code)
	}
}
