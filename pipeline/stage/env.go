package stage

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/contract"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// Env is what every stage starts from: its logger, metrics, health, the
// objective's topics and schemas, and a serde over the registry.
type Env struct {
	Name     string
	Cfg      config.Common
	Log      *slog.Logger
	Reg      *prometheus.Registry
	Metrics  *Metrics
	Health   *Health
	Topics   topics.Set
	Schemas  schemas.Set
	Registry registry.Client
	Serde    *serde.Serde
	readers  map[schemas.Kind]*serde.Schema
}

// NewEnv validates cfg and builds the environment of stage name.
func NewEnv(name string, cfg config.Common) (*Env, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s config: %w", name, err)
	}
	set, err := schemas.Load(cfg.SchemasDir, cfg.Objective)
	if err != nil {
		return nil, err
	}
	rc, err := registry.New(registry.Config{URL: cfg.RegistryURL, Username: cfg.RegistryUser, Password: cfg.RegistryPass, Timeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	e := &Env{
		Name:     name,
		Cfg:      cfg,
		Log:      cfg.Logger(name),
		Reg:      NewRegistry(),
		Health:   &Health{},
		Topics:   topics.For(cfg.Objective),
		Schemas:  set,
		Registry: rc,
		Serde:    serde.New(rc),
		readers:  map[schemas.Kind]*serde.Schema{},
	}
	e.Metrics = NewMetrics(e.Reg, name)
	for k, text := range set.Text {
		sc, err := serde.Parse(text)
		if err != nil {
			return nil, fmt.Errorf("embedded %s schema: %w", k, err)
		}
		e.readers[k] = sc
	}
	return e, nil
}

// Reader is this build's reader schema of a kind.
func (e *Env) Reader(k schemas.Kind) *serde.Schema { return e.readers[k] }

// Encoder registers this build's schema of kind k for topic and returns its
// encoder. Registration is idempotent.
func (e *Env) Encoder(ctx context.Context, topic string, k schemas.Kind) (*serde.Encoder, error) {
	return e.Serde.Encoder(ctx, topics.Subject(topic), e.Schemas.Text[k])
}

// Client builds a franz-go client for this stage with the shared connection
// settings plus opts.
func (e *Env) Client(opts ...kgo.Opt) (*kgo.Client, error) {
	base, err := e.Cfg.Kafka.ClientOpts()
	if err != nil {
		return nil, err
	}
	base = append(base, kgo.ClientID("rdv-"+e.Name))
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

// Run serves health and metrics and runs work until ctx ends or work fails.
// The HTTP server stops last, so /metrics is scrapeable during the drain.
func (e *Env) Run(ctx context.Context, work func(ctx context.Context) error) error {
	g, gctx := errgroup.WithContext(ctx)
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	defer stopHTTP()
	g.Go(func() error {
		err := Serve(httpCtx, e.Cfg.HTTPAddr, Mux(e.Health, e.Reg), e.Log)
		if httpCtx.Err() == nil {
			return err // the server failed on its own
		}
		return nil
	})
	g.Go(func() error {
		defer stopHTTP()
		err := work(gctx)
		if err != nil && ctx.Err() == nil {
			e.Log.Error("stage failed", "err", err)
			return err
		}
		e.Log.Info("stopped")
		return nil
	})
	return g.Wait()
}

// RequireReadable refuses to start a stage whose reader schema of kind k
// cannot read what the registry holds for topic: better a clear error at
// start than every record dead-lettered.
func (e *Env) RequireReadable(ctx context.Context, topic string, k schemas.Kind) error {
	if err := contract.RequireReadable(ctx, e.Registry, topic, e.Schemas.Text[k]); err != nil {
		return fmt.Errorf("%s cannot start: %w", e.Name, err)
	}
	return nil
}

// GroupOpts joins group with the stage's session timeout and, when the
// replica is named, as a static member: a restarted replica then gets its
// partitions back without waiting for the old member's session to expire.
func (e *Env) GroupOpts(group string) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.SessionTimeout(e.Cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, e.Cfg.SessionTimeout/3)),
	}
	if e.Cfg.Instance != "" {
		opts = append(opts, kgo.InstanceID(e.Cfg.Instance))
	}
	return opts
}

// TransactionalID names the stage's transactional producer. A named
// replica keeps its id across restarts, which fences a crashed
// predecessor's open transaction; an unnamed one gets a unique id.
func (e *Env) TransactionalID() string {
	inst := e.Cfg.Instance
	if inst == "" {
		inst = fmt.Sprint(time.Now().UnixNano())
	}
	return fmt.Sprintf("rdv.%s.%s.%s", e.Cfg.Objective, e.Name, inst)
}

// WatchLag tracks the consumer lag of group in the background.
func (e *Env) WatchLag(ctx context.Context, cl *kgo.Client, group string) {
	go TrackLag(ctx, kadm.NewClient(cl), group, e.Metrics, 5*time.Second)
}
