// Package drift watches the model inputs and a model's predictions for a
// change of distribution. It keeps a reference window (the first records it
// sees, or a reference saved to a file) and a live sliding window of the
// latest records, and exports the population stability index (PSI) of
// every numeric feature and of the watched model's predicted classes as
// Prometheus gauges:
//
//	rdv_decoy_drift_psi{objective,feature}
//	rdv_decoy_drift_prediction_psi{objective,model}
//
// Each feature is cut into fixed bins at the reference's quantiles, and
// proportions are floored at Epsilon (see psi.go). Above Threshold (0.25) a
// distribution has drifted.
//
// The monitor runs inside the decoy, which already decodes every input: the
// decoy hands each committed input to ObserveInput, and Run reads the
// scores topic in a consumer group of its own for the predictions. With
// Config.ReadInputs set, Run reads the inputs itself and the monitor runs
// anywhere.
package drift

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// Config is the drift monitor's configuration.
type Config struct {
	// Objective labels the gauges; Run takes it from Env when empty.
	Objective string
	// ReferenceSize is how many records (inputs, and each model's
	// predictions) make the reference window: the first ones seen.
	ReferenceSize int
	// WindowSize is how many of the latest records make the live window.
	// A gauge appears once its live window is full.
	WindowSize int
	// Bins is how many quantile bins a feature is cut into.
	Bins int
	// Interval is how often the gauges are recomputed.
	Interval time.Duration
	// ReferenceFile, when set, holds the reference: loaded at start when
	// it exists, else written once the first ReferenceSize records are in,
	// so a restarted monitor keeps comparing against the same reference.
	ReferenceFile string
	// Role is the role whose scores make the prediction mix (canary).
	Role string
	// Group is the consumer group on the scores; empty means
	// rdv.<objective>.drift.
	Group string
	// ReadInputs makes Run read the inputs topic too, for a monitor that
	// is not fed by a host such as the decoy.
	ReadInputs bool

	// Env gives Run its Kafka connection, serde, schemas and logger.
	Env *stage.Env
	// Registerer receives the gauges; nil means Env.Reg, or none.
	Registerer prometheus.Registerer
	// Log defaults to Env.Log, else slog.Default.
	Log *slog.Logger
}

// Defaults returns the monitor defaults.
func Defaults() Config {
	return Config{ReferenceSize: 1000, WindowSize: 1000, Bins: DefaultBins, Interval: 5 * time.Second, Role: "canary"}
}

// Register adds the monitor's flags with the given prefix (e.g. "drift-"),
// defaults from RDV_DRIFT_* variables.
func (c *Config) Register(fs *flag.FlagSet, prefix string) {
	c.ReferenceSize = config.EnvInt("RDV_DRIFT_REFERENCE", c.ReferenceSize)
	c.WindowSize = config.EnvInt("RDV_DRIFT_WINDOW", c.WindowSize)
	c.Bins = config.EnvInt("RDV_DRIFT_BINS", c.Bins)
	c.Interval = config.EnvDuration("RDV_DRIFT_INTERVAL", c.Interval)
	c.ReferenceFile = config.Env("RDV_DRIFT_REFERENCE_FILE", c.ReferenceFile)
	c.Role = config.Env("RDV_DRIFT_ROLE", c.Role)
	fs.IntVar(&c.ReferenceSize, prefix+"reference", c.ReferenceSize, "drift: records in the reference window, the first ones read (env RDV_DRIFT_REFERENCE)")
	fs.IntVar(&c.WindowSize, prefix+"window", c.WindowSize, "drift: records in the live sliding window (env RDV_DRIFT_WINDOW)")
	fs.IntVar(&c.Bins, prefix+"bins", c.Bins, "drift: quantile bins per feature (env RDV_DRIFT_BINS)")
	fs.DurationVar(&c.Interval, prefix+"interval", c.Interval, "drift: how often the PSI gauges are recomputed (env RDV_DRIFT_INTERVAL)")
	fs.StringVar(&c.ReferenceFile, prefix+"reference-file", c.ReferenceFile, "drift: load the reference from this file, or save it there once built (env RDV_DRIFT_REFERENCE_FILE)")
	fs.StringVar(&c.Role, prefix+"role", c.Role, "drift: role whose predictions are watched (env RDV_DRIFT_ROLE)")
}

// Validate names the bad field.
func (c Config) Validate() error {
	var errs []error
	if c.ReferenceSize < 10 {
		errs = append(errs, fmt.Errorf("drift reference: %d records is too few for quantile bins (at least 10)", c.ReferenceSize))
	}
	if c.WindowSize < 10 {
		errs = append(errs, fmt.Errorf("drift window: %d records is too few (at least 10)", c.WindowSize))
	}
	if c.Bins < 2 || c.Bins > 100 {
		errs = append(errs, fmt.Errorf("drift bins: %d is not between 2 and 100", c.Bins))
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("drift interval: %v must be positive", c.Interval))
	}
	if c.Role == "" {
		errs = append(errs, errors.New("drift role: required (the role whose predictions are watched, e.g. canary)"))
	}
	return errors.Join(errs...)
}

