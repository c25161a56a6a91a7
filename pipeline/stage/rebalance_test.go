package stage_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

// The enricher runs Loop on a client made with kgo.BlockRebalanceOnPoll:
// franz-go then holds every rebalance until AllowRebalance is called after
// a poll's records are processed. Loop never calls it, so a second instance
// of the stage never gets partitions while the first runs.
func TestLoopLetsARebalanceThrough(t *testing.T) {
	k := newKafka(t)
	k.seed(rec(0, "a", "a"), rec(1, "b", "b"))
	m, _ := newMetrics(t, "s")
	h := &stage.Health{}
	fast := []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond), kgo.RebalanceTimeout(5 * time.Second), kgo.SessionTimeout(6 * time.Second)}
	first := k.loopClient(append(fast, kgo.BlockRebalanceOnPoll(), kgo.AutoCommitInterval(100*time.Millisecond))...)
	first.AddConsumeTopics() // no-op, keeps the option list readable
	loop := run(t, first, upper, m)
	k.read("out", 2)
	_ = h

	var assigned atomic.Bool
	second := k.loopClient(append(fast, kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
		if len(ps["in"]) > 0 {
			assigned.Store(true)
		}
	}))...)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for ctx.Err() == nil {
			second.PollFetches(ctx)
		}
	}()
	start := time.Now()
	eventually(t, "the second member to be assigned a partition", assigned.Load)
	t.Logf("assigned after %v", time.Since(start))
	cancel()
	if err := loop.stop(t); err != nil {
		t.Fatal(err)
	}
}
