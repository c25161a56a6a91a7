package stage

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the counters every stage exports, named
// rdv_<stage>_<what>_{total,seconds}.
type Metrics struct {
	Records  *prometheus.CounterVec // by topic and outcome (ok, dead_letter, retried)
	Errors   *prometheus.CounterVec // by reason
	Handle   prometheus.Histogram   // seconds per record in the handler
	Lag      *prometheus.GaugeVec   // by topic and partition
	Produced *prometheus.CounterVec // by topic
}

// LatencyBuckets spans 50µs to 2.5s, the range a hop and an SLA live in.
var LatencyBuckets = prometheus.ExponentialBuckets(0.00005, 2, 16)

// NewMetrics registers a stage's metrics on reg.
func NewMetrics(reg prometheus.Registerer, stage string) *Metrics {
	ns := "rdv_" + metricName(stage)
	m := &Metrics{
		Records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "_records_total", Help: "Records handled, by source topic and outcome.",
		}, []string{"topic", "outcome"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "_errors_total", Help: "Errors, by reason.",
		}, []string{"reason"}),
		Handle: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: ns + "_handle_seconds", Help: "Time spent handling one record.", Buckets: LatencyBuckets,
		}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ns + "_consumer_lag_records", Help: "Records between the group's committed offset and the end of the partition.",
		}, []string{"topic", "partition"}),
		Produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "_produced_total", Help: "Records produced, by topic.",
		}, []string{"topic"}),
	}
	reg.MustRegister(m.Records, m.Errors, m.Handle, m.Lag, m.Produced)
	return m
}

func metricName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '-' || c == '.' {
			b[i] = '_'
		}
	}
	return string(b)
}
