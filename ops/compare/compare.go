package compare

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/rendezvous-ml/rendezvous/stages/drift"
)

// Kinds of model output.
const (
	KindAuto       = ""
	KindClassifier = "classifier"
	KindRegressor  = "regressor"
)

// Options say what to compare.
type Options struct {
	Champion   string
	Challenger string
	// Kind forces classifier or regressor; empty decides from the results
	// (regressor when every answer of both models is a number).
	Kind string
	// Labels are the true answers by request id, when known.
	Labels map[string]string
	// DriftSplit divides the decisions into a reference window (received
	// before it) and a current one, for the features' PSI; zero means the
	// middle of the decisions' time range.
	DriftSplit time.Time
	// Bins per feature for the PSI (drift.DefaultBins when zero).
	Bins int
	// Buckets of the agreement timeline (20 when zero).
	Buckets int
}

// ErrUnknownModel: a model to compare has no score in any decision.
var ErrUnknownModel = errors.New("model not found in the decisions")

// Report is the comparison.
type Report struct {
	Champion, Challenger string
	Kind                 string
	From, To             time.Time
	Decisions            int
	// ReplayScores were read from the replay-scores topic; ReplayJoined of
	// them belong to a decision that was read.
	ReplayScores, ReplayJoined int
	// Both is how many requests both models answered; Agree how many of
	// those with the same answer (for a regressor: within 1e-9).
	Both, Agree int
	Confusion   Confusion   // classifiers
	Regression  *Regression // regressors
	Labelled    int         // decisions with a known label
	Models      []ModelStats
	Timeline    []Bucket
	Drift       Drift
}

// Agreement is Agree/Both, NaN when nothing was answered by both.
func (r Report) Agreement() float64 { return ratio(r.Agree, r.Both) }

// Model returns a model's statistics.
func (r Report) Model(name string) (ModelStats, bool) {
	for _, m := range r.Models {
		if m.Model == name {
			return m, true
		}
	}
	return ModelStats{}, false
}

// Confusion counts, for the requests both models answered, the champion's
// answer (row) against the challenger's (column).
type Confusion struct {
	Labels []string
	Counts [][]int
}

// Regression compares numeric answers.
type Regression struct {
	// Diff is challenger minus champion on the requests both answered.
	Diff ErrorStats
	// Against the labels, per model (when labels are numbers).
	ChampionErr, ChallengerErr *ErrorStats
}

// ErrorStats summarizes differences.
type ErrorStats struct {
	N                       int
	Mean, MAE, RMSE, MaxAbs float64
}

// Percentiles of a latency, in milliseconds.
type Percentiles struct {
	N                  int
	P50, P90, P99, Max float64
}

// ModelStats is one model's record over the decisions.
type ModelStats struct {
	Model    string
	Roles    []string
	Versions []string
	// Scored: decisions holding the model's live score. Replayed:
	// decisions without one, answered from the replay-scores topic.
	Scored, Replayed int
	Errors           int // failed scores (live and replayed)
	// Late scores came after the answer was decided: normal for a model
	// that only stands by, since the champion decided first.
	Late int
	// PastDeadline scores came after the request's deadline (its SLA).
	PastDeadline int
	Missing      int // decisions the model was expected in and never reported
	Won          int // decisions it answered
	// Rates over the decisions the model was expected in (scored or
	// missing); for a replay-only model, over its replayed scores. A
	// timeout is a score past the deadline or missing.
	ErrorRate, LateRate, PastDeadlineRate, MissingRate, TimeoutRate float64
	// Latency is when the live score reached the rendezvous, after the
	// request; Compute the time in the model (live and replayed).
	Latency, Compute Percentiles
	// LatencyMS holds every live latency, sorted, for plots.
	LatencyMS []float64
	// Correct of Labelled answers match the label.
	Correct, Labelled int
}

// Bucket is one slice of the timeline.
type Bucket struct {
	Start      time.Time
	Decisions  int
	Both       int
	Agree      int
	ChampionOK int
}

// Drift is the features' PSI between two windows of the decisions.
type Drift struct {
	Split              time.Time
	Reference, Current int
	Features           []FeatureDrift
	// Note says why there is no drift table, when there is none.
	Note string
}

