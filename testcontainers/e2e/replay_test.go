package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/testcontainers/stack"
)

// scoreRec is one decoded score.
type scoreRec struct {
	id, model, version, result string
	probs                      map[string]float64
	replay                     bool // carried the replay header
}

// readScoreTopic reads a scores topic until keep has accepted want
// records (see readTopic).
func readScoreTopic(t *testing.T, s *stack.Stack, topic string, want int, keep func(scoreRec) bool, timeout time.Duration) []scoreRec {
	t.Helper()
	var out []scoreRec
	readTopic(t, s, topic, schemas.Score, timeout, func() bool { return len(out) >= want }, func(r *kgo.Record, m map[string]any) {
		res, _ := serde.OptStr(m, "result")
		sc := scoreRec{id: serde.Str(m, "request_id"), model: serde.Str(m, "model"), version: serde.Str(m, "version"),
			result: res, probs: serde.Doubles(m, "probabilities")}
		for _, h := range r.Headers {
			if h.Key == "rdv-replay" {
				sc.replay = true
			}
		}
		if keep(sc) {
			out = append(out, sc)
		}
	})
	return out
}

func byID(ss []scoreRec) map[string]scoreRec {
	m := map[string]scoreRec{}
	for _, s := range ss {
		m[s.id] = s
	}
	return m
}

func sameScore(a, b scoreRec) bool {
	if a.result != b.result || len(a.probs) != len(b.probs) {
		return false
	}
	for k, v := range a.probs {
		if b.probs[k] != v {
			return false
		}
	}
	return true
}

// predictKeyed posts one call with a request key and returns its message id.
func predictKeyed(t *testing.T, s *stack.Stack, body, key string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.FrontendURL+"/predict", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Rdv-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a stack.Answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 {
		t.Fatalf("predict: status %d, %v", resp.StatusCode, err)
	}
	return a.MessageID
}

func modelFile(name string) string {
	root, _ := stack.Root()
	return filepath.Join(root, "models", "iris", name+".json")
}

// A new model version started with -since scores the history into the
// replay-scores topic, marked, then turns live by itself, with no restart:
// its scores of later calls are live and in the decisions.
func TestReplaySinceGoesLive(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	accepted := predictAll(t, s, 200, 8)
	// History is what can no longer be answered: let the last deadlines
	// (SLA 100 ms) pass.
	time.Sleep(150 * time.Millisecond)
	ts := topics.For(s.Objective)
	addr := s.StartStage("model-dt-2", "model-runner", "-model", modelFile("dt"), "-name", "dt", "-version", "2",
		"-role", "challenger", "-since", "1h")
	replayed := readScoreTopic(t, s, ts.ReplayScores, len(accepted), func(sc scoreRec) bool { return sc.version == "2" }, 90*time.Second)
	got := byID(replayed)
	missing := 0
	for id := range accepted {
		if _, ok := got[id]; !ok {
			missing++
		}
	}
	unmarked := 0
	for _, sc := range replayed {
		if !sc.replay {
			unmarked++
		}
	}
	t.Logf("replay: %d calls before the start, %d replayed scores, %d missing, %d without the replay header", len(accepted), len(replayed), missing, unmarked)
	if missing > 0 || len(replayed) != len(accepted) || unmarked > 0 {
		t.Fatalf("replay: %d missing, %d scores for %d calls, %d unmarked", missing, len(replayed), len(accepted), unmarked)
	}
	if err := s.WaitReady("model-dt-2", addr, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	m, err := scrapeMetrics(addr)
	if err != nil {
		t.Fatal(err)
	}
	n := m[`rdv_model_replay_records_total{model="dt",version="2"}`]
	t.Logf("dt@2 ready; rdv_model_replay_records_total %v", n)
	if int(n) != len(accepted) {
		t.Errorf("replay counter %v, want %d", n, len(accepted))
	}
	out, err := s.RunCLI("models", "list", "iris")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rdv models list:\n%s", out)
	live := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[0] == "dt" && f[1] == "2" && f[5] == "live" {
			live = true
		}
	}
	if !live {
		t.Fatalf("dt@2 is not live in the registry")
	}
	// Live now: its scores of new calls go to the scores topic, and the
	// rendezvous waits for it.
	after := predictAll(t, s, 50, 4)
	log := decisionLog(t, s, after, 60*time.Second)
	withV2 := 0
	for id := range after {
		for _, d := range log[id] {
			for _, sc := range d["scores"].([]any) {
				m := sc.(map[string]any)
				if m["model"] == "dt" && m["version"] == "2" {
					withV2++
				}
			}
		}
	}
	more := readScoreTopic(t, s, ts.ReplayScores, 0, func(sc scoreRec) bool { return sc.version == "2" && after[sc.id] }, 5*time.Second)
	t.Logf("live: %d of %d decisions hold a score by dt@2; %d of the new calls went to replay-scores", withV2, len(after), len(more))
	if withV2 != len(after) || len(more) != 0 {
		t.Fatalf("after going live: %d of %d decisions with dt@2, %d new calls replayed", withV2, len(after), len(more))
	}

	// The operator's way: rdv replay, with its progress bar, stopping once
	// live.
	out, err = s.RunCLI("replay", "iris", "dt", "-version", "3", "-model", modelFile("dt"), "-since", "1h", "-until-live")
	if err != nil {
		t.Fatalf("rdv replay: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "live after") {
			t.Logf("rdv replay ... -until-live: %s", strings.TrimSpace(line))
		}
	}
	want := fmt.Sprintf("live after %d history records", len(accepted)+len(after))
	if !strings.Contains(out, want) {
		t.Fatalf("rdv replay did not say %q:\n%s", want, out)
	}
}

