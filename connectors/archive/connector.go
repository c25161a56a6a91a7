package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

// Config is the log connector's configuration.
type Config struct {
	Common config.Common
	// Dir is the archive's root directory.
	Dir string
	// Topics to archive; empty means every log topic of the objective.
	Topics []string
	// RotateBytes finishes a file once it reaches this size.
	RotateBytes int64
	// RotateInterval finishes a file this long after its first record.
	RotateInterval time.Duration
}

// Defaults returns the log connector defaults.
func Defaults() Config {
	return Config{Common: config.Defaults(), Dir: "var/archive", RotateBytes: 64 << 20, RotateInterval: 5 * time.Second}
}

// Validate names the bad field.
func (c Config) Validate() error {
	var errs []error
	if err := c.Common.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("dir: the archive directory is required"))
	}
	if c.RotateBytes < 1024 {
		errs = append(errs, fmt.Errorf("rotate-bytes: %d is under 1024", c.RotateBytes))
	}
	if c.RotateInterval <= 0 {
		errs = append(errs, fmt.Errorf("rotate-interval: %v must be positive", c.RotateInterval))
	}
	return errors.Join(errs...)
}

type connMetrics struct {
	files   *prometheus.CounterVec
	bytes   prometheus.Counter
	records *prometheus.CounterVec
	paused  prometheus.Gauge
}

// Connector is a running log connector.
type Connector struct {
	cfg     Config
	env     *stage.Env
	cl      *kgo.Client
	writers map[string]map[int32]*partWriter
	m       connMetrics
}

// Run archives until ctx ends, then finishes the files in hand.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("log connector config: %w", err)
	}
	env, err := stage.NewEnv("log-connector", cfg.Common)
	if err != nil {
		return err
	}
	if len(cfg.Topics) == 0 {
		cfg.Topics = env.Topics.Logs()
	}
	return env.Run(ctx, func(ctx context.Context) error {
		c, err := New(ctx, cfg, env)
		if err != nil {
			return err
		}
		return c.loop(ctx)
	})
}

// New positions a connector where the archive says it stopped.
func New(ctx context.Context, cfg Config, env *stage.Env) (*Connector, error) {
	files, err := Scan(cfg.Dir, cfg.Common.Objective, true)
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
	})
	for _, t := range cfg.Topics {
		if _, ok := assign[t]; !ok {
			return nil, fmt.Errorf("topic %s: not found (create the objective's topics first: rdv topics create)", t)
		}
	}
	c := &Connector{cfg: cfg, env: env, writers: map[string]map[int32]*partWriter{}}
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
	c.cl, err = env.Client(kgo.ConsumePartitions(assign), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(time.Second))
	if err != nil {
		return nil, err
	}
	env.Log.Info("archive positioned", "dir", cfg.Dir, "files", len(files), "topics", cfg.Topics)
	return c, nil
}

func (c *Connector) loop(ctx context.Context) error {
	defer c.cl.Close()
	c.env.Health.SetReady()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := c.cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return c.finishAll()
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
			failed = c.rotateDue(time.Now())
		}
		if failed != nil {
			c.pause(ctx, failed)
		}
	}
}

// pause handles a storage failure: drop every unfinished file, rewind to
// what the archive holds, and wait before trying again.
func (c *Connector) pause(ctx context.Context, cause error) {
	c.m.paused.Set(1)
	c.env.Metrics.Errors.WithLabelValues("storage").Inc()
	c.env.Log.Error("archive paused: cannot write; will retry", "err", cause)
	rewind := map[string]map[int32]kgo.EpochOffset{}
	for t, ps := range c.writers {
		for p, w := range ps {
			if w.ocf != nil {
				if rewind[t] == nil {
					rewind[t] = map[int32]kgo.EpochOffset{}
				}
				rewind[t][p] = kgo.EpochOffset{Epoch: -1, Offset: w.first}
				w.abandon()
			}
		}
	}
	c.cl.SetOffsets(rewind)
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
	}
}

func (c *Connector) writer(topic string, p int32) *partWriter {
	ps := c.writers[topic]
	if ps == nil {
		ps = map[int32]*partWriter{}
		c.writers[topic] = ps
	}
	w := ps[p]
	if w == nil {
		w = &partWriter{root: c.cfg.Dir, objective: c.cfg.Common.Objective, topic: topic, partition: p}
		ps[p] = w
	}
	return w
}