// FeatureDrift is one feature's PSI.
type FeatureDrift struct {
	Feature string
	PSI     float64
	Drifted bool // above drift.Threshold
}

// Compare compares opts.Champion with opts.Challenger over decisions. The
// replay map (request id -> model -> score) supplies a model's answer when
// a decision has no live score of it.
func Compare(decisions []Decision, replay map[string]map[string]Score, opts Options) (Report, error) {
	if opts.Champion == "" || opts.Challenger == "" {
		return Report{}, errors.New("compare: both a champion and a challenger are required")
	}
	if opts.Bins == 0 {
		opts.Bins = drift.DefaultBins
	}
	if opts.Buckets <= 0 {
		opts.Buckets = 20
	}
	r := Report{Champion: opts.Champion, Challenger: opts.Challenger, Decisions: len(decisions)}
	ds := slices.Clone(decisions)
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].ReceivedUS < ds[j].ReceivedUS })
	if len(ds) > 0 {
		r.From, r.To = ds[0].Received(), ds[len(ds)-1].Received()
	}
	for _, byModel := range replay {
		r.ReplayScores += len(byModel)
	}

	stats := map[string]*modelAcc{}
	acc := func(name string) *modelAcc {
		a := stats[name]
		if a == nil {
			a = &modelAcc{ModelStats: ModelStats{Model: name}, roles: map[string]bool{}, versions: map[string]bool{}}
			stats[name] = a
		}
		return a
	}
	// score finds a model's answer to a decision: live first, then replay.
	score := func(d Decision, model string) (Score, bool) {
		if s, ok := d.Score(model); ok {
			return s, true
		}
		s, ok := replay[d.RequestID][model]
		return s, ok
	}

	type pair struct{ a, b string }
	var pairs []pair
	for _, d := range ds {
		label, labelled := opts.Labels[d.RequestID]
		if labelled {
			r.Labelled++
		}
		if d.Model != "" && d.Reason != "default" {
			acc(d.Model).Won++
		}
		for _, s := range d.Scores {
			a := acc(s.Model)
			a.add(s)
			a.Scored++
			if d.DeadlineUS > 0 && d.ReceivedUS+s.ArrivedUS > d.DeadlineUS {
				a.PastDeadline++
			}
			if labelled && s.OK() {
				a.Labelled++
				if sameAnswer(s.Result, label) {
					a.Correct++
				}
			}
		}
		for _, m := range d.Missing {
			acc(m).Missing++
		}
		for model, s := range replay[d.RequestID] {
			r.ReplayJoined++
			if _, live := d.Score(model); live {
				continue
			}
			a := acc(model)
			a.add(s)
			a.Replayed++
			if labelled && s.OK() {
				a.Labelled++
				if sameAnswer(s.Result, label) {
					a.Correct++
				}
			}
		}
		c, okC := score(d, opts.Champion)
		h, okH := score(d, opts.Challenger)
		if okC && okH && c.OK() && h.OK() {
			pairs = append(pairs, pair{c.Result, h.Result})
		} else {
			pairs = append(pairs, pair{"\x00", "\x00"}) // keeps pairs aligned with ds
		}
	}
	if _, ok := stats[opts.Champion]; !ok {
		return r, fmt.Errorf("%w: %q has no score in %d decisions (models seen: %v)", ErrUnknownModel, opts.Champion, len(ds), sortedKeys(stats))
	}
	if _, ok := stats[opts.Challenger]; !ok {
		return r, fmt.Errorf("%w: %q has no score in %d decisions or in the replayed scores (models seen: %v)", ErrUnknownModel, opts.Challenger, len(ds), sortedKeys(stats))
	}

	r.Kind = opts.Kind
	if r.Kind == KindAuto {
		r.Kind = KindClassifier
		numeric, answered := true, false
		for _, p := range pairs {
			if p.a == "\x00" {
				continue
			}
			answered = true
			if !isNumber(p.a) || !isNumber(p.b) {
				numeric = false
				break
			}
		}
		if answered && numeric {
			r.Kind = KindRegressor
		}
	}
	if r.Kind != KindClassifier && r.Kind != KindRegressor {
		return r, fmt.Errorf("compare: kind %q is not %s or %s", r.Kind, KindClassifier, KindRegressor)
	}

	// Agreement, confusion or differences, and the timeline.
	nb := min(opts.Buckets, max(1, len(ds)))
	span := r.To.Sub(r.From)
	r.Timeline = make([]Bucket, nb)
	for i := range r.Timeline {
		r.Timeline[i].Start = r.From.Add(time.Duration(int64(span) * int64(i) / int64(nb)))
	}
	idx := map[string]int{}
	var diffs []float64
	for i, d := range ds {
		b := 0
		if span > 0 {
			b = min(nb-1, int(int64(d.Received().Sub(r.From))*int64(nb)/int64(span)))
		}
		r.Timeline[b].Decisions++
		if s, ok := score(d, opts.Champion); ok && s.OK() {
			r.Timeline[b].ChampionOK++
		}
		p := pairs[i]
		if p.a == "\x00" {
			continue
		}
		r.Both++
		r.Timeline[b].Both++
		agree := p.a == p.b
		if r.Kind == KindRegressor {
			x, _ := strconv.ParseFloat(p.a, 64)
			y, _ := strconv.ParseFloat(p.b, 64)
			diffs = append(diffs, y-x)
			agree = math.Abs(y-x) <= 1e-9
		} else {
			for _, l := range []string{p.a, p.b} {
				if _, ok := idx[l]; !ok {
					idx[l] = len(r.Confusion.Labels)
					r.Confusion.Labels = append(r.Confusion.Labels, l)
				}
			}
		}
		if agree {
			r.Agree++
			r.Timeline[b].Agree++
		}
	}
	if r.Kind == KindClassifier {
		order := slices.Clone(r.Confusion.Labels)
		slices.Sort(order)
		for i, l := range order {
			idx[l] = i
		}
		r.Confusion.Labels = order
		r.Confusion.Counts = make([][]int, len(order))
		for i := range r.Confusion.Counts {
			r.Confusion.Counts[i] = make([]int, len(order))
		}
		for _, p := range pairs {
			if p.a != "\x00" {
				r.Confusion.Counts[idx[p.a]][idx[p.b]]++
			}
		}
	} else {
		r.Regression = &Regression{Diff: errorStats(diffs)}
		if len(opts.Labels) > 0 {
			r.Regression.ChampionErr = labelErrors(ds, opts.Labels, func(d Decision) (Score, bool) { return score(d, opts.Champion) })
			r.Regression.ChallengerErr = labelErrors(ds, opts.Labels, func(d Decision) (Score, bool) { return score(d, opts.Challenger) })
		}
	}

	// Per-model statistics: the two compared first, then the rest by name.
	names := sortedKeys(stats)
	slices.SortStableFunc(names, func(a, b string) int { return rank(a, opts) - rank(b, opts) })
	for _, n := range names {
		r.Models = append(r.Models, stats[n].finish())
	}

	r.Drift = featureDrift(ds, opts)
	return r, nil
}

