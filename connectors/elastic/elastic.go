// Package elastic is the Elasticsearch connector: it indexes an
// objective's decisions into score-log* and its decoy log into decoy-log*,
// for Kibana.
//
//   - Document ids are the record's topic, partition and offset, and a
//     record's index comes from its own timestamp, so a replay after a crash
//     overwrites instead of duplicating (with -data-streams, a replayed
//     create finds its id and counts as stored).
//   - Offsets are committed only after every document of a batch was stored
//     or dead-lettered: items refused with 429 or 5xx are sent again, mapping
//     and parse errors go to the dead-letter topic with the reason.
//   - While Elasticsearch is unreachable the batch in hand waits, nothing
//     more is polled (rdv_es_connector_paused is 1) and the lag grows; it
//     resumes where it stopped.
package elastic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
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
	// goes to <prefix>-<yyyy.mm.dd> of its record's time, or with
	// DataStreams to the data stream <prefix>-<objective>.
	ScoreIndex, DecoyIndex string
	// DataStreams indexes into data streams with create actions instead of
	// into dated indices.
	DataStreams bool
	// ILMPolicy, when set, is the lifecycle policy (index.lifecycle.name)
	// the templates give every index or backing index they create.
	ILMPolicy string
	// ILMPolicyFile, when set, is a JSON file ({"policy": {...}}) the
	// connector installs as ILMPolicy at start.
	ILMPolicyFile string
	// Group is the consumer group; empty means rdv.<objective>.es-connector.
	Group string
	// MaxBatch caps the documents of one bulk call.
	MaxBatch int
	// RetryMin and RetryMax bound the backoff between attempts while
	// Elasticsearch is unavailable or refuses items with 429 or 5xx.
	RetryMin, RetryMax time.Duration
}

// Defaults returns the connector defaults.
func Defaults() Config {
	return Config{Common: config.Defaults(), ScoreIndex: "score-log", DecoyIndex: "decoy-log", MaxBatch: 1000,
		RetryMin: 250 * time.Millisecond, RetryMax: 5 * time.Second}
}

// validPrefix reports what is wrong with an index name prefix.
func validPrefix(v string) error {
	switch {
	case v == "":
		return errors.New("is empty")
	case v != strings.ToLower(v):
		return errors.New("must be lower case")
	case strings.ContainsAny(v, " *,\"/\\?<>|#:"):
		return errors.New(`must not contain spaces or any of *,"/\?<>|#:`)
	case strings.HasPrefix(v, "-") || strings.HasPrefix(v, "_") || strings.HasPrefix(v, "+") || strings.HasPrefix(v, "."):
		return errors.New("must not start with -, _, + or .")
	case len(v) > 200:
		return errors.New("is too long")
	}
	return nil
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
	for _, f := range []struct{ name, v string }{{"score-index", c.ScoreIndex}, {"decoy-index", c.DecoyIndex}} {
		if err := validPrefix(f.v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q %w", f.name, f.v, err))
		}
	}
	// Two templates of the same priority may not match the same names.
	if a, b := c.ScoreIndex+"-", c.DecoyIndex+"-"; strings.HasPrefix(a, b) || strings.HasPrefix(b, a) {
		errs = append(errs, fmt.Errorf("score-index %q and decoy-index %q: one's pattern matches the other's indices", c.ScoreIndex, c.DecoyIndex))
	}
	if c.ILMPolicy != "" && strings.ContainsAny(c.ILMPolicy, " ,\"*/\\?<>|") {
		errs = append(errs, fmt.Errorf("ilm-policy: %q is not a valid policy name", c.ILMPolicy))
	}
	if c.ILMPolicyFile != "" {
		if c.ILMPolicy == "" {
			errs = append(errs, errors.New("ilm-policy-file: needs -ilm-policy, the name to install it under"))
		}
		if _, err := readPolicy(c.ILMPolicyFile); err != nil {
			errs = append(errs, fmt.Errorf("ilm-policy-file: %w", err))
		}
	}
	if c.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("max-batch: %d must be at least 1", c.MaxBatch))
	}
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("retry backoff: min %v and max %v must be positive, min <= max", c.RetryMin, c.RetryMax))
	}
	return errors.Join(errs...)
}

