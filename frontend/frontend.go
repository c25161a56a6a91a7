// Package frontend is the HTTP door of the pipeline. It turns a predict call
// into a request record on the objective's requests topic, naming its own
// partition of the results topic as the return address, and answers the
// call when the rendezvous stage writes the result there. It reads only its
// own reply partition, so its cost grows with its own traffic.
package frontend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
)

// Config is the frontend's configuration.
type Config struct {
	Common config.Common
	// Addr serves the predict API.
	Addr string
	// Objectives served; the first is the one POST /predict uses.
	Objectives []string
	// SLA is the answer deadline written into each request.
	SLA time.Duration
	// Grace is how long past the SLA a call waits for the rendezvous stage
	// before it gets a 504: the stage answers with a default at the SLA, so
	// only its absence makes a call wait this long.
	Grace time.Duration
	// DefaultResult, when set, is answered by the frontend itself, with
	// reason "expired", to a call whose answer has not arrived Fallback
	// after its deadline: the safety net for the seconds a killed
	// rendezvous instance's partitions wait for a new owner. The stage that
	// takes them over records these requests with the same default and
	// reason. Empty: such a call waits Grace and gets a 504.
	DefaultResult string
	Fallback      time.Duration
	// ReplyPartition is this instance's partition of the results topics.
	// Each frontend instance needs its own.
	ReplyPartition int32
	// MaxBody is the largest accepted request body.
	MaxBody int64
	// DirectModel, when set, is a model file the frontend evaluates in
	// process instead of sending the call through the pipeline: no Kafka,
	// no registry, no rendezvous. It exists as the baseline the pipeline
	// benchmark (bench/pipeline) measures the rendezvous overhead against.
	DirectModel string
}

// Defaults returns the frontend defaults.
func Defaults() Config {
	return Config{
		Common:     config.Defaults(),
		Addr:       "127.0.0.1:8000",
		Objectives: []string{"iris"},
		SLA:        100 * time.Millisecond,
		Grace:      2 * time.Second,
		Fallback:   40 * time.Millisecond,
		MaxBody:    1 << 20,
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	var errs []error
	if err := c.Common.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Addr == "" {
		errs = append(errs, errors.New("addr: required"))
	}
	if len(c.Objectives) == 0 {
		errs = append(errs, errors.New("objectives: at least one is required"))
	}
	for _, o := range c.Objectives {
		if _, err := schemas.Load(c.Common.SchemasDir, o); err != nil {
			errs = append(errs, fmt.Errorf("objectives: %w", err))
		}
	}
	if c.SLA <= 0 {
		errs = append(errs, fmt.Errorf("sla: %v must be positive", c.SLA))
	}
	if c.Fallback < 0 {
		errs = append(errs, fmt.Errorf("fallback: %v must not be negative", c.Fallback))
	}
	if c.Grace < 0 {
		errs = append(errs, fmt.Errorf("grace: %v must not be negative", c.Grace))
	}
	if c.ReplyPartition < 0 {
		errs = append(errs, fmt.Errorf("reply-partition: %d must not be negative", c.ReplyPartition))
	}
	if c.MaxBody <= 0 {
		errs = append(errs, fmt.Errorf("max-body: %d must be positive", c.MaxBody))
	}
	if c.DirectModel != "" {
		if _, err := os.Stat(c.DirectModel); err != nil {
			errs = append(errs, fmt.Errorf("direct-model: %w", err))
		}
	}
	return errors.Join(errs...)
}

// objective is what the frontend knows of one objective.
type objective struct {
	name     string
	topics   topics.Set
	features []schemas.Field
	enc      *serde.Encoder
	// scoreEnc writes the marker of a call the frontend answered itself
	// (see expiredMarker).
	scoreEnc *serde.Encoder
}

// answer is a decoded result, handed from the reply reader to the call.
type answer struct {
	rec     map[string]any
	arrived time.Time
}

// Server is a running frontend.
type Server struct {
	cfg        Config
	env        *stage.Env
	cl         *kgo.Client
	objectives map[string]*objective
	resultRd   *serde.Schema

	mu      sync.Mutex
	pending map[string]chan answer

	// direct is the in-process model of DirectModel mode, nil otherwise.
	direct        evaluator.Model
	directCompute prometheus.Histogram

	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
	orphans prometheus.Counter
}

// Run serves the predict API until ctx ends, then stops taking calls and
// waits for the ones in flight (bounded by SLA plus grace).
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("frontend config: %w", err)
	}
	cfg.Common.Objective = cfg.Objectives[0]
	env, err := stage.NewEnv("frontend", cfg.Common)
	if err != nil {
		return err
	}
	if cfg.DirectModel != "" {
		return runDirect(ctx, cfg, env)
	}
	return env.Run(ctx, func(ctx context.Context) error {
		s, err := newServer(ctx, cfg, env)
		if err != nil {
			return err
		}
		defer s.cl.Close()
		return s.serve(ctx)
	})
}