func rank(name string, opts Options) int {
	switch name {
	case opts.Champion:
		return 0
	case opts.Challenger:
		return 1
	}
	return 2
}

type modelAcc struct {
	ModelStats
	roles, versions map[string]bool
	latency         []float64
	compute         []float64
}

func (a *modelAcc) add(s Score) {
	if s.Role != "" {
		a.roles[s.Role] = true
	}
	if s.Version != "" {
		a.versions[s.Version] = true
	}
	if s.Error != "" {
		a.Errors++
	}
	if s.Late {
		a.Late++
	}
	if !s.Replay && s.ArrivedUS >= 0 {
		a.latency = append(a.latency, float64(s.ArrivedUS)/1000)
	}
	a.compute = append(a.compute, float64(s.ComputeUS)/1000)
}

func (a *modelAcc) finish() ModelStats {
	m := a.ModelStats
	m.Roles = sortedKeys(a.roles)
	m.Versions = sortedKeys(a.versions)
	expected := m.Scored + m.Missing
	if expected == 0 {
		expected = m.Replayed
	}
	m.ErrorRate = ratio(m.Errors, expected)
	m.LateRate = ratio(m.Late, expected)
	m.PastDeadlineRate = ratio(m.PastDeadline, expected)
	m.MissingRate = ratio(m.Missing, expected)
	m.TimeoutRate = ratio(m.PastDeadline+m.Missing, expected)
	slices.Sort(a.latency)
	slices.Sort(a.compute)
	m.Latency = percentiles(a.latency)
	m.Compute = percentiles(a.compute)
	m.LatencyMS = a.latency
	return m
}

