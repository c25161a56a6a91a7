//go:build unix

package esfake_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake"
)

// The templates and documents below are what connectors/elastic sends for
// the iris objective (ScoreTemplate, DecoyTemplate, DecisionDoc, DecoyDoc),
// copied rather than imported so that this package's tests do not depend on
// the connector.
const (
	benchScoreTemplate = `{"_meta":{"managed_by":"rendezvous es-connector"},"index_patterns":["score-log-*"],"priority":200,"template":{"mappings":{"dynamic":true,"properties":{"@timestamp":{"type":"date"},"closed_at":{"type":"date"},"decided_at":{"type":"date"},"failed_count":{"type":"integer"},"failed_models":{"type":"keyword"},"features":{"properties":{"petalLength":{"type":"double"},"petalWidth":{"type":"double"},"sepalLength":{"type":"double"},"sepalWidth":{"type":"double"}}},"key":{"type":"keyword"},"late_count":{"type":"integer"},"late_models":{"type":"keyword"},"latency_ms":{"type":"float"},"missing":{"type":"keyword"},"missing_count":{"type":"integer"},"model":{"type":"keyword"},"objective":{"type":"keyword"},"policy":{"type":"keyword"},"reason":{"type":"keyword"},"request_id":{"type":"keyword"},"result":{"type":"keyword"},"scores":{"properties":{"arrived_ms":{"type":"float"},"compute_ms":{"type":"float"},"duplicates":{"type":"integer"},"error":{"type":"keyword"},"failed":{"type":"boolean"},"late":{"type":"boolean"},"model":{"type":"keyword"},"result":{"type":"keyword"},"role":{"type":"keyword"},"version":{"type":"keyword"}},"type":"nested"},"scores_count":{"type":"integer"},"sla_ms":{"type":"float"},"version":{"type":"keyword"}}},"settings":{"index.number_of_shards":1}}}`
	benchDecoyTemplate = `{"_meta":{"managed_by":"rendezvous es-connector"},"index_patterns":["decoy-log-*"],"priority":200,"template":{"mappings":{"dynamic":true,"dynamic_templates":[{"context_as_keyword":{"mapping":{"type":"keyword"},"path_match":"context.*"}}],"properties":{"@timestamp":{"type":"date"},"context":{"dynamic":true,"type":"object"},"day_of_week":{"type":"integer"},"enriched_at":{"type":"date"},"features":{"properties":{"petalLength":{"type":"double"},"petalWidth":{"type":"double"},"sepalLength":{"type":"double"},"sepalWidth":{"type":"double"}}},"hour_of_day":{"type":"integer"},"key":{"type":"keyword"},"objective":{"type":"keyword"},"request_id":{"type":"keyword"},"sla_ms":{"type":"float"}}},"settings":{"index.number_of_shards":1}}}`
)

const benchDocsPerBulk = 500

// bulkBodies writes the _bulk bodies the connector sends: for each call one
// decision in score-log-<day> and its input in decoy-log-<day>, "index"
// actions with ids <topic>-<partition>-<offset>, values varying per call.
// It appends into one reused buffer so that its own allocations do not
// count in the figures.
type bulkBodies struct {
	offset int64
	buf    []byte
}

