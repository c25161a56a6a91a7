package stage_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The enricher runs Loop on a client made with kgo.BlockRebalanceOnPoll
// (stages/enricher/enricher.go), with which franz-go holds every rebalance
// until AllowRebalance is called after a poll's records are processed. Loop
// never calls it (the enricher only does when Loop returns), so a second
// instance joining the group waits until the rebalance timeout evicts the
// first one.
func TestLoopLetsARebalanceThrough(t *testing.T) {
	const rebalanceTimeout = 5 * time.Second
	k := newKafka(t)
	k.seed(rec(0, "a", "a"), rec(1, "b", "b"))
	m, _ := newMetrics(t, "s")
	fast := []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond), kgo.RebalanceTimeout(rebalanceTimeout), kgo.SessionTimeout(6 * time.Second)}
	first := k.loopClient(append(fast, kgo.BlockRebalanceOnPoll(), kgo.AutoCommitInterval(100*time.Millisecond))...)
	t.Cleanup(first.AllowRebalance) // as the enricher does once Loop returns; before Close
	loop := run(t, first, upper, m)
	k.read("out", 2)

	var assigned atomic.Bool
	second := k.loopClient(append(fast, kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
		if len(ps["in"]) > 0 {
			assigned.Store(true)
		}
	}))...)
	ctx, cancel := context.WithCancel(context.Background())
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for ctx.Err() == nil {
			second.PollFetches(ctx)
		}
	}()
	t.Cleanup(func() { cancel(); <-polled })

	deadline := time.Now().Add(rebalanceTimeout / 2)
	for !assigned.Load() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !assigned.Load() {
		t.Fatalf("a second group member got no partition within %v while Loop ran", rebalanceTimeout/2)
	}
	if err := loop.stop(t); err != nil {
		t.Fatal(err)
	}
}
