package e2e

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake"
	"github.com/rendezvous-ml/rendezvous/testcontainers/stack"
)

// TestElasticsearchIndices runs rdv dev with an Elasticsearch URL (the
// Elasticsearch-8 test server) and checks that every accepted request is in
// score-log* once and every input in decoy-log* once, with the connector
// killed twice along the way.
func TestElasticsearchIndices(t *testing.T) {
	es := esfake.New()
	url, err := es.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	s := stack.Start(t, stack.Options{RestartDelay: 100 * time.Millisecond, Extra: []string{"-es-url", url}})
	rows := irisRows(t)

	const n = 600
	accepted := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				a, err := s.Predict("/predict", rows[i%len(rows)].body)
				if err == nil && a.Status == http.StatusOK {
					mu.Lock()
					accepted[a.MessageID] = true
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		if i == n/3 || i == 2*n/3 {
			s.Kill("es-connector")
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if len(accepted) != n {
		t.Fatalf("%d of %d calls accepted", len(accepted), n)
	}

	byRequest := func(pattern string) map[string]int {
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
	deadline := time.Now().Add(90 * time.Second)
	for es.DocCount("score-log*") < n || es.DocCount("decoy-log*") < n {
		if time.Now().After(deadline) {
			t.Fatalf("after 90s: %d score-log and %d decoy-log documents, want %d each", es.DocCount("score-log*"), es.DocCount("decoy-log*"), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	want := map[string]int{}
	for id := range accepted {
		want[id] = 1
	}
	assertOnce(t, "score-log", want, byRequest("score-log*"))
	assertOnce(t, "decoy-log", want, byRequest("decoy-log*"))
	st := es.Stats()
	t.Logf("Elasticsearch: %d bulk calls, %d items, indices %v", st.BulkCalls, st.BulkItems, es.Indices())
}