func (g *bulkBodies) next() []byte {
	b := g.buf[:0]
	str := func(s string) { b = append(b, s...) }
	num := func(n int64) { b = strconv.AppendInt(b, n, 10) }
	flt := func(f float64) { b = strconv.AppendFloat(b, f, 'f', -1, 64) }
	ts := func(t time.Time) { b = append(b, '"'); b = t.AppendFormat(b, time.RFC3339Nano); b = append(b, '"') }
	for i := 0; i < benchDocsPerBulk/2; i++ {
		g.offset++
		n := g.offset
		received := time.Date(2026, 11, 22, 3, 16, 22, 0, time.UTC).Add(time.Duration(n) * 497 * time.Microsecond)
		v := float64(n%17) / 10
		reqID := func() { str(`"27a927cc-2b82-4119-a0f7-`); b = strconv.AppendInt(b, 1e11+n, 16); str(`"`) }
		features := func() {
			str(`{"petalLength":`)
			flt(3.5 + v)
			str(`,"petalWidth":`)
			flt(0.5 + v)
			str(`,"sepalLength":`)
			flt(1.5 + v)
			str(`,"sepalWidth":`)
			flt(2.5 + v)
			str(`}`)
		}

		str(`{"index":{"_index":"score-log-2026.11.22","_id":"rdv.iris.decisions-`)
		num(n % 3)
		str(`-`)
		num(n)
		str("\"}}\n{\"@timestamp\":")
		ts(received)
		str(`,"closed_at":`)
		ts(received.Add(1100 * time.Millisecond))
		str(`,"decided_at":`)
		ts(received.Add(12500 * time.Microsecond))
		str(`,"failed_count":1,"failed_models":["canary"],"features":`)
		features()
		str(`,"key":"tenant-`)
		num(n % 50)
		str(`","late_count":1,"late_models":["challenger"],"latency_ms":`)
		flt(12.5 + v)
		str(`,"missing":["ghost"],"missing_count":1,"model":"dt","objective":"iris","policy":"priority","reason":"champion","request_id":`)
		reqID()
		str(`,"result":"setosa","scores":[` +
			`{"arrived_ms":12.4,"compute_ms":0.25,"duplicates":0,"error":null,"failed":false,"late":false,"model":"dt","result":"setosa","role":"champion","version":"1"},` +
			`{"arrived_ms":13,"compute_ms":0.9,"duplicates":1,"error":"model error","failed":true,"late":false,"model":"canary","result":null,"role":"canary","version":"2"},` +
			`{"arrived_ms":130,"compute_ms":80,"duplicates":0,"error":null,"failed":false,"late":true,"model":"challenger","result":"versicolor","role":"shadow","version":"1"}],` +
			`"scores_count":3,"sla_ms":100,"version":"1"}` + "\n")

		str(`{"index":{"_index":"decoy-log-2026.11.22","_id":"rdv.iris.decoy-`)
		num(n % 3)
		str(`-`)
		num(n)
		str("\"}}\n{\"@timestamp\":")
		ts(received)
		str(`,"context":{"region":"local","segment":"default"},"day_of_week":0,"enriched_at":`)
		ts(received.Add(300 * time.Microsecond))
		str(`,"features":`)
		features()
		str(`,"hour_of_day":3,"key":"tenant-`)
		num(n % 50)
		str(`","objective":"iris","request_id":`)
		reqID()
		str(`,"sla_ms":100}` + "\n")
	}
	g.buf = b
	return b
}

func benchServer(b *testing.B) http.Handler {
	s := esfake.New()
	b.Cleanup(s.Close)
	h := s.Handler()
	for name, body := range map[string]string{"score-log": benchScoreTemplate, "decoy-log": benchDecoyTemplate} {
		req := httptest.NewRequest("PUT", "/_index_template/"+name, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("template %s: %d %s", name, rec.Code, rec.Body)
		}
	}
	return h
}

// BenchmarkBulk posts connector-shaped _bulk bodies of 500 new documents to
// the handler (no network, so the figures are esfake's own). Besides the
// per-request figures it reports per document: the handler's time
// (ns/doc), the CPU time of the whole process but the body generator,
// garbage collection on other threads included (cpu-ns/doc), bytes and
// allocations, and the heap still held per stored document at the end.
func BenchmarkBulk(b *testing.B) {
	h := benchServer(b)
	var gen bulkBodies
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cpu0 := processCPU()
	b.ResetTimer()
	var elapsed, generating time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		body := gen.next()
		req := httptest.NewRequest("POST", "/_bulk", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-ndjson")
		rec := httptest.NewRecorder()
		t1 := time.Now()
		h.ServeHTTP(rec, req)
		elapsed += time.Since(t1)
		generating += t1.Sub(t0)
		if rec.Code != http.StatusOK || bytes.Contains(rec.Body.Bytes()[:64], []byte(`"errors":true`)) {
			b.Fatalf("bulk: %d %.300s", rec.Code, rec.Body)
		}
	}
	b.StopTimer()
	cpu := processCPU() - cpu0 - generating
	runtime.ReadMemStats(&after)
	docs := float64(b.N * benchDocsPerBulk)
	b.ReportMetric(float64(elapsed.Nanoseconds())/docs, "ns/doc")
	b.ReportMetric(float64(cpu.Nanoseconds())/docs, "cpu-ns/doc")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/docs, "B/doc")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/docs, "allocs/doc")
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/docs, "heap-B/doc")
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
