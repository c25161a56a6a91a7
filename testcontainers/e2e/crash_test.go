package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
	"github.com/rendezvous-ml/rendezvous/testcontainers/stack"
)

// TestCrashExactlyOnce sends N predict calls while the decoy, the log
// connector and the rendezvous stage are killed with SIGKILL again and
// again, and counts: the decoy log must hold every input once, the decisions
// log every request once, and the archive every record of every log topic
// once, with no gap and no overlap against the topics.
func TestCrashExactlyOnce(t *testing.T) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("RDV_CRASH_N")); err == nil && v > 0 {
		n = v
	}
	if testing.Short() {
		n = 2000
	}
	s := stack.Start(t, stack.Options{RestartDelay: 100 * time.Millisecond, Extra: []string{"-archive-rotate", "2s"}})
	rows := irisRows(t)

	var sent, ok200, other atomic.Int64
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		var wg sync.WaitGroup
		next := atomic.Int64{}
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						return
					}
					a, err := s.Predict("/predict", rows[i%int64(len(rows))].body)
					sent.Add(1)
					if err == nil && a.Status == http.StatusOK {
						ok200.Add(1)
					} else {
						other.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}()

	// The chaos: each victim is killed at random moments while the load
	// runs, at least five times (three for the rendezvous stage), each time
	// after the supervisor has brought it back.
	kills := map[string]int{}
	victims := []struct {
		name  string
		times int
	}{{"decoy", 5}, {"log-connector", 5}, {"rendezvous", 3}}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	total := 0
	for _, v := range victims {
		total += v.times
	}
	plan := make([]string, 0, total)
	for _, v := range victims {
		for i := 0; i < v.times; i++ {
			plan = append(plan, v.name)
		}
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	for _, victim := range plan {
		// Spread the kills over the load: wait for a share of the calls.
		target := sent.Load() + int64(n/(total+2)) + int64(rng.Intn(n/(total+2)+1))/2
		for sent.Load() < target {
			select {
			case <-loadDone:
			case <-time.After(5 * time.Millisecond):
				continue
			}
			break
		}
		s.Kill(victim)
		kills[victim]++
		waitRestarted(t, s, victim)
	}
	<-loadDone
	t.Logf("load: %d calls, %d answered 200, %d other; kills: %v", sent.Load(), ok200.Load(), other.Load(), kills)
	for _, v := range victims {
		if kills[v.name] < v.times {
			t.Fatalf("%s killed %d times, want %d", v.name, kills[v.name], v.times)
		}
	}

	// Every request that reached the requests topic, counted there.
	requests := s.CountKeys("rdv.iris.requests", 0, 10*time.Second)
	if len(requests) < int(ok200.Load()) {
		t.Fatalf("requests topic holds %d ids, but %d calls were answered", len(requests), ok200.Load())
	}
	// The decoy log: exactly one record per input, i.e. per request.
	decoy := s.CountKeys("rdv.iris.decoy", len(requests), 90*time.Second)
	assertOnce(t, "decoy log", requests, decoy)
	// The decisions log: exactly one decision per request.
	decisions := s.CountKeys("rdv.iris.decisions", len(requests), 90*time.Second)
	assertOnce(t, "decisions log", requests, decisions)

	// The archive: wait until it reaches the ends of the topics, then
	// verify it against them and count the request ids in it.
	cl := s.Client()
	archiveDir := filepath.Join(s.Dir, "archive")
	waitArchived(t, cl, archiveDir, map[string]int{"rdv.iris.decoy": len(requests), "rdv.iris.requests": len(requests), "rdv.iris.decisions": len(requests)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	reps, err := archive.Verify(ctx, cl, archiveDir, "iris")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if !r.OK() {
			t.Errorf("archive %s/%d: %d archived, %d in topic, missing %v, extra %v, overlaps %v, duplicates %d",
				r.Topic, r.Partition, r.Archived, r.InTopic, head(r.Missing), head(r.Extra), r.Overlaps, r.Dupes)
		}
	}
	for _, topic := range []string{"rdv.iris.requests", "rdv.iris.decoy", "rdv.iris.decisions"} {
		ids := archivedKeys(t, archiveDir, topic)
		assertOnce(t, "archive of "+topic, requests, ids)
	}
	t.Logf("archive verify: %d partitions checked", len(reps))
}

func head(xs []int64) []int64 {
	if len(xs) > 5 {
		return xs[:5]
	}
	return xs
}

func assertOnce(t *testing.T, what string, want map[string]int, got map[string]int) {
	t.Helper()
	missing, dupes, extra := 0, 0, 0
	for id := range want {
		switch got[id] {
		case 0:
			missing++
		case 1:
		default:
			dupes++
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			extra++
		}
	}
	t.Logf("%s: %d records for %d requests: %d missing, %d duplicated, %d unknown", what, sum(got), len(want), missing, dupes, extra)
	if missing+dupes+extra > 0 {
		t.Errorf("%s is not exactly once: %d missing, %d duplicated, %d unknown", what, missing, dupes, extra)
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func waitRestarted(t *testing.T, s *stack.Stack, stage string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		addr, aerr := s.Addr(stage)
		if pid, err := s.Pid(stage); err == nil && pid > 0 && aerr == nil {
			if resp, err := http.Get(fmt.Sprintf("http://%s/readyz", addr)); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not come back within 60s", stage)
}

func archivedKeys(t *testing.T, dir, topic string) map[string]int {
	t.Helper()
	files, err := archive.Scan(dir, "iris", false)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, f := range files {
		if f.Topic != topic {
			continue
		}
		err := archive.Each(f.Path, func(rec map[string]any) error {
			k, _ := rec["key"].([]byte)
			out[string(k)]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// waitArchived waits until the archive holds at least want records of each
// topic.
func waitArchived(t *testing.T, cl *kgo.Client, dir string, want map[string]int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := map[string]int{}
		short := false
		for topic, n := range want {
			got[topic] = sum(archivedKeys(t, dir, topic))
			if got[topic] < n {
				short = true
			}
		}
		if !short {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive still short after 2 minutes: have %v, want %v", got, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
