package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic"
	"github.com/rendezvous-ml/rendezvous/pipeline/promtext"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake"
	"github.com/rendezvous-ml/rendezvous/testcontainers/stack"
)

// startESFake runs the Elasticsearch-8 test server on loopback.
func startESFake(t *testing.T) (*esfake.Server, string) {
	t.Helper()
	es := esfake.New()
	url, err := es.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(es.Close)
	return es, url
}

// esLoad sends predict calls from workers until n calls were sent (n < 0:
// until stop is called).
type esLoad struct {
	sent, ok, other atomic.Int64
	done            chan struct{}
	stopped         atomic.Bool
	mu              sync.Mutex
	accepted        map[string]bool
}

func startESLoad(s *stack.Stack, workers int, n int64, body func(i int64) string) *esLoad {
	g := &esLoad{done: make(chan struct{}), accepted: map[string]bool{}}
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !g.stopped.Load() {
				i := next.Add(1) - 1
				if n >= 0 && i >= n {
					return
				}
				a, err := s.Predict("/predict", body(i))
				g.sent.Add(1)
				if err == nil && a.Status == http.StatusOK {
					g.ok.Add(1)
					g.mu.Lock()
					g.accepted[a.MessageID] = true
					g.mu.Unlock()
				} else {
					g.other.Add(1)
				}
			}
		}()
	}
	go func() { wg.Wait(); close(g.done) }()
	return g
}

func (g *esLoad) stop() { g.stopped.Store(true); <-g.done }

// topicDocIDs reads a log topic from the start with read_committed until it
// holds at least want distinct keys and then stays idle for a second, and
// returns the document id (topic-partition-offset) of every record and how
// often each key appeared.
func topicDocIDs(t *testing.T, s *stack.Stack, topic string, want int, timeout time.Duration) ([]string, map[string]int) {
	t.Helper()
	cl := s.Client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var ids []string
	keys := map[string]int{}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			ids = append(ids, elastic.DocID(r))
			keys[string(r.Key)]++
			n++
		})
		if n == 0 && len(keys) >= want {
			return ids, keys
		}
	}
	t.Fatalf("%s: %d keys after %v, want %d", topic, len(keys), timeout, want)
	return nil, nil
}

