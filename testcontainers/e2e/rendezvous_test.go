package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
	"github.com/rendezvous-ml/rendezvous/testcontainers/stack"
)

// call is one predict call of an open-loop load.
type call struct {
	sent   time.Time // the intended send time
	took   time.Duration
	answer stack.Answer
	err    error
}

// openLoad sends predict calls at a constant rate until stop is closed,
// each from its own goroutine at its intended time, so a slow answer never
// delays the next call.
func openLoad(s *stack.Stack, rows []row, rate int, stop <-chan struct{}) func() []call {
	var (
		mu    sync.Mutex
		calls []call
		wg    sync.WaitGroup
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		every := time.Second / time.Duration(rate)
		start := time.Now()
		for i := 0; ; i++ {
			at := start.Add(time.Duration(i) * every)
			select {
			case <-stop:
				return
			case <-time.After(time.Until(at)):
			}
			wg.Add(1)
			go func(i int, at time.Time) {
				defer wg.Done()
				a, err := s.Predict("/predict", rows[i%len(rows)].body)
				c := call{sent: at, took: time.Since(at), answer: a, err: err}
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
			}(i, at)
		}
	}()
	return func() []call {
		<-done
		wg.Wait()
		sort.Slice(calls, func(i, j int) bool { return calls[i].sent.Before(calls[j].sent) })
		return calls
	}
}

// readTopic reads topic from its start (read_committed), decoding each
// value with this build's schema of kind, until done says so and the topic
// stays idle for a second, or timeout.
func readTopic(t *testing.T, s *stack.Stack, topic string, kind schemas.Kind, timeout time.Duration, done func() bool, fn func(r *kgo.Record, m map[string]any)) {
	t.Helper()
	reg, err := registry.New(registry.Config{URL: s.RegistryURL})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	sd := serde.New(reg)
	set, err := schemas.For(s.Objective)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := serde.Parse(set.Text[kind])
	if err != nil {
		t.Fatal(err)
	}
	cl := s.Client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			m, err := sd.Decode(context.Background(), r.Value, reader)
			if err != nil {
				t.Errorf("%s %d/%d: %v", topic, r.Partition, r.Offset, err)
				return
			}
			fn(r, m)
		})
		if n == 0 && done() {
			return
		}
	}
}

// decisionLog reads the decisions topic until every id in want has a
// decision. It returns every decision by request id, in order of
// appearance.
func decisionLog(t *testing.T, s *stack.Stack, want map[string]bool, timeout time.Duration) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	have := 0
	readTopic(t, s, topics.For(s.Objective).Decisions, schemas.Decision, timeout, func() bool { return have >= len(want) },
		func(_ *kgo.Record, d map[string]any) {
			id := serde.Str(d, "request_id")
			if want[id] && len(out[id]) == 0 {
				have++
			}
			out[id] = append(out[id], d)
		})
	return out
}