// History replayed from the archive, after the topic's records were
// deleted, gives the same scores as a replay from the topic.
func TestReplayFromArchive(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	accepted := predictAll(t, s, 200, 8)
	ts := topics.For(s.Objective)
	archiveDir := filepath.Join(s.Dir, "archive")
	cl := s.Client()
	waitArchived(t, cl, archiveDir, map[string]int{ts.Inputs: len(accepted)})

	fromTopic := s.StartStage("model-dtr-topic", "model-runner", "-model", modelFile("challenger"), "-name", "dtr", "-version", "topic",
		"-role", "shadow", "-from-offset", "0")
	if err := s.WaitReady("model-dtr-topic", fromTopic, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	a := byID(readScoreTopic(t, s, ts.ReplayScores, len(accepted), func(sc scoreRec) bool { return sc.version == "topic" }, 60*time.Second))

	// The topic's retention "expires": every input record is deleted.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, ts.Inputs)
	if err != nil {
		t.Fatal(err)
	}
	del := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) { del.AddOffset(ts.Inputs, o.Partition, o.Offset, -1) })
	resp, err := adm.DeleteRecords(ctx, del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("delete the inputs: %v", err)
	}
	starts, err := adm.ListStartOffsets(ctx, ts.Inputs)
	if err != nil {
		t.Fatal(err)
	}
	left := int64(0)
	starts.Each(func(o kadm.ListedOffset) {
		e, _ := ends.Lookup(ts.Inputs, o.Partition)
		left += e.Offset - o.Offset
	})
	t.Logf("inputs deleted from the topic: %d records left in it", left)
	if left != 0 {
		t.Fatalf("%d input records still in the topic", left)
	}

	fromArchive := s.StartStage("model-dtr-archive", "model-runner", "-model", modelFile("challenger"), "-name", "dtr", "-version", "archive",
		"-role", "shadow", "-from-archive", archiveDir)
	if err := s.WaitReady("model-dtr-archive", fromArchive, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	b := byID(readScoreTopic(t, s, ts.ReplayScores, len(accepted), func(sc scoreRec) bool { return sc.version == "archive" }, 60*time.Second))
	same, differ, missing := 0, 0, 0
	for id := range accepted {
		x, okA := a[id]
		y, okB := b[id]
		switch {
		case !okA || !okB:
			missing++
		case sameScore(x, y):
			same++
		default:
			differ++
		}
	}
	t.Logf("replay from the topic: %d scores; from the archive: %d; of %d calls %d the same, %d different, %d missing", len(a), len(b), len(accepted), same, differ, missing)
	if same != len(accepted) {
		t.Fatalf("archive replay: %d same, %d different, %d missing of %d", same, differ, missing, len(accepted))
	}
}

// A stateful model warmed up by a replay answers its first live calls
// exactly as one that ran all along; one started cold does not.
func TestStatefulWarmUp(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	rows := irisRows(t)
	ts := topics.For(s.Objective)
	ref := s.StartStage("model-st-ref", "model-runner", "-model", modelFile("stateful"), "-name", "st", "-version", "ref", "-role", "shadow")
	if err := s.WaitReady("model-st-ref", ref, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	// The reference must see the history live: wait until it scored a call.
	first := predictKeyed(t, s, rows[0].body, "k0")
	readScoreTopic(t, s, ts.Scores, 1, func(sc scoreRec) bool { return sc.id == first && sc.version == "ref" }, 30*time.Second)
	for i := 1; i < 240; i++ {
		predictKeyed(t, s, rows[(i*7)%len(rows)].body, fmt.Sprintf("k%d", i%6))
	}
	warm := s.StartStage("model-st-warm", "model-runner", "-model", modelFile("stateful"), "-name", "st", "-version", "warm", "-role", "shadow",
		"-from-offset", "0")
	cold := s.StartStage("model-st-cold", "model-runner", "-model", modelFile("stateful"), "-name", "st", "-version", "cold", "-role", "shadow")
	for name, addr := range map[string]string{"model-st-warm": warm, "model-st-cold": cold} {
		if err := s.WaitReady(name, addr, 90*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	later := map[string]bool{}
	for i := 0; i < 60; i++ {
		later[predictKeyed(t, s, rows[(i*11+3)%len(rows)].body, fmt.Sprintf("k%d", i%6))] = true
	}
	scores := readScoreTopic(t, s, ts.Scores, 3*len(later), func(sc scoreRec) bool { return later[sc.id] && sc.model == "st" }, 60*time.Second)
	by := map[string]map[string]scoreRec{}
	for _, sc := range scores {
		if by[sc.version] == nil {
			by[sc.version] = map[string]scoreRec{}
		}
		by[sc.version][sc.id] = sc
	}
	warmSame, coldSame, n := 0, 0, 0
	for id := range later {
		r, ok := by["ref"][id]
		if !ok {
			continue
		}
		n++
		if w, ok := by["warm"][id]; ok && sameScore(r, w) {
			warmSame++
		}
		if c, ok := by["cold"][id]; ok && sameScore(r, c) {
			coldSame++
		}
	}
	t.Logf("first %d live calls after the warm-up: warmed-up model equal to the always-on one on %d, cold model on %d (of %d with a reference score)",
		len(later), warmSame, coldSame, n)
	if n != len(later) || warmSame != n {
		t.Fatalf("warm-up: %d of %d equal to the reference (%d reference scores)", warmSame, len(later), n)
	}
	if coldSame == n {
		t.Fatalf("the cold model answered like the reference on all %d calls: the test cannot tell warm from cold", n)
	}
}