// Monitor holds the windows and the gauges. Safe for concurrent use.
type Monitor struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// Inputs: the reference sample until it is full, then its bins.
	refSample map[string][]float64
	refN      int
	features  []string // sorted; fixed when the reference is complete
	refBins   map[string]Bins
	refProps  map[string][]float64
	window    ring[[]float64] // values in features order, NaN when absent
	// Predictions, per model.
	preds map[string]*predWindow

	psi, predPSI          *prometheus.GaugeVec
	refGauge, windowGauge *prometheus.GaugeVec
	errs                  *prometheus.CounterVec
}

type predWindow struct {
	refCounts map[string]int
	refN      int
	loaded    bool // reference from the file
	live      ring[string]
}

// ring is a fixed-size sliding window.
type ring[T any] struct {
	buf  []T
	next int
	full bool
}

func (r *ring[T]) push(v T) {
	r.buf[r.next] = v
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

func (r *ring[T]) len() int {
	if r.full {
		return len(r.buf)
	}
	return r.next
}

func (r *ring[T]) each(fn func(T)) {
	for i := range r.len() {
		fn(r.buf[i])
	}
}

// Reference is the saved form of a reference window.
type Reference struct {
	Objective string    `json:"objective"`
	Created   time.Time `json:"created"`
	Records   int       `json:"records"`
	// Features holds each feature's bins and reference proportions.
	Features map[string]FeatureReference `json:"features"`
	// Predictions holds each model's class proportions.
	Predictions map[string]map[string]float64 `json:"predictions,omitempty"`
}

// FeatureReference is one feature's reference distribution.
type FeatureReference struct {
	Bins
	Proportions []float64 `json:"proportions"`
}

// New builds a monitor and registers its gauges.
func New(cfg Config) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("drift config: %w", err)
	}
	if cfg.Objective == "" && cfg.Env != nil {
		cfg.Objective = cfg.Env.Cfg.Objective
	}
	if cfg.Registerer == nil && cfg.Env != nil {
		cfg.Registerer = cfg.Env.Reg
	}
	log := cfg.Log
	if log == nil && cfg.Env != nil {
		log = cfg.Env.Log
	}
	if log == nil {
		log = slog.Default()
	}
	m := &Monitor{
		cfg:       cfg,
		log:       log.With("component", "drift"),
		refSample: map[string][]float64{},
		preds:     map[string]*predWindow{},
		psi: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rdv_decoy_drift_psi",
			Help: "Population stability index of a model input feature, live window against the reference (above 0.25: drifted).",
		}, []string{"objective", "feature"}),
		predPSI: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rdv_decoy_drift_prediction_psi",
			Help: "Population stability index of a model's predicted classes, live window against the reference (above 0.25: drifted).",
		}, []string{"objective", "model"}),
		refGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rdv_decoy_drift_reference_records",
			Help: "Inputs in the drift reference window (complete at the configured size).",
		}, []string{"objective"}),
		windowGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rdv_decoy_drift_window_records",
			Help: "Inputs in the live drift window.",
		}, []string{"objective"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_decoy_drift_errors_total",
			Help: "Drift monitor errors, by reason.",
		}, []string{"reason"}),
	}
	m.window = ring[[]float64]{buf: make([][]float64, cfg.WindowSize)}
	// A bad reference file fails before anything is registered, so the
	// caller can fix it and build a monitor on the same registerer.
	if cfg.ReferenceFile != "" {
		if err := m.load(cfg.ReferenceFile); err != nil {
			return nil, err
		}
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{m.psi, m.predPSI, m.refGauge, m.windowGauge, m.errs} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("drift metrics: %w", err)
			}
		}
	}
	m.refGauge.WithLabelValues(cfg.Objective).Set(0)
	m.windowGauge.WithLabelValues(cfg.Objective).Set(0)
	return m, nil
}

// ObserveInput adds one input's features: to the reference until it is
// complete, then to the live window.
func (m *Monitor) ObserveInput(features map[string]float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refBins == nil {
		for f, v := range features {
			if finite(v) {
				m.refSample[f] = append(m.refSample[f], v)
			}
		}
		m.refN++
		if m.refN >= m.cfg.ReferenceSize {
			m.freezeReference()
		}
		return
	}
	row := make([]float64, len(m.features))
	for i, f := range m.features {
		v, ok := features[f]
		if !ok || !finite(v) {
			v = math.NaN()
		}
		row[i] = v
	}
	m.window.push(row)
}