// checkAnswers asserts that every call got one 200 answer no later than the
// SLA plus 50 ms (as the frontend measured it, from receipt to answer), and
// exactly one decision, saying what the caller was told. It returns the
// answers by reason.
func checkAnswers(t *testing.T, s *stack.Stack, calls []call, sla time.Duration) map[string]int {
	t.Helper()
	// On real Kafka the JVM broker shares the two cores with the stack:
	// the frontend's own default, due 40 ms after the SLA, can fire tens
	// of milliseconds late (1 call in 200 may be later still), and an
	// owner starved of CPU and then killed can leave a decision that
	// disagrees with its answer (the known gap in README, "The rendezvous
	// stage"). Both are bounded there rather than forbidden; on the
	// embedded broker neither is allowed.
	slack, maxLate, maxMismatch := 50*time.Millisecond, 0, 0
	if s.Real {
		slack, maxLate, maxMismatch = 100*time.Millisecond, len(calls)/200, len(calls)/50
	}
	want := map[string]bool{}
	reasons := map[string]int{}
	var tooLate, failed int
	var worst, worstClient time.Duration
	for _, c := range calls {
		if c.err != nil || c.answer.Status != http.StatusOK {
			failed++
			if failed <= 5 {
				t.Errorf("call at %s: status %d, err %v, error %q", c.sent.Format("15:04:05.000"), c.answer.Status, c.err, c.answer.Error)
			}
			continue
		}
		want[c.answer.MessageID] = true
		reasons[c.answer.Reason]++
		took := time.Duration(c.answer.LatencyMs * float64(time.Millisecond))
		worst = max(worst, took)
		worstClient = max(worstClient, c.took)
		if took > sla+slack {
			tooLate++
			if tooLate <= 5 {
				t.Logf("answer %s (%s) took %v, more than the SLA %v + %v", c.answer.MessageID, c.answer.Reason, took, sla, slack)
			}
		}
	}
	t.Logf("%d calls: %d answered, %d failed, %d later than SLA+%v; slowest answer %v at the frontend, %v at the client (from the intended send time); by reason %v",
		len(calls), len(want), failed, tooLate, slack, worst.Round(100*time.Microsecond), worstClient.Round(100*time.Microsecond), reasons)
	if tooLate > maxLate {
		t.Errorf("%d answers later than the SLA + %v (at most %d allowed)", tooLate, slack, maxLate)
	}
	log := decisionLog(t, s, want, 60*time.Second)
	var missing, dup, mismatch int
	for _, c := range calls {
		id := c.answer.MessageID
		if !want[id] {
			continue
		}
		ds := log[id]
		switch {
		case len(ds) == 0:
			missing++
			continue
		case len(ds) > 1:
			dup++
		}
		d := ds[0]
		// The frontend's own default ("expired") and the stage's default
		// at the SLA are the same answer to the caller.
		sameDefault := c.answer.Reason == "expired" && serde.Str(d, "model") == "default"
		if !sameDefault && (serde.Str(d, "reason") != c.answer.Reason || serde.Str(d, "model") != c.answer.ModelResult.ModelName) {
			mismatch++
			if mismatch <= 5 {
				t.Logf("request %s: answered %s/%s, decision says %s/%s", id, c.answer.Reason, c.answer.ModelResult.ModelName,
					serde.Str(d, "reason"), serde.Str(d, "model"))
			}
		}
	}
	t.Logf("decisions: %d accepted requests, %d missing, %d duplicated, %d disagreeing with the answer", len(want), missing, dup, mismatch)
	if missing > 0 || dup > 0 || mismatch > maxMismatch {
		t.Errorf("decisions log: %d missing, %d duplicated, %d disagreeing (at most %d allowed)", missing, dup, mismatch, maxMismatch)
	}
	return reasons
}

func rendezvousArgs() []string {
	return []string{"-models", "dt:champion:50ms,canary:canary,challenger:shadow", "-default-result", "unknown"}
}

