package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/ops/dev"
	"github.com/rendezvous-ml/rendezvous/pipeline/promtext"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

// history is a provisioned kfake cluster and embedded registry holding
// what earlier owners of the partition left: the stage under test starts
// on it and replays.
type history struct {
	t        *testing.T
	ctx      context.Context
	brokers  []string
	registry string
	ts       topics.Set
	sd       *serde.Serde
	set      schemas.Set
	cl       *kgo.Client
	recs     []*kgo.Record
	sla      time.Duration // of the requests added, and the stage's
}

func newHistory(t *testing.T, ctx context.Context) *history {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	reg, err := embedded.New(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(func() { srv.Close(); reg.Close() })
	h := &history{t: t, ctx: ctx, brokers: cluster.ListenAddrs(), registry: srv.URL, ts: topics.For("iris"), sla: 100 * time.Millisecond}
	if err := dev.Provision(ctx, []kgo.Opt{kgo.SeedBrokers(h.brokers...)}, registry.Config{URL: srv.URL}, "iris", 1); err != nil {
		t.Fatal(err)
	}
	rc, err := registry.New(registry.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	h.sd = serde.New(rc)
	h.set, _ = schemas.For("iris")
	if h.cl, err = kgo.NewClient(kgo.SeedBrokers(h.brokers...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.cl.Close)
	return h
}

func (h *history) add(topic string, k schemas.Kind, key string, at time.Time, v map[string]any) {
	h.t.Helper()
	e, err := h.sd.Encoder(h.ctx, topics.Subject(topic), h.set.Text[k])
	if err != nil {
		h.t.Fatal(err)
	}
	b, err := e.Encode(nil, v)
	if err != nil {
		h.t.Fatal(err)
	}
	h.recs = append(h.recs, &kgo.Record{Topic: topic, Key: []byte(key), Timestamp: at, Value: b})
}

// request adds a request received at received, with the history's SLA.
func (h *history) request(id string, received time.Time) {
	h.add(h.ts.Requests, schemas.Request, id, received, map[string]any{
		"request_id": id, "objective": "iris", "key": "", "received_us": received.UnixMicro(),
		"deadline_us": received.Add(h.sla).UnixMicro(), "reply_topic": h.ts.Results, "reply_partition": int32(0),
		"features": map[string]any{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2},
	})
}

// score adds model's score for id, written at at.
func (h *history) score(id, model, role, result string, at time.Time) {
	h.add(h.ts.Scores, schemas.Score, id, at, map[string]any{
		"request_id": id, "objective": "iris", "model": model, "version": "", "role": role,
		"result": serde.Opt(result), "probabilities": map[string]any{}, "error": nil,
		"compute_us": int64(10), "scored_us": at.UnixMicro(),
	})
}

// write produces what was added.
func (h *history) write() {
	h.t.Helper()
	if err := h.cl.ProduceSync(h.ctx, h.recs...).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
	h.recs = nil
}

// start runs the stage on the history, champion dt (50 ms) and canary, with
// a 100 ms SLA, until the test ends; it returns its health address.
func (h *history) start() string {
	return h.startWith("dt:champion:50ms,canary:canary", 100*time.Millisecond)
}

// startWith is start with other models and SLA.
func (h *history) startWith(models string, sla time.Duration) string {
	h.t.Helper()
	port, err := dev.FreePorts(1)
	if err != nil {
		h.t.Fatal(err)
	}
	cfg := Defaults()
	cfg.Common.Kafka.Brokers = h.brokers
	cfg.Common.RegistryURL = h.registry
	cfg.Common.LogLevel = "error"
	cfg.Common.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.LiveModels = false
	if cfg.Models, err = ParseModels(models); err != nil {
		h.t.Fatal(err)
	}
	cfg.Policy.SLA = policy.Duration(sla)
	h.sla = sla
	ctx, stop := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	h.t.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			h.t.Errorf("Run: %v", err)
		}
	})
	return cfg.Common.HTTPAddr
}