// freezeReference cuts the bins once the reference is complete; the caller
// holds mu.
func (m *Monitor) freezeReference() {
	m.refBins = map[string]Bins{}
	m.refProps = map[string][]float64{}
	m.features = m.features[:0]
	for f, sample := range m.refSample {
		b := QuantileBins(sample, m.cfg.Bins)
		m.refBins[f] = b
		m.refProps[f] = Proportions(b.Counts(sample))
		m.features = append(m.features, f)
	}
	sort.Strings(m.features)
	m.refSample = nil
	m.log.Info("drift reference complete", "records", m.refN, "features", m.features)
	m.saveLocked()
}

// ObservePrediction adds one prediction of a model (its class, or "error"
// for a failed score).
func (m *Monitor) ObservePrediction(model, class string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.preds[model]
	if w == nil {
		w = &predWindow{refCounts: map[string]int{}, live: ring[string]{buf: make([]string, m.cfg.WindowSize)}}
		m.preds[model] = w
	}
	if w.refN < m.cfg.ReferenceSize && !w.loaded {
		w.refCounts[class]++
		w.refN++
		if w.refN == m.cfg.ReferenceSize {
			m.log.Info("drift prediction reference complete", "model", model, "records", w.refN)
			m.saveLocked()
		}
		return
	}
	w.live.push(class)
}

// Report is one computation of the indices. A feature or model is in it
// once its reference is complete and its live window full.
type Report struct {
	ReferenceRecords int
	WindowRecords    int
	Features         map[string]float64
	Predictions      map[string]float64
}

// Refresh recomputes the indices and sets the gauges.
func (m *Monitor) Refresh() Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := Report{ReferenceRecords: min(m.refN, m.cfg.ReferenceSize), WindowRecords: m.window.len(), Features: map[string]float64{}, Predictions: map[string]float64{}}
	if m.refBins != nil && m.window.full {
		for i, f := range m.features {
			b := m.refBins[f]
			counts := make([]int, b.Len())
			m.window.each(func(row []float64) {
				if !math.IsNaN(row[i]) {
					counts[b.Index(row[i])]++
				}
			})
			psi := PSI(m.refProps[f], Proportions(counts))
			r.Features[f] = psi
			m.psi.WithLabelValues(m.cfg.Objective, f).Set(psi)
		}
	}
	for model, w := range m.preds {
		if !w.live.full {
			continue
		}
		cur := map[string]int{}
		w.live.each(func(c string) { cur[c]++ })
		psi := CategoricalPSI(w.refCounts, cur)
		r.Predictions[model] = psi
		m.predPSI.WithLabelValues(m.cfg.Objective, model).Set(psi)
	}
	m.refGauge.WithLabelValues(m.cfg.Objective).Set(float64(r.ReferenceRecords))
	m.windowGauge.WithLabelValues(m.cfg.Objective).Set(float64(r.WindowRecords))
	return r
}

// Reference returns the reference as it would be saved, once the inputs'
// reference is complete.
func (m *Monitor) Reference() (Reference, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.referenceLocked()
}

func (m *Monitor) referenceLocked() (Reference, bool) {
	if m.refBins == nil {
		return Reference{}, false
	}
	ref := Reference{Objective: m.cfg.Objective, Created: time.Now().UTC(), Records: m.refN, Features: map[string]FeatureReference{}}
	for f, b := range m.refBins {
		ref.Features[f] = FeatureReference{Bins: b, Proportions: m.refProps[f]}
	}
	for model, w := range m.preds {
		if w.refN < m.cfg.ReferenceSize {
			continue
		}
		if ref.Predictions == nil {
			ref.Predictions = map[string]map[string]float64{}
		}
		props := map[string]float64{}
		for c, n := range w.refCounts {
			props[c] = float64(n) / float64(w.refN)
		}
		ref.Predictions[model] = props
	}
	return ref, true
}

// saveLocked writes the reference file, when one is configured, each time
// a part of the reference completes; the caller holds mu. A failed write
// is logged and counted: the monitor keeps working from memory.
func (m *Monitor) saveLocked() {
	if m.cfg.ReferenceFile == "" {
		return
	}
	ref, ok := m.referenceLocked()
	if !ok {
		return
	}
	if err := writeReference(m.cfg.ReferenceFile, ref); err != nil {
		m.errs.WithLabelValues("save_reference").Inc()
		m.log.Error("save drift reference", "file", m.cfg.ReferenceFile, "err", err)
		return
	}
	m.log.Info("drift reference saved", "file", m.cfg.ReferenceFile)
}

