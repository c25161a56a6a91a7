package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
)

// DefaultTTL is how long a heartbeat keeps a model version live: three
// missed heartbeats at the default interval.
const DefaultTTL = 3 * time.Second

// DefaultInterval is how often a runner heartbeats.
const DefaultInterval = time.Second

// ConsumeOpts are the options of a client that reads the whole registry.
func ConsumeOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumeTopics(topics.Models),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(250 * time.Millisecond),
	}
}

// Watcher folds rdv.models into a State as records arrive.
type Watcher struct {
	cl      *kgo.Client
	codec   *Codec
	log     *slog.Logger
	mu      sync.Mutex
	st      *State
	changed chan struct{}
	ready   chan struct{}
	// OnBad, when set, is called for a record that cannot be decoded; it is
	// skipped either way: the registry is control data, and a bad record
	// must not stop the models from being seen.
	OnBad func(r *kgo.Record, err error)
}

// NewWatcher reads with cl, a client made with ConsumeOpts.
func NewWatcher(cl *kgo.Client, codec *Codec, log *slog.Logger) *Watcher {
	return &Watcher{cl: cl, codec: codec, log: log, st: NewState(),
		changed: make(chan struct{}, 1), ready: make(chan struct{})}
}

// Ready is closed once the registry's content at start is read.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Changed receives a value after new records were folded in.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

// Models is State.Models under the watcher's lock.
func (w *Watcher) Models(objective string, now time.Time, ttl time.Duration) []Model {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st.Models(objective, now, ttl)
}

// Directive is State.Directive under the watcher's lock.
func (w *Watcher) Directive(objective, name, version string) (Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st.Directive(objective, name, version)
}

// Run reads until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	ends, err := kadm.NewClient(w.cl).ListEndOffsets(ctx, topics.Models)
	if err != nil {
		return fmt.Errorf("model registry %s: end offsets: %w", topics.Models, err)
	}
	if err := ends.Error(); err != nil {
		return fmt.Errorf("model registry %s: end offsets: %w", topics.Models, err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	if len(left) == 0 {
		close(w.ready)
	}
	for {
		fs := w.cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				w.log.Warn("model registry fetch", "partition", p, "err", err)
			}
		})
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if len(left) > 0 {
				if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
					delete(left, r.Partition)
					if len(left) == 0 {
						defer close(w.ready)
					}
				}
			}
			if r.Value == nil {
				w.mu.Lock()
				w.st.Apply(string(r.Key), nil)
				w.mu.Unlock()
				return
			}
			e, err := w.codec.Decode(ctx, r.Value)
			if err != nil {
				if w.OnBad != nil {
					w.OnBad(r, err)
				}
				w.log.Warn("model registry: undecodable record skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			w.mu.Lock()
			w.st.Apply(string(r.Key), &e)
			w.mu.Unlock()
		})
		if n > 0 {
			select {
			case w.changed <- struct{}{}:
			default:
			}
		}
	}
}

// Announcer heartbeats one model runner instance.
type Announcer struct {
	cl    *kgo.Client
	codec *Codec
	every time.Duration
	log   *slog.Logger
	mu    sync.Mutex
	ev    Event
	kick  chan struct{}
}

// NewAnnouncer announces base (a heartbeat event; its Status is the first
// status) every interval on cl.
func NewAnnouncer(cl *kgo.Client, codec *Codec, base Event, every time.Duration, log *slog.Logger) (*Announcer, error) {
	base.Kind = KindHeartbeat
	if base.Started.IsZero() {
		base.Started = time.Now()
	}
	if base.Status == "" {
		base.Status = StatusWarming
	}
	if err := base.Validate(); err != nil {
		return nil, fmt.Errorf("model announcement: %w", err)
	}
	if every <= 0 {
		every = DefaultInterval
	}
	return &Announcer{cl: cl, codec: codec, every: every, log: log, ev: base, kick: make(chan struct{}, 1)}, nil
}

// SetStatus changes the announced status and announces it at once.
func (a *Announcer) SetStatus(s string) {
	a.mu.Lock()
	changed := a.ev.Status != s
	a.ev.Status = s
	a.mu.Unlock()
	if changed {
		a.log.Info("model status", "status", s)
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// SetProgress records replay progress for the next heartbeat.
func (a *Announcer) SetProgress(p Progress) {
	a.mu.Lock()
	a.ev.Replay = p
	a.mu.Unlock()
}

func (a *Announcer) snapshot() Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.ev
	e.At = time.Now()
	return e
}

func (a *Announcer) publish(ctx context.Context, sync bool) error {
	e := a.snapshot()
	v, err := a.codec.Encode(e)
	if err != nil {
		return err
	}
	rec := &kgo.Record{Topic: topics.Models, Key: []byte(e.Key()), Value: v}
	if sync {
		return a.cl.ProduceSync(ctx, rec).FirstErr()
	}
	// Not ctx: a canceled record fails the records queued behind it on the
	// partition, and the last "stopped" heartbeat must still get through.
	a.cl.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			a.log.Warn("model heartbeat", "err", err)
		}
	})
	return nil
}

// Run heartbeats until ctx ends, then announces "stopped" (bounded by two
// seconds) so the rendezvous stops waiting for this instance at once.
func (a *Announcer) Run(ctx context.Context) error {
	// The first heartbeat is waited for, and retried: a broker busy at
	// start must not leave a runner unannounced, so never waited for.
	for {
		err := a.publish(ctx, true)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if _, encErr := a.codec.Encode(a.snapshot()); encErr != nil {
			return encErr // not the broker's fault: retrying cannot help
		}
		a.log.Warn("first model heartbeat failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(a.every):
		}
	}
	t := time.NewTicker(a.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.mu.Lock()
			a.ev.Status = StatusStopped
			a.mu.Unlock()
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := a.publish(sctx, true); err != nil {
				a.log.Warn("last model heartbeat", "err", err)
			}
			return nil
		case <-a.kick:
		case <-t.C:
		}
		if err := a.publish(ctx, false); err != nil {
			return err
		}
	}
}

// Publish writes one event (a directive) and waits for it to be stored.
func Publish(ctx context.Context, cl *kgo.Client, codec *Codec, e Event) error {
	v, err := codec.Encode(e)
	if err != nil {
		return err
	}
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topics.Models, Key: []byte(e.Key()), Value: v}).FirstErr()
}