// logs reads the decisions (read committed, as every log reader does) and
// the answers on the results topic until until says enough, then half a
// second more, for what should not come.
func (h *history) logs(until func(decisions map[string]map[string]any, answers map[string]int) bool) (map[string]map[string]any, map[string]int) {
	h.t.Helper()
	dc, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(h.ts.Decisions, h.ts.Results),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		h.t.Fatal(err)
	}
	defer dc.Close()
	reader, err := serde.Parse(h.set.Text[schemas.Decision])
	if err != nil {
		h.t.Fatal(err)
	}
	decisions, answers := map[string]map[string]any{}, map[string]int{}
	read := func(ctx context.Context) {
		dc.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if r.Topic == h.ts.Results {
				answers[string(r.Key)]++
				return
			}
			v, err := h.sd.Decode(ctx, r.Value, reader)
			if err != nil {
				h.t.Fatal(err)
			}
			decisions[string(r.Key)] = v
		})
	}
	for !until(decisions, answers) {
		read(h.ctx)
		if h.ctx.Err() != nil {
			h.t.Fatalf("logs not complete in time: %d decisions, answers %v", len(decisions), answers)
		}
	}
	more, cancel := context.WithTimeout(h.ctx, 500*time.Millisecond)
	read(more)
	cancel()
	return decisions, answers
}

// A previous owner answered a request, then died before logging its
// decision. Its scores' record times say the champion was in time, but the
// owner, starved of CPU, read it late and answered the canary's score. The
// new owner must log what the caller was told, read back from the results
// topic, and not send a second answer; a replayed request with no answer
// read back is decided from its scores' times.
func TestTakeoverLogsTheAnswerGiven(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h := newHistory(t, ctx)
	received := time.Now().Add(-10 * time.Second).Truncate(time.Millisecond)
	for _, id := range []string{"answered", "not-answered"} {
		h.request(id, received)
		// Both in time by their record times: the canary at 3 ms, the
		// champion at 8 ms, inside its 50 ms budget.
		h.score(id, "canary", "canary", "Iris-versicolor", received.Add(3*time.Millisecond))
		h.score(id, "dt", "champion", "Iris-setosa", received.Add(8*time.Millisecond))
	}
	// What the starved owner answered for the first: the canary's score.
	decided := received.Add(120 * time.Millisecond)
	h.add(h.ts.Results, schemas.Result, "answered", decided, map[string]any{
		"request_id": "answered", "objective": "iris", "reason": "fallback", "policy": "priority", "model": "canary", "version": "",
		"result": serde.Opt("Iris-versicolor"), "probabilities": map[string]any{}, "received_us": received.UnixMicro(), "decided_us": decided.UnixMicro(),
	})
	h.write()
	h.start()

	decisions, answers := h.logs(func(d map[string]map[string]any, a map[string]int) bool {
		return len(d) == 2 && a["not-answered"] > 0
	})
	for id, want := range map[string][2]string{"answered": {"fallback", "canary"}, "not-answered": {"champion", "dt"}} {
		d := decisions[id]
		if got := [2]string{serde.Str(d, "reason"), serde.Str(d, "model")}; got != want {
			t.Errorf("%s: logged %s by %s, want %s by %s", id, got[0], got[1], want[0], want[1])
		}
	}
	// The answer read back was not sent again; the other request was
	// answered (late, to nobody) when it was decided.
	if answers["answered"] != 1 || answers["not-answered"] != 1 {
		t.Errorf("answers on the results topic: %v, want one each", answers)
	}
}

// Requests the stage reads after their deadline (a takeover's replay) say
// nothing about the models: the champion's scores, late by their record
// times, must not count as timeouts nor open its circuit, though enough of
// them arrive within the breaker's one-second window to open it.
func TestLateRequestsStayOutOfTheBreaker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h := newHistory(t, ctx)
	const n = 40 // the breaker opens on 20 samples, half of them failed
	received := time.Now().Add(-10 * time.Second).Truncate(time.Millisecond)
	for i := range n {
		id := fmt.Sprintf("late-%d", i)
		at := received.Add(time.Duration(i) * time.Millisecond)
		h.request(id, at)
		h.score(id, "canary", "canary", "Iris-versicolor", at.Add(3*time.Millisecond))
		h.score(id, "dt", "champion", "Iris-setosa", at.Add(80*time.Millisecond)) // past its 50 ms
	}
	h.write()
	addr := h.start()
	decisions, _ := h.logs(func(d map[string]map[string]any, _ map[string]int) bool { return len(d) == n })
	fallbacks := 0
	for _, d := range decisions {
		if serde.Str(d, "reason") == "fallback" {
			fallbacks++
		}
	}
	if fallbacks != n {
		t.Fatalf("%d of %d replayed requests logged as the canary's fallback; the champion was late on all", fallbacks, n)
	}
	m, err := promtext.Scrape(ctx, http.DefaultClient, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m[`rdv_rendezvous_model_timeouts_total{model="dt",objective="iris"}`]; !ok {
		t.Fatalf("no timeouts series for the champion in the stage's metrics")
	}
	if timeouts, _ := m.Sum("rdv_rendezvous_model_timeouts_total"); timeouts != 0 {
		t.Errorf("%v timeouts counted for late requests, want 0", timeouts)
	}
	if state, _ := m.Sum("rdv_rendezvous_circuit_state"); state != 0 {
		t.Errorf("circuit state %v after late requests, want 0 (closed)", state)
	}
}