// docsByRequest counts the documents of indices matching pattern by request_id.
func docsByRequest(t *testing.T, es *esfake.Server, pattern string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, d := range es.Docs(pattern) {
		var src struct {
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(d.Source, &src); err != nil {
			t.Fatalf("%s/%s: %v", d.Index, d.ID, err)
		}
		out[src.RequestID]++
	}
	return out
}

// waitESDocs waits until the indices matching each pattern hold at least the
// given number of documents.
func waitESDocs(t *testing.T, es *esfake.Server, want map[string]int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		short := false
		for p, n := range want {
			if es.DocCount(p) < n {
				short = true
			}
		}
		if !short {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			got := map[string]int{}
			for p := range want {
				got[p] = es.DocCount(p)
			}
			t.Fatalf("after %v: documents %v, want %v", timeout, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scrapeMetrics reads a stage's Prometheus metrics.
func scrapeMetrics(addr string) (promtext.Series, error) {
	return promtext.Scrape(context.Background(), http.DefaultClient, addr)
}

func esEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestElasticsearchIndices sends N predict calls (RDV_ES_N, default 20,000;
// 2,000 with -short) from 16 workers while the Elasticsearch connector is
// killed with SIGKILL 5 times, each time after it is back and ready, and
// while the test server takes 10ms per call and refuses 2% of the bulk
// items with 429 (a partial failure of the call). Then the test server
// must hold exactly one document per record of the
// decisions and decoy topics (ids topic-partition-offset: none missing,
// none twice, nothing else), and each request once in score-log* and once
// in decoy-log*.
func TestElasticsearchIndices(t *testing.T) {
	n := esEnvInt("RDV_ES_N", 20000)
	if testing.Short() {
		n = esEnvInt("RDV_ES_N", 2000)
	}
	es, url := startESFake(t)
	// Bulk calls take a while, as on a real cluster: a kill often lands
	// while a batch is in flight, or stored but not yet committed.
	es.SetLatency(10 * time.Millisecond)
	// And some items of a bulk call are refused with 429 while the others
	// are stored: partial failures, retried item by item.
	es.RejectItems(0.02)
	s := stack.Start(t, stack.Options{RestartDelay: 100 * time.Millisecond, Extra: []string{"-es-url", url}})
	rows := irisRows(t)
	load := startESLoad(s, 16, int64(n), func(i int64) string { return rows[i%int64(len(rows))].body })

	const kills = 5
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	killed := 0
	var killedAt []int64
	for k := 1; k <= kills; k++ {
		// Spread out: the k-th kill after about k/(kills+1) of the calls.
		target := int64(n*k/(kills+1) + rng.Intn(n/(4*(kills+1))+1))
		for load.sent.Load() < target {
			select {
			case <-load.done:
			case <-time.After(5 * time.Millisecond):
				continue
			}
			break
		}
		before := es.DocCount("*")
		s.Kill("es-connector")
		killed++
		killedAt = append(killedAt, load.sent.Load())
		waitRestarted(t, s, "es-connector")
		// The new process indexes something before it is killed again.
		progressBy := time.Now().Add(30 * time.Second)
		for es.DocCount("*") <= before && time.Now().Before(progressBy) {
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("kill %d at call %d (%d documents indexed then, %d once it was back)", k, killedAt[k-1], before, es.DocCount("*"))
	}
	<-load.done
	t.Logf("load: %d calls, %d answered 200, %d other; es-connector killed %d times", load.sent.Load(), load.ok.Load(), load.other.Load(), killed)
	if killed != kills {
		t.Fatalf("killed %d times, want %d", killed, kills)
	}

	requests := s.CountKeys("rdv.iris.requests", 0, 10*time.Second)
	if len(requests) < int(load.ok.Load()) {
		t.Fatalf("requests topic holds %d ids, but %d calls were answered", len(requests), load.ok.Load())
	}
	decisionIDs, decisions := topicDocIDs(t, s, "rdv.iris.decisions", len(requests), 2*time.Minute)
	decoyIDs, decoys := topicDocIDs(t, s, "rdv.iris.decoy", len(requests), 2*time.Minute)
	assertOnce(t, "decisions topic", requests, decisions)
	assertOnce(t, "decoy topic", requests, decoys)

	took := waitESDocs(t, es, map[string]int{"score-log*": len(decisionIDs), "decoy-log*": len(decoyIDs)}, 3*time.Minute)
	time.Sleep(2 * time.Second) // a late duplicate would show up now
	if err := es.VerifyIDs("score-log*", decisionIDs); err != nil {
		t.Error(err)
	}
	if err := es.VerifyIDs("decoy-log*", decoyIDs); err != nil {
		t.Error(err)
	}
	assertOnce(t, "score-log", requests, docsByRequest(t, es, "score-log*"))
	assertOnce(t, "decoy-log", requests, docsByRequest(t, es, "decoy-log*"))
	st := es.Stats()
	t.Logf("Elasticsearch: %d score-log and %d decoy-log documents for %d decisions and %d decoy records (%d requests); "+
		"%d bulk calls, %d items, %d refused with 429 and retried, %d writes (%d overwrites: documents indexed again after a kill); caught up %v after the load; indices %v",
		es.DocCount("score-log*"), es.DocCount("decoy-log*"), len(decisionIDs), len(decoyIDs), len(requests),
		st.BulkCalls, st.BulkItems, st.RejectedItems, st.DocsIndexed, st.DocsIndexed-int64(es.DocCount("*")), took.Round(time.Millisecond), es.Indices())
}

// TestElasticsearchOutage takes the Elasticsearch endpoint down for
// RDV_ES_OUTAGE (default 60s, 10s with -short) under load: the connector
// must report itself paused for the whole outage, its consumer lag must
// grow, and after the endpoint comes back every document must be there
// once and the lag drained.
func TestElasticsearchOutage(t *testing.T) {
	outage := 60 * time.Second
	if testing.Short() {
		outage = 10 * time.Second
	}
	if v, err := time.ParseDuration(os.Getenv("RDV_ES_OUTAGE")); err == nil && v > 0 {
		outage = v
	}
	es, url := startESFake(t)
	s := stack.Start(t, stack.Options{RestartDelay: 100 * time.Millisecond, Extra: []string{"-es-url", url}})
	addr, err := s.Addr("es-connector")
	if err != nil {
		t.Fatal(err)
	}
	rows := irisRows(t)
	load := startESLoad(s, 4, -1, func(i int64) string { return rows[i%int64(len(rows))].body })
	defer load.stop()

	// The connector works before the outage.
	waitESDocs(t, es, map[string]int{"score-log*": 50, "decoy-log*": 50}, time.Minute)
	metric := func() promtext.Series {
		m, err := scrapeMetrics(addr)
		if err != nil {
			t.Fatalf("scrape es-connector: %v", err)
		}
		return m
	}
	if v := metric()["rdv_es_connector_paused"]; v != 0 {
		t.Fatalf("paused = %v before the outage", v)
	}

	if err := es.SetDown(true); err != nil {
		t.Fatal(err)
	}
	downAt := time.Now()
	sentAtDown := load.sent.Load()
	// Paused within a few seconds (the first bulk call that fails).
	for metric()["rdv_es_connector_paused"] != 1 {
		if time.Since(downAt) > 15*time.Second {
			t.Fatal("rdv_es_connector_paused did not turn 1 within 15s of the outage")
		}
		time.Sleep(100 * time.Millisecond)
	}
	pausedAfter := time.Since(downAt)
	// For the rest of the outage it stays 1 and the lag grows.
	samples, firstLag, lastLag := 0, -1.0, 0.0
	for time.Since(downAt) < outage {
		m := metric()
		if v := m["rdv_es_connector_paused"]; v != 1 {
			t.Fatalf("rdv_es_connector_paused = %v %v into the outage", v, time.Since(downAt).Round(time.Second))
		}
		lag, _ := m.Sum("rdv_es_connector_consumer_lag_records")
		if firstLag < 0 {
			firstLag = lag
		}
		lastLag = lag
		samples++
		time.Sleep(time.Second)
	}
	sentInOutage := load.sent.Load() - sentAtDown
	t.Logf("outage %v: paused=1 after %v and in all %d samples; %d calls meanwhile; consumer lag %v -> %v",
		outage, pausedAfter.Round(time.Millisecond), samples, sentInOutage, firstLag, lastLag)
	if sentInOutage == 0 {
		t.Fatal("no load during the outage")
	}
	// The lag gauge is refreshed every 5s: a shorter outage (RDV_ES_OUTAGE
	// for a quick local run) may end before it moves.
	if outage >= 15*time.Second && (lastLag <= firstLag || lastLag < float64(sentInOutage)/2) {
		t.Errorf("consumer lag did not grow during the outage: %v -> %v for %d calls", firstLag, lastLag, sentInOutage)
	}

	if err := es.SetDown(false); err != nil {
		t.Fatal(err)
	}
	upAt := time.Now()
	time.Sleep(3 * time.Second) // load goes on after the outage too
	load.stop()
	t.Logf("load: %d calls, %d answered 200, %d other", load.sent.Load(), load.ok.Load(), load.other.Load())

	requests := s.CountKeys("rdv.iris.requests", 0, 10*time.Second)
	decisionIDs, decisions := topicDocIDs(t, s, "rdv.iris.decisions", len(requests), 2*time.Minute)
	decoyIDs, _ := topicDocIDs(t, s, "rdv.iris.decoy", len(requests), 2*time.Minute)
	assertOnce(t, "decisions topic", requests, decisions)
	waitESDocs(t, es, map[string]int{"score-log*": len(decisionIDs), "decoy-log*": len(decoyIDs)}, 3*time.Minute)
	drained := time.Since(upAt)
	if err := es.VerifyIDs("score-log*", decisionIDs); err != nil {
		t.Error(err)
	}
	if err := es.VerifyIDs("decoy-log*", decoyIDs); err != nil {
		t.Error(err)
	}
	assertOnce(t, "score-log", requests, docsByRequest(t, es, "score-log*"))
	assertOnce(t, "decoy-log", requests, docsByRequest(t, es, "decoy-log*"))

	// The lag drains: what is left per partition is at most the
	// transaction marker after the last record.
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := metric()
		sum, most := m.Sum("rdv_es_connector_consumer_lag_records")
		if most <= 1 && m["rdv_es_connector_paused"] == 0 {
			t.Logf("after the outage: all %d + %d documents in %v; lag %v (at most %v per partition); paused=0",
				len(decisionIDs), len(decoyIDs), drained.Round(time.Millisecond), sum, most)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag %v (max %v per partition), paused %v, 30s after every document was indexed", sum, most, m["rdv_es_connector_paused"])
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestElasticsearchMappingErrors installs, before the connector starts, a
// template of higher priority that maps features.sepalLength of score-log-*
// as a byte. Decisions with a sepal length of 500 are then refused with a
// document_parsing_exception: they must land in rdv.iris.dlq with the
// reason in rdv.error, while every other decision, including the ones sent
// after them, is indexed, and every input reaches decoy-log.
func TestElasticsearchMappingErrors(t *testing.T) {
	es, url := startESFake(t)
	set, err := schemas.For("iris")
	if err != nil {
		t.Fatal(err)
	}
	fields, err := set.Features()
	if err != nil {
		t.Fatal(err)
	}
	var tpl map[string]any
	if err := json.Unmarshal(elastic.ScoreTemplate("score-log", fields, elastic.TemplateOptions{}), &tpl); err != nil {
		t.Fatal(err)
	}
	tpl["priority"] = elastic.TemplatePriority + 100
	feats := tpl["template"].(map[string]any)["mappings"].(map[string]any)["properties"].(map[string]any)["features"].(map[string]any)
	feats["properties"].(map[string]any)["sepalLength"] = map[string]any{"type": "byte"}
	body, _ := json.Marshal(tpl)
	req, _ := http.NewRequest(http.MethodPut, url+"/_index_template/rdv-test-conflict", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("install the conflicting template: %d", resp.StatusCode)
	}

	s := stack.Start(t, stack.Options{RestartDelay: 100 * time.Millisecond, Extra: []string{"-es-url", url}})
	rows := irisRows(t)
	const bad = `{"sepalLength":500,"sepalWidth":3.5,"petalLength":1.4,"petalWidth":0.2}`
	isBad := func(i int64) bool { return i < 300 && i%15 == 7 }
	// 300 calls of which 20 are bad, then 200 good ones.
	var mu sync.Mutex
	kind := map[string]bool{} // request id -> bad
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= 500 {
					return
				}
				b := rows[i%int64(len(rows))].body
				if isBad(i) {
					b = bad
				}
				a, err := s.Predict("/predict", b)
				if err != nil || a.Status != http.StatusOK {
					t.Errorf("call %d: %v %d %s", i, err, a.Status, a.Error)
					continue
				}
				mu.Lock()
				kind[a.MessageID] = isBad(i)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	good, badIDs, all := map[string]int{}, map[string]int{}, map[string]int{}
	for id, b := range kind {
		all[id] = 1
		if b {
			badIDs[id] = 1
		} else {
			good[id] = 1
		}
	}
	if len(badIDs) != 20 || len(good) != 480 {
		t.Fatalf("%d bad and %d good calls accepted, want 20 and 480", len(badIDs), len(good))
	}

	// The dead-letter topic: every bad decision once, with the reason.
	cl := s.Client(kgo.ConsumeTopics("rdv.iris.dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	dlq := map[string]int{}
	deadline := time.Now().Add(90 * time.Second)
	var sampleReason string
	for len(dlq) < len(badIDs) && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			if h[stage.HeaderStage] != "es-connector" {
				t.Errorf("unexpected dead letter from %q: %v", h[stage.HeaderStage], h)
				return
			}
			if h[stage.HeaderTopic] != "rdv.iris.decisions" || h[stage.HeaderPartition] == "" || h[stage.HeaderOffset] == "" {
				t.Errorf("dead letter without its source: %v", h)
			}
			reason := h[stage.HeaderError]
			if !strings.Contains(reason, "document_parsing_exception") || !strings.Contains(reason, "features.sepalLength") {
				t.Errorf("rdv.error %q does not name the mapping error", reason)
			}
			sampleReason = reason
			dlq[string(r.Key)]++
		})
	}
	assertOnce(t, "dead-letter topic", badIDs, dlq)
	t.Logf("rdv.error: %s", sampleReason)

	// Every good decision is indexed, the later ones too; no bad one is.
	waitESDocs(t, es, map[string]int{"score-log*": len(good), "decoy-log*": len(all)}, 90*time.Second)
	time.Sleep(time.Second)
	assertOnce(t, "score-log", good, docsByRequest(t, es, "score-log*"))
	assertOnce(t, "decoy-log", all, docsByRequest(t, es, "decoy-log*"))
	if n := es.ItemErrorTypes()["document_parsing_exception"]; n < len(badIDs) {
		t.Errorf("%d document_parsing_exception items, want at least %d", n, len(badIDs))
	}
	m, err := scrapeMetrics(stageAddr(t, s, "es-connector"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("es-connector documents: indexed %v, dead_letter %v",
		m[`rdv_es_connector_documents_total{index="score-log",outcome="indexed"}`],
		m[`rdv_es_connector_documents_total{index="score-log",outcome="dead_letter"}`])
}

func stageAddr(t *testing.T, s *stack.Stack, stage string) string {
	t.Helper()
	a, err := s.Addr(stage)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestElasticsearchDataStreams runs the connector with -data-streams and
// -ilm-policy (through their environment variables, which rdv dev passes
// on): documents go to the data streams score-log-iris and decoy-log-iris
// with create actions, a replay after a SIGKILL finds its documents there
// (409) and counts them as stored, and the lifecycle policy is installed
// and attached to both templates.
func TestElasticsearchDataStreams(t *testing.T) {
	root, err := stack.Root()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("RDV_ES_DATA_STREAMS", "true")
	t.Setenv("RDV_ES_ILM_POLICY", "rdv-logs")
	t.Setenv("RDV_ES_ILM_POLICY_FILE", filepath.Join(root, "ops", "elastic", "ilm-policy.json"))
	es, url := startESFake(t)
	s := stack.Start(t, stack.Options{RestartDelay: 100 * time.Millisecond, Extra: []string{"-es-url", url}})
	rows := irisRows(t)
	n := 1500
	if testing.Short() {
		n = 600
	}
	load := startESLoad(s, 8, int64(n), func(i int64) string { return rows[i%int64(len(rows))].body })
	for k := 1; k <= 2; k++ {
		for load.sent.Load() < int64(n*k/3) {
			time.Sleep(5 * time.Millisecond)
		}
		s.Kill("es-connector")
		waitRestarted(t, s, "es-connector")
	}
	<-load.done
	requests := s.CountKeys("rdv.iris.requests", 0, 10*time.Second)
	decisionIDs, _ := topicDocIDs(t, s, "rdv.iris.decisions", len(requests), time.Minute)
	decoyIDs, _ := topicDocIDs(t, s, "rdv.iris.decoy", len(requests), time.Minute)
	waitESDocs(t, es, map[string]int{"score-log*": len(decisionIDs), "decoy-log*": len(decoyIDs)}, 2*time.Minute)
	time.Sleep(time.Second)
	if got := es.Indices(); fmt.Sprint(got) != "[decoy-log-iris score-log-iris]" {
		t.Errorf("indices %v, want the data streams decoy-log-iris and score-log-iris", got)
	}
	if err := es.VerifyIDs("score-log-iris", decisionIDs); err != nil {
		t.Error(err)
	}
	if err := es.VerifyIDs("decoy-log-iris", decoyIDs); err != nil {
		t.Error(err)
	}
	assertOnce(t, "score-log-iris", requests, docsByRequest(t, es, "score-log*"))
	assertOnce(t, "decoy-log-iris", requests, docsByRequest(t, es, "decoy-log*"))
	for k, v := range es.ItemErrorTypes() {
		if k != "version_conflict_engine_exception" {
			t.Errorf("%d items failed with %s", v, k)
		}
	}
	resp, err := http.Get(url + "/_ilm/policy/rdv-logs")
	if err != nil {
		t.Fatal(err)
	}
	var pol map[string]struct {
		InUseBy struct {
			Templates []string `json:"composable_templates"`
			Indices   []string `json:"indices"`
		} `json:"in_use_by"`
	}
	err = json.NewDecoder(resp.Body).Decode(&pol)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET _ilm/policy/rdv-logs: %d %v", resp.StatusCode, err)
	}
	if got := fmt.Sprint(pol["rdv-logs"].InUseBy.Templates); got != "[decoy-log score-log]" {
		t.Errorf("policy attached to templates %s", got)
	}
	t.Logf("data streams: %d + %d documents for %d requests; %d replayed creates answered 409; policy used by %v",
		es.DocCount("score-log-iris"), es.DocCount("decoy-log-iris"), len(requests),
		es.ItemErrorTypes()["version_conflict_engine_exception"], pol["rdv-logs"].InUseBy.Indices)
}
