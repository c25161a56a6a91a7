package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/ops/compare"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
	"github.com/rendezvous-ml/rendezvous/testcontainers/stack"
)

var agreementLine = regexp.MustCompile(`agreement\s+([0-9.]+)% \((\d+) of (\d+) requests both answered\)`)

// printedAgreement reads the agreement rdv compare printed.
func printedAgreement(t *testing.T, out string) (agree, both int) {
	t.Helper()
	m := agreementLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no agreement line in the output of rdv compare:\n%s", out)
	}
	agree, _ = strconv.Atoi(m[2])
	both, _ = strconv.Atoi(m[3])
	pct, _ := strconv.ParseFloat(m[1], 64)
	if both > 0 && fmt.Sprintf("%.2f", 100*float64(agree)/float64(both)) != fmt.Sprintf("%.2f", pct) {
		t.Errorf("printed %v%% for %d of %d", pct, agree, both)
	}
	return agree, both
}

// TestCompareCLI sends the 150 iris rows through the pipeline, then runs
// `rdv compare` on the decisions log. The agreement it prints between the
// champion (dt) and the shadow (challenger) must be the one the model files
// give on those rows, and the HTML report must be written with its plots.
// A model that scored the same requests as a replay (the stateful model,
// its scores written to rdv.iris.replay-scores) is compared the same way.
func TestCompareCLI(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ts := topics.For(s.Objective)

	// The replay-scores topic and its subject are provisioned with the rest.
	adm := kadm.NewClient(s.Client())
	td, err := adm.ListTopics(ctx, ts.ReplayScores, ts.Scores)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(td[ts.ReplayScores].Partitions), len(td[ts.Scores].Partitions); got == 0 || got != want {
		t.Fatalf("%s has %d partitions, want %d like %s", ts.ReplayScores, got, want, ts.Scores)
	}
	rc, err := registry.New(registry.Config{URL: s.RegistryURL})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, _, _, err := rc.Latest(ctx, topics.Subject(ts.ReplayScores)); err != nil {
		t.Fatalf("subject %s: %v", topics.Subject(ts.ReplayScores), err)
	}

	rows := irisRows(t)
	var bodies []string
	for _, r := range rows {
		bodies = append(bodies, r.body)
	}
	ids := sendAll(t, s, bodies)
	counts := s.CountKeys(ts.Decisions, len(ids), 60*time.Second)
	for id := range ids {
		if counts[id] != 1 {
			t.Fatalf("request %s is %d times in the decisions log, want once", id, counts[id])
		}
	}

	dt, challenger := loadModel(t, "dt"), loadModel(t, "challenger")
	want := 0
	for _, r := range rows {
		a, _ := dt.Predict(r.features)
		b, _ := challenger.Predict(r.features)
		if a.Label == b.Label {
			want++
		}
	}

	report := filepath.Join(t.TempDir(), "report.html")
	out, err := s.RunCLI("compare", "iris", "-champion", "dt", "-challenger", "challenger", "-html", report)
	if err != nil {
		t.Fatalf("rdv compare: %v\n%s", err, out)
	}
	t.Logf("rdv compare iris -champion dt -challenger challenger:\n%s", out)
	agree, both := printedAgreement(t, out)
	if both != len(rows) || agree != want {
		t.Errorf("printed agreement %d of %d, the model files agree on %d of %d rows", agree, both, want, len(rows))
	}
	for _, line := range []string{"CONFUSION (rows: dt, columns: challenger)", "MODELS", "DRIFT", "HTML report: " + report} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q", line)
		}
	}
	page, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("HTML report not written: %v", err)
	}
	h := string(page)
	for _, id := range []string{compare.PlotAgreement, compare.PlotConfusion, compare.PlotLatency, compare.PlotRates, compare.PlotDrift} {
		if !strings.Contains(h, `<svg id="`+id+`"`) {
			t.Errorf("HTML report lacks the %s plot", id)
		}
	}
	if strings.Contains(h, "<script") || strings.Contains(h, "http://") || strings.Contains(h, "https://") {
		t.Errorf("HTML report is not self-contained: it has a script or a link")
	}
	t.Logf("HTML report: %d bytes, %d svg plots", len(page), strings.Count(h, "<svg "))

	// A replay: the stateful model scores the same requests, in the order
	// they were sent, onto the replay-scores topic, plus 10 requests that
	// are not in the decisions log.
	m, err := evaluator.Load(filepath.Join(mustRoot(t), "models", "iris", "stateful.json"))
	if err != nil {
		t.Fatal(err)
	}
	stateful := m.(evaluator.Stateful)
	set, err := schemas.For(s.Objective)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := serde.New(rc).Encoder(ctx, topics.Subject(ts.ReplayScores), set.Text[schemas.Score])
	if err != nil {
		t.Fatal(err)
	}
	order := make([]string, 0, len(ids))
	for id := range ids {
		order = append(order, id)
	}
	sort.Slice(order, func(i, j int) bool { return ids[order[i]] < ids[order[j]] })
	for i := range 10 {
		order = append(order, fmt.Sprintf("not-a-decision-%d", i))
	}
	wantReplay := 0
	cl := s.Client()
	for _, id := range order {
		x := rows[ids[id]].features
		p, err := stateful.PredictKeyed("", x)
		if err != nil {
			t.Fatal(err)
		}
		if _, live := ids[id]; live {
			if d, _ := dt.Predict(x); d.Label == p.Label {
				wantReplay++
			}
		}
		v, err := enc.Encode(nil, map[string]any{
			"request_id": id, "objective": s.Objective, "model": "stateful", "version": "1", "role": "challenger",
			"result": serde.Opt(p.Label), "probabilities": serde.DoubleMap(p.Probabilities), "error": nil,
			"compute_us": int64(20), "scored_us": time.Now().UnixMicro(),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: ts.ReplayScores, Key: []byte(id), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	out, err = s.RunCLI("compare", "iris", "-champion", "dt", "-challenger", "stateful", "-since", "1h")
	if err != nil {
		t.Fatalf("rdv compare with the replayed model: %v\n%s", err, out)
	}
	t.Logf("rdv compare iris -champion dt -challenger stateful -since 1h:\n%s", out)
	agree, both = printedAgreement(t, out)
	if both != len(rows) || agree != wantReplay {
		t.Errorf("replayed model: printed agreement %d of %d, the model files give %d of %d", agree, both, wantReplay, len(rows))
	}
	if !strings.Contains(out, fmt.Sprintf("%d scores from the replay-scores topic, %d of them for these decisions", len(order), len(rows))) {
		t.Errorf("output does not count the %d replayed scores, %d of them joined", len(order), len(rows))
	}

	// A misspelt model is an error that names the models there are; a
	// window with no decisions is an error too, not a wait.
	out, err = s.RunCLI("compare", "iris", "-champion", "dt", "-challenger", "challengr")
	if err == nil || !strings.Contains(out, `"challengr"`) || !strings.Contains(out, "canary") {
		t.Errorf("misspelt challenger: err %v, output:\n%s", err, out)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	out, err = s.RunCLI("compare", "iris", "-champion", "dt", "-challenger", "challenger", "-since", future)
	if err == nil || !strings.Contains(out, "no decisions") {
		t.Errorf("-since in the future: err %v, output:\n%s", err, out)
	}
}

func mustRoot(t *testing.T) string {
	t.Helper()
	root, err := stack.Root()
	if err != nil {
		t.Fatal(err)
	}
	return root
}