func writeReference(path string, ref Reference) error {
	b, err := json.MarshalIndent(ref, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// load reads a saved reference; a file that does not exist yet is not an
// error, since the monitor writes it once its reference is built.
func (m *Monitor) load(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		m.log.Info("no drift reference file yet: the first records will make it", "file", path, "records", m.cfg.ReferenceSize)
		return nil
	}
	if err != nil {
		return fmt.Errorf("drift reference file: %w", err)
	}
	var ref Reference
	if err := json.Unmarshal(b, &ref); err != nil {
		return fmt.Errorf("drift reference file %s: %w", path, err)
	}
	if ref.Objective != m.cfg.Objective {
		return fmt.Errorf("drift reference file %s is for objective %q, not %q", path, ref.Objective, m.cfg.Objective)
	}
	if len(ref.Features) == 0 {
		return fmt.Errorf("drift reference file %s has no features", path)
	}
	m.refBins = map[string]Bins{}
	m.refProps = map[string][]float64{}
	for f, fr := range ref.Features {
		if len(fr.Proportions) != fr.Len() || !sort.Float64sAreSorted(fr.Edges) {
			return fmt.Errorf("drift reference file %s: feature %q has %d proportions for %d bins, or unsorted edges", path, f, len(fr.Proportions), fr.Len())
		}
		m.refBins[f] = fr.Bins
		m.refProps[f] = fr.Proportions
		m.features = append(m.features, f)
	}
	sort.Strings(m.features)
	m.refSample = nil
	m.refN = m.cfg.ReferenceSize
	for model, props := range ref.Predictions {
		w := &predWindow{refCounts: map[string]int{}, loaded: true, live: ring[string]{buf: make([]string, m.cfg.WindowSize)}}
		// Proportions back to counts over a nominal total: PSI only uses
		// the proportions.
		for c, p := range props {
			w.refCounts[c] = int(math.Round(p * 1e6))
		}
		w.refN = m.cfg.ReferenceSize
		m.preds[model] = w
	}
	m.log.Info("drift reference loaded", "file", path, "created", ref.Created, "features", m.features, "models", len(ref.Predictions))
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Run reads the watched role's scores (and the inputs, with ReadInputs) in
// the monitor's own consumer group, from the end of the topics, and
// refreshes the gauges every Interval until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	env := m.cfg.Env
	if env == nil {
		return errors.New("drift: Run needs Config.Env (Kafka, serde and schemas)")
	}
	group := m.cfg.Group
	if group == "" {
		group = "rdv." + m.cfg.Objective + ".drift"
	}
	topics := []string{env.Topics.Scores}
	if m.cfg.ReadInputs {
		topics = append(topics, env.Topics.Inputs)
	}
	opts := append(env.GroupOpts(group),
		kgo.ConsumeTopics(topics...),
		// Drift is about what flows now, not about history.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	// A histogram of the last thousand scores does not need each score the
	// moment it is written: take them by the batch, off the answer's path.
	opts = append(opts, stage.LogPathOpts()...)
	cl, err := env.Client(opts...)
	if err != nil {
		return fmt.Errorf("drift: %w", err)
	}
	defer cl.Close()
	m.log.Info("drift monitor running", "group", group, "topics", topics, "role", m.cfg.Role,
		"reference", m.cfg.ReferenceSize, "window", m.cfg.WindowSize, "bins", m.cfg.Bins, "reference_file", m.cfg.ReferenceFile)

	tickCtx, stopTick := context.WithCancel(ctx)
	done := make(chan struct{})
	defer func() { stopTick(); <-done }()
	go func() {
		defer close(done)
		t := time.NewTicker(m.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-tickCtx.Done():
				return
			case <-t.C:
				m.Refresh()
			}
		}
	}()

	scoreReader, inputReader := env.Reader(schemas.Score), env.Reader(schemas.Input)
	for {
		fs := cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				m.errs.WithLabelValues("fetch").Inc()
				m.log.Warn("drift fetch", "topic", t, "partition", p, "err", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			reader := scoreReader
			if r.Topic != env.Topics.Scores {
				reader = inputReader
			}
			rec, err := env.Serde.Decode(ctx, r.Value, reader)
			if err != nil {
				// The stage that owns the topic dead-letters it; here it only
				// does not count.
				m.errs.WithLabelValues("decode").Inc()
				m.log.Warn("drift: undecodable record skipped", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			if r.Topic != env.Topics.Scores {
				m.ObserveInput(serde.Doubles(rec, "features"))
				return
			}
			if serde.Str(rec, "role") != m.cfg.Role {
				return
			}
			class, ok := serde.OptStr(rec, "result")
			if _, failed := serde.OptStr(rec, "error"); failed || !ok {
				class = "error"
			}
			m.ObservePrediction(serde.Str(rec, "model"), class)
		})
	}
}

// Run builds a monitor from cfg and runs it until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	m, err := New(cfg)
	if err != nil {
		return err
	}
	return m.Run(ctx)
}
