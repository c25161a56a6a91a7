package stage_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

func testConfig() config.Common {
	c := config.Defaults()
	c.HTTPAddr = "127.0.0.1:0"
	c.LogLevel = "error"
	return c
}

func TestNewEnvRejectsBadConfig(t *testing.T) {
	c := testConfig()
	c.Kafka.Brokers = nil
	_, err := stage.NewEnv("enricher", c)
	if err == nil || !strings.Contains(err.Error(), "enricher config") || !strings.Contains(err.Error(), "brokers:") {
		t.Fatalf("err = %v", err)
	}
	c = testConfig()
	c.Objective = "nope"
	if _, err := stage.NewEnv("enricher", c); !errors.Is(err, schemas.ErrUnknownObjective) {
		t.Fatalf("unknown objective: err = %v", err)
	}
}

func TestNewEnv(t *testing.T) {
	e, err := stage.NewEnv("model-dt", testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if e.Topics.Requests != "rdv.iris.requests" || e.Topics.DLQ != "rdv.iris.dlq" {
		t.Fatalf("topics %+v", e.Topics)
	}
	for _, k := range schemas.Kinds {
		r := e.Reader(k)
		if r == nil || r.Text != e.Schemas.Text[k] {
			t.Errorf("Reader(%s) = %v", k, r)
		}
	}
	e.Metrics.Records.WithLabelValues("t", "ok").Inc()
	if got := metric(t, e.Reg, "rdv_model_dt_records_total", "topic", "t", "outcome", "ok"); got != 1 {
		t.Fatalf("the env's metrics are not on its registry: %v", got)
	}
	if e.Health.Ready() {
		t.Fatal("a new env is ready")
	}
}

func TestEnvGroupOptsAndTransactionalID(t *testing.T) {
	c := testConfig()
	c.SessionTimeout = 9 * time.Second
	e, err := stage.NewEnv("enricher", c)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(e.GroupOpts("g"), kgo.SeedBrokers("127.0.0.1:1"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := cl.OptValue(kgo.ConsumerGroup); got != "g" {
		t.Errorf("group %v", got)
	}
	if got := cl.OptValue(kgo.SessionTimeout); got != 9*time.Second {
		t.Errorf("session timeout %v", got)
	}
	if got := cl.OptValue(kgo.HeartbeatInterval); got != 3*time.Second {
		t.Errorf("heartbeat %v, want 3s (a third of the session)", got)
	}
	if got := cl.OptValues(kgo.InstanceID); got[1] != false {
		t.Errorf("unnamed replica has instance id %v", got)
	}
	if a := e.TransactionalID(); !strings.HasPrefix(a, "rdv.iris.enricher.") || len(a) == len("rdv.iris.enricher.") {
		t.Errorf("unnamed replica transactional id %q", a)
	}

	c.Instance = "enricher-2"
	e, err = stage.NewEnv("enricher", c)
	if err != nil {
		t.Fatal(err)
	}
	cl2, err := kgo.NewClient(append(e.GroupOpts("g"), kgo.SeedBrokers("127.0.0.1:1"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	if got := cl2.OptValues(kgo.InstanceID); len(got) != 2 || got[0] != "enricher-2" || got[1] != true {
		t.Errorf("named replica instance id %v", got)
	}
	if got := e.TransactionalID(); got != "rdv.iris.enricher.enricher-2" {
		t.Errorf("named replica transactional id %q", got)
	}
}

func TestEnvRun(t *testing.T) {
	e, err := stage.NewEnv("decoy", testConfig())
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := e.Run(context.Background(), func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Run with failing work = %v, want boom", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var sawCancel atomic.Bool
	err = e.Run(ctx, func(ctx context.Context) error {
		cancel()
		<-ctx.Done()
		sawCancel.Store(true)
		return ctx.Err() // an error during shutdown is not a failure
	})
	if err != nil || !sawCancel.Load() {
		t.Fatalf("Run after cancel = %v (work saw cancel: %v)", err, sawCancel.Load())
	}
}

func TestEnvRunFailsWhenHTTPCannotListen(t *testing.T) {
	c := testConfig()
	c.HTTPAddr = "256.0.0.1:1"
	e, err := stage.NewEnv("decoy", c)
	if err != nil {
		t.Fatal(err)
	}
	err = e.Run(context.Background(), func(ctx context.Context) error { <-ctx.Done(); return nil })
	if err == nil || !strings.Contains(err.Error(), "listen 256.0.0.1:1") {
		t.Fatalf("Run = %v, want the listen failure", err)
	}
}

func TestGroupReadinessAndTrackLag(t *testing.T) {
	k := newKafka(t)
	k.seed(rec(0, "a", "a"), rec(0, "b", "b"), rec(0, "c", "c"), rec(1, "d", "d"))
	h := &stage.Health{}
	cl := k.loopClient(stage.GroupReadiness(h, quietLog())...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Consume one record of partition 0 and commit it.
	var got *kgo.Record
	for got == nil {
		fs := cl.PollRecords(ctx, 1)
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Partition == 0 && got == nil {
				got = r
			}
		})
	}
	if !h.Ready() {
		t.Fatal("not ready after partitions were assigned")
	}
	if err := cl.CommitRecords(ctx, got); err != nil {
		t.Fatal(err)
	}

	m, reg := newMetrics(t, "s")
	done := make(chan struct{})
	go func() {
		defer close(done)
		stage.TrackLag(ctx, kadm.NewClient(k.client()), group, m, 10*time.Millisecond)
	}()
	eventually(t, "lag of partition 0 to be 2", func() bool {
		return metric(t, reg, "rdv_s_consumer_lag_records", "topic", "in", "partition", "0") == 2
	})
	cancel()
	<-done
}
