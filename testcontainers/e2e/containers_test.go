package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rendezvous-ml/rendezvous/testcontainers/containers"
	"github.com/rendezvous-ml/rendezvous/testcontainers/stack"
)

// TestOnContainers runs the pipeline on real infrastructure in Docker:
// Redpanda (Kafka API and Schema Registry) and Elasticsearch 8, started by
// testcontainers-go. It sends a few hundred predict calls and checks that
// every accepted request is in the decisions topic once and in score-log*
// and decoy-log* once. Without a Docker engine it is skipped with one line.
func TestOnContainers(t *testing.T) {
	containers.SkipUnlessAvailable(t) // before anything slow: building the binaries, pulling images
	brokers, registryURL := containers.Kafka(t)
	esURL := containers.Elasticsearch(t)
	t.Setenv(stack.EnvBrokers, strings.Join(brokers, ","))
	t.Setenv(stack.EnvRegistry, registryURL)
	s := stack.Start(t, stack.Options{Extra: []string{"-es-url", esURL}})
	if !s.Real {
		t.Fatalf("the stack did not take the containers' brokers %v", brokers)
	}
	rows := irisRows(t)

	const n = 300
	accepted := map[string]bool{}
	var failures []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				a, err := s.Predict("/predict", rows[i%len(rows)].body)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case a.Status != http.StatusOK:
					failures = append(failures, fmt.Sprintf("status %d: %s", a.Status, a.Error))
				default:
					accepted[a.MessageID] = true
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Logf("%d calls, %d accepted", n, len(accepted))
	if len(failures) > 0 {
		t.Errorf("%d of %d calls not accepted; first: %s", len(failures), n, failures[0])
	}
	if len(accepted) == 0 {
		t.FailNow()
	}
	want := map[string]int{}
	for id := range accepted {
		want[id] = 1
	}

	// The decisions topic on Redpanda, read_committed: each request once.
	assertOnce(t, "decisions topic", want, s.CountKeys("rdv.iris.decisions", len(want), 90*time.Second))

	// Elasticsearch: wait until _count reaches the accepted requests, then
	// read every document's request id.
	es := esHTTP{base: strings.TrimRight(esURL, "/"), t: t}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		scores, decoys := es.count("score-log*"), es.count("decoy-log*")
		if scores >= len(want) && decoys >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2m: _count gives %d score-log and %d decoy-log documents, want %d each", scores, decoys, len(want))
		}
		time.Sleep(500 * time.Millisecond)
	}
	es.do("POST", "/score-log*,decoy-log*/_refresh", nil, nil)
	for _, pattern := range []string{"score-log*", "decoy-log*"} {
		if c := es.count(pattern); c != len(want) {
			t.Errorf("%s: _count is %d, want %d (one per accepted request)", pattern, c, len(want))
		}
		assertOnce(t, pattern, want, es.requestIDs(pattern))
	}
}

// esHTTP is a minimal Elasticsearch client for the test's checks.
type esHTTP struct {
	base string
	t    *testing.T
}

var esClient = &http.Client{Timeout: 30 * time.Second}

func (e esHTTP) do(method, path string, body, out any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := esClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("%s %s: status %d: %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
}

// count is _count over an index pattern (0 while no index matches).
func (e esHTTP) count(pattern string) int {
	e.t.Helper()
	var r struct {
		Count int `json:"count"`
	}
	e.do("GET", "/"+pattern+"/_count", nil, &r)
	return r.Count
}

// requestIDs counts the documents of an index pattern by request_id.
func (e esHTTP) requestIDs(pattern string) map[string]int {
	e.t.Helper()
	var r struct {
		Hits struct {
			Hits []struct {
				Source struct {
					RequestID string `json:"request_id"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	e.do("POST", "/"+pattern+"/_search", map[string]any{
		"size":             10000,
		"_source":          []string{"request_id"},
		"track_total_hits": true,
		"query":            map[string]any{"match_all": map[string]any{}},
	}, &r)
	out := map[string]int{}
	for _, h := range r.Hits.Hits {
		out[h.Source.RequestID]++
	}
	return out
}
