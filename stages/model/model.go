// Package model is the model runner: one process per model version. It
// reads the objective's inputs in a consumer group of its own, so every
// model sees every input, and writes one score per input, a result or an
// error, with the time the model took.
package model

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
)

// Roles a model version can play.
const (
	RoleChampion   = "champion"
	RoleCanary     = "canary"
	RoleChallenger = "challenger"
	RoleShadow     = "shadow"
)

// Config is the model runner's configuration.
type Config struct {
	Common config.Common
	// ModelPath is the model file the built-in evaluators load.
	ModelPath string
	// Name and Version override the model file's own.
	Name, Version string
	Role          string
	// Group is the consumer group; empty means rdv.<objective>.model.<name>.
	Group string
	// MaxStaleness skips inputs whose deadline passed longer ago than this:
	// after a restart the runner catches up instead of scoring requests that
	// were answered long ago. Zero scores everything.
	MaxStaleness time.Duration
}

// Defaults returns the runner defaults.
func Defaults() Config {
	return Config{Common: config.Defaults(), Role: RoleChampion, MaxStaleness: 30 * time.Second}
}

// Validate names the bad field.
func (c Config) Validate() error {
	var errs []error
	if err := c.Common.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ModelPath == "" {
		errs = append(errs, errors.New("model: a model file is required"))
	}
	switch c.Role {
	case RoleChampion, RoleCanary, RoleChallenger, RoleShadow:
	default:
		errs = append(errs, fmt.Errorf("role: %q is not champion, canary, challenger or shadow", c.Role))
	}
	if c.MaxStaleness < 0 {
		errs = append(errs, fmt.Errorf("max-staleness: %v must not be negative", c.MaxStaleness))
	}
	return errors.Join(errs...)
}

// Run runs the model runner until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("model runner config: %w", err)
	}
	m, err := evaluator.Load(cfg.ModelPath)
	if err != nil {
		return fmt.Errorf("load model: %w", err)
	}
	if cfg.Name == "" {
		cfg.Name = m.Name()
	}
	if cfg.Version == "" {
		cfg.Version = m.Version()
	}
	env, err := stage.NewEnv("model", cfg.Common)
	if err != nil {
		return err
	}
	env.Log = env.Log.With("model", cfg.Name, "version", cfg.Version, "role", cfg.Role)
	group := cfg.Group
	if group == "" {
		group = fmt.Sprintf("rdv.%s.model.%s", cfg.Common.Objective, cfg.Name)
	}
	return env.Run(ctx, func(ctx context.Context) error {
		enc, err := env.Encoder(ctx, env.Topics.Scores, schemas.Score)
		if err != nil {
			return err
		}
		opts := append(stage.HotPathOpts(),
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(env.Topics.Inputs),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
			kgo.AutoCommitMarks(),
		)
		opts = append(opts, stage.GroupReadiness(env.Health, env.Log)...)
		cl, err := env.Client(opts...)
		if err != nil {
			return err
		}
		defer cl.Close()
		env.WatchLag(ctx, cl, group)
		r := &runner{cfg: cfg, env: env, model: m, enc: enc, reader: env.Reader(schemas.Input)}
		r.compute = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rdv_model_compute_seconds", Help: "Time the model spends on one input.", Buckets: stage.LatencyBuckets,
			ConstLabels: prometheus.Labels{"model": cfg.Name, "version": cfg.Version},
		})
		r.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_model_scores_total", Help: "Scores written, by outcome (ok, error, skipped_stale).",
			ConstLabels: prometheus.Labels{"model": cfg.Name, "version": cfg.Version},
		}, []string{"outcome"})
		env.Reg.MustRegister(r.compute, r.outcomes)
		env.Log.Info("model loaded", "path", cfg.ModelPath, "features", m.Features(), "group", group)
		h := stage.Chain(r.handle,
			stage.WithMetrics(env.Metrics),
			stage.WithDeadLetter(env.Topics.DLQ, "model-"+cfg.Name, env.Metrics, env.Log),
			stage.WithRetry(5, env.Metrics),
		)
		return stage.Loop(ctx, cl, h, env.Metrics, env.Log)
	})
}

type runner struct {
	cfg      Config
	env      *stage.Env
	model    evaluator.Model
	enc      *serde.Encoder
	reader   *serde.Schema
	compute  prometheus.Histogram
	outcomes *prometheus.CounterVec
}

func (r *runner) handle(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	in, err := r.env.Serde.Decode(ctx, rec.Value, r.reader)
	if err != nil {
		return nil, err
	}
	if r.cfg.MaxStaleness > 0 && time.Since(time.UnixMicro(serde.Long(in, "deadline_us"))) > r.cfg.MaxStaleness {
		r.outcomes.WithLabelValues("skipped_stale").Inc()
		return nil, nil
	}
	score := Score(r.model, r.cfg, in)
	r.compute.Observe(float64(score["compute_us"].(int64)) / 1e6)
	outcome := "ok"
	if score["error"] != nil {
		outcome = "error"
	}
	r.outcomes.WithLabelValues(outcome).Inc()
	value, err := r.enc.Encode(make([]byte, 0, 128), score)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", stage.ErrPoison, err)
	}
	return []*kgo.Record{{Topic: r.env.Topics.Scores, Key: rec.Key, Value: value}}, nil
}

// Score runs the model on one decoded input and builds the score record. A
// model error is an answer too: the rendezvous stage must know the model
// failed rather than wait for it.
func Score(m evaluator.Model, cfg Config, in map[string]any) map[string]any {
	start := time.Now()
	p, err := m.Predict(serde.Doubles(in, "features"))
	compute := time.Since(start)
	out := map[string]any{
		"request_id":    serde.Str(in, "request_id"),
		"objective":     serde.Str(in, "objective"),
		"model":         cfg.Name,
		"version":       cfg.Version,
		"role":          cfg.Role,
		"result":        nil,
		"probabilities": map[string]any{},
		"error":         nil,
		"compute_us":    compute.Microseconds(),
		"scored_us":     time.Now().UnixMicro(),
	}
	if err != nil {
		out["error"] = serde.Opt(err.Error())
		return out
	}
	out["result"] = serde.Opt(p.Label)
	out["probabilities"] = serde.DoubleMap(p.Probabilities)
	return out
}
