package drift_test

import (
	"fmt"
	"log"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-ml/rendezvous/stages/drift"
)

func ExampleFeaturePSI() {
	var ref, same, shifted []float64
	for i := range 1000 {
		v := float64(i%100) / 10 // 0.0 ... 9.9, evenly
		ref = append(ref, v)
		same = append(same, v)
		shifted = append(shifted, v+3)
	}
	fmt.Printf("same:    %.3f\n", drift.FeaturePSI(ref, same, drift.DefaultBins))
	fmt.Printf("shifted: %.3f drifted=%v\n", drift.FeaturePSI(ref, shifted, drift.DefaultBins), drift.FeaturePSI(ref, shifted, drift.DefaultBins) > drift.Threshold)
	// Output:
	// same:    0.000
	// shifted: 2.486 drifted=true
}

// A host (the decoy) feeds the monitor the inputs it reads; Refresh, which
// Run calls every Interval, sets the gauges on the injected registerer.
func ExampleMonitor() {
	reg := prometheus.NewRegistry()
	cfg := drift.Defaults()
	cfg.Objective, cfg.ReferenceSize, cfg.WindowSize = "iris", 100, 100
	cfg.Registerer, cfg.Log = reg, slog.New(slog.DiscardHandler)
	m, err := drift.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	for i := range 100 { // the reference: the first 100 inputs
		m.ObserveInput(map[string]float64{"petalLength": 1 + float64(i%50)/10, "sepalWidth": 3 + float64(i%7)/10})
	}
	for i := range 100 { // live traffic: petal length has moved up
		m.ObserveInput(map[string]float64{"petalLength": 4 + float64(i%50)/10, "sepalWidth": 3 + float64(i%7)/10})
	}
	r := m.Refresh()
	for _, f := range []string{"petalLength", "sepalWidth"} {
		fmt.Printf("%s PSI %.2f drifted=%v\n", f, r.Features[f], r.Features[f] > drift.Threshold)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "rdv_decoy_drift_psi" {
			fmt.Println(mf.GetName(), "series:", len(mf.GetMetric()))
		}
	}
	// Output:
	// petalLength PSI 5.31 drifted=true
	// sepalWidth PSI 0.00 drifted=false
	// rdv_decoy_drift_psi series: 2
}
