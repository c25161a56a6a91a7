package rendezvous

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/ops/dev"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

// A previous owner answered a request, then died before logging its
// decision. Its scores' record times say the champion was in time, but the
// owner, starved of CPU, read it late and answered the canary's score. The
// new owner must log what the caller was told, read back from the results
// topic, and not send a second answer; a replayed request with no answer
// read back is decided from its scores' times.
func TestTakeoverLogsTheAnswerGiven(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	reg, err := embedded.New(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	defer func() { srv.Close(); reg.Close() }()
	brokers := cluster.ListenAddrs()
	if err := dev.Provision(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, registry.Config{URL: srv.URL}, "iris", 1); err != nil {
		t.Fatal(err)
	}

	ts := topics.For("iris")
	sd := serde.New(mustRegistry(t, srv.URL))
	set, _ := schemas.For("iris")
	enc := func(topic string, k schemas.Kind, v map[string]any) []byte {
		t.Helper()
		e, err := sd.Encoder(ctx, topics.Subject(topic), set.Text[k])
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.Encode(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(ts.Requests))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	received := time.Now().Add(-10 * time.Second).Truncate(time.Millisecond)
	at := func(d time.Duration) time.Time { return received.Add(d) }
	var recs []*kgo.Record
	for _, id := range []string{"answered", "not-answered"} {
		recs = append(recs, &kgo.Record{Topic: ts.Requests, Key: []byte(id), Timestamp: received, Value: enc(ts.Requests, schemas.Request, map[string]any{
			"request_id": id, "objective": "iris", "key": "", "received_us": received.UnixMicro(),
			"deadline_us": at(100 * time.Millisecond).UnixMicro(), "reply_topic": ts.Results, "reply_partition": int32(0),
			"features": map[string]any{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2},
		})})
		// Both models in time by their record times: the canary at 3 ms,
		// the champion at 8 ms, inside its 50 ms budget.
		for _, sc := range []struct {
			model, role, result string
			after               time.Duration
		}{{"canary", "canary", "Iris-versicolor", 3 * time.Millisecond}, {"dt", "champion", "Iris-setosa", 8 * time.Millisecond}} {
			recs = append(recs, &kgo.Record{Topic: ts.Scores, Key: []byte(id), Timestamp: at(sc.after), Value: enc(ts.Scores, schemas.Score, map[string]any{
				"request_id": id, "objective": "iris", "model": sc.model, "version": "", "role": sc.role,
				"result": serde.Opt(sc.result), "probabilities": map[string]any{}, "error": nil,
				"compute_us": int64(10), "scored_us": at(sc.after).UnixMicro(),
			})})
		}
	}
	// What the starved owner answered for the first: the canary's score.
	recs = append(recs, &kgo.Record{Topic: ts.Results, Partition: 0, Key: []byte("answered"), Timestamp: at(120 * time.Millisecond), Value: enc(ts.Results, schemas.Result, map[string]any{
		"request_id": "answered", "objective": "iris", "reason": "fallback", "policy": "priority", "model": "canary", "version": "",
		"result": serde.Opt("Iris-versicolor"), "probabilities": map[string]any{}, "received_us": received.UnixMicro(), "decided_us": at(120 * time.Millisecond).UnixMicro(),
	})})
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	cfg := Defaults()
	cfg.Common.Kafka.Brokers = brokers
	cfg.Common.RegistryURL = srv.URL
	cfg.Common.LogLevel = "error"
	cfg.LiveModels = false
	if cfg.Models, err = ParseModels("dt:champion:50ms,canary:canary"); err != nil {
		t.Fatal(err)
	}
	cfg.Policy.SLA = policy.Duration(100 * time.Millisecond)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, cfg) }()
	defer func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()

	// The decisions, read committed, as every log reader does.
	dc, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(ts.Decisions, ts.Results),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	decisions := map[string]map[string]any{}
	answers := map[string]int{}
	read := func(ctx context.Context) {
		fs := dc.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic == ts.Results {
				answers[string(r.Key)]++
				return
			}
			v, err := sd.Decode(ctx, r.Value, mustSchema(t, set.Text[schemas.Decision]))
			if err != nil {
				t.Fatal(err)
			}
			decisions[string(r.Key)] = v
		})
	}
	for len(decisions) < 2 || answers["not-answered"] == 0 {
		read(ctx)
		if ctx.Err() != nil {
			t.Fatalf("after 60s: %d of 2 decisions, answers %v", len(decisions), answers)
		}
	}
	// A second answer to the first would have been sent before its decision
	// was logged; give it time to show.
	wait, cancelWait := context.WithTimeout(ctx, 500*time.Millisecond)
	read(wait)
	cancelWait()
	for id, want := range map[string][2]string{"answered": {"fallback", "canary"}, "not-answered": {"champion", "dt"}} {
		d := decisions[id]
		if got := [2]string{serde.Str(d, "reason"), serde.Str(d, "model")}; got != want {
			t.Errorf("%s: logged %s by %s, want %s by %s", id, got[0], got[1], want[0], want[1])
		}
	}
	// The one answer read back was not sent again; the other request was
	// answered (late, to nobody) when it was decided.
	if answers["answered"] != 1 || answers["not-answered"] != 1 {
		t.Errorf("answers on the results topic: %v, want one each", answers)
	}
}

func mustRegistry(t *testing.T, url string) serde.Registry {
	t.Helper()
	rc, err := registry.New(registry.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func mustSchema(t *testing.T, text string) *serde.Schema {
	t.Helper()
	s, err := serde.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
