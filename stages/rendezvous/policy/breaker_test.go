package policy

import (
	"testing"
	"time"
)

func TestBreakerTransitions(t *testing.T) {
	b := NewBreaker(BreakerConfig{Window: 20, MinSamples: 10, Threshold: 0.5, CoolDown: Duration(30 * time.Second)})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	s := time.Second
	type step struct {
		name   string
		record *Result // nil: only look
		n      int     // times to record
		admit  string  // request id to Admit, with wantAdmit
		want   bool
		now    time.Time
		state  BreakerState
	}
	ok, errR, timeout := ResultOK, ResultError, ResultTimeout
	steps := []step{
		{name: "unknown model is closed", now: at(0), state: Closed},
		{name: "9 failures alone: below min samples", record: &errR, n: 9, now: at(0), state: Closed},
		{name: "1 ok: 9/10 failed, at min samples: opens", record: &ok, n: 1, now: at(0), state: Open},
		{name: "cool-down: half-open", now: at(30 * s), state: HalfOpen},
		{name: "an ok closes it with an empty window", record: &ok, n: 1, now: at(30 * s), state: Closed},
		{name: "10 oks", record: &ok, n: 10, now: at(31 * s), state: Closed},
		{name: "9 errors: 9/19 failed, below 50%", record: &errR, n: 9, now: at(31 * s), state: Closed},
		{name: "one timeout: 10/20 = 50% opens", record: &timeout, n: 1, now: at(100*s + 2*s), state: Open},
		{name: "open refuses every request", admit: "r1", want: false, now: at(100*s + 3*s), state: Open},
		{name: "results while open are ignored", record: &ok, n: 5, now: at(100*s + 4*s), state: Open},
		{name: "one ns before the cool-down: open", now: at(100*s + 32*s - 1), state: Open},
		{name: "exactly at the cool-down: half-open", now: at(100*s + 32*s), state: HalfOpen},
		{name: "first asker is the probe", admit: "p1", want: true, now: at(100*s + 32*s), state: HalfOpen},
		{name: "a second request is refused", admit: "p2", want: false, now: at(100*s + 33*s), state: HalfOpen},
		{name: "the probe asks again", admit: "p1", want: true, now: at(100*s + 33*s), state: HalfOpen},
		{name: "probe succeeds: closed", record: &ok, n: 1, now: at(100*s + 34*s), state: Closed},
		{name: "closed admits all", admit: "p2", want: true, now: at(100*s + 34*s), state: Closed},
		{name: "window was emptied: 9 errors stay closed", record: &errR, n: 9, now: at(100*s + 35*s), state: Closed},
		{name: "10th error opens again", record: &errR, n: 1, now: at(100*s + 36*s), state: Open},
		{name: "cool-down: half-open", admit: "p3", want: true, now: at(100*s + 66*s), state: HalfOpen},
		{name: "probe fails: open again", record: &timeout, n: 1, now: at(100*s + 67*s), state: Open},
		{name: "cool-down counts from the re-opening", now: at(100*s + 96*s), state: Open},
		{name: "half-open again", admit: "p4", want: true, now: at(100*s + 97*s), state: HalfOpen},
		{name: "an unanswered probe is replaced after a cool-down", admit: "p5", want: true, now: at(100*s + 127*s), state: HalfOpen},
		{name: "the old probe is now refused", admit: "p4", want: false, now: at(100*s + 127*s), state: HalfOpen},
	}
	for _, st := range steps {
		if st.record != nil {
			for i := 0; i < st.n; i++ {
				b.Record("dt@1", *st.record, st.now)
			}
		}
		if st.admit != "" {
			if got := b.Admit("dt@1", st.admit, st.now); got != st.want {
				t.Fatalf("%s: Admit(%s) = %v, want %v", st.name, st.admit, got, st.want)
			}
		}
		if got := b.State("dt@1", st.now); got != st.state {
			t.Fatalf("%s: state %v, want %v", st.name, got, st.state)
		}
	}
	if b.State("other", at(0)) != Closed || !b.Admit("other", "x", at(0)) {
		t.Fatal("models are independent")
	}
}

func TestBreakerSlidingCountWindow(t *testing.T) {
	b := NewBreaker(BreakerConfig{Window: 4, MinSamples: 4, Threshold: 0.75, CoolDown: Duration(time.Second)})
	now := time.Unix(0, 0)
	seq := []Result{ResultError, ResultError, ResultOK, ResultOK, ResultError, ResultOK, ResultError, ResultError}
	// window after each: E | EE | EEO | EEOO(2/4) | EOOE(2/4) | OOEO(1/4) | OEOE(2/4) | EOEE(3/4: opens)
	want := []BreakerState{Closed, Closed, Closed, Closed, Closed, Closed, Closed, Open}
	for i, r := range seq {
		b.Record("m", r, now)
		if got := b.State("m", now); got != want[i] {
			t.Fatalf("after %d results: %v, want %v", i+1, got, want[i])
		}
	}
}

