package frontend

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
)

// benchServer is a frontend in direct mode (the champion in process): the
// predict handler's own work, the HTTP layer's included, without Kafka.
func benchServer(b *testing.B) http.Handler {
	b.Helper()
	m, err := evaluator.Load(filepath.Join("..", "models", "iris", "dt.json"))
	if err != nil {
		b.Fatal(err)
	}
	s := testServer(1 << 20)
	s.objectives["iris"] = &objective{name: "iris", features: benchFields(b)}
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "l", Buckets: stage.LatencyBuckets}, []string{"objective", "reason"})
	s.directCompute = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "c"})
	s.direct = m
	return s.Handler()
}

func benchFields(b *testing.B) []schemas.Field {
	b.Helper()
	set, err := schemas.For("iris")
	if err != nil {
		b.Fatal(err)
	}
	fields, err := set.Features()
	if err != nil {
		b.Fatal(err)
	}
	return fields
}

// BenchmarkPredictDirect is one whole predict call through the handler.
func BenchmarkPredictDirect(b *testing.B) {
	h := benchServer(b)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/predict", strings.NewReader(irisBody)))
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkParseFeatures is the body's validation against the schema.
func BenchmarkParseFeatures(b *testing.B) {
	fields := benchFields(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := parseFeatures(strings.NewReader(irisBody), fields, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteResponse is the answer's JSON.
func BenchmarkWriteResponse(b *testing.B) {
	s := testServer(1)
	rec := map[string]any{
		"model": "dt", "version": "1", "reason": "champion", "policy": "priority",
		"result":        map[string]any{"string": "setosa"},
		"probabilities": map[string]any{"setosa": 1.0, "versicolor": 0.0, "virginica": 0.0},
	}
	features := map[string]any{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2}
	start := time.Now()
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		w.Body.Reset()
		writeResponse(w, s.response("27a927cc-2b82-4119-a0f7-519483654517", "iris", features, rec, start))
	}
}
