package archive

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

// Config is the log connector's configuration.
type Config struct {
	Common config.Common
	// Dir is the archive's root directory, used when Storage is nil.
	Dir string
	// Storage is where the archive lives (see blobstore.Open for URLs);
	// nil means the local directory Dir. Its opener closes it.
	Storage Store
	// Topics to archive; empty means every log topic of the objective.
	Topics []string
	// RotateBytes finishes a file once it reaches this size.
	RotateBytes int64
	// RotateInterval finishes a file this long after its first record.
	RotateInterval time.Duration
	// RetryDelay is how long the connector waits after a failed write
	// (disk full, store unreachable, registry down) before trying again.
	RetryDelay time.Duration
}

// Defaults returns the log connector defaults.
func Defaults() Config {
	return Config{Common: config.Defaults(), Dir: "var/archive", RotateBytes: 64 << 20, RotateInterval: 5 * time.Second, RetryDelay: 2 * time.Second}
}

// Validate names the bad field.
func (c Config) Validate() error {
	var errs []error
	if err := c.Common.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Dir == "" && c.Storage == nil {
		errs = append(errs, errors.New("dir: the archive directory is required"))
	}
	if c.RotateBytes < 1024 {
		errs = append(errs, fmt.Errorf("rotate-bytes: %d is under 1024", c.RotateBytes))
	}
	if c.RotateInterval <= 0 {
		errs = append(errs, fmt.Errorf("rotate-interval: %v must be positive", c.RotateInterval))
	}
	if c.RetryDelay < 0 {
		errs = append(errs, fmt.Errorf("retry-delay: %v is negative", c.RetryDelay))
	}
	return errors.Join(errs...)
}

type connMetrics struct {
	files   *prometheus.CounterVec
	bytes   prometheus.Counter
	records *prometheus.CounterVec
	paused  prometheus.Gauge
}

// Connector is a running log connector: a Kafka consumer of the log topics
// in front of an Archiver.
type Connector struct {
	cfg  Config
	env  *stage.Env
	st   Store
	cl   *kgo.Client
	arch *Archiver
	m    connMetrics

	// Dead-letter records produced since the last flush, and the first
	// error among them.
	dlqSent bool
	dlqMu   sync.Mutex
	dlqErr  error
}

var (
	// errRegistry marks a failure to reach the schema registry.
	errRegistry = errors.New("registry unreachable")
	// errDeadLetter marks a failure to produce to the dead-letter topic.
	errDeadLetter = errors.New("dead-letter")
)

// Run archives until ctx ends, then finishes the files in hand.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("log connector config: %w", err)
	}
	env, err := stage.NewEnv("log-connector", cfg.Common)
	if err != nil {
		return err
	}
	defer env.Registry.Close()
	return env.Run(ctx, func(ctx context.Context) error {
		c, err := New(ctx, cfg, env)
		if err != nil {
			return err
		}
		return c.Run(ctx)
	})
}

// New positions a connector where the archive says it stopped: it lists
// the archive in cfg.Storage (or cfg.Dir), deletes temporary leftovers, and
// assigns each partition of cfg.Topics (every log topic of the objective
// when empty) from the offset after its last archived record. Its metrics
// go to env.Reg; Run drives it.
func New(ctx context.Context, cfg Config, env *stage.Env) (*Connector, error) {
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = Defaults().RetryDelay
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("log connector config: %w", err)
	}
	if len(cfg.Topics) == 0 {
		cfg.Topics = env.Topics.Logs()
	}
	st := cfg.Storage
	if st == nil {
		st = NewLocalStore(cfg.Dir)
	}
	files, err := ScanStore(ctx, st, cfg.Common.Objective, true)
	if err != nil {
		return nil, err
	}
	pos := Positions(files)
	probe, err := env.Client()
	if err != nil {
		return nil, err
	}
	defer probe.Close()
	adm := kadm.NewClient(probe)
	starts, err := adm.ListStartOffsets(ctx, cfg.Topics...)
	if err != nil {
		return nil, fmt.Errorf("start offsets: %w", err)
	}
	c := &Connector{cfg: cfg, env: env, st: st}
	c.arch = NewArchiver(st, env.Serde, ArchiverConfig{Objective: cfg.Common.Objective, RotateBytes: cfg.RotateBytes, RotateInterval: cfg.RotateInterval})
	assign := map[string]map[int32]kgo.Offset{}
	starts.Each(func(lo kadm.ListedOffset) {
		if lo.Err != nil {
			return
		}
		at := lo.Offset
		if p, ok := pos[lo.Topic][lo.Partition]; ok && p > at {
			at = p
		}
		if assign[lo.Topic] == nil {
			assign[lo.Topic] = map[int32]kgo.Offset{}
		}
		assign[lo.Topic][lo.Partition] = kgo.NewOffset().At(at)
		c.arch.SetPosition(lo.Topic, lo.Partition, at)
	})
	for _, t := range cfg.Topics {
		if _, ok := assign[t]; !ok {
			return nil, fmt.Errorf("topic %s: not found (create the objective's topics first: rdv topics create)", t)
		}
	}
	c.m = connMetrics{
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_log_connector_files_total", Help: "Archive files finished, by topic.",
		}, []string{"topic"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rdv_log_connector_bytes_total", Help: "Bytes written to finished archive files.",
		}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_log_connector_archived_total", Help: "Records in finished archive files, by topic.",
		}, []string{"topic"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rdv_log_connector_paused", Help: "1 while the archive cannot be written (disk full, store unreachable).",
		}),
	}
	env.Reg.MustRegister(c.m.files, c.m.bytes, c.m.records, c.m.paused)
	c.arch.BeforeCommit = c.flushDLQ
	c.arch.Committed = func(f File, records, size int64) {
		c.m.files.WithLabelValues(f.Topic).Inc()
		c.m.bytes.Add(float64(size))
		c.m.records.WithLabelValues(f.Topic).Add(float64(records))
		c.m.paused.Set(0)
	}
	c.cl, err = env.Client(kgo.ConsumePartitions(assign), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(time.Second),
		// Off the answer's path: records by the hundred, not one by one.
		kgo.FetchMinBytes(64<<10))
	if err != nil {
		return nil, err
	}
	env.Log.Info("archive positioned", "store", st.String(), "files", len(files), "topics", cfg.Topics)
	return c, nil
}

