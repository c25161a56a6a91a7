package policy

import (
	"sync"
	"time"
)

// BreakerState is a model's circuit state.
type BreakerState int

// Circuit states.
const (
	Closed   BreakerState = iota // the engine waits for the model as configured
	Open                         // the engine treats the model as failed at once
	HalfOpen                     // one probe request may wait for it
)

func (s BreakerState) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half_open"
	}
	return "unknown"
}

// Result is how a model did on one request, as the stage saw it.
type Result int

// Results recorded in a Breaker.
const (
	ResultOK      Result = iota // answered in time
	ResultError                 // answered with an error
	ResultTimeout               // did not answer within its budget
)

// Breaker is a circuit breaker per model key ("name@version"). It is the one
// stateful piece of the package: the stage records every model's result per
// request, and the Engine asks it whether to wait for a model. All times are
// passed in; it never reads the clock. It is safe for concurrent use.
//
// Closed: results go into a sliding window (the last Window results, or
// those of the last Period); when it holds at least MinSamples results and
// the failed fraction (errors plus timeouts) is at or above Threshold, the
// breaker opens. Open: after CoolDown it becomes half-open. Half-open: the
// first request that asks (Admit) becomes the probe and may wait for the
// model; others may not. The next recorded result closes the breaker (ok,
// with an empty window) or opens it again (error or timeout). A probe whose
// result is never recorded is replaced after another CoolDown.
type Breaker struct {
	cfg    BreakerConfig
	mu     sync.Mutex
	models map[string]*circuit
}

type circuit struct {
	state    BreakerState
	openedAt time.Time
	// changed is when the circuit last opened or closed: outcomes of
	// requests received before it describe the model as it was, and are
	// ignored (RecordFor).
	changed  time.Time
	probe    string
	probeAt  time.Time
	hasProbe bool
	// count-based window: a ring of failed flags
	ring           []bool
	pos, n, failed int
	// time-based window: events[head:], oldest first; failed counts the
	// failures in whichever window is in use
	events []event
	head   int
}

type event struct {
	at     time.Time
	failed bool
}

// NewBreaker returns a breaker with every model closed. The config must be
// valid (see Config.Validate).
func NewBreaker(cfg BreakerConfig) *Breaker {
	return &Breaker{cfg: cfg, models: map[string]*circuit{}}
}

func (b *Breaker) get(model string) *circuit {
	c, ok := b.models[model]
	if !ok {
		c = &circuit{}
		if b.cfg.Window > 0 {
			c.ring = make([]bool, b.cfg.Window)
		}
		b.models[model] = c
	}
	return c
}

// advance moves an open circuit to half-open once its cool-down is over.
func (b *Breaker) advance(c *circuit, now time.Time) {
	if c.state == Open && now.Sub(c.openedAt) >= time.Duration(b.cfg.CoolDown) {
		c.state = HalfOpen
		c.hasProbe = false
	}
}

// State is the model's state at now.
func (b *Breaker) State(model string, now time.Time) BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.models[model]
	if !ok {
		return Closed
	}
	b.advance(c, now)
	return c.state
}

// Admit reports whether request may wait for the model at now: always when
// closed, never when open, and when half-open only for the probe request
// (the first to ask; the same request asking again is admitted again).
func (b *Breaker) Admit(model, request string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.models[model]
	if !ok {
		return true
	}
	b.advance(c, now)
	switch c.state {
	case Closed:
		return true
	case Open:
		return false
	}
	if c.hasProbe && c.probe == request {
		return true
	}
	if !c.hasProbe || now.Sub(c.probeAt) >= time.Duration(b.cfg.CoolDown) {
		c.hasProbe, c.probe, c.probeAt = true, request, now
		return true
	}
	return false
}

// Record adds one result of the model at now. Results recorded while the
// breaker is open are ignored.
func (b *Breaker) Record(model string, r Result, now time.Time) {
	b.RecordFor(model, r, now, now)
}

// RecordFor is Record for the result of a request received at received:
// a result of a request older than the circuit's last change (a slow
// error arriving after the model recovered and the circuit closed) is
// ignored, so stale results cannot flap the circuit.
func (b *Breaker) RecordFor(model string, r Result, received, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.get(model)
	if received.Before(c.changed) {
		return
	}
	b.advance(c, now)
	failed := r != ResultOK
	switch c.state {
	case Open:
		return
	case HalfOpen:
		if failed {
			b.open(c, now)
		} else {
			c.state = Closed
			c.hasProbe = false
			c.changed = now
			b.reset(c)
		}
		return
	}
	samples, failures := b.add(c, failed, now)
	if samples >= b.cfg.MinSamples && float64(failures) >= b.cfg.Threshold*float64(samples) {
		b.open(c, now)
	}
}

func (b *Breaker) open(c *circuit, now time.Time) {
	c.state = Open
	c.openedAt = now
	c.changed = now
	c.hasProbe = false
	b.reset(c)
}

func (b *Breaker) reset(c *circuit) {
	c.pos, c.n, c.failed, c.head = 0, 0, 0, 0
	c.events = c.events[:0]
}

// add puts a result in the window and returns its samples and failures.
func (b *Breaker) add(c *circuit, failed bool, now time.Time) (int, int) {
	if c.ring != nil {
		if c.n == len(c.ring) {
			if c.ring[c.pos] {
				c.failed--
			}
		} else {
			c.n++
		}
		c.ring[c.pos] = failed
		if failed {
			c.failed++
		}
		c.pos = (c.pos + 1) % len(c.ring)
		return c.n, c.failed
	}
	// Results come in arrival order, so expiring is popping the front:
	// O(1) amortized per result, where a scan of the window would cost a
	// model's whole last second of results on every score. A partition
	// catching up records older times; such a result leaves the window
	// with the newer one ahead of it, a little late, never early.
	cut := now.Add(-time.Duration(b.cfg.Period))
	for c.head < len(c.events) && !c.events[c.head].at.After(cut) {
		if c.events[c.head].failed {
			c.failed--
		}
		c.head++
	}
	if c.head > 0 && c.head >= len(c.events)/2 {
		c.events = c.events[:copy(c.events, c.events[c.head:])]
		c.head = 0
	}
	c.events = append(c.events, event{at: now, failed: failed})
	if failed {
		c.failed++
	}
	return len(c.events) - c.head, c.failed
}
