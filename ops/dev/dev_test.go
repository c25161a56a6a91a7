package dev

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
)

// rendezvousMetrics serves a models-waited gauge that reads the values in
// turn, then stays at the last.
func rendezvousMetrics(t *testing.T, values ...int) (*Proc, *atomic.Int32) {
	var scrapes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		i := min(int(scrapes.Add(1))-1, len(values)-1)
		fmt.Fprintf(w, "# TYPE rdv_rendezvous_models_waited gauge\nrdv_rendezvous_models_waited{objective=\"iris\"} %d\n", values[i])
	}))
	t.Cleanup(srv.Close)
	return &Proc{Name: "rendezvous", HTTPAddr: strings.TrimPrefix(srv.URL, "http://")}, &scrapes
}

func TestWaitModelsUntilEveryModelIsWaited(t *testing.T) {
	p, scrapes := rendezvousMetrics(t, 0, 1, 2, 3)
	if err := waitModels(context.Background(), []*Proc{{Name: "frontend"}, p}, 3, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := scrapes.Load(); n != 4 {
		t.Fatalf("returned after %d scrapes, want 4 (the first showing 3 models)", n)
	}
}

func TestWaitModelsNamesWhatIsMissing(t *testing.T) {
	p, _ := rendezvousMetrics(t, 1)
	err := waitModels(context.Background(), []*Proc{p}, 3, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "1 of the 3 models") {
		t.Fatalf("err = %v, want it to say 1 of the 3 models", err)
	}
}

// Reset leaves an objective as if it never ran: its topics deleted, and its
// groups too, including one that a static member (a stage started with
// -instance) never left; other groups are untouched.
func TestResetDeletesTopicsAndStaticGroups(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	reg, err := embedded.New(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	defer func() { srv.Close(); reg.Close() }()
	if err := Provision(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, registry.Config{URL: srv.URL}, "iris", 2); err != nil {
		t.Fatal(err)
	}
	ts := topics.For("iris")
	p, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: ts.Requests, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A static member that consumes, commits and stops without leaving,
	// and a group of something else.
	consume := func(group string, opts ...kgo.Opt) {
		t.Helper()
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(ts.Requests),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.SessionTimeout(time.Minute)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for n := 0; n == 0; {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("group %s read nothing", group)
			}
			n = fs.NumRecords()
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatal(err)
		}
	}
	consume("rdv.iris.enricher", kgo.InstanceID("enricher"))
	consume("someone.else")

	adm := kadm.NewClient(p)
	described, err := adm.DescribeGroups(ctx, "rdv.iris.enricher")
	if err != nil {
		t.Fatal(err)
	}
	if g := described["rdv.iris.enricher"]; len(g.Members) != 1 {
		t.Fatalf("the static member left its group on close (%d members): the test would prove nothing", len(g.Members))
	}

	if err := Reset(ctx, brokers, "iris"); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	all := append(ts.Logs(), ts.Context, ts.DLQ, ts.ReplayScores, topics.Models)
	md, err := adm.ListTopics(ctx, all...)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range md.Sorted() {
		if d.Err == nil {
			t.Errorf("topic %s still exists", d.Topic)
		}
	}
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	groups := listed.Groups()
	if slices.Contains(groups, "rdv.iris.enricher") {
		t.Errorf("group rdv.iris.enricher survived the reset")
	}
	if !slices.Contains(groups, "someone.else") {
		t.Errorf("group someone.else was deleted; groups left: %v", groups)
	}
}
