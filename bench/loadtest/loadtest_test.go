package loadtest

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 1000; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{50: 500 * time.Millisecond, 99: 990 * time.Millisecond, 99.9: 999 * time.Millisecond, 100: time.Second} {
		if got := Percentile(d, q); got != want {
			t.Errorf("p%v = %v, want %v", q, got, want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

// The generator keeps its schedule, counts answers by reason and failures
// by status, and measures from the due time.
func TestGeneratorOpenLoop(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		i := n.Add(1)
		if i%10 == 0 {
			http.Error(w, `{"error":"x"}`, http.StatusServiceUnavailable)
			return
		}
		if i == 5 {
			time.Sleep(50 * time.Millisecond) // a stall: it must not slow the others
		}
		_, _ = io.WriteString(w, `{"messageId":"m`+time.Now().String()+`","reason":"champion"}`)
	}))
	defer srv.Close()
	g := NewGenerator(100)
	defer g.Close()
	s := g.Run(context.Background(), Target{URL: srv.URL, Bodies: [][]byte{[]byte(`{}`)}}, 200, time.Second)
	if s.Planned != 200 || s.Sent != 200 {
		t.Fatalf("planned %d sent %d, want 200", s.Planned, s.Sent)
	}
	if s.Answered() != 180 || s.Failures["503"] != 20 || s.Reasons["champion"] != 180 {
		t.Fatalf("answered %d, failures %v, reasons %v", s.Answered(), s.Failures, s.Reasons)
	}
	if max := Percentile(s.Latencies, 100); max < 50*time.Millisecond {
		t.Fatalf("the stalled call took %v from its due time, want at least 50ms", max)
	}
	if len(s.IDs) != 180 {
		t.Fatalf("%d ids", len(s.IDs))
	}
}

func TestProcReadsItself(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	pid := os.Getpid()
	c, err := cpuTime(pid)
	if err != nil || c < 0 {
		t.Fatalf("cpu %v, %v", c, err)
	}
	rss, err := peakRSS(pid)
	if err != nil || rss <= 0 {
		t.Fatalf("peak rss %v, %v", rss, err)
	}
}

func TestPidFiles(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "frontend.pid"), []byte("12\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "model-dt.pid"), []byte("34\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "frontend.addr"), []byte("x\n"), 0o644)
	ps, err := pidFiles(dir)
	if err != nil || len(ps) != 2 || ps[0] != (Proc{"frontend", 12}) || ps[1] != (Proc{"model-dt", 34}) {
		t.Fatalf("%v, %v", ps, err)
	}
}

func TestStepVerdict(t *testing.T) {
	s := &Sample{Rate: 100, Sent: 100, Reasons: map[string]int{"champion": 99, "fallback": 1}, Window: time.Second}
	for i := 0; i < 100; i++ {
		s.Latencies = append(s.Latencies, time.Millisecond)
	}
	r := newStep("rendezvous", s, time.Second, nil)
	r.DecisionsMissing = 2
	r.finish()
	if r.Pass || r.Lost != 2 || !strings.Contains(r.Why, "1 fallback") || !strings.Contains(r.Why, "2 lost") {
		t.Fatalf("pass %v lost %d why %q", r.Pass, r.Lost, r.Why)
	}
}

func TestReportFiles(t *testing.T) {
	rep := &Report{Machine: Machine{CPUs: 2}, Broker: "embedded", Steps: []Step{
		{Mode: "rendezvous", TargetRPS: 2000, AchievedRPS: 1990, DurationS: 60, Answered: 119400, P50Ms: 3, P99Ms: 20, P999Ms: 40, Pass: true,
			AnswersByReason: map[string]int{"champion": 119400}, CPUTotalS: 90},
		{Mode: "rendezvous", TargetRPS: 5000, AchievedRPS: 4000, DurationS: 15, Answered: 60000, P50Ms: 80, P99Ms: 300, P999Ms: 400,
			AnswersByReason: map[string]int{"champion": 50000, "default": 10000}, CPUTotalS: 30},
		{Mode: "direct", TargetRPS: 2000, AchievedRPS: 2000, DurationS: 10, Answered: 20000, P50Ms: 0.3, P99Ms: 1, P999Ms: 2, Pass: true,
			AnswersByReason: map[string]int{"champion": 20000}, CPUTotalS: 4},
	}}
	rep.summarize()
	if rep.Summary.SaturationRPS != 1990 || len(rep.Summary.Ratios) != 1 || rep.Summary.Ratios[0].P50Ratio != 10 {
		t.Fatalf("summary %+v", rep.Summary)
	}
	if !rep.Summary.Targets[0].Met || rep.Summary.Targets[1].Met {
		t.Fatalf("targets %+v", rep.Summary.Targets)
	}
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "latest.json"))
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Steps) != 3 || back.Steps[0].P999Ms != 40 {
		t.Fatalf("latest.json: %v", err)
	}
	svg, _ := os.ReadFile(filepath.Join(dir, "latest.svg"))
	dec := xml.NewDecoder(strings.NewReader(string(svg)))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("latest.svg is not well-formed XML: %v", err)
		}
	}
	var out strings.Builder
	rep.Print(&out, dir)
	if !strings.Contains(out.String(), "MET     2000 req/s") || !strings.Contains(out.String(), "NOT MET saturation") {
		t.Fatalf("summary:\n%s", out.String())
	}
}

func TestIrisBodies(t *testing.T) {
	bodies, err := irisBodies(filepath.Join("..", "..", "models", "iris.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 150 {
		t.Fatalf("%d bodies", len(bodies))
	}
	var m map[string]float64
	if err := json.Unmarshal(bodies[0], &m); err != nil || len(m) != 4 || m["sepalLength"] == 0 {
		t.Fatalf("%s: %v", bodies[0], err)
	}
}
