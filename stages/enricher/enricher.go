// Package enricher turns requests into model inputs: it adds external state
// from the objective's context table (a compacted topic, loaded whole before
// the stage declares itself ready) and server-side fields such as the hour
// of the request.
package enricher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// Config is the enricher's configuration.
type Config struct {
	Common config.Common
	// Group is the consumer group; empty means rdv.<objective>.enricher.
	Group string
}

// Defaults returns the enricher defaults.
func Defaults() Config { return Config{Common: config.Defaults()} }

// Validate names the bad field.
func (c Config) Validate() error { return c.Common.Validate() }

// DefaultKey is the context row used for a request whose key has none.
const DefaultKey = "*"

// Table is the external state: context rows by key.
type Table struct {
	mu   sync.RWMutex
	rows map[string]map[string]any
}

// Lookup returns the row for key, else the default row, else an empty map.
func (t *Table) Lookup(key string) map[string]any {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if r, ok := t.rows[key]; ok {
		return r
	}
	if r, ok := t.rows[DefaultKey]; ok {
		return r
	}
	return map[string]any{}
}

func (t *Table) put(key string, attrs map[string]any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if attrs == nil {
		delete(t.rows, key) // a tombstone
		return
	}
	t.rows[key] = attrs
}

// Len is the number of rows.
func (t *Table) Len() int { t.mu.RLock(); defer t.mu.RUnlock(); return len(t.rows) }

// Run runs the enricher until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("enricher config: %w", err)
	}
	env, err := stage.NewEnv("enricher", cfg.Common)
	if err != nil {
		return err
	}
	group := cfg.Group
	if group == "" {
		group = "rdv." + cfg.Common.Objective + ".enricher"
	}
	return env.Run(ctx, func(ctx context.Context) error {
		for topic, k := range map[string]schemas.Kind{env.Topics.Requests: schemas.Request, env.Topics.Context: schemas.Context} {
			if err := env.RequireReadable(ctx, topic, k); err != nil {
				return err
			}
		}
		table := &Table{rows: map[string]map[string]any{}}
		tail, err := loadTable(ctx, env, table)
		if err != nil {
			return err
		}
		defer tail.Close()
		go followTable(ctx, env, tail, table)
		env.Log.Info("context table loaded", "rows", table.Len())

		enc, err := env.Encoder(ctx, env.Topics.Inputs, schemas.Input)
		if err != nil {
			return err
		}
		opts := append(stage.HotPathOpts(), env.GroupOpts(group)...)
		opts = append(opts,
			kgo.ConsumeTopics(env.Topics.Requests),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.AutoCommitMarks(),
		)
		opts = append(opts, stage.GroupReadiness(env.Health, env.Log)...)
		cl, err := env.Client(opts...)
		if err != nil {
			return err
		}
		defer cl.Close()
		env.WatchLag(ctx, cl, group)
		h := stage.Chain(handler(env, table, enc),
			stage.WithDeadLetter(env.Topics.DLQ, env.Name, env.Metrics, env.Log),
			stage.WithMetrics(env.Metrics),
			stage.WithRetry(5, env.Metrics),
		)
		return stage.Loop(ctx, cl, h, env.Metrics, env.Log)
	})
}

func handler(env *stage.Env, table *Table, enc *serde.Encoder) stage.Handler {
	reader := env.Reader(schemas.Request)
	return func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		req, err := env.Serde.Decode(ctx, r.Value, reader)
		if err != nil {
			return nil, err
		}
		in, err := Enrich(req, table.Lookup(serde.Str(req, "key")), time.Now())
		if err != nil {
			return nil, fmt.Errorf("%w: %w", stage.ErrPoison, err)
		}
		value, err := enc.Encode(make([]byte, 0, 160), in)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", stage.ErrPoison, err)
		}
		return []*kgo.Record{{Topic: env.Topics.Inputs, Key: r.Key, Value: value, Headers: r.Headers}}, nil
	}
}

// Enrich builds a model input from a request, its context row and the time.
func Enrich(req map[string]any, ctxRow map[string]any, now time.Time) (map[string]any, error) {
	id := serde.Str(req, "request_id")
	if id == "" {
		return nil, errors.New("request has no request_id")
	}
	received := time.UnixMicro(serde.Long(req, "received_us")).UTC()
	return map[string]any{
		"request_id":  id,
		"objective":   serde.Str(req, "objective"),
		"key":         serde.Str(req, "key"),
		"received_us": serde.Long(req, "received_us"),
		"deadline_us": serde.Long(req, "deadline_us"),
		"enriched_us": now.UnixMicro(),
		"hour_of_day": int32(received.Hour()),
		"day_of_week": int32(received.Weekday()),
		"context":     ctxRow,
		"features":    serde.Rec(req, "features"),
	}, nil
}

// loadTable reads the context topic from the start to its current end and
// returns the client, positioned to follow later updates.
func loadTable(ctx context.Context, env *stage.Env, table *Table) (*kgo.Client, error) {
	topic := env.Topics.Context
	probe, err := env.Client()
	if err != nil {
		return nil, err
	}
	ends, err := kadm.NewClient(probe).ListEndOffsets(ctx, topic)
	probe.Close()
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	target := map[int32]int64{}
	ends.Each(func(lo kadm.ListedOffset) {
		if lo.Err == nil && lo.Offset > 0 {
			target[lo.Partition] = lo.Offset
		}
	})
	cl, err := env.Client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	env.Health.SetNotReady("loading context table " + topic)
	reader := env.Reader(schemas.Context)
	for len(target) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			cl.Close()
			return nil, ctx.Err()
		}
		fs.EachRecord(func(r *kgo.Record) {
			applyContext(ctx, env, table, reader, r)
			if end, ok := target[r.Partition]; ok && r.Offset+1 >= end {
				delete(target, r.Partition)
			}
		})
	}
	return cl, nil
}

func followTable(ctx context.Context, env *stage.Env, cl *kgo.Client, table *Table) {
	reader := env.Reader(schemas.Context)
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return
		}
		fs.EachRecord(func(r *kgo.Record) { applyContext(ctx, env, table, reader, r) })
	}
}

func applyContext(ctx context.Context, env *stage.Env, table *Table, reader *serde.Schema, r *kgo.Record) {
	if r.Value == nil {
		table.put(string(r.Key), nil)
		return
	}
	row, err := env.Serde.Decode(ctx, r.Value, reader)
	if err != nil {
		env.Metrics.Errors.WithLabelValues("context_decode").Inc()
		env.Log.Warn("undecodable context row skipped", "key", string(r.Key), "offset", r.Offset, "err", err)
		return
	}
	attrs, _ := row["attributes"].(map[string]any)
	if attrs == nil {
		attrs = map[string]any{}
	}
	table.put(string(r.Key), attrs)
}