// readPolicy reads a lifecycle policy file: a JSON object with "policy".
func readPolicy(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var body struct {
		Policy map[string]any `json:"policy"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if body.Policy == nil {
		return nil, fmt.Errorf("%s: no \"policy\" object", path)
	}
	return b, nil
}

type connMetrics struct {
	docs   *prometheus.CounterVec
	paused prometheus.Gauge
	bulk   prometheus.Histogram
}

type connector struct {
	cfg    Config
	env    *stage.Env
	es     esclient.Indexer
	raw    *rawClient
	cl     *kgo.Client
	m      connMetrics
	st     *storer
	decRd  *serde.Schema
	inRd   *serde.Schema
	fields []schemas.Field
	// w holds the documents of the batch being indexed, one after another.
	w jsonw
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
	if cfg.DataStreams {
		if err := validPrefix(dataStreamName(cfg.ScoreIndex, cfg.Common.Objective)); err != nil {
			return fmt.Errorf("es connector config: objective %q cannot name a data stream: %w", cfg.Common.Objective, err)
		}
	}
	es, err := esclient.New(cfg.ES)
	if err != nil {
		return fmt.Errorf("elasticsearch client: %w", err)
	}
	raw, err := newRawClient(cfg.ES)
	if err != nil {
		return err
	}
	fields, err := env.Schemas.Features()
	if err != nil {
		return err
	}
	c := &connector{cfg: cfg, env: env, es: es, raw: raw, decRd: env.Reader(schemas.Decision), inRd: env.Reader(schemas.Input), fields: fields}
	c.m = connMetrics{
		docs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_es_connector_documents_total",
			Help: "Documents, by index prefix and outcome (indexed, duplicate, retried, blocked, dead_letter).",
		}, []string{"index", "outcome"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rdv_es_connector_paused", Help: "1 while Elasticsearch is unavailable and fetching is paused.",
		}),
		bulk: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rdv_es_connector_bulk_seconds", Help: "Time of one bulk call.", Buckets: stage.LatencyBuckets,
		}),
	}
	env.Reg.MustRegister(c.m.docs, c.m.paused, c.m.bulk)
	bulk := bulkFunc(es.Bulk)
	if cfg.DataStreams {
		bulk = raw.BulkCreate
	}
	c.st = &storer{
		bulk: func(ctx context.Context, docs []esclient.Doc) ([]esclient.ItemResult, error) {
			start := time.Now()
			defer func() { c.m.bulk.Observe(time.Since(start).Seconds()) }()
			return bulk(ctx, docs)
		},
		create: cfg.DataStreams,
		log:    env.Log,
		count: func(topic, outcome string) {
			c.m.docs.WithLabelValues(c.prefix(topic), outcome).Inc()
			switch outcome {
			case "indexed", "duplicate":
				env.Metrics.Records.WithLabelValues(topic, "ok").Inc()
			case "dead_letter", "retried":
				env.Metrics.Records.WithLabelValues(topic, outcome).Inc()
			}
		},
		paused: func(on bool) {
			if on {
				c.m.paused.Set(1)
			} else {
				c.m.paused.Set(0)
			}
		},
		minWait: cfg.RetryMin,
		maxWait: cfg.RetryMax,
	}
	return env.Run(ctx, func(ctx context.Context) error {
		for topic, k := range map[string]schemas.Kind{env.Topics.Decisions: schemas.Decision, env.Topics.Decoy: schemas.Input} {
			if err := env.RequireReadable(ctx, topic, k); err != nil {
				return err
			}
		}
		if err := c.setup(ctx); err != nil {
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
		opts = append(opts, stage.LogPathOpts()...)
		opts = append(opts, stage.GroupReadiness(env.Health, env.Log)...)
		if c.cl, err = env.Client(opts...); err != nil {
			return err
		}
		defer c.cl.Close()
		env.WatchLag(ctx, c.cl, cfg.Group)
		return c.loop(ctx)
	})
}

// setup installs the lifecycle policy (when given a file) and the index
// templates, waiting while Elasticsearch is unavailable.
func (c *connector) setup(ctx context.Context) error {
	backoff := c.cfg.RetryMin
	for {
		err := c.ensureTemplates(ctx)
		if err == nil {
			c.env.Log.Info("index templates installed", "score", IndexPattern(c.cfg.ScoreIndex), "decoy", IndexPattern(c.cfg.DecoyIndex),
				"data_streams", c.cfg.DataStreams, "ilm_policy", c.cfg.ILMPolicy)
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
		backoff = min(2*backoff, c.cfg.RetryMax)
	}
}

func (c *connector) templateOptions() TemplateOptions {
	return TemplateOptions{DataStreams: c.cfg.DataStreams, ILMPolicy: c.cfg.ILMPolicy}
}

func (c *connector) ensureTemplates(ctx context.Context) error {
	if err := c.ensurePolicy(ctx); err != nil {
		return err
	}
	o := c.templateOptions()
	if err := c.es.EnsureTemplate(ctx, c.cfg.ScoreIndex, ScoreTemplate(c.cfg.ScoreIndex, c.fields, o)); err != nil {
		return err
	}
	return c.es.EnsureTemplate(ctx, c.cfg.DecoyIndex, DecoyTemplate(c.cfg.DecoyIndex, c.fields, o))
}

// ensurePolicy installs the lifecycle policy from its file, or checks that
// the named policy exists. A missing policy is not fatal (the indices are
// still written, only not managed) but is logged loudly.
func (c *connector) ensurePolicy(ctx context.Context) error {
	if c.cfg.ILMPolicy == "" {
		return nil
	}
	if c.cfg.ILMPolicyFile != "" {
		body, err := readPolicy(c.cfg.ILMPolicyFile)
		if err != nil {
			return err
		}
		if err := c.raw.PutILMPolicy(ctx, c.cfg.ILMPolicy, body); err != nil {
			return fmt.Errorf("install lifecycle policy %s: %w", c.cfg.ILMPolicy, err)
		}
		c.env.Log.Info("lifecycle policy installed", "policy", c.cfg.ILMPolicy, "file", c.cfg.ILMPolicyFile)
		return nil
	}
	ok, err := c.raw.ILMPolicyExists(ctx, c.cfg.ILMPolicy)
	if err != nil {
		if esclient.IsRetryable(err) {
			return err
		}
		c.env.Log.Warn("cannot check the lifecycle policy", "policy", c.cfg.ILMPolicy, "err", err)
		return nil
	}
	if !ok {
		c.env.Log.Error("lifecycle policy not found: the indices will not be managed until it exists (see -ilm-policy-file)", "policy", c.cfg.ILMPolicy)
	}
	return nil
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
			// While this batch waits for Elasticsearch nothing more is
			// polled, so the client stops fetching (it buffers at most one
			// fetch per broker) and the group's lag grows. The batch is
			// finished even when ctx ends meanwhile: what was indexed must
			// also be committed.
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
				c.env.Metrics.Errors.WithLabelValues("commit").Inc()
				c.env.Log.Warn("commit offsets; the batch may be indexed again (same ids)", "err", err)
			}
		}
		c.cl.AllowRebalance()
	}
}

// index stores every record of the batch in Elasticsearch, or sends it to
// the dead-letter topic; it returns nil only when each one is done, so the
// caller may commit the whole batch. It waits while Elasticsearch or the
// registry is unavailable; stop ends that wait with errStopped.
func (c *connector) index(ctx, stop context.Context, recs []*kgo.Record) error {
	// The previous batch is done with: nothing kept its documents.
	c.w.b = c.w.b[:0]
	items := make([]pending, 0, len(recs))
	var dead []*kgo.Record
	for _, r := range recs {
		d, err := c.documentRetry(ctx, stop, r)
		if errors.Is(err, errStopped) {
			return err
		}
		if err != nil {
			c.m.docs.WithLabelValues(c.prefix(r.Topic), "dead_letter").Inc()
			c.env.Metrics.Records.WithLabelValues(r.Topic, "dead_letter").Inc()
			c.env.Log.Warn("undecodable record dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			dead = append(dead, stage.DeadLetterRecord(c.env.Topics.DLQ, c.env.Name, r, err))
			continue
		}
		items = append(items, pending{doc: d, rec: r})
	}
	refusedRecs, err := c.st.store(ctx, stop, items)
	if err != nil {
		return err
	}
	for _, f := range refusedRecs {
		dead = append(dead, stage.DeadLetterRecord(c.env.Topics.DLQ, c.env.Name, f.rec, f.reason))
	}
	if len(dead) > 0 {
		c.env.Metrics.Produced.WithLabelValues(c.env.Topics.DLQ).Add(float64(len(dead)))
		if err := c.cl.ProduceSync(ctx, dead...).FirstErr(); err != nil {
			return fmt.Errorf("dead-letter %d records: %w", len(dead), err)
		}
	}
	return nil
}

// documentRetry builds a record's document. A record that cannot be decoded
// or turned into a document is returned as an error (for the dead-letter
// topic); a transient failure (the registry unreachable) is retried until
// stop.
func (c *connector) documentRetry(ctx, stop context.Context, r *kgo.Record) (esclient.Doc, error) {
	backoff := c.cfg.RetryMin
	for {
		d, err := c.document(ctx, r)
		if err == nil || errors.Is(err, serde.ErrDecode) || errors.Is(err, stage.ErrPoison) {
			return d, err
		}
		c.env.Metrics.Errors.WithLabelValues("registry").Inc()
		c.env.Log.Warn("cannot decode record now; retrying", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err, "in", backoff)
		if err := wait(stop, backoff); err != nil {
			return esclient.Doc{}, err
		}
		backoff = min(2*backoff, c.cfg.RetryMax)
	}
}

func (c *connector) prefix(topic string) string {
	if topic == c.env.Topics.Decisions {
		return c.cfg.ScoreIndex
	}
	return c.cfg.DecoyIndex
}

// DocID is a record's document id: its topic, partition and offset.
func DocID(r *kgo.Record) string {
	return r.Topic + "-" + strconv.FormatInt(int64(r.Partition), 10) + "-" + strconv.FormatInt(r.Offset, 10)
}

// IndexName is where a record's document goes: the dated index
// <prefix>-<yyyy.mm.dd> of the record's timestamp (so a replay writes the
// same index), or the data stream <prefix>-<objective>.
func IndexName(prefix, objective string, dataStreams bool, r *kgo.Record) string {
	if dataStreams {
		return dataStreamName(prefix, objective)
	}
	return prefix + "-" + r.Timestamp.UTC().Format("2006.01.02")
}

func dataStreamName(prefix, objective string) string {
	return prefix + "-" + strings.ToLower(objective)
}

func (c *connector) document(ctx context.Context, r *kgo.Record) (esclient.Doc, error) {
	index := IndexName(c.prefix(r.Topic), c.cfg.Common.Objective, c.cfg.DataStreams, r)
	start := len(c.w.b)
	var err error
	if r.Topic == c.env.Topics.Decisions {
		rec, derr := c.env.Serde.Decode(ctx, r.Value, c.decRd)
		if derr != nil {
			return esclient.Doc{}, derr
		}
		err = c.w.decision(rec)
	} else {
		rec, derr := c.env.Serde.Decode(ctx, r.Value, c.inRd)
		if derr != nil {
			return esclient.Doc{}, derr
		}
		err = c.w.decoy(rec)
	}
	if err != nil {
		return esclient.Doc{}, fmt.Errorf("%w: %w", stage.ErrPoison, err)
	}
	// Capped, so that no append to one document reaches into the next.
	body := c.w.b[start:len(c.w.b):len(c.w.b)]
	return esclient.Doc{Index: index, ID: DocID(r), Body: body, Compact: true}, nil
}
