package drift

import (
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// gauges reads a gauge family from a registry by name, keyed by the value
// of one label.
func gauges(t *testing.T, reg *prometheus.Registry, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var key, objective string
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					key = lp.GetValue()
				}
				if lp.GetName() == "objective" {
					objective = lp.GetValue()
				}
			}
			if objective != "iris" {
				t.Errorf("%s{%s=%q} has objective %q", name, label, key, objective)
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

func testMonitor(t *testing.T, ref, window int, file string) (*Monitor, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Defaults()
	cfg.Objective, cfg.ReferenceSize, cfg.WindowSize, cfg.Registerer, cfg.ReferenceFile = "iris", ref, window, reg, file
	cfg.Log = slog.New(slog.DiscardHandler)
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func row(rng *rand.Rand, shiftB float64) map[string]float64 {
	return map[string]float64{
		"a": 5 + rng.NormFloat64(),
		"b": 3 + 0.4*rng.NormFloat64() + shiftB,
		"c": float64(rng.IntN(4)), // few distinct values: tied bins
	}
}

// One shifted feature pushes its own gauge over the threshold and leaves
// the others under it; the gauges carry exactly the names the alert rules
// use.
func TestMonitorFlagsTheShiftedFeature(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	m, reg := testMonitor(t, 1000, 500, "")
	for range 1000 {
		m.ObserveInput(row(rng, 0))
	}
	for range 499 {
		m.ObserveInput(row(rng, 0))
	}
	r := m.Refresh()
	if len(r.Features) != 0 || len(gauges(t, reg, "rdv_decoy_drift_psi", "feature")) != 0 {
		t.Fatalf("gauges before the live window is full: %v", r.Features)
	}
	if r.ReferenceRecords != 1000 || r.WindowRecords != 499 {
		t.Errorf("reference %d, window %d records, want 1000, 499", r.ReferenceRecords, r.WindowRecords)
	}
	m.ObserveInput(row(rng, 0))
	steady := m.Refresh().Features
	t.Logf("no shift: %v", steady)
	for f, psi := range steady {
		if psi >= 0.1 {
			t.Errorf("feature %s without a shift: PSI %v, want under 0.1", f, psi)
		}
	}
	for range 500 {
		m.ObserveInput(row(rng, 1.0)) // b moves by 2.5 standard deviations
	}
	m.Refresh()
	g := gauges(t, reg, "rdv_decoy_drift_psi", "feature")
	t.Logf("b shifted: %v", g)
	if len(g) != 3 {
		t.Fatalf("gauges for %d features, want 3: %v", len(g), g)
	}
	if g["b"] <= Threshold {
		t.Errorf("shifted feature b: PSI %v, want above %v", g["b"], Threshold)
	}
	for _, f := range []string{"a", "c"} {
		if g[f] >= Threshold {
			t.Errorf("unshifted feature %s: PSI %v, want under %v", f, g[f], Threshold)
		}
	}
	// The window slides: after a window of normal traffic the alarm clears.
	for range 500 {
		m.ObserveInput(row(rng, 0))
	}
	if psi := m.Refresh().Features["b"]; psi >= 0.1 {
		t.Errorf("b after a window of normal traffic: PSI %v, want back under 0.1", psi)
	}
	if n := gauges(t, reg, "rdv_decoy_drift_reference_records", "objective"); n["iris"] != 1000 {
		t.Errorf("reference records gauge %v, want 1000", n)
	}
}

func TestMonitorPredictionMix(t *testing.T) {
	m, reg := testMonitor(t, 300, 150, "")
	classes := []string{"setosa", "versicolor", "virginica"}
	for i := range 300 {
		m.ObservePrediction("canary", classes[i%3])
	}
	for i := range 150 {
		m.ObservePrediction("canary", classes[i%3])
		m.ObservePrediction("other", "setosa") // no reference yet: counts to it
	}
	m.Refresh()
	g := gauges(t, reg, "rdv_decoy_drift_prediction_psi", "model")
	if len(g) != 1 || g["canary"] > 1e-12 {
		t.Fatalf("same mix: %v, want canary at 0 and no gauge for a model without a full reference and window", g)
	}
	for range 150 {
		m.ObservePrediction("canary", "virginica")
	}
	m.Refresh()
	g = gauges(t, reg, "rdv_decoy_drift_prediction_psi", "model")
	t.Logf("all virginica: %v", g)
	if g["canary"] <= Threshold {
		t.Errorf("canary predicting only virginica: PSI %v, want above %v", g["canary"], Threshold)
	}
}

// A reference file makes the reference survive a restart: the second
// monitor compares its very first inputs against it.
func TestMonitorReferenceFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ref.json")
	rng := rand.New(rand.NewPCG(8, 8))
	first, _ := testMonitor(t, 200, 100, file)
	for range 200 {
		first.ObserveInput(row(rng, 0))
	}
	for range 200 {
		first.ObservePrediction("canary", "setosa")
	}
	var saved Reference
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reference not saved: %v", err)
	}
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	if saved.Objective != "iris" || saved.Records != 200 || len(saved.Features) != 3 || saved.Predictions["canary"]["setosa"] != 1 {
		t.Fatalf("saved reference: %+v", saved)
	}

	second, reg := testMonitor(t, 200, 100, file)
	for range 100 {
		second.ObserveInput(row(rng, 1.0))
		second.ObservePrediction("canary", "virginica")
	}
	r := second.Refresh()
	if r.Features["b"] <= Threshold || r.Predictions["canary"] <= Threshold {
		t.Errorf("after a restart with the saved reference: %+v, want b and canary above the threshold", r)
	}
	if g := gauges(t, reg, "rdv_decoy_drift_psi", "feature"); len(g) != 3 {
		t.Errorf("gauges %v", g)
	}

	// A reference of another objective, or a broken one, is refused with
	// the reason.
	for name, content := range map[string]string{
		"other objective": `{"objective":"fraud","features":{"a":{"edges":[1],"proportions":[0.5,0.5]}}}`,
		"bins mismatch":   `{"objective":"iris","features":{"a":{"edges":[1],"proportions":[1]}}}`,
		"not json":        `{`,
	} {
		bad := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(bad, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := Defaults()
		cfg.Objective, cfg.ReferenceFile, cfg.Log = "iris", bad, slog.New(slog.DiscardHandler)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: New = %v, want an error naming the file", name, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := Defaults()
	c.ReferenceSize, c.WindowSize, c.Bins, c.Interval, c.Role = 1, 2, 1, 0, ""
	err := c.Validate()
	for _, want := range []string{"drift reference", "drift window", "drift bins", "drift interval", "drift role"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %q", err, want)
		}
	}
	if err := Defaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
