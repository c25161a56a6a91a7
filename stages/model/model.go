// Package model is the model runner: one process per model version. It
// reads the objective's inputs in a consumer group of its own, so every
// model sees every input, and writes one score per input, a result or an
// error, with the time the model took. The model is a file evaluated in
// process (kind file) or a model on a model server speaking the Open
// Inference Protocol (kind http, see package oip).
package model

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
	"github.com/rendezvous-ml/rendezvous/stages/model/oip"
)

// Roles a model version can play.
const (
	RoleChampion   = "champion"
	RoleCanary     = "canary"
	RoleChallenger = "challenger"
	RoleShadow     = "shadow"
)

// Kinds of model: where the model runs.
const (
	KindFile = "file" // a model file, evaluated by the built-in evaluators
	KindHTTP = "http" // a model on an Open Inference Protocol (KServe v2) server
)

// Config is the model runner's configuration.
type Config struct {
	Common config.Common
	// Kind is KindFile (the default; empty means it too) or KindHTTP.
	Kind string
	// ModelPath is the model file the built-in evaluators load (kind file).
	ModelPath string
	// OIP is the model server and the model on it (kind http).
	OIP oip.Config
	// Name and Version override the model file's own.
	Name, Version string
	Role          string
	// Group is the consumer group; empty means rdv.<objective>.model.<name>.<version>:
	// every model version reads every input.
	Group string
	// MaxStaleness skips inputs whose deadline passed longer ago than this:
	// after a restart the runner catches up instead of scoring requests that
	// were answered long ago. Zero scores everything.
	MaxStaleness time.Duration
	// FromStart makes a new consumer group start at the beginning of the
	// inputs instead of their end: a new model version scores history.
	FromStart bool
	// What the runner announces on the live model registry besides its
	// name, version and role; nil leaves it to the rendezvous stage's
	// declared models. Heartbeat is the interval (negative: do not announce).
	Priority  *int
	Budget    *time.Duration
	Tenant    *string
	Heartbeat time.Duration
	// Replay scores history before going live (see Replay).
	Replay Replay
}

// Defaults returns the runner defaults.
func Defaults() Config {
	remote := oip.Defaults()
	// The stage loop scores one input at a time: a batching window would
	// only delay each call.
	remote.BatchWindow = 0
	return Config{Common: config.Defaults(), Kind: KindFile, OIP: remote, Role: RoleChampion, MaxStaleness: 30 * time.Second,
		Heartbeat: time.Second, Replay: Replay{Offset: -1}}
}

// Validate names the bad field.
func (c Config) Validate() error {
	var errs []error
	if err := c.Common.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.Kind {
	case KindFile, "":
		if c.ModelPath == "" && c.OIP.URL != "" {
			errs = append(errs, fmt.Errorf("model: a model file is required (or kind http, to use the model server at %s)", c.OIP.URL))
		} else if c.ModelPath == "" {
			errs = append(errs, errors.New("model: a model file is required"))
		}
	case KindHTTP:
		if c.ModelPath != "" {
			errs = append(errs, fmt.Errorf("model: kind http runs the model on the server at the url, but a model file (%s) is given too: drop one", c.ModelPath))
		}
		if err := c.OIP.Validate(); err != nil {
			each := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				each = j.Unwrap()
			}
			for _, e := range each {
				errs = append(errs, fmt.Errorf("kind http: %w", e))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("kind: %q is not file or http", c.Kind))
	}
	switch c.Role {
	case RoleChampion, RoleCanary, RoleChallenger, RoleShadow:
	default:
		errs = append(errs, fmt.Errorf("role: %q is not champion, canary, challenger or shadow", c.Role))
	}
	if c.Priority != nil && *c.Priority < 0 {
		errs = append(errs, fmt.Errorf("priority: %d must not be negative", *c.Priority))
	}
	if c.Budget != nil && *c.Budget < 0 {
		errs = append(errs, fmt.Errorf("budget: %v must not be negative", *c.Budget))
	}
	if strings.ContainsAny(c.Name, "|@") || strings.ContainsAny(c.Version, "|") {
		errs = append(errs, fmt.Errorf("name: %q (version %q) must not contain '|' or '@'", c.Name, c.Version))
	}
	if err := c.Replay.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Replay.Active() && c.FromStart {
		errs = append(errs, errors.New("from-start: scores history as live; with a replay (-since, -from-...) drop it"))
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
	var (
		m      evaluator.Model
		remote *oip.Client
		err    error
	)
	if cfg.Kind == KindHTTP {
		if remote, err = oip.New(cfg.OIP); err != nil {
			return err
		}
		defer remote.Close()
		m = remote
	} else if m, err = evaluator.Load(cfg.ModelPath); err != nil {
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
		if cfg.Version != "" {
			group += "." + cfg.Version
		}
	}
	return env.Run(ctx, func(ctx context.Context) error {
		if remote != nil {
			if err := waitServer(ctx, remote, env); err != nil {
				return err
			}
			if cfg.Version == "" {
				cfg.Version = remote.Version()
			}
		}
		if err := env.RequireReadable(ctx, env.Topics.Inputs, schemas.Input); err != nil {
			return err
		}
		enc, err := env.Encoder(ctx, env.Topics.Scores, schemas.Score)
		if err != nil {
			return err
		}
		ann, unannounce, err := announce(ctx, env, cfg)
		if err != nil {
			return err
		}
		defer unannounce()
		r := &runner{cfg: cfg, env: env, model: m, enc: enc, reader: env.Reader(schemas.Input)}
		opts := append(stage.HotPathOpts(), env.GroupOpts(group)...)
		opts = append(opts,
			kgo.ConsumeTopics(env.Topics.Inputs),
			kgo.ConsumeResetOffset(startOffset(cfg.FromStart)),
			kgo.AutoCommitMarks(),
		)
		if cfg.Replay.Active() {
			// Ready, and announced live, only once history is scored.
			if err := r.startReplay(ctx, group, ann); err != nil {
				return err
			}
			opts = append(opts, kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
				env.Log.Info("partitions assigned", "partitions", a)
			}))
		} else {
			opts = append(opts, stage.GroupReadiness(env.Health, env.Log)...)
		}
		cl, err := env.Client(opts...)
		if err != nil {
			return err
		}
		defer cl.Close()
		env.WatchLag(ctx, cl, group)
		if r.replay != nil {
			go r.replay.watch(ctx)
		}
		r.compute = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rdv_model_compute_seconds", Help: "Time the model spends on one input.", Buckets: stage.LatencyBuckets,
			ConstLabels: prometheus.Labels{"model": cfg.Name, "version": cfg.Version},
		})
		r.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_model_scores_total", Help: "Scores written, by outcome (ok, error, skipped_stale).",
			ConstLabels: prometheus.Labels{"model": cfg.Name, "version": cfg.Version},
		}, []string{"outcome"})
		env.Reg.MustRegister(r.compute, r.outcomes)
		if remote != nil {
			env.Log.Info("model on the model server", "url", cfg.OIP.URL, "remote_model", cfg.OIP.Model, "version", cfg.Version, "features", m.Features(), "group", group)
		} else {
			env.Log.Info("model loaded", "path", cfg.ModelPath, "features", m.Features(), "group", group)
		}
		h := stage.Chain(r.handle,
			stage.WithDeadLetter(env.Topics.DLQ, "model-"+cfg.Name, env.Metrics, env.Log),
			stage.WithMetrics(env.Metrics),
			stage.WithRetry(5, env.Metrics),
		)
		return stage.Loop(ctx, cl, h, env.Metrics, env.Log)
	})
}

