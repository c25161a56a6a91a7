// Package rendezvous is the stage that races the models. It reads requests
// and scores co-partitioned by request id, so the instance that owns
// partition p of both topics owns those requests' mailboxes outright. It
// answers each request as soon as its policy can decide, on the request's
// return address, and logs one decision per request, with every score it
// saw, exactly once.
//
// Exactly once, without slowing the answers: decisions are committed in
// Kafka transactions by a writer of their own, and the consumer's offsets
// are committed only up to the oldest request whose decision is not yet
// committed. After a crash or rebalance the new owner reads again from
// there, and skips the requests whose decisions it finds already in the
// decisions log.
package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

// ReasonShed is the reason of an answer given at once because too many
// mailboxes were open.
const ReasonShed = "shed"

// ReasonExpired is the reason recorded for a request the frontend answered
// with the default itself, because no decision reached it in time (see
// frontend.MarkerModel).
const ReasonExpired = "expired"

// markerModel is the model name of the frontend's marker score.
const markerModel = "_frontend"

type metrics struct {
	decisions *prometheus.CounterVec
	scores    *prometheus.CounterVec
	open      prometheus.Gauge
	toDecide  prometheus.Histogram
	txns      *prometheus.CounterVec
	commit    prometheus.Histogram
	skipped   prometheus.Counter
	asGiven   prometheus.Counter
	// Per model version (label model = name@version).
	wins      *prometheus.CounterVec
	late      *prometheus.CounterVec
	errs      *prometheus.CounterVec
	timeouts  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	circuit   *prometheus.GaugeVec
	expected  prometheus.Gauge
	policies  *prometheus.CounterVec
	owned     prometheus.Gauge
	overtaken prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, objective string) *metrics {
	obj := prometheus.Labels{"objective": objective}
	m := &metrics{
		wins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_rendezvous_model_wins_total", Help: "Answers given with a model's score, by model version.", ConstLabels: obj,
		}, []string{"model"}),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_rendezvous_late_scores_total", Help: "Scores that arrived after their request was answered, by model version.", ConstLabels: obj,
		}, []string{"model"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_rendezvous_model_errors_total", Help: "Scores that carried a model error, by model version.", ConstLabels: obj,
		}, []string{"model"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_rendezvous_model_timeouts_total", Help: "Times an answering model had not answered within its budget, by model version.", ConstLabels: obj,
		}, []string{"model"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rdv_rendezvous_model_latency_seconds", Help: "From the request's receipt to its score's arrival at the rendezvous, by model version.", ConstLabels: obj, Buckets: stage.LatencyBuckets,
		}, []string{"model"}),
		circuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rdv_rendezvous_circuit_state", Help: "Circuit breaker state by model version: 0 closed, 1 half-open, 2 open.", ConstLabels: obj,
		}, []string{"model"}),
		expected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rdv_rendezvous_models_waited", Help: "Model versions the stage waits for now (live in the model registry).", ConstLabels: obj,
		}),
		overtaken: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rdv_rendezvous_overtaken_total", Help: "Decisions corrected to the frontend's default: the answer reached the frontend after it had answered by itself.", ConstLabels: obj,
		}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rdv_rendezvous_owned_partitions", Help: "Partitions of the requests topic this instance owns (and so their mailboxes).", ConstLabels: obj,
		}),
		policies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_rendezvous_policy_updates_total", Help: "Policy rebuilds from the model registry, by outcome (applied, rejected).", ConstLabels: obj,
		}, []string{"outcome"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_rendezvous_decisions_total", Help: "Answers, by reason and winning model.",
		}, []string{"reason", "model"}),
		scores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_rendezvous_scores_total", Help: "Scores seen, by model and fate (in_time, late, failed, duplicate, orphan, after_close).",
		}, []string{"model", "fate"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rdv_rendezvous_open_mailboxes", Help: "Mailboxes open on this instance.",
		}),
		toDecide: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rdv_rendezvous_time_to_decision_seconds", Help: "From the request's receipt at the frontend to the answer.", Buckets: stage.LatencyBuckets,
		}),
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rdv_rendezvous_transactions_total", Help: "Decision transactions, by outcome (committed, failed).",
		}, []string{"outcome"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rdv_rendezvous_commit_seconds", Help: "Time to commit one transaction of decisions.", Buckets: stage.LatencyBuckets,
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rdv_rendezvous_replayed_decided_total", Help: "Replayed requests skipped because their decision was already logged.",
		}),
		asGiven: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rdv_rendezvous_replayed_answered_total", Help: "Replayed requests logged as a previous owner had answered them (read back from the results topic).",
		}),
	}
	reg.MustRegister(m.decisions, m.scores, m.open, m.toDecide, m.txns, m.commit, m.skipped, m.asGiven,
		m.wins, m.late, m.errs, m.timeouts, m.latency, m.circuit, m.expected, m.policies, m.owned, m.overtaken)
	return m
}

