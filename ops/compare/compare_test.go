package compare

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func sc(model, result string, arrivedMS float64) Score {
	return Score{Model: model, Version: "1", Role: map[string]string{"dt": "champion", "canary": "canary"}[model],
		Result: result, HasResult: result != "", ComputeUS: 100, ArrivedUS: int64(arrivedMS * 1000)}
}

func failed(model string) Score {
	s := sc(model, "", 5)
	s.Error = "model error"
	return s
}

func late(s Score) Score { s.Late = true; return s }

func dec(id string, at time.Duration, winner string, scores []Score, missing ...string) Decision {
	d := Decision{RequestID: id, ReceivedUS: t0.Add(at).UnixMicro(), DeadlineUS: t0.Add(at + 100*time.Millisecond).UnixMicro(),
		Reason: "champion", Model: winner, Scores: scores, Missing: missing}
	for _, s := range scores {
		if s.Model == winner {
			d.Result = s.Result
		}
	}
	return d
}

func TestCompareClassifier(t *testing.T) {
	ds := []Decision{
		// The canary's late score came after the champion's answer but
		// within the deadline: late, not a timeout.
		dec("a", 0, "dt", []Score{sc("dt", "setosa", 3), sc("ch", "setosa", 4), late(sc("canary", "setosa", 2))}),
		dec("b", time.Second, "dt", []Score{sc("dt", "virginica", 5), sc("ch", "versicolor", 6), sc("canary", "virginica", 2)}),
		dec("c", 2*time.Second, "dt", []Score{sc("dt", "versicolor", 7), late(sc("ch", "versicolor", 150)), sc("canary", "versicolor", 2)}),
		dec("d", 3*time.Second, "canary", []Score{failed("dt"), sc("ch", "setosa", 8), sc("canary", "setosa", 2)}),
		dec("e", 4*time.Second, "dt", []Score{sc("dt", "setosa", 9), sc("canary", "setosa", 2)}, "ch"),
	}
	r, err := Compare(ds, nil, Options{Champion: "dt", Challenger: "ch"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != KindClassifier || r.Decisions != 5 || r.Both != 3 || r.Agree != 2 {
		t.Fatalf("kind %s, decisions %d, both %d, agree %d; want classifier, 5, 3, 2", r.Kind, r.Decisions, r.Both, r.Agree)
	}
	if got := r.Agreement(); math.Abs(got-2.0/3) > 1e-12 {
		t.Errorf("agreement %v, want 2/3", got)
	}
	wantLabels := []string{"setosa", "versicolor", "virginica"}
	wantCounts := [][]int{{1, 0, 0}, {0, 1, 0}, {0, 1, 0}}
	if !slices.Equal(r.Confusion.Labels, wantLabels) {
		t.Errorf("confusion labels %v, want %v", r.Confusion.Labels, wantLabels)
	}
	for i := range wantCounts {
		if !slices.Equal(r.Confusion.Counts[i], wantCounts[i]) {
			t.Errorf("confusion row %s = %v, want %v", wantLabels[i], r.Confusion.Counts[i], wantCounts[i])
		}
	}
	if names := modelNames(r); !slices.Equal(names, []string{"dt", "ch", "canary"}) {
		t.Errorf("model order %v, want the champion, the challenger, then the rest", names)
	}
	cases := []struct {
		model                          string
		scored, errs, lateN, missing   int
		won                            int
		errRate, lateRate, timeoutRate float64
		p50, max                       float64
	}{
		{"dt", 5, 1, 0, 0, 4, 0.2, 0, 0, 5, 9}, // latencies 3 5 5 7 9
		{"ch", 4, 0, 1, 1, 0, 0, 0.2, 0.4, 6, 150},
		{"canary", 5, 0, 1, 0, 1, 0, 0.2, 0, 2, 2},
	}
	for _, c := range cases {
		m, _ := r.Model(c.model)
		if m.Scored != c.scored || m.Errors != c.errs || m.Late != c.lateN || m.Missing != c.missing || m.Won != c.won {
			t.Errorf("%s: scored %d errors %d late %d missing %d won %d, want %d %d %d %d %d", c.model, m.Scored, m.Errors, m.Late, m.Missing, m.Won, c.scored, c.errs, c.lateN, c.missing, c.won)
		}
		if m.ErrorRate != c.errRate || m.LateRate != c.lateRate || m.TimeoutRate != c.timeoutRate {
			t.Errorf("%s: rates error %v late %v timeout %v, want %v %v %v", c.model, m.ErrorRate, m.LateRate, m.TimeoutRate, c.errRate, c.lateRate, c.timeoutRate)
		}
		if m.Latency.P50 != c.p50 || m.Latency.Max != c.max {
			t.Errorf("%s: latency p50 %v max %v, want %v %v", c.model, m.Latency.P50, m.Latency.Max, c.p50, c.max)
		}
	}
	// The timeline puts each decision in a bucket and sums to the totals.
	var n, both, agree int
	for _, b := range r.Timeline {
		n, both, agree = n+b.Decisions, both+b.Both, agree+b.Agree
	}
	if n != 5 || both != 3 || agree != 2 || len(r.Timeline) != 5 {
		t.Errorf("timeline of %d buckets sums to %d decisions, %d both, %d agree", len(r.Timeline), n, both, agree)
	}
}

func modelNames(r Report) []string {
	var out []string
	for _, m := range r.Models {
		out = append(out, m.Model)
	}
	return out
}

// A model that scored history is joined from the replay-scores topic by
// request id; a live score, when there is one, wins.
func TestCompareReplay(t *testing.T) {
	ds := []Decision{
		dec("a", 0, "dt", []Score{sc("dt", "setosa", 3)}),
		dec("b", time.Second, "dt", []Score{sc("dt", "virginica", 3)}),
		dec("c", 2*time.Second, "dt", []Score{sc("dt", "versicolor", 3), sc("new", "versicolor", 4)}),
	}
	rep := func(result string) Score { s := sc("new", result, 0); s.ArrivedUS, s.Replay = -1, true; return s }
	replay := map[string]map[string]Score{
		"a":     {"new": rep("setosa")},
		"b":     {"new": rep("setosa")},
		"c":     {"new": rep("setosa")}, // the live score says versicolor
		"other": {"new": rep("setosa")}, // a request outside the decisions read
	}
	r, err := Compare(ds, replay, Options{Champion: "dt", Challenger: "new"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Both != 3 || r.Agree != 2 || r.ReplayScores != 4 || r.ReplayJoined != 3 {
		t.Errorf("both %d agree %d replayed %d joined %d; want 3, 2, 4, 3", r.Both, r.Agree, r.ReplayScores, r.ReplayJoined)
	}
	m, _ := r.Model("new")
	if m.Scored != 1 || m.Replayed != 2 || m.Latency.N != 1 || m.Compute.N != 3 {
		t.Errorf("new: scored %d replayed %d latencies %d computes %d; want 1, 2, 1, 3", m.Scored, m.Replayed, m.Latency.N, m.Compute.N)
	}
}

func TestCompareRegressorAndLabels(t *testing.T) {
	ds := []Decision{
		dec("a", 0, "m1", []Score{sc("m1", "1.0", 1), sc("m2", "1.5", 1)}),
		dec("b", time.Second, "m1", []Score{sc("m1", "2", 1), sc("m2", "1", 1)}),
		dec("c", 2*time.Second, "m1", []Score{sc("m1", "3", 1), sc("m2", "3", 1)}),
	}
	labels := map[string]string{"a": "1", "b": "2", "c": "4"}
	r, err := Compare(ds, nil, Options{Champion: "m1", Challenger: "m2", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != KindRegressor || r.Regression == nil {
		t.Fatalf("kind %s: numeric answers should make a regressor", r.Kind)
	}
	d := r.Regression.Diff
	if d.N != 3 || math.Abs(d.Mean-(-0.5/3)) > 1e-12 || math.Abs(d.MAE-0.5) > 1e-12 || d.MaxAbs != 1 || math.Abs(d.RMSE-math.Sqrt(1.25/3)) > 1e-12 {
		t.Errorf("differences %+v", d)
	}
	if r.Agree != 1 || r.Labelled != 3 {
		t.Errorf("agree %d labelled %d, want 1, 3", r.Agree, r.Labelled)
	}
	if e := r.Regression.ChampionErr; e == nil || e.N != 3 || math.Abs(e.MAE-1.0/3) > 1e-12 {
		t.Errorf("champion against labels: %+v", e)
	}
	m1, _ := r.Model("m1")
	if m1.Correct != 2 || m1.Labelled != 3 {
		t.Errorf("m1 matches %d of %d labels exactly, want 2 of 3", m1.Correct, m1.Labelled)
	}
	// Forcing the kind overrides the guess.
	if r, _ := Compare(ds, nil, Options{Champion: "m1", Challenger: "m2", Kind: KindClassifier}); r.Kind != KindClassifier || len(r.Confusion.Labels) == 0 {
		t.Errorf("forced classifier: kind %s, confusion %v", r.Kind, r.Confusion.Labels)
	}
	if _, err := Compare(ds, nil, Options{Champion: "m1", Challenger: "m2", Kind: "ranking"}); err == nil || !strings.Contains(err.Error(), `"ranking"`) {
		t.Errorf("unknown kind: %v", err)
	}
}

func TestCompareUnknownModel(t *testing.T) {
	ds := []Decision{dec("a", 0, "dt", []Score{sc("dt", "x", 1), sc("canary", "x", 1)})}
	_, err := Compare(ds, nil, Options{Champion: "dt", Challenger: "challnger"})
	if !errors.Is(err, ErrUnknownModel) || !strings.Contains(err.Error(), `"challnger"`) || !strings.Contains(err.Error(), "canary") {
		t.Errorf("error %v, want ErrUnknownModel naming the model and the models seen", err)
	}
	if _, err := Compare(ds, nil, Options{Champion: "dt"}); err == nil {
		t.Error("no challenger: want an error")
	}
}

func TestPercentiles(t *testing.T) {
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(i + 1)
	}
	p := percentiles(v)
	if p.N != 100 || p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.Max != 100 {
		t.Errorf("percentiles of 1..100: %+v", p)
	}
	if p := percentiles([]float64{7}); p.P50 != 7 || p.P99 != 7 {
		t.Errorf("one value: %+v", p)
	}
	if p := percentiles(nil); p.N != 0 {
		t.Errorf("none: %+v", p)
	}
}

func driftDecisions(n int, shift float64) []Decision {
	rng := rand.New(rand.NewPCG(3, 4))
	var ds []Decision
	for i := range n {
		d := dec(string(rune('A'+i%26))+string(rune('a'+i/26%26)), time.Duration(i)*time.Second, "dt",
			[]Score{sc("dt", "setosa", 1), sc("ch", "setosa", 1)})
		s := 0.0
		if i >= n/2 {
			s = shift
		}
		d.Features = map[string]float64{"a": rng.NormFloat64(), "b": rng.NormFloat64() + s}
		ds = append(ds, d)
	}
	return ds
}

func TestCompareDrift(t *testing.T) {
	r, err := Compare(driftDecisions(1000, 2), nil, Options{Champion: "dt", Challenger: "ch"})
	if err != nil {
		t.Fatal(err)
	}
	d := r.Drift
	if d.Note != "" || d.Reference != 500 || d.Current != 500 || len(d.Features) != 2 {
		t.Fatalf("drift %+v", d)
	}
	for _, f := range d.Features {
		t.Logf("%s PSI %.4f", f.Feature, f.PSI)
		if want := f.Feature == "b"; f.Drifted != want {
			t.Errorf("%s: drifted %v (PSI %v), want %v", f.Feature, f.Drifted, f.PSI, want)
		}
	}
	// An explicit split moves the windows.
	r, _ = Compare(driftDecisions(1000, 2), nil, Options{Champion: "dt", Challenger: "ch", DriftSplit: t0.Add(900 * time.Second)})
	if r.Drift.Reference != 900 || r.Drift.Current != 100 {
		t.Errorf("split at 900s: %d before, %d after", r.Drift.Reference, r.Drift.Current)
	}
	r, _ = Compare(driftDecisions(12, 2), nil, Options{Champion: "dt", Challenger: "ch"})
	if r.Drift.Note == "" || len(r.Drift.Features) != 0 {
		t.Errorf("12 decisions: want a note instead of a drift table, got %+v", r.Drift)
	}
}

func TestWriteTextAndHTML(t *testing.T) {
	ds := driftDecisions(400, 3)
	ds[0].Scores[1].Result = "virginica"
	ds[1].Scores = ds[1].Scores[:1]
	ds[1].Missing = []string{"<ch>"}
	r, err := Compare(ds, nil, Options{Champion: "dt", Challenger: "ch"})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())
	for _, want := range []string{
		"dt (champion) vs ch (challenger), classifier",
		"agreement  99.75% (398 of 399 requests both answered)",
		"CONFUSION (rows: dt, columns: ch)",
		"DRIFTED",
		"MODEL", "P99",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q", want)
		}
	}

	var page bytes.Buffer
	if err := WriteHTML(&page, r, "iris: dt vs ch"); err != nil {
		t.Fatal(err)
	}
	h := page.String()
	for _, id := range []string{PlotAgreement, PlotConfusion, PlotLatency, PlotRates, PlotDrift} {
		if !strings.Contains(h, `<svg id="`+id+`"`) {
			t.Errorf("HTML report lacks the %s plot", id)
		}
	}
	if n := strings.Count(h, "<svg "); n != 5 || strings.Count(h, "</svg>") != 5 {
		t.Errorf("%d svg elements, want 5", n)
	}
	for _, banned := range []string{"<script", "http://", "https://", "<ch>"} {
		if strings.Contains(h, banned) {
			t.Errorf("HTML report contains %q: it must be self-contained and escaped", banned)
		}
	}
	if !strings.Contains(h, "&lt;ch&gt;") || !strings.Contains(h, `<b id="agreement">99.75%</b>`) {
		t.Errorf("HTML report: model names must be escaped and the agreement shown")
	}
	if !strings.Contains(h, `class="threshold"`) {
		t.Errorf("the drift plot lacks the threshold line")
	}
}
