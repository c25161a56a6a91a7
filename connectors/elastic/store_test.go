package elastic

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/elastictest"
	"github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"
	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake"
)

// storeHarness is a storer on the Elasticsearch test server with the
// connector's templates, recording outcomes and the paused state.
type storeHarness struct {
	es       *esfake.Server
	cfg      esclient.Config
	st       *storer
	mu       sync.Mutex
	outcomes map[string]int
	paused   atomic.Bool
	everOn   atomic.Bool
}

func newStoreHarness(t *testing.T, dataStreams bool, opts ...esfake.Option) *storeHarness {
	t.Helper()
	es, cfg := startES(t, opts...)
	cl, err := esclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := newRawClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fields := irisFields(t)
	o := TemplateOptions{DataStreams: dataStreams}
	ctx := context.Background()
	if err := cl.EnsureTemplate(ctx, "score-log", ScoreTemplate("score-log", fields, o)); err != nil {
		t.Fatal(err)
	}
	if err := cl.EnsureTemplate(ctx, "decoy-log", DecoyTemplate("decoy-log", fields, o)); err != nil {
		t.Fatal(err)
	}
	h := &storeHarness{es: es, cfg: cfg, outcomes: map[string]int{}}
	bulk := cl.Bulk
	if dataStreams {
		bulk = raw.BulkCreate
	}
	h.st = &storer{
		bulk:   bulk,
		create: dataStreams,
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		count: func(_, o string) {
			h.mu.Lock()
			h.outcomes[o]++
			h.mu.Unlock()
		},
		paused: func(on bool) {
			h.paused.Store(on)
			if on {
				h.everOn.Store(true)
			}
		},
		minWait: 5 * time.Millisecond,
		maxWait: 50 * time.Millisecond,
	}
	return h
}

func (h *storeHarness) count(o string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.outcomes[o]
}

// decisions makes n score-log documents of partition 0, offsets 0..n-1;
// the ones for which bad is true have a sepal length of 500.
func decisions(t *testing.T, n int, dataStreams bool, bad func(i int) bool) []pending {
	t.Helper()
	d, err := elastictest.Decision("iris")
	if err != nil {
		t.Fatal(err)
	}
	out := make([]pending, n)
	for i := range out {
		if bad != nil && bad(i) {
			d["features"].(map[string]any)["sepalLength"] = 500.0
		} else {
			d["features"].(map[string]any)["sepalLength"] = 5.1
		}
		body, err := DecisionDoc(d)
		if err != nil {
			t.Fatal(err)
		}
		r := &kgo.Record{Topic: "rdv.iris.decisions", Partition: 0, Offset: int64(i), Timestamp: elastictest.When}
		out[i] = pending{doc: esclient.Doc{Index: IndexName("score-log", "iris", dataStreams, r), ID: DocID(r), Body: body}, rec: r}
	}
	return out
}

func ids(items []pending) []string {
	out := make([]string, len(items))
	for i, p := range items {
		out[i] = p.doc.ID
	}
	return out
}

