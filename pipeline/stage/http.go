package stage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health is what /readyz reports. A stage is ready once it can do its work:
// its consumer group has partitions, its tables are loaded.
type Health struct {
	ready  atomic.Bool
	reason atomic.Value // string: why not ready
}

// SetReady marks the stage ready.
func (h *Health) SetReady() { h.ready.Store(true) }

// SetNotReady marks the stage not ready, with a reason for /readyz.
func (h *Health) SetNotReady(reason string) { h.ready.Store(false); h.reason.Store(reason) }

// Ready reports readiness.
func (h *Health) Ready() bool { return h.ready.Load() }

// NewRegistry returns a fresh metrics registry with the Go and process
// collectors, for a stage binary (libraries get a Registerer injected).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Mux serves /healthz, /readyz, /metrics and the Go profiler under
// /debug/pprof/. The profiler costs nothing until asked, and it is how the
// hot path is tuned on the running pipeline (see the README's
// "Performance"). The health address is often open to a scraper (0.0.0.0 in
// a container), and a profile shows the process's command line and code,
// so the profiler answers loopback clients only: on a pod, reach it with
// kubectl port-forward.
func Mux(h *Health, g prometheus.Gatherer) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if h.Ready() {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
			return
		}
		reason, _ := h.reason.Load().(string)
		if reason == "" {
			reason = "starting"
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": reason})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.Handle("/debug/pprof/", loopbackOnly(pprof.Index))
	mux.Handle("/debug/pprof/cmdline", loopbackOnly(pprof.Cmdline))
	mux.Handle("/debug/pprof/profile", loopbackOnly(pprof.Profile))
	mux.Handle("/debug/pprof/symbol", loopbackOnly(pprof.Symbol))
	mux.Handle("/debug/pprof/trace", loopbackOnly(pprof.Trace))
	return mux
}

func loopbackOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			writeJSON(w, http.StatusForbidden, map[string]string{
				"error": "the profiler answers loopback clients only; from elsewhere use a port-forward to 127.0.0.1"})
			return
		}
		h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Serve runs an HTTP server on addr until ctx ends, then drains it for at
// most five seconds. It logs the address it really listens on, since a
// ":0" address picks a free port.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Info("http listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("drain http %s: %w", addr, err)
	}
	return nil
}