// Three rendezvous instances share 12 partitions under steady load; one is
// SIGKILLed and a new one joins. No request is lost: each gets one answer
// within the SLA plus 50 ms (the frontend answers the default itself while
// the killed instance's partitions wait for their new owner) and one
// decision that says what the caller was told.
func TestRendezvousRebalance(t *testing.T) {
	s := stack.Start(t, stack.Options{Partitions: 12})
	rows := irisRows(t)
	const sla = 100 * time.Millisecond
	addrB := s.StartStage("rendezvous-b", "rendezvous", rendezvousArgs()...)
	addrC := s.StartStage("rendezvous-c", "rendezvous", rendezvousArgs()...)
	for name, addr := range map[string]string{"rendezvous-b": addrB, "rendezvous-c": addrC} {
		if err := s.WaitReady(name, addr, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitOwners(t, s, []string{"rendezvous", "rendezvous-b", "rendezvous-c"}, 12)

	stop := make(chan struct{})
	wait := openLoad(s, rows, 100, stop)
	time.Sleep(4 * time.Second) // steady load before the kill
	killedAt := time.Now()
	s.Kill("rendezvous-b")
	t.Logf("rendezvous-b SIGKILLed")
	time.Sleep(9 * time.Second) // past the session timeout: its partitions move
	addrD := s.StartStage("rendezvous-d", "rendezvous", rendezvousArgs()...)
	if err := s.WaitReady("rendezvous-d", addrD, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	joinedAt := time.Now()
	t.Logf("rendezvous-d joined %v after the kill", joinedAt.Sub(killedAt).Round(time.Millisecond))
	time.Sleep(5 * time.Second)
	close(stop)
	calls := wait()
	// Answers by reason, second by second, relative to the kill.
	buckets := map[int]map[string]int{}
	for _, c := range calls {
		sec := int(c.sent.Sub(killedAt).Seconds()+100) - 100
		if buckets[sec] == nil {
			buckets[sec] = map[string]int{}
		}
		buckets[sec][c.answer.Reason]++
	}
	var secs []int
	for k := range buckets {
		secs = append(secs, k)
	}
	sort.Ints(secs)
	var timeline []string
	for _, k := range secs {
		timeline = append(timeline, fmt.Sprintf("%+ds %v", k, buckets[k]))
	}
	t.Logf("answers by second (0 = the kill; the new instance joined at %+.1fs):\n%s", joinedAt.Sub(killedAt).Seconds(), strings.Join(timeline, "\n"))
	reasons := checkAnswers(t, s, calls, sla)
	if reasons["champion"] < len(calls)/2 {
		t.Errorf("only %d of %d answers by the champion: the pipeline was not in a steady state", reasons["champion"], len(calls))
	}
	waitOwners(t, s, []string{"rendezvous", "rendezvous-c", "rendezvous-d"}, 12)
}

// waitOwners waits until the instances together own every partition of
// the requests topic, as their metrics tell.
func waitOwners(t *testing.T, s *stack.Stack, instances []string, partitions int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		total := 0
		var each []string
		for _, name := range instances {
			addr, err := s.Addr(name)
			if err != nil {
				t.Fatal(err)
			}
			m, err := scrapeMetrics(addr)
			if err != nil {
				continue
			}
			n := int(m[`rdv_rendezvous_owned_partitions{objective="iris"}`])
			total += n
			each = append(each, fmt.Sprintf("%s=%d", name, n))
		}
		if total == partitions {
			t.Logf("partitions owned: %s", strings.Join(each, " "))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions owned: %s; want %d in all", strings.Join(each, " "), partitions)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Promoting the challenger while load runs switches the answers to it
// within 2 s, with no error and no restart; retiring it hands them to the
// canary as fast.
func TestPromoteAndRetire(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	rows := irisRows(t)
	out, err := s.RunCLI("models", "list", "iris")
	if err != nil || !strings.Contains(out, "challenger") {
		t.Fatalf("rdv models list: %v\n%s", err, out)
	}
	t.Logf("rdv models list:\n%s", out)
	warmChampion(t, s, rows, "dt")
	stop := make(chan struct{})
	loadAt := time.Now()
	wait := openLoad(s, rows, 50, stop)
	time.Sleep(4 * time.Second)
	promotedAt := time.Now()
	out, err = s.RunCLI("models", "promote", "iris", "challenger")
	if err != nil {
		t.Fatalf("rdv models promote: %v\n%s", err, out)
	}
	t.Logf("rdv models promote iris challenger (%v): %s", time.Since(promotedAt).Round(time.Millisecond), strings.TrimSpace(out))
	time.Sleep(4 * time.Second)
	retiredAt := time.Now()
	out, err = s.RunCLI("models", "retire", "iris", "challenger")
	if err != nil {
		t.Fatalf("rdv models retire: %v\n%s", err, out)
	}
	time.Sleep(4 * time.Second)
	close(stop)
	calls := wait()
	checkAnswers(t, s, calls, 100*time.Millisecond)

	// Who answered, before and after each change.
	phase := func(c call) string {
		switch {
		case c.sent.Before(promotedAt):
			return "before"
		case c.sent.Before(retiredAt):
			return "promoted"
		}
		return "retired"
	}
	var lastOld, lastPromoted time.Duration
	wrong := 0
	settled, expected := map[string]int{}, map[string]int{}
	for _, c := range calls {
		m, r := c.answer.ModelResult.ModelName, c.answer.Reason
		switch phase(c) {
		case "before":
			// Counted from 2 s after its start, as the other phases are.
			if c.sent.Sub(loadAt) > 2*time.Second {
				settled["before"]++
				if m == "dt" && r == "champion" {
					expected["before"]++
				} else {
					t.Logf("%v into the load: %s/%s in %v", c.sent.Sub(loadAt).Round(time.Millisecond), m, r, c.answer.Took)
				}
			}
			if m == "challenger" {
				wrong++
				t.Errorf("before the promotion: %s/%s", m, r)
			}
		case "promoted":
			if m == "dt" {
				lastOld = max(lastOld, c.sent.Sub(promotedAt))
			}
			if c.sent.Sub(promotedAt) > 2*time.Second {
				settled["promoted"]++
				if m == "challenger" && r == "champion" {
					expected["promoted"]++
				}
				// The old champion answering is the switch failing; the
				// canary answering is the new champion missing its budget
				// once on a loaded machine, which the majority check bounds.
				if m == "dt" {
					wrong++
					t.Errorf("%v after the promotion: %s/%s", c.sent.Sub(promotedAt).Round(time.Millisecond), m, r)
				}
			}
		case "retired":
			if m == "challenger" {
				lastPromoted = max(lastPromoted, c.sent.Sub(retiredAt))
			}
			if c.sent.Sub(retiredAt) > 2*time.Second {
				settled["retired"]++
				if m == "canary" && r == "fallback" {
					expected["retired"]++
				}
				if m == "challenger" {
					wrong++
					t.Errorf("%v after the retirement: %s/%s", c.sent.Sub(retiredAt).Round(time.Millisecond), m, r)
				}
			}
		}
	}
	for _, ph := range []string{"before", "promoted", "retired"} {
		t.Logf("%s (from 2 s after its start): %d of %d answers by the expected model", ph, expected[ph], settled[ph])
		if settled[ph] == 0 || expected[ph] < settled[ph]*9/10 {
			t.Errorf("%s: %d of %d answers by the expected model, want nine in ten", ph, expected[ph], settled[ph])
		}
	}
	if t.Failed() {
		logModelSeries(t, stageAddr(t, s, "rendezvous"))
	}
	t.Logf("last answer by dt %v after the promote command; last by the challenger %v after the retire command; %d answers by the wrong model",
		lastOld.Round(time.Millisecond), lastPromoted.Round(time.Millisecond), wrong)
	if wrong > 0 {
		t.Fatalf("%d answers by the wrong model after a switch", wrong)
	}
	out, err = s.RunCLI("models", "list", "iris")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rdv models list:\n%s", out)
	for _, want := range []string{"challenger", "champion*", "retired"} {
		if !strings.Contains(out, want) {
			t.Errorf("rdv models list does not show %q", want)
		}
	}
}

// oipServer is a model server speaking the Open Inference Protocol that
// serves a model file, and can be told to fail: slowly, with a 500, as an
// overloaded server does.
type oipServer struct {
	model   evaluator.Model
	failing atomic.Bool
	delay   time.Duration
}

func (o *oipServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && (p == "/v2/health/ready" || strings.HasSuffix(p, "/ready")):
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodGet && strings.HasPrefix(p, "/v2/models/"):
		_ = json.NewEncoder(w).Encode(map[string]any{"name": strings.TrimPrefix(p, "/v2/models/"), "versions": []string{"1"}, "platform": "test"})
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/infer"):
		if o.failing.Load() {
			time.Sleep(o.delay)
			http.Error(w, `{"error":"model overloaded"}`, http.StatusInternalServerError)
			return
		}
		var req struct {
			ID     string `json:"id"`
			Inputs []struct {
				Name  string    `json:"name"`
				Shape []int     `json:"shape"`
				Data  []float64 `json:"data"`
			} `json:"inputs"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Inputs) != 1 {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		in := req.Inputs[0]
		feats := o.model.Features()
		var labels []string
		for i := 0; i+len(feats) <= len(in.Data); i += len(feats) {
			x := map[string]float64{}
			for j, f := range feats {
				x[f] = in.Data[i+j]
			}
			pred, err := o.model.Predict(x)
			if err != nil {
				http.Error(w, `{"error":"`+err.Error()+`"}`, http.StatusBadRequest)
				return
			}
			labels = append(labels, pred.Label)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"model_name": "flaky", "id": req.ID, "outputs": []any{
			map[string]any{"name": "predict", "shape": []int{len(labels)}, "datatype": "BYTES", "data": labels},
		}})
	default:
		http.NotFound(w, r)
	}
}

// A champion whose model server starts failing slowly stops delaying the
// answers within 1 s (its breaker opens and the canary answers at once);
// when the server recovers, the half-open probe lets the champion back in.
func TestBreaker(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	rows := irisRows(t)
	root, _ := stack.Root()
	m, err := evaluator.Load(filepath.Join(root, "models", "iris", "dt.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &oipServer{model: m, delay: 80 * time.Millisecond}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	addr := s.StartStage("model-flaky", "model-runner", "-kind", "http", "-url", hs.URL, "-remote-model", "flaky",
		"-features", strings.Join(m.Features(), ","), "-name", "flaky", "-version", "1", "-role", "champion",
		"-budget", "50ms", "-priority", "0",
		// Behind a slow server the runner falls behind; inputs whose
		// mailbox has closed are not worth a call once it recovers.
		"-max-staleness", "500ms")
	if err := s.WaitReady("model-flaky", addr, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if out, err := s.RunCLI("models", "retire", "iris", "dt"); err != nil {
		t.Fatalf("rdv models retire iris dt: %v\n%s", err, out)
	}
	rdvAddr := stageAddr(t, s, "rendezvous")
	// The retirement has reached the rendezvous once flaky answers.
	for deadline := time.Now().Add(20 * time.Second); ; {
		a, err := s.Predict("/predict", rows[0].body)
		if err == nil && a.ModelResult.ModelName == "flaky" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flaky never answered: last %+v, %v", a, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop := make(chan struct{})
	wait := openLoad(s, rows, 50, stop)
	time.Sleep(3 * time.Second)
	failedAt := time.Now()
	srv.failing.Store(true)
	t.Logf("model server failing: 500 after %v", srv.delay)
	time.Sleep(2500 * time.Millisecond) // open by now, and still in its 5 s cool-down
	metrics, err := scrapeMetrics(rdvAddr)
	if err != nil {
		t.Fatal(err)
	}
	state := metrics[`rdv_rendezvous_circuit_state{model="flaky@1",objective="iris"}`]
	time.Sleep(2500 * time.Millisecond)
	healedAt := time.Now()
	srv.failing.Store(false)
	t.Logf("model server healthy again; circuit state of flaky@1 was %v (2 = open)", state)
	time.Sleep(10 * time.Second) // the 5 s cool-down, then the probe
	close(stop)
	calls := wait()
	checkAnswers(t, s, calls, 100*time.Millisecond)

	// Whether an answer waited for the champion is in its decision: it was
	// decided later than the canary's score arrived.
	ids := map[string]bool{}
	for _, c := range calls {
		ids[c.answer.MessageID] = true
	}
	dlog := decisionLog(t, s, ids, time.Minute)
	waited := func(c call) bool {
		for _, d := range dlog[c.answer.MessageID] {
			decided := serde.Long(d, "decided_us") - serde.Long(d, "received_us")
			for _, sc := range d["scores"].([]any) {
				m := sc.(map[string]any)
				if m["model"] == "canary" && serde.Long(m, "arrived_us") < decided-5000 {
					return true
				}
			}
		}
		return false
	}
	var lastDelayed, firstBack time.Duration
	firstBack = -1
	var wrong, healthy, healthyOK int
	for _, c := range calls {
		took := time.Duration(c.answer.LatencyMs * float64(time.Millisecond))
		m, r := c.answer.ModelResult.ModelName, c.answer.Reason
		switch {
		case c.sent.Before(failedAt):
			// A healthy model may still miss its budget now and then.
			healthy++
			if m == "flaky" && r == "champion" {
				healthyOK++
			} else {
				t.Logf("healthy phase: %s/%s in %v", m, r, took)
			}
		case c.sent.Before(healedAt):
			w := waited(c)
			if w {
				lastDelayed = max(lastDelayed, c.sent.Sub(failedAt))
			}
			if c.sent.Sub(failedAt) > time.Second && (w || m != "canary") {
				wrong++
				t.Errorf("%v after the failure: %s/%s in %v, waited for the champion: %v", c.sent.Sub(failedAt).Round(time.Millisecond), m, r, took, w)
			}
		default:
			if m == "flaky" && firstBack < 0 {
				firstBack = c.sent.Sub(healedAt)
			}
		}
	}
	t.Logf("failing: last answer delayed by the champion's budget was sent %v after the failure began; recovered: first answer by the champion %v after the server healed",
		lastDelayed.Round(time.Millisecond), firstBack.Round(time.Millisecond))
	if healthyOK < healthy*9/10 {
		t.Errorf("healthy phase: only %d of %d answers by the champion", healthyOK, healthy)
	}
	if state != 2 {
		t.Errorf("circuit state of flaky@1 while failing: %v, want 2 (open)", state)
	}
	if lastDelayed > time.Second {
		t.Errorf("answers were still delayed %v after the failure began", lastDelayed)
	}
	if firstBack < 0 {
		t.Errorf("the champion never answered again after the server healed")
	}
	// Once back, it stays back.
	for _, c := range calls {
		if firstBack >= 0 && c.sent.Sub(healedAt) > firstBack+time.Second && c.answer.ModelResult.ModelName != "flaky" {
			wrong++
			t.Errorf("%v after healing: %s/%s", c.sent.Sub(healedAt).Round(time.Millisecond), c.answer.ModelResult.ModelName, c.answer.Reason)
		}
	}
	if wrong > 0 {
		t.Fatalf("%d answers not as the breaker should have them", wrong)
	}
}

// A hundred model versions on one objective: the rendezvous waits for
// every one of them, the champion still answers at once, and each decision
// holds all hundred scores. RDV_MODELS_N changes the count.
func TestHundredModels(t *testing.T) {
	n := esEnvInt("RDV_MODELS_N", 100)
	// A hundred runners share two cores with the broker: the champion's
	// score can take longer than the default 50 ms budget to be scheduled,
	// so it gets 90 ms of the 100 ms SLA.
	s := stack.Start(t, stack.Options{Extra: []string{"-champion-budget", "90ms"}})
	root, _ := stack.Root()
	started := time.Now()
	addrs := map[string]string{}
	for i := 3; i < n; i++ {
		name := fmt.Sprintf("s%03d", i)
		addrs[name] = s.StartStage("model-"+name, "model-runner", "-model", filepath.Join(root, "models", "iris", "challenger.json"),
			"-name", name, "-version", "1", "-role", "shadow")
	}
	for name, addr := range addrs {
		if err := s.WaitReady("model-"+name, addr, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	rdvAddr := stageAddr(t, s, "rendezvous")
	for deadline := time.Now().Add(time.Minute); ; {
		m, err := scrapeMetrics(rdvAddr)
		if err == nil && int(m[`rdv_rendezvous_models_waited{objective="iris"}`]) == n {
			break
		}
		if time.Now().After(deadline) {
			out, _ := s.RunCLI("models", "list", "iris")
			t.Fatalf("the rendezvous waits for %v models, want %d:\n%s", m[`rdv_rendezvous_models_waited{objective="iris"}`], n, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d model runners live in %v", n, time.Since(started).Round(time.Millisecond))
	rows := irisRows(t)
	// Warm up until the champion answers: a hundred runners' first
	// produces and fetches settle first.
	for deadline := time.Now().Add(30 * time.Second); ; {
		a, err := s.Predict("/predict", rows[0].body)
		if err == nil && a.Reason == "champion" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm-up: no champion answer in 30 s: last %+v, %v", a, err)
		}
	}
	stop := make(chan struct{})
	wait := openLoad(s, rows, 10, stop)
	time.Sleep(6 * time.Second)
	close(stop)
	calls := wait()
	reasons := checkAnswers(t, s, calls, 100*time.Millisecond)
	// A hundred runners share two cores: the champion may miss its budget
	// now and then, but it answers most calls.
	if reasons["champion"] < len(calls)*3/4 {
		t.Errorf("answers by reason %v: want three in four by the champion", reasons)
	}
	want := map[string]bool{}
	for _, c := range calls {
		want[c.answer.MessageID] = true
	}
	log := decisionLog(t, s, want, time.Minute)
	full := 0
	var closeTimes []time.Duration
	for id := range want {
		for _, d := range log[id] {
			if len(d["scores"].([]any)) == n && len(d["missing"].([]any)) == 0 {
				full++
			}
			closeTimes = append(closeTimes, time.Duration(serde.Long(d, "closed_us")-serde.Long(d, "received_us"))*time.Microsecond)
		}
	}
	sort.Slice(closeTimes, func(i, j int) bool { return closeTimes[i] < closeTimes[j] })
	t.Logf("%d of %d decisions hold all %d scores; mailbox open for p50 %v, max %v", full, len(want), n,
		closeTimes[len(closeTimes)/2].Round(100*time.Microsecond), closeTimes[len(closeTimes)-1].Round(100*time.Microsecond))
	// A score later than the grace (1 s past the deadline) is left out by
	// design; on a loaded 2-core machine a few of 100 runners may be.
	if full < len(want)*9/10 {
		t.Fatalf("%d of %d decisions hold all %d scores", full, len(want), n)
	}
}

// logModelSeries logs the rendezvous's per-model series, which tell a
// model left out (circuit, errors, timeouts) from one that was slow.
func logModelSeries(t *testing.T, addr string) {
	t.Helper()
	m, err := scrapeMetrics(addr)
	if err != nil {
		t.Logf("rendezvous metrics: %v", err)
		return
	}
	var lines []string
	for k, v := range m {
		for _, name := range []string{"rdv_rendezvous_circuit_state", "rdv_rendezvous_model_errors_total", "rdv_rendezvous_model_timeouts_total", "rdv_rendezvous_model_wins_total", "rdv_rendezvous_models_waited"} {
			if strings.HasPrefix(k, name+"{") {
				lines = append(lines, fmt.Sprintf("%s %v", k, v))
			}
		}
	}
	sort.Strings(lines)
	t.Logf("rendezvous per-model series:\n%s", strings.Join(lines, "\n"))
}

// warmChampion sends calls one at a time until the champion answers ten in
// a row. A fresh stack's first calls can be slow (a JVM broker warming up,
// new partitions), and a champion late on most of them has its circuit
// opened for the cool-down: 5 s of canary answers that a test about
// something else would count against it.
func warmChampion(t *testing.T, s *stack.Stack, rows []row, champion string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	inARow, calls := 0, 0
	for inARow < 10 {
		if time.Now().After(deadline) {
			logModelSeries(t, stageAddr(t, s, "rendezvous"))
			t.Fatalf("the champion %s did not answer 10 calls in a row within 30 s (%d calls)", champion, calls)
		}
		a, err := s.Predict("/predict", rows[calls%len(rows)].body)
		if err != nil {
			t.Fatal(err)
		}
		calls++
		if a.Reason == "champion" && a.ModelResult.ModelName == champion {
			inARow++
		} else {
			inARow = 0
		}
	}
	if calls > 10 {
		t.Logf("warm-up: %d calls before the champion answered 10 in a row", calls)
	}
}