// waitServer keeps the runner not ready until the model server and the
// model are ready and the model's metadata fits the configuration.
func waitServer(ctx context.Context, c *oip.Client, env *stage.Env) error {
	last := ""
	for {
		err := c.Check(ctx)
		if err == nil {
			env.Log.Info("model server ready", "url", c.Config().URL, "remote_model", c.Name())
			return nil
		}
		env.Health.SetNotReady("waiting for the model server: " + err.Error())
		if err.Error() != last {
			env.Log.Warn("model server not ready", "err", err)
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

type runner struct {
	cfg       Config
	env       *stage.Env
	model     evaluator.Model
	enc       *serde.Encoder
	replayEnc *serde.Encoder
	replay    *replayer // nil unless replaying history
	reader    *serde.Schema
	compute   prometheus.Histogram
	outcomes  *prometheus.CounterVec
}

func (r *runner) handle(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	in, err := r.env.Serde.Decode(ctx, rec.Value, r.reader)
	if err != nil {
		return nil, err
	}
	if rp := r.replay; rp != nil && rp.replaying(rec.Partition) {
		if time.Now().Before(time.UnixMicro(serde.Long(in, "deadline_us"))) {
			// An input that can still be answered: this partition's
			// history is behind us.
			rp.partitionLive(rec.Partition)
		} else {
			out, err := r.replayRecord(in, rec.Key)
			if err != nil {
				return nil, err
			}
			rp.handled(rec.Partition, rec.Offset)
			rp.count()
			return []*kgo.Record{out}, nil
		}
	}
	if r.replay != nil {
		r.replay.handled(rec.Partition, rec.Offset)
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
	p, err := predict(m, in)
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

// deadlinePredictor is a model that can use the request's deadline: the
// oip client retries a failed call only while the answer can be on time.
type deadlinePredictor interface {
	PredictBefore(ctx context.Context, x map[string]float64, deadline time.Time) (evaluator.Prediction, error)
}

func predict(m evaluator.Model, in map[string]any) (evaluator.Prediction, error) {
	x := serde.Doubles(in, "features")
	if dp, ok := m.(deadlinePredictor); ok {
		var deadline time.Time
		if us := serde.Long(in, "deadline_us"); us > 0 {
			deadline = time.UnixMicro(us)
		}
		// Not the handler's context: on shutdown the batch in hand is
		// finished, and the call timeout bounds the wait.
		return dp.PredictBefore(context.Background(), x, deadline)
	}
	// A stateful model keeps its statistics per routing key (evaluator.Keyed).
	if km, ok := m.(evaluator.Keyed); ok {
		return km.PredictKeyed(serde.Str(in, "key"), x)
	}
	return m.Predict(x)
}

func startOffset(fromStart bool) kgo.Offset {
	if fromStart {
		return kgo.NewOffset().AtStart()
	}
	return kgo.NewOffset().AtEnd()
}