func TestStoreRetriesRejectedItemsOnly(t *testing.T) {
	h := newStoreHarness(t, false)
	items := decisions(t, 50, false, nil)
	// Every third item is refused with 429 twice, every fifth with 503 once.
	var mu sync.Mutex
	seen := map[string]int{}
	h.es.RejectItemsFunc(func(_, id string) int {
		mu.Lock()
		defer mu.Unlock()
		seen[id]++
		var off int
		fmt.Sscanf(id[strings.LastIndex(id, "-")+1:], "%d", &off)
		switch {
		case off%3 == 0 && seen[id] <= 2:
			return http.StatusTooManyRequests
		case off%5 == 0 && seen[id] <= 1:
			return http.StatusServiceUnavailable
		}
		return 0
	})
	ctx := context.Background()
	dead, err := h.st.store(ctx, ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 0 {
		t.Fatalf("dead-lettered %d", len(dead))
	}
	if err := h.es.VerifyIDs("score-log*", ids(items)); err != nil {
		t.Fatal(err)
	}
	// Stored items are not sent again: only the rejected ones were.
	for id, n := range seen {
		var off int
		fmt.Sscanf(id[strings.LastIndex(id, "-")+1:], "%d", &off)
		want := 1
		if off%3 == 0 {
			want = 3
		} else if off%5 == 0 {
			want = 2
		}
		if n != want {
			t.Errorf("%s sent %d times, want %d", id, n, want)
		}
	}
	if h.count("indexed") != 50 || h.count("retried") == 0 {
		t.Errorf("outcomes %v", h.outcomes)
	}
	if h.everOn.Load() {
		t.Error("item rejections are not an outage: paused must stay 0")
	}
}

func TestStoreDeadLettersMappingErrors(t *testing.T) {
	h := newStoreHarness(t, false)
	// A template of higher priority maps the sepal length as a byte: 500
	// does not fit, which is a document_parsing_exception.
	var tpl map[string]any
	_ = json.Unmarshal(ScoreTemplate("score-log", irisFields(t), TemplateOptions{}), &tpl)
	tpl["priority"] = TemplatePriority + 100
	dig(tpl, "template", "mappings", "properties", "features", "properties").(map[string]any)["sepalLength"] = map[string]any{"type": "byte"}
	b, _ := json.Marshal(tpl)
	cl, _ := esclient.New(h.cfg)
	if err := cl.EnsureTemplate(context.Background(), "conflict", b); err != nil {
		t.Fatal(err)
	}
	bad := func(i int) bool { return i%10 == 4 }
	items := decisions(t, 40, false, bad)
	// One good item is also throttled once: a retry and a refusal in the
	// same batch.
	h.es.RejectItemsFunc(func(_, id string) int {
		if strings.HasSuffix(id, "-0-7") && h.count("retried") == 0 {
			return http.StatusTooManyRequests
		}
		return 0
	})
	ctx := context.Background()
	dead, err := h.st.store(ctx, ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	var good []string
	for i, p := range items {
		if !bad(i) {
			good = append(good, p.doc.ID)
		}
	}
	if err := h.es.VerifyIDs("score-log*", good); err != nil {
		t.Fatal(err)
	}
	if len(dead) != 4 {
		t.Fatalf("%d refused, want 4", len(dead))
	}
	for _, d := range dead {
		if !bad(int(d.rec.Offset)) {
			t.Errorf("offset %d refused but is good", d.rec.Offset)
		}
		msg := d.reason.Error()
		if !strings.Contains(msg, "document_parsing_exception") || !strings.Contains(msg, "features.sepalLength") ||
			!strings.Contains(msg, "out of range for a byte") {
			t.Errorf("reason %q does not say why", msg)
		}
	}
	if h.count("dead_letter") != 4 || h.count("indexed") != 36 || h.count("retried") != 1 {
		t.Errorf("outcomes %v", h.outcomes)
	}
}

func TestStoreWaitsOutWholeRequestFailures(t *testing.T) {
	h := newStoreHarness(t, false)
	items := decisions(t, 20, false, nil)
	h.es.FailNextBulk(3, http.StatusServiceUnavailable)
	h.es.FailNextBulk(1, http.StatusTooManyRequests)
	h.es.FailNextBulk(1, http.StatusUnauthorized)
	ctx := context.Background()
	dead, err := h.st.store(ctx, ctx, items)
	if err != nil || len(dead) != 0 {
		t.Fatalf("store: %v, %d dead", err, len(dead))
	}
	if err := h.es.VerifyIDs("score-log*", ids(items)); err != nil {
		t.Fatal(err)
	}
	if !h.everOn.Load() || h.paused.Load() {
		t.Errorf("paused went on: %v, is on now: %v", h.everOn.Load(), h.paused.Load())
	}
	if st := h.es.Stats(); st.BulkCalls != 6 {
		t.Errorf("%d bulk calls, want 6 (5 failed, 1 stored)", st.BulkCalls)
	}
}

func TestStoreOutageStopsAndResumes(t *testing.T) {
	h := newStoreHarness(t, false)
	items := decisions(t, 30, false, nil)
	if err := h.es.SetDown(true); err != nil {
		t.Fatal(err)
	}
	// While down, a stop ends the wait: nothing stored, nothing refused.
	stop, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	dead, err := h.st.store(context.Background(), stop, items)
	cancel()
	if err != errStopped || len(dead) != 0 {
		t.Fatalf("store while down: %v, %d dead (want errStopped)", err, len(dead))
	}
	if !h.paused.Load() {
		t.Error("paused must be on while Elasticsearch is down")
	}
	// Down, then back after a while: the same call finishes the batch.
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = h.es.SetDown(false)
	}()
	ctx := context.Background()
	dead, err = h.st.store(ctx, ctx, items)
	if err != nil || len(dead) != 0 {
		t.Fatalf("store across the outage: %v, %d dead", err, len(dead))
	}
	if h.paused.Load() {
		t.Error("paused still on after Elasticsearch came back")
	}
	if err := h.es.VerifyIDs("score-log*", ids(items)); err != nil {
		t.Fatal(err)
	}
}

func TestStoreBlockedItemsPause(t *testing.T) {
	h := newStoreHarness(t, false)
	items := decisions(t, 10, false, nil)
	var refusals atomic.Int32
	h.es.RejectItemsFunc(func(_, _ string) int {
		if refusals.Add(1) <= 30 { // three rounds of 403 for every item
			return http.StatusForbidden
		}
		return 0
	})
	ctx := context.Background()
	dead, err := h.st.store(ctx, ctx, items)
	if err != nil || len(dead) != 0 {
		t.Fatalf("store: %v, %d dead", err, len(dead))
	}
	if !h.everOn.Load() || h.paused.Load() {
		t.Errorf("403 on every item must pause, then resume: ever %v, now %v", h.everOn.Load(), h.paused.Load())
	}
	if err := h.es.VerifyIDs("score-log*", ids(items)); err != nil {
		t.Fatal(err)
	}
}

func TestStoreSplitsTooLargeRequests(t *testing.T) {
	items := decisions(t, 16, false, nil)
	one := len(items[0].doc.Body) + 100
	h := newStoreHarness(t, false, esfake.WithMaxContentLength(int64(4*one)))
	// One document alone is over the limit.
	big := items[5]
	var m map[string]any
	_ = json.Unmarshal(big.doc.Body, &m)
	m["key"] = strings.Repeat("x", 5*one)
	big.doc.Body, _ = json.Marshal(m)
	items[5] = big
	ctx := context.Background()
	dead, err := h.st.store(ctx, ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].rec.Offset != 5 || !strings.Contains(dead[0].reason.Error(), "413") {
		t.Fatalf("refused %v", dead)
	}
	want := ids(items)
	want = append(want[:5:5], want[6:]...)
	if err := h.es.VerifyIDs("score-log*", want); err != nil {
		t.Fatal(err)
	}
}

func TestStoreDataStreamReplay(t *testing.T) {
	h := newStoreHarness(t, true)
	items := decisions(t, 25, true, nil)
	ctx := context.Background()
	if dead, err := h.st.store(ctx, ctx, items[:10]); err != nil || len(dead) != 0 {
		t.Fatalf("first batch: %v, %d dead", err, len(dead))
	}
	// A crash before the commit: the whole batch comes again, with more.
	if dead, err := h.st.store(ctx, ctx, items); err != nil || len(dead) != 0 {
		t.Fatalf("replay: %v, %d dead", err, len(dead))
	}
	if got := h.es.Indices(); len(got) != 1 || got[0] != "score-log-iris" {
		t.Errorf("indices %v, want the data stream score-log-iris", got)
	}
	if err := h.es.VerifyIDs("score-log*", ids(items)); err != nil {
		t.Fatal(err)
	}
	if h.count("duplicate") != 10 || h.count("indexed") != 25 {
		t.Errorf("outcomes %v, want 10 duplicate and 25 indexed", h.outcomes)
	}
	// An index action is refused by a data stream: the connector must use
	// create, which BulkCreate does.
	cl, _ := esclient.New(h.cfg)
	res, err := cl.Bulk(ctx, []esclient.Doc{items[0].doc})
	if err != nil || res[0].Status != http.StatusBadRequest {
		t.Errorf("index action on a data stream: %v %+v", err, res)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		it     esclient.ItemResult
		create bool
		want   outcome
	}{
		{esclient.ItemResult{Status: 201}, false, stored},
		{esclient.ItemResult{Status: 200}, false, stored},
		{esclient.ItemResult{Status: 409, ErrType: "version_conflict_engine_exception"}, true, already},
		{esclient.ItemResult{Status: 409, ErrType: "version_conflict_engine_exception"}, false, refuse},
		{esclient.ItemResult{Status: 429}, false, retry},
		{esclient.ItemResult{Status: 500}, false, retry},
		{esclient.ItemResult{Status: 503}, true, retry},
		{esclient.ItemResult{Status: 400, ErrType: "document_parsing_exception"}, false, refuse},
		{esclient.ItemResult{Status: 400, ErrType: "mapper_parsing_exception"}, true, refuse},
		{esclient.ItemResult{Status: 413}, false, refuse},
		{esclient.ItemResult{Status: 403}, false, blocked},
		{esclient.ItemResult{Status: 404, ErrType: "index_not_found_exception"}, false, blocked},
	} {
		if got := classify(c.it, c.create); got != c.want {
			t.Errorf("classify(%d %s, create=%v) = %v, want %v", c.it.Status, c.it.ErrType, c.create, got, c.want)
		}
	}
}