// Run runs the rendezvous stage until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("rendezvous config: %w", err)
	}
	env, err := stage.NewEnv("rendezvous", cfg.Common)
	if err != nil {
		return err
	}
	if cfg.Group == "" {
		cfg.Group = "rdv." + cfg.Common.Objective + ".rendezvous"
	}
	return env.Run(ctx, func(ctx context.Context) error {
		s, err := newStage(ctx, cfg, env)
		if err != nil {
			return err
		}
		defer s.close()
		return s.loop(ctx)
	})
}

// pending is a closed mailbox whose decision is not committed yet.
type pending struct {
	partition           int32
	reqOffset, minScore int64
}

type stageState struct {
	cfg Config
	env *stage.Env
	m   *metrics

	// eng decides; it is rebuilt when the live models change, with the same
	// breaker, so a model's circuit survives a promotion.
	eng     *policy.Engine
	breaker *policy.Breaker
	fleet   *fleetView

	cons    *kgo.Client // requests and scores, in the group
	hot     *kgo.Client // results: the latency-bound hop
	w       *writer
	resultE *serde.Encoder
	decideE *serde.Encoder
	reqRd   *serde.Schema
	scoreRd *serde.Schema
	resRd   *serde.Schema

	assigned chan map[string][]int32
	revoked  chan revocation

	boxes map[string]*mailbox
	wake  wakeups
	parts map[int32]*partState

	next      []*kgo.Record // decisions not yet handed to the writer
	nextClose []pending
	inFlight  *batch
	flightSet []pending
	seq       uint64
}

// partState is what the stage knows of one owned partition.
type partState struct {
	// consumed is the next offset to read, per topic.
	reqNext, scoreNext int64
	// catchUp holds the end offsets at assignment until they are read;
	// until then a passed deadline is not acted on, since the scores for it
	// may be next in the partition.
	catchReq, catchScore int64
	// decided holds the request ids already in the decisions log, read at
	// assignment, so that replayed requests are not decided twice.
	decided map[string]bool
	// answered holds, while the partition replays, the answers the last
	// owners wrote to the results topic, by request id: a request answered
	// but not yet logged when its owner died is logged as it was answered.
	answered map[string]*answerGiven
}

// answerGiven is an answer read back from the results topic.
type answerGiven struct {
	reason, policy string
	winner         *policy.Score // nil for the default
}

type revocation struct {
	parts map[string][]int32
	lost  bool
	ack   chan struct{}
}

