// Package elastic is the Elasticsearch connector: it indexes an
// objective's decisions into score-log* and its decoy log into decoy-log*,
// for Kibana. Document ids are the record's topic, partition and offset,
// so a replay after a crash overwrites instead of duplicating, and offsets
// are committed only after every document of a batch was stored or
// dead-lettered.
package elastic

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"
	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// Config is the connector's configuration.
type Config struct {
	Common config.Common
	ES     esclient.Config
	// ScoreIndex and DecoyIndex are the index name prefixes; a document
	// goes to <prefix>-<yyyy.mm.dd> of its record's time.
	ScoreIndex, DecoyIndex string
	// Group is the consumer group; empty means rdv.<objective>.es-connector.
	Group string
	// MaxBatch caps the documents of one bulk call.
	MaxBatch int
}

// Defaults returns the connector defaults.
func Defaults() Config {
	return Config{Common: config.Defaults(), ScoreIndex: "score-log", DecoyIndex: "decoy-log", MaxBatch: 1000}
}

// Validate names the bad field.
func (c Config) Validate() error {
	var errs []error
	if err := c.Common.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.ES.URLs) == 0 {
		errs = append(errs, errors.New("es: an Elasticsearch URL is required"))
	}
	if err := c.ES.Validate(); err != nil {
		errs = append(errs, err)
	}
	for name, v := range map[string]string{"score-index": c.ScoreIndex, "decoy-index": c.DecoyIndex} {
		if v == "" || v != strings.ToLower(v) || strings.ContainsAny(v, " *,\"/\\") {
			errs = append(errs, fmt.Errorf("%s: %q is not a valid lower-case index name", name, v))
		}
	}
	if c.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("max-batch: %d must be at least 1", c.MaxBatch))
	}
	return errors.Join(errs...)
}

// errStopped ends a batch that could not be finished before shutdown.
var errStopped = errors.New("stopped before the batch was indexed")

type connMetrics struct {
	docs   *prometheus.CounterVec
	paused prometheus.Gauge
	bulk   prometheus.Histogram
}

type connector struct {
	cfg    Config
	env    *stage.Env
	es     esclient.Indexer
	cl     *kgo.Client
	m      connMetrics
	decRd  *serde.Schema
	inRd   *serde.Schema
	fields []schemas.Field
}

// Run indexes until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	cfg.ES.Defaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("es connector config: %w", err)
	}
	env, err := stage.NewEnv("es-connector", cfg.Common)
	if err != nil {
		return err
	}
	if cfg.Group == "" {
		cfg.Group = "rdv." + cfg.Common.Objective + ".es-connector"
	}
	es, err := esclient.New(cfg.ES)
	if err != nil {
		return fmt.Errorf("elasticsearch client: %w", err)
	}
	fields, err := env.Schemas.Features()
	if err != nil {
		return err
	}
	c := &connector{cfg: cfg, env: env, es: es, decRd: env.Reader(schemas.Decision), inRd: env.Reader(schemas.Input), fields: fields}
	c.m = connMetrics{
		docs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_es_connector_documents_total", Help: "Documents, by index prefix and outcome (indexed, dead_letter, retried).",
		}, []string{"index", "outcome"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rdv_es_connector_paused", Help: "1 while Elasticsearch is unavailable and fetching is paused.",
		}),
		bulk: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rdv_es_connector_bulk_seconds", Help: "Time of one bulk call.", Buckets: stage.LatencyBuckets,
		}),
	}
	env.Reg.MustRegister(c.m.docs, c.m.paused, c.m.bulk)
	return env.Run(ctx, func(ctx context.Context) error {
		if err := c.installTemplates(ctx); err != nil {
			return err
		}
		opts := append(env.GroupOpts(cfg.Group),
			kgo.ConsumeTopics(env.Topics.Decisions, env.Topics.Decoy),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.DisableAutoCommit(),
			// Between two polls the batch in hand is indexed and committed;
			// a rebalance waits for that, so no other member re-indexes it.
			kgo.BlockRebalanceOnPoll(),
		)
		opts = append(opts, stage.GroupReadiness(env.Health, env.Log)...)
		if c.cl, err = env.Client(opts...); err != nil {
			return err
		}
		defer c.cl.Close()
		env.WatchLag(ctx, c.cl, cfg.Group)
		return c.loop(ctx)
	})
}

