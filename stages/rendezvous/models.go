package rendezvous

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/fleet"
	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

// fleetView follows the live model registry for the stage.
type fleetView struct {
	cl      *kgo.Client
	w       *fleet.Watcher
	stop    context.CancelFunc
	done    chan struct{}
	sig     string    // the bound models, to rebuild only on a change
	checkAt time.Time // next look at heartbeat ages
}

// startModels builds the first engine: from the declared models, or from
// the registry once what it holds is read.
func (s *stageState) startModels(ctx context.Context) error {
	if !s.cfg.LiveModels {
		pc, err := s.cfg.static()
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		s.eng, err = policy.New(pc, s.breaker)
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		s.m.expected.Set(float64(len(pc.Models)))
		s.touchMetrics(time.Now())
		return nil
	}
	codec, err := fleet.NewCodec(ctx, s.env.Serde)
	if err != nil {
		return fmt.Errorf("model registry: %w", err)
	}
	cl, err := s.env.Client(fleet.ConsumeOpts()...)
	if err != nil {
		return err
	}
	w := fleet.NewWatcher(cl, codec, s.env.Log)
	wctx, stop := context.WithCancel(context.Background())
	f := &fleetView{cl: cl, w: w, stop: stop, done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		defer close(f.done)
		if err := w.Run(wctx); err != nil {
			errc <- err
		}
	}()
	select {
	case <-w.Ready():
	case err := <-errc:
		stop()
		cl.Close()
		return err
	case <-ctx.Done():
		stop()
		cl.Close()
		return ctx.Err()
	}
	s.fleet = f
	s.rebuild(time.Now(), true)
	return nil
}

func (s *stageState) stopModels() {
	if s.fleet == nil {
		return
	}
	s.fleet.stop()
	s.fleet.cl.Close()
	<-s.fleet.done
}

// refreshModels rebuilds the engine when the registry changed or a
// heartbeat aged out.
func (s *stageState) refreshModels(now time.Time) {
	f := s.fleet
	if f == nil {
		return
	}
	select {
	case <-f.w.Changed():
	default:
		if now.Before(f.checkAt) {
			return
		}
	}
	s.rebuild(now, false)
}

// rebuild binds the policy to the models live at now. A binding the policy
// rejects keeps the engine in place (a first one fails the stage), so an
// operator's mistake never stops the answers.
func (s *stageState) rebuild(now time.Time, first bool) {
	f := s.fleet
	f.checkAt = now.Add(s.cfg.HeartbeatTTL / 4)
	models := f.w.Models(s.cfg.Common.Objective, now, s.cfg.HeartbeatTTL)
	sig := signature(models)
	if sig == f.sig && !first {
		return
	}
	f.sig = sig
	pc, err := s.cfg.bind(models)
	var eng *policy.Engine
	if err == nil {
		eng, err = policy.New(pc, s.breaker)
	}
	if err != nil {
		s.m.policies.WithLabelValues("rejected").Inc()
		s.env.Log.Error("model registry change rejected by the policy; keeping the models waited for so far", "err", err)
		if s.eng == nil {
			// Nothing to keep: answer every request with the default.
			none, _ := policy.Live(policy.Config{SLA: s.cfg.Policy.SLA}, nil)
			s.eng, _ = policy.New(none, nil)
		}
		return
	}
	s.m.policies.WithLabelValues("applied").Inc()
	s.m.expected.Set(float64(len(pc.Models)))
	s.eng = eng
	s.touchMetrics(now)
	var desc []string
	for _, m := range pc.Models {
		d := m.Key() + ":" + m.Role
		if m.Budget > 0 {
			d += ":" + time.Duration(m.Budget).String()
		}
		desc = append(desc, d)
	}
	s.env.Log.Info("models waited for", "policy", eng.Kind(), "models", strings.Join(desc, ","))
}

// touchMetrics makes every waited model's series exist from the start, at
// zero, so that rates and alerts over them work before the first event.
func (s *stageState) touchMetrics(now time.Time) {
	for _, key := range s.eng.Keys() {
		s.m.wins.WithLabelValues(key)
		s.m.late.WithLabelValues(key)
		s.m.errs.WithLabelValues(key)
		s.m.timeouts.WithLabelValues(key)
		if s.breaker != nil {
			s.m.circuit.WithLabelValues(key).Set(circuitValue(s.breaker.State(key, now)))
		}
	}
}

// signature identifies what bind depends on.
func signature(ms []fleet.Model) string {
	var parts []string
	for _, m := range ms {
		if !m.Waited() {
			continue
		}
		p := m.Key() + "/" + m.Role + "/" + m.Tenant
		if m.Priority != nil {
			p += "/p" + strconv.Itoa(*m.Priority)
		}
		if m.Budget != nil {
			p += "/b" + m.Budget.String()
		}
		parts = append(parts, p)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// scoreKey is how a score is filed in its mailbox: by model version when
// the models come from the registry (the policy names versions), by model
// name with a fixed list (which has no versions).
func (s *stageState) scoreKey(model, version string) string {
	if s.cfg.LiveModels {
		return policy.Key(model, version)
	}
	return model
}

// record feeds the breaker and the per-model metrics with how model key
// did on b's request.
func (s *stageState) record(b *mailbox, key string, r policy.Result, now time.Time) {
	if b.late {
		// The stage itself was late for this request (a takeover's replay,
		// a stall): the models' timing says nothing about the models, and
		// a backlog judged as timeouts would open every circuit at once.
		return
	}
	if b.recorded == nil {
		b.recorded = map[string]bool{}
	}
	if b.recorded[key] {
		return
	}
	b.recorded[key] = true
	if r == policy.ResultTimeout {
		s.m.timeouts.WithLabelValues(key).Inc()
		if !s.othersInTime(b, key) {
			// Every model was late on this request: the pipeline stalled (a
			// broker pause, a starved machine), not this model. Counted as
			// a timeout, kept from the breaker, which would otherwise open
			// every circuit at once and hold the champion out for its whole
			// cool-down after the stall ends.
			return
		}
	}
	if s.breaker == nil {
		return
	}
	s.breaker.RecordFor(key, r, time.UnixMicro(b.Req.ReceivedUS), now)
	s.m.circuit.WithLabelValues(key).Set(circuitValue(s.breaker.State(key, now)))
}

// othersInTime reports whether some other model's score (a shadow's
// included) reached b's mailbox within key's budget: whether the pipeline
// carried scores in time for this request while key was late.
func (s *stageState) othersInTime(b *mailbox, key string) bool {
	budget, ok := s.eng.Budget(key, b.request())
	if !ok {
		return true
	}
	for k, sc := range b.Scores {
		if k != key && k != markerModel && !sc.Failed && sc.ArrivedUS-b.Req.ReceivedUS <= budget.Microseconds() {
			return true
		}
	}
	return false
}

// circuitValue orders the states by severity for the gauge: 0 closed,
// 1 half-open, 2 open.
func circuitValue(st policy.BreakerState) float64 {
	switch st {
	case policy.Open:
		return 2
	case policy.HalfOpen:
		return 1
	}
	return 0
}