func TestBreakerTimeWindow(t *testing.T) {
	b := NewBreaker(BreakerConfig{Period: Duration(10 * time.Second), MinSamples: 3, Threshold: 0.5, CoolDown: Duration(time.Second)})
	t0 := time.Unix(1000, 0)
	b.Record("m", ResultError, t0)
	b.Record("m", ResultError, t0.Add(1*time.Second))
	// both fall out of the window: one sample only
	b.Record("m", ResultError, t0.Add(12*time.Second))
	if s := b.State("m", t0.Add(12*time.Second)); s != Closed {
		t.Fatalf("old failures counted: %v", s)
	}
	b.Record("m", ResultOK, t0.Add(13*time.Second))
	b.Record("m", ResultTimeout, t0.Add(14*time.Second)) // 2/3 within 10s
	if s := b.State("m", t0.Add(14*time.Second)); s != Open {
		t.Fatalf("state %v, want open", s)
	}
	if s := b.State("m", t0.Add(15*time.Second)); s != HalfOpen {
		t.Fatalf("state %v, want half_open", s)
	}
	if HalfOpen.String() != "half_open" || Open.String() != "open" || Closed.String() != "closed" {
		t.Fatal("state names")
	}
}

func TestBreakerConcurrent(t *testing.T) {
	b := NewBreaker(BreakerConfig{Window: 20, MinSamples: 10, Threshold: 0.5, CoolDown: Duration(time.Second)})
	done := make(chan bool)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 1000; i++ {
				now := time.Unix(int64(i), 0)
				b.Record("m", Result(i%3), now)
				b.Admit("m", "r", now)
				b.State("m", now)
			}
			done <- true
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}

// Slow errors of requests from before the circuit closed arrive after it
// closed: they describe the model as it was, and must not reopen it.
func TestStaleResultsDoNotFlap(t *testing.T) {
	cfg := BreakerConfig{Window: 4, MinSamples: 2, Threshold: 0.5, CoolDown: Duration(time.Second)}
	b := NewBreaker(cfg)
	t0 := time.Unix(1000, 0)
	b.Record("m", ResultError, t0)
	b.Record("m", ResultError, t0)
	if st := b.State("m", t0); st != Open {
		t.Fatalf("state %v, want open", st)
	}
	healed := t0.Add(2 * time.Second) // half-open by now
	if !b.Admit("m", "probe", healed) {
		t.Fatal("the probe was not admitted")
	}
	b.RecordFor("m", ResultOK, healed, healed)
	if st := b.State("m", healed); st != Closed {
		t.Fatalf("state %v after the probe's success, want closed", st)
	}
	// Errors of requests received while it was failing, arriving now.
	for i := 0; i < 4; i++ {
		b.RecordFor("m", ResultError, t0.Add(500*time.Millisecond), healed.Add(10*time.Millisecond))
	}
	if st := b.State("m", healed.Add(10*time.Millisecond)); st != Closed {
		t.Fatalf("stale errors reopened the circuit: %v", st)
	}
	// Fresh errors still open it.
	fresh := healed.Add(20 * time.Millisecond)
	b.RecordFor("m", ResultError, fresh, fresh)
	b.RecordFor("m", ResultError, fresh, fresh)
	if st := b.State("m", fresh); st != Open {
		t.Fatalf("fresh errors: state %v, want open", st)
	}
}

// The time window's running counts match a recount of the window after
// many results, expiries and compactions.
func TestBreakerTimeWindowCounts(t *testing.T) {
	b := NewBreaker(BreakerConfig{Period: Duration(time.Second), MinSamples: 1 << 30, Threshold: 0.5, CoolDown: Duration(time.Second)})
	t0 := time.Unix(1000, 0)
	var all []event
	for i := range 5000 {
		now := t0.Add(time.Duration(i*i%7919) * time.Millisecond / 3)
		if len(all) > 0 && now.Before(all[len(all)-1].at) {
			now = all[len(all)-1].at.Add(time.Millisecond)
		}
		failed := i%3 == 0 || i%7 == 0
		r := ResultOK
		if failed {
			r = ResultError
		}
		b.Record("m", r, now)
		all = append(all, event{at: now, failed: failed})
		wantN, wantFailed := 0, 0
		for _, e := range all {
			if e.at.After(now.Add(-time.Second)) {
				wantN++
				if e.failed {
					wantFailed++
				}
			}
		}
		c := b.models["m"]
		if n := len(c.events) - c.head; n != wantN || c.failed != wantFailed {
			t.Fatalf("after %d results: window %d with %d failed, want %d with %d", i+1, n, c.failed, wantN, wantFailed)
		}
	}
}