// Run consumes and archives until ctx ends, then commits the files in
// hand. A failed write pauses it (Connector.pause); a record it cannot
// decode goes to the dead-letter topic and a raw file. It closes the
// connector's Kafka client when it returns.
func (c *Connector) Run(ctx context.Context) error {
	defer c.cl.Close()
	c.env.Health.SetReady()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := c.cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return c.drain(ctx)
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				c.env.Metrics.Errors.WithLabelValues("fetch").Inc()
				c.env.Log.Error("fetch", "topic", t, "partition", p, "err", err)
			}
		})
		var failed error
		fs.EachRecord(func(r *kgo.Record) {
			if failed == nil {
				failed = c.add(ctx, r)
			}
		})
		if failed == nil {
			failed = c.flushDLQ(ctx)
		}
		if failed == nil {
			failed = c.arch.FinishDue(ctx, time.Now())
		}
		if failed != nil {
			c.pause(ctx, failed)
		}
	}
}

func (c *Connector) add(ctx context.Context, r *kgo.Record) error {
	bad, err := c.arch.Add(ctx, r)
	if err != nil {
		return err
	}
	if bad == nil {
		c.env.Metrics.Records.WithLabelValues(r.Topic, "ok").Inc()
		return nil
	}
	c.env.Metrics.Records.WithLabelValues(r.Topic, "dead_letter").Inc()
	c.env.Metrics.Errors.WithLabelValues("decode").Inc()
	c.env.Log.Warn("undecodable record archived raw and dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", bad)
	c.dlqSent = true
	c.cl.Produce(context.WithoutCancel(ctx), stage.DeadLetterRecord(c.env.Topics.DLQ, c.env.Name, r, bad), func(_ *kgo.Record, err error) {
		if err != nil {
			c.dlqMu.Lock()
			if c.dlqErr == nil {
				c.dlqErr = err
			}
			c.dlqMu.Unlock()
		}
	})
	return nil
}

// flushDLQ waits until every dead-letter record produced so far is
// acknowledged. It runs before each commit, so a raw file is never
// committed ahead of its records' dead-letter copies.
func (c *Connector) flushDLQ(ctx context.Context) error {
	if !c.dlqSent {
		return nil
	}
	if err := c.cl.Flush(ctx); err != nil {
		return fmt.Errorf("%w: %w", errDeadLetter, err)
	}
	c.dlqSent = false
	c.dlqMu.Lock()
	err := c.dlqErr
	c.dlqErr = nil
	c.dlqMu.Unlock()
	if err != nil {
		return fmt.Errorf("%w to %s: %w", errDeadLetter, c.env.Topics.DLQ, err)
	}
	return nil
}

// pause handles a failed write: it drops every unfinished file, waits,
// asks the archive where it ends (a commit that reported an error may have
// happened), and rewinds the consumer there. Until then the connector
// consumes nothing, and rdv_log_connector_paused is 1 until a file is
// committed again.
func (c *Connector) pause(ctx context.Context, cause error) {
	c.m.paused.Set(1)
	reason := "storage"
	switch {
	case errors.Is(cause, errRegistry):
		reason = "registry"
	case errors.Is(cause, errDeadLetter):
		reason = "dead_letter"
	}
	c.env.Metrics.Errors.WithLabelValues(reason).Inc()
	c.env.Log.Error("archive paused: cannot write; will retry", "reason", reason, "err", cause, "retry_in", c.cfg.RetryDelay)
	c.arch.Abandon()
	c.dlqMu.Lock()
	c.dlqErr = nil
	c.dlqMu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.cfg.RetryDelay):
		}
		pos, err := c.arch.Recover(ctx)
		if err != nil {
			c.env.Log.Error("archive still paused: cannot read the store", "err", err)
			continue
		}
		rewind := map[string]map[int32]kgo.EpochOffset{}
		for t, ps := range pos {
			rewind[t] = map[int32]kgo.EpochOffset{}
			for p, off := range ps {
				rewind[t][p] = kgo.EpochOffset{Epoch: -1, Offset: off}
			}
		}
		c.cl.SetOffsets(rewind)
		c.env.Log.Info("archive resuming", "store", c.st.String())
		return
	}
}

// drain commits the files in hand at shutdown.
func (c *Connector) drain(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := c.arch.FinishAll(dctx)
	if err != nil {
		c.arch.Abandon()
		if errors.Is(err, ErrRecover) {
			c.env.Log.Warn("stopped while paused: unfinished files dropped, to be read again at start")
			return nil
		}
		return fmt.Errorf("finish archive files: %w", err)
	}
	return nil
}
