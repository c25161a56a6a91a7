package evaluator

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

type keyedInput struct {
	key string
	x   map[string]float64
}

// history is a deterministic stream of iris rows under a few entity keys:
// each key sees mostly one species, so its history says something.
func history(t *testing.T, n int, seed uint64) []keyedInput {
	t.Helper()
	rows := readIris(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	keys := []string{"alice", "bob", "carol", "dave", "", "erin", "frank"}
	out := make([]keyedInput, n)
	for i := range out {
		k := rng.IntN(len(keys))
		// Key k draws from species k%3 four times in five.
		var r irisRow
		if rng.IntN(5) < 4 {
			r = rows[(k%3)*50+rng.IntN(50)]
		} else {
			r = rows[rng.IntN(len(rows))]
		}
		out[i] = keyedInput{key: keys[k], x: r.x}
	}
	return out
}

func loadStateful(t testing.TB) Stateful {
	t.Helper()
	m, err := Load(filepath.Join(modelsDir, "iris", "stateful.json"))
	if err != nil {
		t.Fatal(err)
	}
	s, ok := m.(Stateful)
	if !ok {
		t.Fatalf("%T is not Stateful", m)
	}
	return s
}

func samePrediction(a, b Prediction) bool {
	if a.Label != b.Label || len(a.Probabilities) != len(b.Probabilities) {
		return false
	}
	for c, v := range a.Probabilities {
		if w, ok := b.Probabilities[c]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestStatefulWarmUpMatchesAlwaysOn is the replay contract: a model warmed
// up on the first N inputs answers the next M exactly as a model that was
// scoring all along (the always-on reference), whether the warm-up scored
// the N inputs, only observed them, or restored a JSON snapshot.
func TestStatefulWarmUpMatchesAlwaysOn(t *testing.T) {
	const n, m = 600, 400
	in := history(t, n+m, 7)

	ref := loadStateful(t)
	var want []Prediction
	for i, r := range in {
		p, err := ref.PredictKeyed(r.key, r.x)
		if err != nil {
			t.Fatalf("reference, input %d: %v", i, err)
		}
		if i >= n {
			want = append(want, p)
		}
	}

	scored := loadStateful(t)
	for _, r := range in[:n] {
		if _, err := scored.PredictKeyed(r.key, r.x); err != nil {
			t.Fatal(err)
		}
	}
	observed := loadStateful(t)
	for _, r := range in[:n] {
		if err := observed.Observe(r.key, r.x); err != nil {
			t.Fatal(err)
		}
	}
	saved, err := json.Marshal(observed.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var snap State
	if err := json.Unmarshal(saved, &snap); err != nil {
		t.Fatal(err)
	}
	restored := loadStateful(t)
	if err := restored.Restore(snap); err != nil {
		t.Fatal(err)
	}
	cold := loadStateful(t) // no warm-up: must differ, or the test proves nothing

	for name, model := range map[string]Stateful{"scored": scored, "observed": observed, "restored": restored, "cold": cold} {
		diffs := 0
		for j, r := range in[n:] {
			p, err := model.PredictKeyed(r.key, r.x)
			if err != nil {
				t.Fatal(err)
			}
			if !samePrediction(p, want[j]) {
				diffs++
				if name != "cold" && diffs <= 3 {
					t.Errorf("%s: input %d (key %q): %v %v, always-on %v %v", name, n+j, r.key, p.Label, p.Probabilities, want[j].Label, want[j].Probabilities)
				}
			}
		}
		got := model.Snapshot()
		switch {
		case name == "cold":
			if diffs == 0 {
				t.Errorf("a model with no history gave the same %d answers as the warmed one: the state has no effect", m)
			}
			if got.Equal(ref.Snapshot()) {
				t.Errorf("cold model's state equals the reference's")
			}
			t.Logf("cold model: %d of %d answers differ from the always-on reference", diffs, m)
		case diffs > 0:
			t.Errorf("%s: %d of %d answers differ from the always-on reference", name, diffs, m)
		default:
			if d := got.Diff(ref.Snapshot()); len(d) > 0 {
				t.Errorf("%s: state differs from the reference: %v", name, d)
			}
			if got.Digest() != ref.Snapshot().Digest() {
				t.Errorf("%s: digest %s, reference %s", name, got.Digest(), ref.Snapshot().Digest())
			}
			t.Logf("%s: %d answers equal to the always-on reference, %d inputs in the state, digest %.12s", name, m, got.Observed(), got.Digest())
		}
	}
}

// The state depends on which inputs were seen, not on their order: a
// replay that interleaves partitions differently rebuilds it exactly.
func TestStatefulStateIsOrderFree(t *testing.T) {
	in := history(t, 500, 3)
	a, b := loadStateful(t), loadStateful(t)
	for _, r := range in {
		if err := a.Observe(r.key, r.x); err != nil {
			t.Fatal(err)
		}
	}
	shuffled := append([]keyedInput(nil), in...)
	rand.New(rand.NewPCG(9, 9)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, r := range shuffled {
		if _, err := b.PredictKeyed(r.key, r.x); err != nil {
			t.Fatal(err)
		}
	}
	sa, sb := a.Snapshot(), b.Snapshot()
	if !sa.Equal(sb) || sa.Digest() != sb.Digest() {
		t.Fatalf("same inputs in another order give another state: %v", sa.Diff(sb))
	}
	if sa.Observed() != 500 {
		t.Errorf("Observed() = %d, want 500", sa.Observed())
	}
	// One more input is a difference Diff names.
	if err := b.Observe("alice", in[0].x); err != nil {
		t.Fatal(err)
	}
	d := sa.Diff(b.Snapshot())
	if len(d) != 1 || !strings.Contains(d[0], `"alice"`) || sa.Digest() == b.Snapshot().Digest() {
		t.Errorf("after one more input for alice: diff %v", d)
	}
}

// History moves the answer the way the file says: a key whose flowers were
// virginica leans virginica on an ambiguous flower.
func TestStatefulHistoryMovesTheAnswer(t *testing.T) {
	rows := readIris(t)
	m := loadStateful(t)
	ambiguous := rows[70].x // a versicolor near the border (5.9, 3.2, 4.8, 1.8)
	before, err := m.PredictKeyed("k", ambiguous)
	if err != nil {
		t.Fatal(err)
	}
	fresh := loadStateful(t)
	for _, r := range rows[100:150] { // virginica
		if err := fresh.Observe("k", r.x); err != nil {
			t.Fatal(err)
		}
	}
	after, err := fresh.PredictKeyed("k", ambiguous)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := fresh.PredictKeyed("someone-else", ambiguous)
	t.Logf("P(virginica): no history %.4f, after 50 virginica %.4f, other key %.4f", before.Probabilities["virginica"], after.Probabilities["virginica"], other.Probabilities["virginica"])
	if !(after.Probabilities["virginica"] > before.Probabilities["virginica"]+0.05) {
		t.Errorf("P(virginica) went from %v to %v after a virginica history, want a clear rise", before.Probabilities["virginica"], after.Probabilities["virginica"])
	}
	if !samePrediction(other, before) {
		t.Errorf("another key's answer changed: %v, want %v", other, before)
	}
}

func TestStatefulRefusedInputLeavesStateAlone(t *testing.T) {
	m := loadStateful(t)
	before := m.Snapshot().Digest()
	bad := []map[string]float64{
		{"sepalLength": 5, "sepalWidth": 3, "petalWidth": 1},                       // tracked feature missing
		{"sepalLength": 5, "petalLength": 1, "petalWidth": 1},                      // inner feature missing
		{"sepalLength": 5, "sepalWidth": 3, "petalLength": 2e6, "petalWidth": 1},   // out of range
		{"sepalLength": 5, "sepalWidth": 3, "petalLength": 1, "petalWidth": nan()}, // not finite
	}
	for i, x := range bad {
		if _, err := m.PredictKeyed("k", x); err == nil {
			t.Errorf("input %d: PredictKeyed accepted %v", i, x)
		}
		if err := m.Observe("k", x); err == nil {
			t.Errorf("input %d: Observe accepted %v", i, x)
		} else if !errors.Is(err, ErrMissingFeature) && !errors.Is(err, ErrInvalidInput) {
			t.Errorf("input %d: error %v wraps neither ErrMissingFeature nor ErrInvalidInput", i, err)
		}
	}
	if after := m.Snapshot().Digest(); after != before {
		t.Errorf("refused inputs changed the state")
	}
}

func nan() float64 { var z float64; return z / z }

func TestStatefulRestoreRefusesOtherModels(t *testing.T) {
	m := loadStateful(t)
	s := State{Track: []string{"sepalLength"}, Entities: map[string]EntityState{}}
	if err := m.Restore(s); !errors.Is(err, ErrStateMismatch) {
		t.Errorf("restore of another model's state: %v, want ErrStateMismatch", err)
	}
	s = State{Track: []string{"petalLength", "petalWidth"}, Entities: map[string]EntityState{"a": {Count: 1, Sums: []int64{1}}}}
	if err := m.Restore(s); !errors.Is(err, ErrStateMismatch) || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("restore of a short entity: %v, want ErrStateMismatch naming the entity", err)
	}
}

func TestStatefulEntityFromFeature(t *testing.T) {
	d := statefulDocFor(t, "feature:store")
	m := mustParseStateful(t, d)
	x := func(store, v float64) map[string]float64 { return map[string]float64{"store": store, "v": v} }
	for range 3 {
		if err := m.Observe("ignored", x(7, 10)); err != nil {
			t.Fatal(err)
		}
	}
	s := m.Snapshot()
	if e, ok := s.Entities["7"]; !ok || e.Count != 3 || e.Sums[0] != 30*fixedScale {
		t.Errorf("entity 7 = %+v (all: %+v), want count 3, sum 30e6", e, s.Entities)
	}
	// The inner tree splits on v.mean at 5: history decides the label.
	p, err := m.PredictKeyed("", x(7, 0))
	if err != nil {
		t.Fatal(err)
	}
	q, _ := m.PredictKeyed("", x(8, 0))
	if p.Label != "high" || q.Label != "low" {
		t.Errorf("store 7 (mean 10) says %s, store 8 (no history) says %s; want high, low", p.Label, q.Label)
	}
}

// statefulDocFor is a stateful model over features store and v whose inner
// tree answers "high" when the entity's shrunk mean of v exceeds 5.
func statefulDocFor(t *testing.T, entity string) map[string]any {
	t.Helper()
	return map[string]any{
		"format": Format, "name": "toy-stateful", "version": "1", "kind": "stateful",
		"features": []any{"store", "v"}, "classes": []any{"low", "high"},
		"entity": entity, "track": []any{"v"},
		"prior": map[string]any{"weight": 1.0, "mean": map[string]any{"v": 0.0}},
		"model": map[string]any{
			"kind": "tree", "features": []any{"v.mean", "v.delta", "entity.count"}, "classes": []any{"low", "high"},
			"children_left":  []any{1, -1, -1},
			"children_right": []any{2, -1, -1},
			"feature":        []any{0, -2, -2},
			"threshold":      []any{5.0, -2.0, -2.0},
			"value":          []any{[]any{0.5, 0.5}, []any{1.0, 0.0}, []any{0.0, 1.0}},
		},
	}
}

func mustParseStateful(t *testing.T, d map[string]any) Stateful {
	t.Helper()
	b, _ := json.Marshal(d)
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return m.(Stateful)
}

func TestStatefulMalformed(t *testing.T) {
	cases := []struct {
		name string
		edit func(d map[string]any)
		want string
	}{
		{"bad entity", func(d map[string]any) { d["entity"] = "user" }, `entity "user"`},
		{"entity feature unknown", func(d map[string]any) { d["entity"] = "feature:nope" }, `"feature:nope"`},
		{"track unknown", func(d map[string]any) { d["track"] = []any{"w"} }, `"w" is not in "features"`},
		{"no prior", func(d map[string]any) { delete(d, "prior") }, `"prior" is missing`},
		{"prior mean missing", func(d map[string]any) { d["prior"] = map[string]any{"weight": 1.0, "mean": map[string]any{}} }, `prior mean of "v"`},
		{"negative weight", func(d map[string]any) { d["prior"].(map[string]any)["weight"] = -1.0 }, "prior weight -1"},
		{"no inner", func(d map[string]any) { delete(d, "model") }, "inner model) is missing"},
		{"unknown derived", func(d map[string]any) {
			d["model"].(map[string]any)["features"] = []any{"v.median", "v.delta", "entity.count"}
		}, `"v.median"`},
		{"nested", func(d map[string]any) { d["model"].(map[string]any)["kind"] = "stateful" }, "must be a tree, forest or linear"},
		{"classes differ", func(d map[string]any) { d["model"].(map[string]any)["classes"] = []any{"a", "b"} }, "classes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := statefulDocFor(t, "key")
			c.edit(d)
			b, _ := json.Marshal(d)
			_, err := Parse(b)
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want ErrMalformed naming %s", err, c.want)
			}
		})
	}
}

// Concurrent callers never lose an update.
func TestStatefulConcurrent(t *testing.T) {
	m := mustParseStateful(t, statefulDocFor(t, "key"))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 250 {
				x := map[string]float64{"store": 1, "v": float64(i % 10)}
				if i%2 == 0 {
					_, _ = m.PredictKeyed(fmt.Sprint(g%2), x)
				} else {
					_ = m.Observe(fmt.Sprint(g%2), x)
				}
			}
		}()
	}
	wg.Wait()
	if n := m.Snapshot().Observed(); n != 2000 {
		t.Errorf("Observed() = %d after 2000 concurrent updates", n)
	}
}
