package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rendezvous-ml/rendezvous/testcontainers/stack"
)

// driftGauges scrapes a /metrics page for one gauge family and returns its
// series keyed by the value of label (the objective must be iris).
func driftGauges(t *testing.T, addr, name, label string) (map[string]float64, error) {
	t.Helper()
	m, err := scrapeMetrics(addr)
	if err != nil {
		return nil, err
	}
	re := regexp.MustCompile(`(\w+)="([^"]*)"`)
	out := map[string]float64{}
	for series, v := range m {
		rest, ok := strings.CutPrefix(series, name+"{")
		if !ok {
			continue
		}
		labels := map[string]string{}
		for _, kv := range re.FindAllStringSubmatch(rest, -1) {
			labels[kv[1]] = kv[2]
		}
		if labels["objective"] != "iris" {
			t.Errorf("%s has objective %q, want iris", series, labels["objective"])
		}
		out[labels[label]] = v
	}
	return out, nil
}

// sendAll posts every body through the frontend with a few workers, and
// fails the test on anything but a 200.
func sendAll(t *testing.T, s *stack.Stack, bodies []string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	ids := map[string]int{}
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, len(bodies))
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				a, err := s.Predict("/predict", bodies[i])
				if err == nil && a.Status != http.StatusOK {
					err = fmt.Errorf("status %d: %s", a.Status, a.Error)
				}
				if err != nil {
					errs <- fmt.Errorf("call %d (%s): %w", i, bodies[i], err)
					continue
				}
				mu.Lock()
				ids[a.MessageID] = i
				mu.Unlock()
			}
		}()
	}
	for i := range bodies {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

func irisBody(x map[string]float64) string {
	return fmt.Sprintf(`{"sepalLength":%v,"sepalWidth":%v,"petalLength":%v,"petalWidth":%v}`,
		x["sepalLength"], x["sepalWidth"], x["petalLength"], x["petalWidth"])
}

// TestDriftMonitor runs the pipeline with the decoy's drift monitor on a
// reference of 300 inputs (the iris rows twice) and a live window of 150.
// It then sends the rows again with sepalWidth moved up by 1.5 cm, and
// waits for sepalWidth's PSI gauge, scraped from the decoy's /metrics, to
// pass 0.25 while the three other features, whose distribution did not
// change, stay under it.
func TestDriftMonitor(t *testing.T) {
	const reference, window = 300, 150
	t.Setenv("RDV_DRIFT_REFERENCE", fmt.Sprint(reference))
	t.Setenv("RDV_DRIFT_WINDOW", fmt.Sprint(window))
	t.Setenv("RDV_DRIFT_INTERVAL", "200ms")
	s := stack.Start(t, stack.Options{})
	addr := stageAddr(t, s, "decoy")
	rows := irisRows(t)

	var ref []string
	for range 2 {
		for _, r := range rows {
			ref = append(ref, r.body)
		}
	}
	sendAll(t, s, ref)

	// The shifted calls must not count into the reference: wait until the
	// monitor reports it complete.
	deadline := time.Now().Add(60 * time.Second)
	for {
		g, err := driftGauges(t, addr, "rdv_decoy_drift_reference_records", "objective")
		if err != nil {
			t.Fatal(err)
		}
		if g["iris"] == reference {
			break
		}
		if g["iris"] > reference || time.Now().After(deadline) {
			t.Fatalf("drift reference holds %v inputs, want %d", g["iris"], reference)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if g, _ := driftGauges(t, addr, "rdv_decoy_drift_psi", "feature"); len(g) != 0 {
		t.Errorf("PSI gauges before the live window filled: %v", g)
	}

	// Twice over: the live window holds shifted rows only either way, and
	// the canary's window fills even if the monitor's consumer of the
	// scores joined after the first few.
	var shifted []string
	for range 2 {
		for _, r := range rows {
			x := map[string]float64{}
			for k, v := range r.features {
				x[k] = v
			}
			x["sepalWidth"] += 1.5
			shifted = append(shifted, irisBody(x))
		}
	}
	sendAll(t, s, shifted)

	features := []string{"petalLength", "petalWidth", "sepalLength", "sepalWidth"}
	deadline = time.Now().Add(60 * time.Second)
	scrapes := 0
	var last map[string]float64
	for {
		g, err := driftGauges(t, addr, "rdv_decoy_drift_psi", "feature")
		if err != nil {
			t.Fatal(err)
		}
		scrapes++
		for _, f := range features {
			if v, ok := g[f]; ok && f != "sepalWidth" && v >= 0.25 {
				t.Fatalf("feature %s, not shifted, has PSI %v at scrape %d (all: %v)", f, v, scrapes, g)
			}
		}
		last = g
		if g["sepalWidth"] > 0.25 && len(g) == len(features) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s sepalWidth's PSI is %v (all gauges: %v), want above 0.25", g["sepalWidth"], g)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sort.Strings(features)
	var parts []string
	for _, f := range features {
		parts = append(parts, fmt.Sprintf("%s=%.4f", f, last[f]))
	}
	t.Logf("drift gauges after %d scrapes: %s", scrapes, strings.Join(parts, " "))

	// The canary's prediction mix has a gauge too (its reference is the
	// first canary scores the monitor's own consumer read). The monitor
	// takes the scores in batches (up to 250 ms apart), so the series may
	// come a little after the features'.
	for deadline := time.Now().Add(30 * time.Second); ; {
		p, err := driftGauges(t, addr, "rdv_decoy_drift_prediction_psi", "model")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p["canary"]; ok {
			t.Logf("prediction PSI: %v", p)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rdv_decoy_drift_prediction_psi series for the canary after 30 s: %v", p)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