func (c *Connector) add(ctx context.Context, r *kgo.Record) error {
	w := c.writer(r.Topic, r.Partition)
	datum, schemaID, schema, decodeErr := c.envelope(ctx, r)
	if decodeErr != nil {
		c.env.Metrics.Records.WithLabelValues(r.Topic, "dead_letter").Inc()
		c.env.Log.Warn("undecodable record archived raw and dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", decodeErr)
		res := c.cl.ProduceSync(ctx, stage.DeadLetterRecord(c.env.Topics.DLQ, c.env.Name, r, decodeErr))
		if err := res.FirstErr(); err != nil {
			return fmt.Errorf("dead-letter %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
		}
	} else {
		c.env.Metrics.Records.WithLabelValues(r.Topic, "ok").Inc()
	}
	if w.ocf != nil && (w.schemaID != schemaID || w.ocf.size() >= c.cfg.RotateBytes) {
		if err := c.finish(w); err != nil {
			return err
		}
	}
	if w.ocf == nil {
		if err := w.open(r, schemaID, schema); err != nil {
			return err
		}
	}
	w.add(r.Offset, datum)
	if len(w.ocf.block) >= 1<<20 {
		if err := w.ocf.flushBlock(); err != nil {
			return err
		}
	}
	return nil
}

// envelope encodes r as an archive datum. A record that does not decode is
// archived raw, with the reason, under schema id -1.
func (c *Connector) envelope(ctx context.Context, r *kgo.Record) (datum []byte, schemaID int, schema string, decodeErr error) {
	id, err := serde.SchemaID(r.Value)
	var w *serde.Schema
	if err == nil {
		w, err = c.env.Serde.Writer(ctx, id)
	}
	if err == nil {
		if _, rest, derr := w.Codec.NativeFromBinary(r.Value[5:]); derr != nil {
			err = fmt.Errorf("%w: body does not match writer schema %d: %w", serde.ErrDecode, id, derr)
		} else if len(rest) != 0 {
			err = fmt.Errorf("%w: %d trailing bytes after the record (schema %d)", serde.ErrDecode, len(rest), id)
		}
	}
	head := encodeHead(r)
	if err != nil {
		head = appendBytes(head, []byte(err.Error()))
		return appendBytes(head, r.Value), -1, rawSchema, err
	}
	return append(head, r.Value[5:]...), id, envelopeSchema(w.Text), nil
}

func (c *Connector) finish(w *partWriter) error {
	n, size, err := w.finish()
	if err != nil {
		return err
	}
	c.m.files.WithLabelValues(w.topic).Inc()
	c.m.bytes.Add(float64(size))
	c.m.records.WithLabelValues(w.topic).Add(float64(n))
	c.m.paused.Set(0)
	return nil
}

func (c *Connector) rotateDue(now time.Time) error {
	for _, ps := range c.writers {
		for _, w := range ps {
			if w.ocf != nil && now.Sub(w.opened) >= c.cfg.RotateInterval {
				if err := c.finish(w); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (c *Connector) finishAll() error {
	var errs []error
	for _, ps := range c.writers {
		for _, w := range ps {
			if w.ocf != nil {
				if err := c.finish(w); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// partWriter writes one partition's current file.
type partWriter struct {
	root, objective, topic string
	partition              int32
	schemaID               int
	f                      *os.File
	ocf                    *ocfWriter
	dir, tmp               string
	first, last            int64
	records                int64
	opened                 time.Time
}

func (w *partWriter) open(r *kgo.Record, schemaID int, schema string) error {
	w.dir = dirFor(w.root, w.objective, w.topic, w.partition, r.Timestamp)
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return fmt.Errorf("archive dir: %w", err)
	}
	w.tmp = filepath.Join(w.dir, fmt.Sprintf(".%020d%s", r.Offset, tmpSuffix))
	f, err := os.Create(w.tmp)
	if err != nil {
		return fmt.Errorf("create %s: %w", w.tmp, err)
	}
	identity := fmt.Sprintf("%s/%d/%d", w.topic, w.partition, r.Offset)
	o, err := newOCFWriter(f, schema, syncMarker(identity))
	if err != nil {
		f.Close()
		os.Remove(w.tmp)
		return err
	}
	w.f, w.ocf, w.schemaID, w.first, w.records, w.opened = f, o, schemaID, r.Offset, 0, time.Now()
	return nil
}

func (w *partWriter) add(offset int64, datum []byte) {
	w.ocf.append(datum)
	w.last = offset
	w.records++
}

// finish syncs the file and gives it its final name; only then does the
// archive's position move past its records.
func (w *partWriter) finish() (records, size int64, err error) {
	defer func() {
		if err != nil {
			w.abandon()
		}
	}()
	if err := w.ocf.close(); err != nil {
		return 0, 0, err
	}
	if err := w.f.Sync(); err != nil {
		return 0, 0, fmt.Errorf("sync %s: %w", w.tmp, err)
	}
	size = w.ocf.n
	if err := w.f.Close(); err != nil {
		return 0, 0, fmt.Errorf("close %s: %w", w.tmp, err)
	}
	final := filepath.Join(w.dir, nameFor(w.first, w.last, w.schemaID < 0))
	if err := os.Rename(w.tmp, final); err != nil {
		return 0, 0, fmt.Errorf("rename to %s: %w", final, err)
	}
	if d, err := os.Open(w.dir); err == nil {
		_ = d.Sync() // make the rename itself durable
		d.Close()
	}
	records = w.records
	w.f, w.ocf = nil, nil
	return records, size, nil
}

func (w *partWriter) abandon() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.tmp)
	}
	w.f, w.ocf = nil, nil
}
