package stage_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

// Every stage serves the Go profiler on its health address.
func TestMuxServesProfiler(t *testing.T) {
	mux := stage.Mux(&stage.Health{}, stage.NewRegistry())
	code, body, _ := get(t, mux, http.MethodGet, "/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/ = %d %.80q", code, body)
	}
	if code, _, _ := get(t, mux, http.MethodGet, "/debug/pprof/goroutine?debug=1"); code != http.StatusOK {
		t.Fatalf("/debug/pprof/goroutine = %d", code)
	}
}