func newServer(ctx context.Context, cfg Config, env *stage.Env) (*Server, error) {
	s, err := baseServer(cfg, env)
	if err != nil {
		return nil, err
	}
	for _, o := range s.objectives {
		if err := env.RequireReadable(ctx, o.topics.Results, schemas.Result); err != nil {
			return nil, err
		}
		set, err := schemas.Load(cfg.Common.SchemasDir, o.name)
		if err != nil {
			return nil, err
		}
		if o.enc, err = env.Serde.Encoder(ctx, topics.Subject(o.topics.Requests), set.Text[schemas.Request]); err != nil {
			return nil, err
		}
		if cfg.DefaultResult != "" {
			if o.scoreEnc, err = env.Serde.Encoder(ctx, topics.Subject(o.topics.Scores), set.Text[schemas.Score]); err != nil {
				return nil, err
			}
		}
	}

	// Resolve the reply partitions' end offsets before taking calls, so that
	// no answer can arrive before the reader is positioned.
	probe, err := env.Client()
	if err != nil {
		return nil, err
	}
	var resultTopics []string
	for _, o := range s.objectives {
		resultTopics = append(resultTopics, o.topics.Results)
	}
	ends, err := kadm.NewClient(probe).ListEndOffsets(ctx, resultTopics...)
	probe.Close()
	if err != nil {
		return nil, fmt.Errorf("end offsets of %v: %w", resultTopics, err)
	}
	assign := map[string]map[int32]kgo.Offset{}
	for _, t := range resultTopics {
		lo, ok := ends.Lookup(t, cfg.ReplyPartition)
		if !ok || lo.Err != nil {
			return nil, fmt.Errorf("reply partition %d of %s: does not exist (the topic has fewer partitions than reply partitions in use)", cfg.ReplyPartition, t)
		}
		assign[t] = map[int32]kgo.Offset{cfg.ReplyPartition: kgo.NewOffset().At(lo.Offset)}
	}
	opts := append(stage.HotPathOpts(), kgo.ConsumePartitions(assign), kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	s.cl, err = env.Client(opts...)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// baseServer is what both modes share: the metrics and each objective's
// features, with no Kafka or registry behind them yet.
func baseServer(cfg Config, env *stage.Env) (*Server, error) {
	s := &Server{
		cfg:        cfg,
		env:        env,
		objectives: map[string]*objective{},
		pending:    map[string]chan answer{},
		resultRd:   env.Reader(schemas.Result),
	}
	s.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rdv_frontend_calls_total", Help: "Predict calls, by objective, HTTP status and reason.",
	}, []string{"objective", "code", "reason"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "rdv_frontend_call_seconds", Help: "Predict call latency, by objective and reason.", Buckets: stage.LatencyBuckets,
	}, []string{"objective", "reason"})
	s.orphans = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rdv_frontend_orphan_results_total", Help: "Results on the reply partition with no waiting call.",
	})
	env.Reg.MustRegister(s.calls, s.latency, s.orphans)
	for _, name := range cfg.Objectives {
		set, err := schemas.Load(cfg.Common.SchemasDir, name)
		if err != nil {
			return nil, err
		}
		fields, err := set.Features()
		if err != nil {
			return nil, err
		}
		s.objectives[name] = &objective{name: name, topics: topics.For(name), features: fields}
	}
	return s, nil
}

func (s *Server) serve(ctx context.Context) error {
	// The reply reader outlives ctx: calls in flight when shutdown starts
	// still get their answers while the HTTP server drains.
	readerCtx, stopReader := context.WithCancel(context.Background())
	readerDone := make(chan struct{})
	go func() { defer close(readerDone); s.readReplies(readerCtx) }()

	s.env.Health.SetReady()
	s.env.Log.Info("serving predict API", "addr", s.cfg.Addr, "objectives", s.cfg.Objectives, "sla", s.cfg.SLA, "reply_partition", s.cfg.ReplyPartition)
	err := stage.Serve(ctx, s.cfg.Addr, s.Handler(), s.env.Log)
	stopReader()
	s.cl.Close()
	<-readerDone
	return err
}

func (s *Server) readReplies(ctx context.Context) {
	for {
		fs := s.cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil && fs.Empty() {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				s.env.Log.Error("reply fetch", "topic", t, "partition", p, "err", err)
			}
		})
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			ch := s.take(string(r.Key))
			if ch == nil {
				s.orphans.Inc()
				return
			}
			rec, err := s.env.Serde.Decode(ctx, r.Value, s.resultRd)
			if err != nil {
				s.env.Log.Error("undecodable result", "key", string(r.Key), "err", err)
				rec = nil
			}
			ch <- answer{rec: rec, arrived: now}
		})
	}
}

func (s *Server) take(id string) chan answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.pending[id]
	if ok {
		delete(s.pending, id)
	}
	return ch
}

func (s *Server) await(id string) chan answer {
	ch := make(chan answer, 1)
	s.mu.Lock()
	s.pending[id] = ch
	s.mu.Unlock()
	return ch
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // a version 4 UUID, so tools recognise it
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
