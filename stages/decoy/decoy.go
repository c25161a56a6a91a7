// Package decoy is the model that never answers: it reads every input the
// real models read and writes it, unchanged, to the objective's decoy log,
// in the same Kafka transaction as its consumer offsets. A read_committed
// reader of the decoy log therefore sees every input exactly once, whatever
// crashes or rebalances happen.
//
// Since it decodes every input anyway, the decoy also hosts the drift
// monitor (package drift), on by default: each committed input goes to the
// monitor, which compares the live feature distributions and the canary's
// prediction mix with a reference window and exports the PSI gauges.
package decoy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/drift"
)

// Config is the decoy's configuration.
type Config struct {
	Common config.Common
	// Group is the consumer group; empty means rdv.<objective>.decoy.
	Group string
	// DriftOff turns the drift monitor off.
	DriftOff bool
	// Drift configures the drift monitor; its Env is the decoy's.
	Drift drift.Config
}

// Defaults returns the decoy defaults.
func Defaults() Config { return Config{Common: config.Defaults(), Drift: drift.Defaults()} }

// Validate names the bad field.
func (c Config) Validate() error {
	err := c.Common.Validate()
	if !c.DriftOff {
		err = errors.Join(err, c.Drift.Validate())
	}
	return err
}

// Run runs the decoy until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("decoy config: %w", err)
	}
	env, err := stage.NewEnv("decoy", cfg.Common)
	if err != nil {
		return err
	}
	if cfg.Group == "" {
		cfg.Group = "rdv." + cfg.Common.Objective + ".decoy"
	}
	var mon *drift.Monitor
	if !cfg.DriftOff {
		dc := cfg.Drift
		dc.Env = env
		if mon, err = drift.New(dc); err != nil {
			return err
		}
	}
	return env.Run(ctx, func(ctx context.Context) error {
		if err := env.RequireReadable(ctx, env.Topics.Inputs, schemas.Input); err != nil {
			return err
		}
		// The decoy log carries the inputs' bytes as they are, so its subject
		// holds the input schema: the same text gets the same id.
		if _, err := env.Encoder(ctx, env.Topics.Decoy, schemas.Input); err != nil {
			return err
		}
		base, err := env.Cfg.Kafka.ClientOpts()
		if err != nil {
			return err
		}
		opts := append(base,
			kgo.ClientID("rdv-decoy"),
			kgo.TransactionalID(env.TransactionalID()),
			kgo.TransactionTimeout(30*time.Second),
			kgo.ConsumeTopics(env.Topics.Inputs),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.ProducerLinger(5*time.Millisecond),
		)
		opts = append(opts, env.GroupOpts(cfg.Group)...)
		opts = append(opts, stage.LogPathOpts()...)
		opts = append(opts, stage.GroupReadiness(env.Health, env.Log)...)
		sess, err := kgo.NewGroupTransactSession(opts...)
		if err != nil {
			return fmt.Errorf("transactional session: %w", err)
		}
		defer sess.Close()
		env.WatchLag(ctx, sess.Client(), cfg.Group)
		g, gctx := errgroup.WithContext(ctx)
		if mon != nil {
			g.Go(func() error { return mon.Run(gctx) })
		}
		g.Go(func() error { return loop(gctx, env, sess, mon) })
		return g.Wait()
	})
}

// Copy returns the decoy-log record for an input record, or the dead-letter
// record when the input cannot be decoded.
func Copy(ctx context.Context, env *stage.Env, reader *serde.Schema, r *kgo.Record) *kgo.Record {
	out, _ := copyInput(ctx, env, reader, r)
	return out
}

// copyInput is Copy, also returning the decoded input (nil when it was
// dead-lettered).
func copyInput(ctx context.Context, env *stage.Env, reader *serde.Schema, r *kgo.Record) (*kgo.Record, map[string]any) {
	in, err := env.Serde.Decode(ctx, r.Value, reader)
	if err != nil {
		env.Metrics.Errors.WithLabelValues("decode").Inc()
		env.Metrics.Records.WithLabelValues(r.Topic, "dead_letter").Inc()
		env.Log.Warn("dead-lettered", "partition", r.Partition, "offset", r.Offset, "err", err)
		return stage.DeadLetterRecord(env.Topics.DLQ, env.Name, r, err), nil
	}
	env.Metrics.Records.WithLabelValues(r.Topic, "ok").Inc()
	return &kgo.Record{Topic: env.Topics.Decoy, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}, in
}

func loop(ctx context.Context, env *stage.Env, sess *kgo.GroupTransactSession, mon *drift.Monitor) error {
	reader := env.Reader(schemas.Input)
	var batch []map[string]float64
	for {
		fs := sess.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				env.Metrics.Errors.WithLabelValues("fetch").Inc()
				env.Log.Error("fetch", "topic", t, "partition", p, "err", err)
			}
		})
		if fs.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
		batch = batch[:0]
		fs.EachRecord(func(r *kgo.Record) {
			out, in := copyInput(ctx, env, reader, r)
			if in != nil && mon != nil {
				batch = append(batch, serde.Doubles(in, "features"))
			}
			sess.Produce(ctx, out, func(r *kgo.Record, err error) {
				if err == nil {
					env.Metrics.Produced.WithLabelValues(r.Topic).Inc()
				}
			})
		})
		// End with a context of its own: a transaction half-ended by a
		// signal would only abort, and the next owner redo it.
		ectx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		committed, err := sess.End(ectx, kgo.TryCommit)
		cancel()
		if err != nil {
			return fmt.Errorf("end transaction: %w", err)
		}
		if !committed {
			env.Metrics.Errors.WithLabelValues("txn_aborted").Inc()
			env.Log.Warn("transaction aborted (rebalance); the batch will be read again")
			continue
		}
		// Only committed inputs count for drift: an aborted batch is read
		// again and would count twice.
		for _, x := range batch {
			mon.ObserveInput(x)
		}
	}
}