func (c *connector) installTemplates(ctx context.Context) error {
	backoff := time.Second
	for {
		err := c.ensureTemplates(ctx)
		if err == nil {
			return nil
		}
		if !esclient.IsRetryable(err) {
			return fmt.Errorf("install index templates: %w", err)
		}
		c.env.Health.SetNotReady("elasticsearch unavailable: " + err.Error())
		c.env.Log.Warn("elasticsearch unavailable; retrying template install", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (c *connector) ensureTemplates(ctx context.Context) error {
	if err := c.es.EnsureTemplate(ctx, c.cfg.ScoreIndex, ScoreTemplate(c.cfg.ScoreIndex, c.fields)); err != nil {
		return err
	}
	return c.es.EnsureTemplate(ctx, c.cfg.DecoyIndex, DecoyTemplate(c.cfg.DecoyIndex, c.fields))
}

func (c *connector) loop(ctx context.Context) error {
	for {
		fs := c.cl.PollRecords(ctx, c.cfg.MaxBatch)
		if ctx.Err() != nil || fs.IsClientClosed() {
			c.cl.AllowRebalance()
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				c.env.Metrics.Errors.WithLabelValues("fetch").Inc()
				c.env.Log.Error("fetch", "topic", t, "partition", p, "err", err)
			}
		})
		recs := fs.Records()
		if len(recs) > 0 {
			// The batch is finished even when ctx ends meanwhile: what was
			// indexed must also be committed.
			if err := c.index(context.WithoutCancel(ctx), ctx, recs); err != nil {
				c.cl.AllowRebalance()
				if errors.Is(err, errStopped) {
					return nil // not committed: indexed again, under the same ids, on restart
				}
				return err
			}
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := c.cl.CommitRecords(cctx, recs...)
			cancel()
			if err != nil {
				c.env.Log.Warn("commit offsets; the batch may be indexed again (same ids)", "err", err)
			}
		}
		c.cl.AllowRebalance()
	}
}

// index stores every record of the batch in Elasticsearch, or sends it to
// the dead-letter topic; it returns only when each one is done, retrying
// while Elasticsearch is unavailable (stop ends that wait).
func (c *connector) index(ctx, stop context.Context, recs []*kgo.Record) error {
	docs := make([]esclient.Doc, 0, len(recs))
	byID := make(map[string]*kgo.Record, len(recs))
	var dead []*kgo.Record
	for _, r := range recs {
		d, err := c.document(ctx, r)
		if err != nil {
			c.m.docs.WithLabelValues(c.prefix(r.Topic), "dead_letter").Inc()
			c.env.Log.Warn("undecodable record dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			dead = append(dead, stage.DeadLetterRecord(c.env.Topics.DLQ, c.env.Name, r, err))
			continue
		}
		docs = append(docs, d)
		byID[d.ID] = r
	}
	backoff := 250 * time.Millisecond
	for len(docs) > 0 {
		start := time.Now()
		res, err := c.es.Bulk(ctx, docs)
		c.m.bulk.Observe(time.Since(start).Seconds())
		if err != nil {
			if !esclient.IsRetryable(err) && !errors.Is(err, esclient.ErrUnavailable) {
				return fmt.Errorf("bulk index: %w", err)
			}
			c.m.paused.Set(1)
			c.env.Log.Warn("elasticsearch unavailable; fetching paused", "err", err, "retry_in", backoff)
			select {
			case <-stop.Done():
				return errStopped
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		c.m.paused.Set(0)
		var retry []esclient.Doc
		for _, it := range res {
			r := byID[it.Doc.ID]
			switch {
			case it.OK():
				c.m.docs.WithLabelValues(c.prefix(r.Topic), "indexed").Inc()
			case it.Retryable():
				c.m.docs.WithLabelValues(c.prefix(r.Topic), "retried").Inc()
				retry = append(retry, it.Doc)
			default:
				reason := fmt.Errorf("elasticsearch refused the document (%d %s): %s", it.Status, it.ErrType, it.Reason)
				c.m.docs.WithLabelValues(c.prefix(r.Topic), "dead_letter").Inc()
				c.env.Log.Warn("document refused; dead-lettered", "id", it.Doc.ID, "err", reason)
				dead = append(dead, stage.DeadLetterRecord(c.env.Topics.DLQ, c.env.Name, r, reason))
			}
		}
		docs = retry
		if len(retry) > 0 {
			select {
			case <-stop.Done():
				return errStopped
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
	}
	if len(dead) > 0 {
		if err := c.cl.ProduceSync(ctx, dead...).FirstErr(); err != nil {
			return fmt.Errorf("dead-letter %d records: %w", len(dead), err)
		}
	}
	return nil
}

func (c *connector) prefix(topic string) string {
	if topic == c.env.Topics.Decisions {
		return c.cfg.ScoreIndex
	}
	return c.cfg.DecoyIndex
}

// DocID is a record's document id: its topic, partition and offset.
func DocID(r *kgo.Record) string { return fmt.Sprintf("%s-%d-%d", r.Topic, r.Partition, r.Offset) }

func (c *connector) document(ctx context.Context, r *kgo.Record) (esclient.Doc, error) {
	index := c.prefix(r.Topic) + "-" + r.Timestamp.UTC().Format("2006.01.02")
	var body []byte
	var err error
	if r.Topic == c.env.Topics.Decisions {
		rec, derr := c.env.Serde.Decode(ctx, r.Value, c.decRd)
		if derr != nil {
			return esclient.Doc{}, derr
		}
		body, err = DecisionDoc(rec)
	} else {
		rec, derr := c.env.Serde.Decode(ctx, r.Value, c.inRd)
		if derr != nil {
			return esclient.Doc{}, derr
		}
		body, err = DecoyDoc(rec)
	}
	if err != nil {
		return esclient.Doc{}, fmt.Errorf("%w: %w", stage.ErrPoison, err)
	}
	return esclient.Doc{Index: index, ID: DocID(r), Body: body}, nil
}
