package rendezvous

import (
	"container/heap"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func TestWakeupsOrder(t *testing.T) {
	var w wakeups
	if _, ok := w.next(); ok {
		t.Fatal("an empty heap has a next wake-up")
	}
	boxes := map[string]*mailbox{}
	for _, s := range []struct {
		id string
		ms int
	}{{"c", 30}, {"a", 10}, {"e", 50}, {"b", 20}, {"d", 40}, {"f", 5}} {
		b := newMailbox(s.id, 0)
		boxes[s.id] = b
		w.schedule(b, at(s.ms))
		if !b.wake.Equal(at(s.ms)) {
			t.Fatalf("%s: wake %v, want %v", s.id, b.wake, at(s.ms))
		}
	}
	if next, ok := w.next(); !ok || !next.Equal(at(5)) {
		t.Fatalf("next = %v, %v; want the earliest, %v", next, ok, at(5))
	}
	var order []string
	for w.Len() > 0 {
		order = append(order, heap.Pop(&w).(wakeup).id)
	}
	if got := strings.Join(order, ""); got != "fabcde" {
		t.Fatalf("popped in order %s, want fabcde", got)
	}
}

func TestScheduleSameTimeTwiceAddsOneEntry(t *testing.T) {
	var w wakeups
	b := newMailbox("a", 0)
	w.schedule(b, at(10))
	w.schedule(b, at(10))
	if w.Len() != 1 {
		t.Fatalf("%d entries, want 1", w.Len())
	}
}

func TestRescheduleLeavesAStaleEntry(t *testing.T) {
	var w wakeups
	b := newMailbox("a", 0)
	w.schedule(b, at(10))
	w.schedule(b, at(50)) // later
	if w.Len() != 2 {
		t.Fatalf("%d entries, want the stale one and the new one", w.Len())
	}
	if !b.wake.Equal(at(50)) {
		t.Fatalf("mailbox wake %v, want the latest schedule", b.wake)
	}
	first := heap.Pop(&w).(wakeup)
	if !first.at.Equal(at(10)) || first.at.Equal(b.wake) {
		t.Fatalf("first entry %v should be the stale one", first.at)
	}
	second := heap.Pop(&w).(wakeup)
	if !second.at.Equal(b.wake) {
		t.Fatalf("second entry %v should match the mailbox's wake %v", second.at, b.wake)
	}
}

// fire acts on a mailbox only when the popped entry's time is the one the
// mailbox is waiting for. Mailboxes whose request never came (orphans) are
// dropped when they fire, which makes the effect visible.
func TestFireSkipsStaleEntries(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := &stageState{m: newMetrics(reg, "iris"), boxes: map[string]*mailbox{}}
	add := func(id string) *mailbox {
		b := newMailbox(id, 0)
		s.boxes[id] = b
		return b
	}
	a, b, c := add("a"), add("b"), add("c")
	s.wake.schedule(a, at(10))
	s.wake.schedule(a, at(50)) // pushed back: the 10ms entry is stale
	s.wake.schedule(b, at(20))
	s.wake.schedule(c, at(100))
	s.wake.schedule(c, at(40)) // brought forward: the 100ms entry is stale

	ctx := context.Background()
	s.fire(ctx, at(30))
	if _, ok := s.boxes["a"]; !ok {
		t.Fatal("a fired on its stale 10ms entry")
	}
	if _, ok := s.boxes["b"]; ok {
		t.Fatal("b did not fire at 20ms")
	}
	if next, _ := s.wake.next(); !next.Equal(at(40)) {
		t.Fatalf("next wake-up %v, want 40ms", next)
	}
	if g := gauge(t, reg, "rdv_rendezvous_open_mailboxes"); g != 2 {
		t.Fatalf("open mailboxes gauge %v, want 2", g)
	}

	s.fire(ctx, at(40))
	if _, ok := s.boxes["c"]; ok {
		t.Fatal("c did not fire at its rescheduled 40ms")
	}
	s.fire(ctx, at(49))
	if _, ok := s.boxes["a"]; !ok {
		t.Fatal("a fired before 50ms")
	}
	s.fire(ctx, at(50))
	if _, ok := s.boxes["a"]; ok {
		t.Fatal("a did not fire at 50ms")
	}
	// c's stale 100ms entry is still queued; popping it for a mailbox that
	// is gone must be harmless.
	if s.wake.Len() != 1 {
		t.Fatalf("%d entries left, want c's stale one", s.wake.Len())
	}
	s.fire(ctx, at(1000))
	if s.wake.Len() != 0 || len(s.boxes) != 0 {
		t.Fatalf("after everything fired: %d entries, %d boxes", s.wake.Len(), len(s.boxes))
	}
	if g := gauge(t, reg, "rdv_rendezvous_open_mailboxes"); g != 0 {
		t.Fatalf("open mailboxes gauge %v, want 0", g)
	}
}

func TestFireIgnoresAStaleEntryOfARecreatedMailbox(t *testing.T) {
	s := &stageState{m: newMetrics(prometheus.NewRegistry(), "iris"), boxes: map[string]*mailbox{}}
	old := newMailbox("x", 0)
	s.boxes["x"] = old
	s.wake.schedule(old, at(10))
	delete(s.boxes, "x") // closed some other way
	fresh := newMailbox("x", 0)
	s.boxes["x"] = fresh
	s.wake.schedule(fresh, at(60))
	s.fire(context.Background(), at(20))
	if s.boxes["x"] != fresh {
		t.Fatal("the old mailbox's entry fired the new mailbox")
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestNewMailbox(t *testing.T) {
	b := newMailbox("id", 4)
	if b.ID != "id" || b.Partition != 4 || b.Scores == nil || b.minScore != -1 || !b.wake.IsZero() || b.Req != nil {
		t.Fatalf("newMailbox = %+v", b)
	}
	b.add("dt@1", &seen{Score: policy.Score{Model: "dt", Version: "1", Result: "setosa"}})
	ps := b.policyScores()
	if len(ps) != 1 || ps["dt@1"] != &b.Scores["dt@1"].Score || len(b.Arrival) != 1 || b.Arrival[0] != "dt@1" {
		t.Fatalf("policyScores = %v, arrival %v", ps, b.Arrival)
	}
}