// percentiles uses the nearest rank on sorted values.
func percentiles(sorted []float64) Percentiles {
	if len(sorted) == 0 {
		return Percentiles{}
	}
	at := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
		return sorted[min(max(i, 0), len(sorted)-1)]
	}
	return Percentiles{N: len(sorted), P50: at(50), P90: at(90), P99: at(99), Max: sorted[len(sorted)-1]}
}

func errorStats(diffs []float64) ErrorStats {
	e := ErrorStats{N: len(diffs)}
	if len(diffs) == 0 {
		return e
	}
	var sum, abs, sq float64
	for _, d := range diffs {
		sum += d
		abs += math.Abs(d)
		sq += d * d
		e.MaxAbs = max(e.MaxAbs, math.Abs(d))
	}
	n := float64(len(diffs))
	e.Mean, e.MAE, e.RMSE = sum/n, abs/n, math.Sqrt(sq/n)
	return e
}

func labelErrors(ds []Decision, labels map[string]string, score func(Decision) (Score, bool)) *ErrorStats {
	var diffs []float64
	for _, d := range ds {
		l, ok := labels[d.RequestID]
		if !ok {
			continue
		}
		s, ok := score(d)
		if !ok || !s.OK() {
			continue
		}
		y, err1 := strconv.ParseFloat(l, 64)
		x, err2 := strconv.ParseFloat(s.Result, 64)
		if err1 == nil && err2 == nil {
			diffs = append(diffs, x-y)
		}
	}
	e := errorStats(diffs)
	return &e
}

func featureDrift(ds []Decision, opts Options) Drift {
	var out Drift
	if len(ds) == 0 {
		out.Note = "no decisions"
		return out
	}
	out.Split = opts.DriftSplit
	if out.Split.IsZero() {
		first, last := ds[0].Received(), ds[len(ds)-1].Received()
		out.Split = first.Add(last.Sub(first) / 2)
	}
	ref, cur := map[string][]float64{}, map[string][]float64{}
	for _, d := range ds {
		into := cur
		if d.Received().Before(out.Split) {
			into = ref
			out.Reference++
		} else {
			out.Current++
		}
		for f, v := range d.Features {
			into[f] = append(into[f], v)
		}
	}
	const minSide = 10
	if out.Reference < minSide || out.Current < minSide {
		out.Note = fmt.Sprintf("too few decisions for a drift estimate: %d before %s and %d from then on (at least %d each)",
			out.Reference, out.Split.UTC().Format(time.RFC3339), out.Current, minSide)
		return out
	}
	for _, f := range sortedKeys(ref) {
		if len(cur[f]) == 0 {
			continue
		}
		psi := drift.FeaturePSI(ref[f], cur[f], opts.Bins)
		out.Features = append(out.Features, FeatureDrift{Feature: f, PSI: psi, Drifted: psi > drift.Threshold})
	}
	return out
}

// sameAnswer compares an answer with a label: as text, or as numbers
// within 1e-9 ("1.0" is the label "1").
func sameAnswer(a, b string) bool {
	if a == b {
		return true
	}
	x, err1 := strconv.ParseFloat(a, 64)
	y, err2 := strconv.ParseFloat(b, 64)
	return err1 == nil && err2 == nil && math.Abs(x-y) <= 1e-9
}

func isNumber(s string) bool {
	v, err := strconv.ParseFloat(s, 64)
	return err == nil && !math.IsNaN(v) && !math.IsInf(v, 0)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