// A stall of the whole pipeline makes every model late on the same
// requests; that says nothing about the champion, whose circuit must stay
// closed. The same champion late while the canary is in time is a sick
// champion, and its circuit opens. (Here the champion's budget is 300 ms
// and the SLA 1 s.)
func TestStallKeepsCircuitsClosed(t *testing.T) {
	for _, tc := range []struct {
		name         string
		canaryInTime bool
		wantCircuit  float64
	}{
		{"champion late alone", true, 2},
		{"every model late", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			h := newHistory(t, ctx)
			// Budgets long enough that "in time" does not depend on how
			// fast this machine runs the test (the race detector included).
			addr := h.startWith("dt:champion:300ms,canary:canary", time.Second)
			waitOwned(t, ctx, addr)
			answers, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(h.ts.Results))
			if err != nil {
				t.Fatal(err)
			}
			defer answers.Close()
			// One call first, answered by the champion: the stage is past
			// its first fetches, which can take longer than an SLA.
			warm := time.Now()
			h.request("warm-up", warm)
			h.score("warm-up", "dt", "champion", "Iris-setosa", warm)
			h.write()
			for answered := false; !answered; {
				answers.PollFetches(ctx).EachRecord(func(r *kgo.Record) { answered = answered || string(r.Key) == "warm-up" })
				if ctx.Err() != nil {
					t.Fatal("the warm-up call was not answered")
				}
			}
			// 30 requests at once, more than the 20 samples the breaker
			// needs in its one-second window. The champion's scores come
			// only after every answer, past its budget; the canary's come
			// at once, or also after the answers.
			const n = 30
			received := time.Now()
			for i := range n {
				id := fmt.Sprintf("r-%d", i)
				h.request(id, received)
				if tc.canaryInTime {
					h.score(id, "canary", "canary", "Iris-versicolor", received)
				}
			}
			h.write()
			for got := 0; got < n; {
				answers.PollFetches(ctx).EachRecord(func(*kgo.Record) { got++ })
				if ctx.Err() != nil {
					t.Fatalf("%d of %d answered", got, n)
				}
			}
			for i := range n {
				id := fmt.Sprintf("r-%d", i)
				h.score(id, "dt", "champion", "Iris-setosa", time.Now())
				if !tc.canaryInTime {
					h.score(id, "canary", "canary", "Iris-versicolor", time.Now())
				}
			}
			h.write()
			h.logs(func(d map[string]map[string]any, _ map[string]int) bool { return len(d) == n+1 })
			m, err := promtext.Scrape(ctx, http.DefaultClient, addr)
			if err != nil {
				t.Fatal(err)
			}
			if timeouts := m[`rdv_rendezvous_model_timeouts_total{model="dt",objective="iris"}`]; timeouts != n {
				t.Errorf("%v timeouts counted for the champion, want %d: it was late on every request", timeouts, n)
			}
			if state := m[`rdv_rendezvous_circuit_state{model="dt",objective="iris"}`]; state != tc.wantCircuit {
				t.Errorf("the champion's circuit state is %v, want %v", state, tc.wantCircuit)
			}
		})
	}
}

// waitOwned waits until the stage at addr owns its partition.
func waitOwned(t *testing.T, ctx context.Context, addr string) {
	t.Helper()
	for {
		if m, err := promtext.Scrape(ctx, http.DefaultClient, addr); err == nil {
			if owned, _ := m.Sum("rdv_rendezvous_owned_partitions"); owned == 1 {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("the stage did not take its partition")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