func newStage(ctx context.Context, cfg Config, env *stage.Env) (*stageState, error) {
	s := &stageState{
		cfg:      cfg,
		env:      env,
		m:        newMetrics(env.Reg, cfg.Common.Objective),
		reqRd:    env.Reader(schemas.Request),
		scoreRd:  env.Reader(schemas.Score),
		resRd:    env.Reader(schemas.Result),
		assigned: make(chan map[string][]int32, 16),
		revoked:  make(chan revocation),
		boxes:    map[string]*mailbox{},
		parts:    map[int32]*partState{},
	}
	if cfg.Policy.Breaker != nil {
		s.breaker = policy.NewBreaker(*cfg.Policy.Breaker)
	}
	for topic, k := range map[string]schemas.Kind{env.Topics.Requests: schemas.Request, env.Topics.Scores: schemas.Score} {
		if err := env.RequireReadable(ctx, topic, k); err != nil {
			return nil, err
		}
	}
	var err error
	if s.resultE, err = env.Encoder(ctx, env.Topics.Results, schemas.Result); err != nil {
		return nil, err
	}
	if s.decideE, err = env.Encoder(ctx, env.Topics.Decisions, schemas.Decision); err != nil {
		return nil, err
	}
	if s.hot, err = env.Client(append(stage.HotPathOpts(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...); err != nil {
		return nil, err
	}
	// The models to wait for are known before the first request is read.
	if err := s.startModels(ctx); err != nil {
		s.hot.Close()
		return nil, err
	}
	txc, err := env.Client(
		kgo.TransactionalID(env.TransactionalID()),
		kgo.TransactionTimeout(30*time.Second),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		s.hot.Close()
		return nil, err
	}
	s.w = newWriter(txc, env.Log, s.m.commit)
	revoke := func(r map[string][]int32, lost bool) {
		ack := make(chan struct{})
		select {
		case s.revoked <- revocation{parts: r, lost: lost, ack: ack}:
			<-ack
		case <-ctx.Done():
		}
	}
	opts := append(stage.HotPathOpts(), env.GroupOpts(cfg.Group)...)
	opts = append(opts,
		kgo.ConsumeTopics(env.Topics.Requests, env.Topics.Scores),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// Range assignment gives partition p of both topics to one member,
		// since both topics have the same partition count.
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			env.Log.Info("partitions assigned", "partitions", a)
			s.assigned <- a
			env.Health.SetReady()
		}),
		// Revocation waits for the loop to commit what it decided for those
		// partitions, so the next owner starts exactly where this one ended.
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
			env.Log.Info("partitions revoked", "partitions", r)
			revoke(r, false)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
			env.Log.Warn("partitions lost", "partitions", r)
			revoke(r, true)
		}),
	)
	if s.cons, err = env.Client(opts...); err != nil {
		s.hot.Close()
		txc.Close()
		return nil, err
	}
	env.WatchLag(ctx, s.cons, cfg.Group)
	env.Log.Info("rendezvous configured", "policy", s.eng.Kind(), "models", s.eng.Keys(), "live_models", cfg.LiveModels, "grace", cfg.Grace, "default", cfg.DefaultResult)
	return s, nil
}

func (s *stageState) close() {
	s.stopModels()
	s.cons.Close()
	s.hot.Close()
	s.w.cl.Close()
}

// warmUp runs one aborted transaction on the decisions topic: a client's
// first write to a topic waits for metadata and for the transaction
// coordinator, and the first requests should not pay for it. Aborted
// records are invisible to read_committed readers.
func (s *stageState) warmUp(ctx context.Context) error {
	cl := s.w.cl
	if err := cl.BeginTransaction(); err != nil {
		return fmt.Errorf("warm-up: begin: %w", err)
	}
	res := cl.ProduceSync(ctx, &kgo.Record{Topic: s.env.Topics.Decisions, Key: []byte("rdv.warm-up")})
	if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		return fmt.Errorf("warm-up: abort: %w", err)
	}
	if err := res.FirstErr(); err != nil {
		return fmt.Errorf("warm-up: produce: %w", err)
	}
	return nil
}

func (s *stageState) loop(ctx context.Context) error {
	if err := s.warmUp(ctx); err != nil {
		return err
	}
	wctx, stopWriter := context.WithCancel(context.Background())
	defer stopWriter()
	go s.w.run(wctx)
	nextCommit := time.Now().Add(s.cfg.CommitInterval)
	for {
		s.handleRebalances(ctx)
		now := time.Now()
		s.refreshModels(now)
		s.fire(ctx, now)
		if !now.Before(nextCommit) {
			s.handOff()
			nextCommit = now.Add(s.cfg.CommitInterval)
		}
		if ctx.Err() != nil {
			return s.shutdown()
		}
		until := nextCommit
		if at, ok := s.wake.next(); ok && at.Before(until) {
			until = at
		}
		pctx, cancel := context.WithDeadline(ctx, until)
		fs := s.cons.PollFetches(pctx)
		cancel()
		if fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				s.env.Metrics.Errors.WithLabelValues("fetch").Inc()
				s.env.Log.Error("fetch", "topic", t, "partition", p, "err", err)
			}
		})
		s.handleRebalances(ctx)
		now = time.Now()
		fs.EachRecord(func(r *kgo.Record) { s.handle(ctx, r, now) })
		s.collect(ctx, false)
	}
}

// shutdown commits every decision made and the offsets they allow.
func (s *stageState) shutdown() error {
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.drain(cctx)
	return s.commitOffsets(cctx, true)
}

// drain hands off what is decided and waits until it is committed.
func (s *stageState) drain(ctx context.Context) {
	for s.inFlight != nil || len(s.next) > 0 {
		s.handOff()
		if !s.collect(ctx, true) {
			return
		}
	}
}
