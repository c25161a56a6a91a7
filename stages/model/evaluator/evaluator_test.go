package evaluator

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// modelsDir is the repository's models/ folder, seen from this package.
var modelsDir = filepath.Join("..", "..", "..", "models")

var irisFeatures = []string{"sepalLength", "sepalWidth", "petalLength", "petalWidth"}

type irisRow struct {
	x       map[string]float64
	species string
}

// readIris reads models/iris.csv with the standard library only.
func readIris(t testing.TB) []irisRow {
	t.Helper()
	f, err := os.Open(filepath.Join(modelsDir, "iris.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(irisFeatures), "species"); !slices.Equal(recs[0], want) {
		t.Fatalf("iris.csv header = %v, want %v", recs[0], want)
	}
	rows := make([]irisRow, 0, len(recs)-1)
	for i, rec := range recs[1:] {
		r := irisRow{x: make(map[string]float64, 4), species: rec[4]}
		for j, name := range irisFeatures {
			v, err := strconv.ParseFloat(rec[j], 64)
			if err != nil {
				t.Fatalf("iris.csv row %d: %v", i+1, err)
			}
			r.x[name] = v
		}
		rows = append(rows, r)
	}
	return rows
}

type expectedFile struct {
	Features []string `json:"features"`
	Rows     int      `json:"rows"`
	Models   map[string]struct {
		File             string      `json:"file"`
		Name             string      `json:"name"`
		Classes          []string    `json:"classes"`
		TrainingAccuracy float64     `json:"training_accuracy"`
		Labels           []string    `json:"labels"`
		Probabilities    [][]float64 `json:"probabilities"`
	} `json:"models"`
}

func TestIrisCSV(t *testing.T) {
	rows := readIris(t)
	if len(rows) != 150 {
		t.Fatalf("iris.csv has %d rows, want 150", len(rows))
	}
	count := map[string]int{}
	for _, r := range rows {
		count[r.species]++
	}
	want := map[string]int{"setosa": 50, "versicolor": 50, "virginica": 50}
	for s, n := range want {
		if count[s] != n {
			t.Errorf("species %q: %d rows, want %d (all: %v)", s, count[s], n, count)
		}
	}
	// Spot-check Fisher's first and last rows.
	if r := rows[0]; r.x["sepalLength"] != 5.1 || r.x["petalWidth"] != 0.2 || r.species != "setosa" {
		t.Errorf("first row = %+v", r)
	}
	if r := rows[149]; r.x["sepalLength"] != 5.9 || r.x["petalLength"] != 5.1 || r.species != "virginica" {
		t.Errorf("last row = %+v", r)
	}
}

// TestSklearnParity checks every model against scikit-learn's own predict
// and predict_proba, recorded by models/train_iris.py in expected.json.
func TestSklearnParity(t *testing.T) {
	const tol = 1e-9
	rows := readIris(t)
	data, err := os.ReadFile(filepath.Join(modelsDir, "iris", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp expectedFile
	if err := json.Unmarshal(data, &exp); err != nil {
		t.Fatal(err)
	}
	if exp.Rows != len(rows) || len(rows) != 150 {
		t.Fatalf("expected.json has %d rows, iris.csv %d, want 150", exp.Rows, len(rows))
	}
	stems := []string{"dt", "canary", "challenger"}
	if len(exp.Models) != len(stems) {
		t.Fatalf("expected.json has %d models, want %d", len(exp.Models), len(stems))
	}
	for _, stem := range stems {
		t.Run(stem, func(t *testing.T) {
			e, ok := exp.Models[stem]
			if !ok {
				t.Fatalf("expected.json has no model %q", stem)
			}
			if len(e.Labels) != len(rows) || len(e.Probabilities) != len(rows) {
				t.Fatalf("expected.json: %d labels, %d probability rows, want %d", len(e.Labels), len(e.Probabilities), len(rows))
			}
			m, err := Load(filepath.Join(modelsDir, "iris", e.File))
			if err != nil {
				t.Fatal(err)
			}
			if m.Name() != e.Name || m.Version() != "1" {
				t.Errorf("name, version = %q, %q, want %q, \"1\"", m.Name(), m.Version(), e.Name)
			}
			if !slices.Equal(m.Features(), irisFeatures) {
				t.Errorf("Features() = %v, want %v", m.Features(), irisFeatures)
			}
			checked, correct := 0, 0
			var worst float64
			for i, r := range rows {
				p, err := m.Predict(r.x)
				if err != nil {
					t.Fatalf("row %d: %v", i, err)
				}
				if p.Label != e.Labels[i] {
					t.Errorf("row %d: label %q, sklearn %q", i, p.Label, e.Labels[i])
				}
				if p.Label == r.species {
					correct++
				}
				if len(p.Probabilities) != len(e.Classes) {
					t.Errorf("row %d: %d probabilities, want %d", i, len(p.Probabilities), len(e.Classes))
				}
				for c, class := range e.Classes {
					got, ok := p.Probabilities[class]
					want := e.Probabilities[i][c]
					d := math.Abs(got - want)
					if !ok || !(d <= tol) {
						t.Errorf("row %d: P(%s) = %v (present %v), sklearn %v", i, class, got, ok, want)
					}
					worst = max(worst, d)
				}
				checked++
			}
			if checked != 150 {
				t.Fatalf("checked %d rows, want 150", checked)
			}
			if acc := float64(correct) / float64(checked); acc != e.TrainingAccuracy {
				t.Errorf("training accuracy %v, sklearn %v", acc, e.TrainingAccuracy)
			}
			t.Logf("%s: %d rows, labels equal, max |Δp| = %.3g", m.Name(), checked, worst)
		})
	}
}

// --- hand-made models -------------------------------------------------------

// doc returns a small valid model document of the given kind as a generic
// JSON object that tests can mutate before marshalling.
func doc(kind string) map[string]any {
	d := map[string]any{
		"format":   Format,
		"name":     "toy-" + kind,
		"version":  "7",
		"kind":     kind,
		"features": []any{"a", "b"},
		"classes":  []any{"x", "y", "z"},
	}
	tr := func() map[string]any {
		// node 0: a <= 0.5 ? node 1 : node 2; node 2: b <= 1 ? node 3 : node 4
		return map[string]any{
			"children_left":  []any{1, -1, 3, -1, -1},
			"children_right": []any{2, -1, 4, -1, -1},
			"feature":        []any{0, -2, 1, -2, -2},
			"threshold":      []any{0.5, -2.0, 1.0, -2.0, -2.0},
			"value": []any{
				[]any{1.0 / 3, 1.0 / 3, 1.0 / 3},
				[]any{1.0, 0.0, 0.0},
				[]any{0.0, 0.5, 0.5},
				[]any{0.0, 0.75, 0.25},
				[]any{0.0, 0.0, 1.0},
			},
		}
	}
	switch kind {
	case "tree":
		for k, v := range tr() {
			d[k] = v
		}
	case "forest":
		d["trees"] = []any{tr(), tr()}
	case "linear":
		d["coef"] = []any{[]any{1.0, 0.0}, []any{0.0, 1.0}, []any{-1.0, -1.0}}
		d["intercept"] = []any{0.0, 0.0, 0.5}
		d["link"] = "softmax"
	}
	return d
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, d map[string]any) Model {
	t.Helper()
	m, err := Parse(mustJSON(t, d))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func treeOf(d map[string]any) map[string]any {
	if d["kind"] == "forest" {
		return d["trees"].([]any)[1].(map[string]any)
	}
	return d
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name   string
		base   string
		mutate func(d map[string]any)
		raw    string // used instead of base+mutate when set
		is     error
		want   []string // substrings of the message
	}{
		{name: "not json", raw: `{"format":`, is: ErrMalformed, want: []string{"parse model"}},
		{name: "wrong type", raw: `{"format":"rdv-model/v1","features":"a"}`, is: ErrMalformed},
		{name: "format", base: "tree", mutate: func(d map[string]any) { d["format"] = "onnx" },
			is: ErrUnsupportedFormat, want: []string{`"onnx"`}},
		{name: "unknown kind", base: "tree", mutate: func(d map[string]any) { d["kind"] = "svm" },
			is: ErrUnknownKind, want: []string{`"svm"`, `"toy-tree"`}},
		{name: "no name", base: "tree", mutate: func(d map[string]any) { delete(d, "name") },
			is: ErrMalformed, want: []string{`"name" is empty`}},
		{name: "no version", base: "tree", mutate: func(d map[string]any) { d["version"] = "" },
			is: ErrMalformed, want: []string{`"version" is empty`}},
		{name: "no features", base: "tree", mutate: func(d map[string]any) { d["features"] = []any{} },
			is: ErrMalformed, want: []string{`"features" is empty`}},
		{name: "duplicate class", base: "tree", mutate: func(d map[string]any) { d["classes"] = []any{"x", "y", "x"} },
			is: ErrMalformed, want: []string{`classes[2] "x" duplicates classes[0]`}},
		{name: "empty feature name", base: "linear", mutate: func(d map[string]any) { d["features"] = []any{"a", ""} },
			is: ErrMalformed, want: []string{"features[1] is an empty string"}},
		{name: "tree no nodes", base: "tree", mutate: func(d map[string]any) {
			for _, k := range []string{"children_left", "children_right", "feature", "threshold", "value"} {
				delete(d, k)
			}
		}, is: ErrMalformed, want: []string{"no nodes"}},
		{name: "tree length mismatch", base: "tree", mutate: func(d map[string]any) { d["threshold"] = []any{0.5} },
			is: ErrMalformed, want: []string{`"threshold" has 1 entries`, `"children_left" has 5`}},
		{name: "tree child out of range", base: "tree", mutate: func(d map[string]any) { d["children_right"] = []any{2, -1, 9, -1, -1} },
			is: ErrMalformed, want: []string{"node 2: children_right = 9 out of range"}},
		{name: "tree cycle", base: "tree", mutate: func(d map[string]any) { d["children_left"] = []any{1, -1, 0, -1, -1} },
			is: ErrMalformed, want: []string{"node 2: children_left = 0 out of range"}},
		{name: "tree half leaf", base: "tree", mutate: func(d map[string]any) { d["children_left"] = []any{1, -1, -1, -1, -1} },
			is: ErrMalformed, want: []string{"node 2:", "a leaf needs both"}},
		{name: "tree feature out of range", base: "tree", mutate: func(d map[string]any) { d["feature"] = []any{0, -2, 2, -2, -2} },
			is: ErrMalformed, want: []string{"node 2: feature = 2 out of range [0, 2)"}},
		{name: "tree value row", base: "tree", mutate: func(d map[string]any) { d["value"].([]any)[3] = []any{1.0, 0.0} },
			is: ErrMalformed, want: []string{"value[3] has 2 entries", "(3)"}},
		{name: "tree negative value", base: "tree", mutate: func(d map[string]any) { d["value"].([]any)[4] = []any{0.0, -1.0, 2.0} },
			is: ErrMalformed, want: []string{"value[4][1] = -1"}},
		{name: "forest empty", base: "forest", mutate: func(d map[string]any) { d["trees"] = []any{} },
			is: ErrMalformed, want: []string{`"trees" is empty`}},
		{name: "forest bad tree", base: "forest", mutate: func(d map[string]any) { treeOf(d)["feature"] = []any{0, -2, -3, -2, -2} },
			is: ErrMalformed, want: []string{"trees[1]", "node 2: feature = -3"}},
		{name: "linear coef rows", base: "linear", mutate: func(d map[string]any) { d["coef"] = []any{[]any{1.0, 0.0}} },
			is: ErrMalformed, want: []string{`"coef" has 1 rows, want one per class (3)`}},
		{name: "linear coef row length", base: "linear", mutate: func(d map[string]any) { d["coef"].([]any)[2] = []any{1.0} },
			is: ErrMalformed, want: []string{"coef[2] has 1 entries"}},
		{name: "linear intercept", base: "linear", mutate: func(d map[string]any) { d["intercept"] = []any{0.0} },
			is: ErrMalformed, want: []string{`"intercept" has 1 entries`}},
		{name: "linear link", base: "linear", mutate: func(d map[string]any) { d["link"] = "probit" },
			is: ErrMalformed, want: []string{`link "probit" unknown`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.raw)
			if tc.raw == "" {
				d := doc(tc.base)
				tc.mutate(d)
				data = mustJSON(t, d)
			}
			m, err := Parse(data)
			if err == nil {
				t.Fatalf("Parse succeeded (%T), want an error", m)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error %q does not wrap %q", err, tc.is)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.json"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing file) = %v, want fs.ErrNotExist", err)
	}
	path := filepath.Join(t.TempDir(), "bad.json")
	d := doc("tree")
	d["kind"] = "knn"
	if err := os.WriteFile(path, mustJSON(t, d), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if !errors.Is(err, ErrUnknownKind) || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(bad kind) = %v, want ErrUnknownKind naming %s", err, path)
	}
}

func TestPredictErrors(t *testing.T) {
	for _, kind := range []string{"tree", "forest", "linear"} {
		m := mustParse(t, doc(kind))
		cases := []struct {
			name string
			x    map[string]float64
			is   error
			want []string
		}{
			{"missing", map[string]float64{"a": 1}, ErrMissingFeature, []string{`missing feature "b"`, m.Name()}},
			{"nil input", nil, ErrMissingFeature, []string{`"a"`}},
			{"NaN", map[string]float64{"a": 1, "b": math.NaN()}, ErrInvalidInput, []string{`feature "b" is NaN`}},
			{"+Inf", map[string]float64{"a": math.Inf(1), "b": 0}, ErrInvalidInput, []string{`feature "a" is +Inf`}},
			{"-Inf", map[string]float64{"a": 0, "b": math.Inf(-1)}, ErrInvalidInput, []string{`feature "b" is -Inf`}},
		}
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				p, err := m.Predict(tc.x)
				if err == nil {
					t.Fatalf("Predict succeeded (%+v), want an error", p)
				}
				if !errors.Is(err, tc.is) {
					t.Errorf("error %q does not wrap %q", err, tc.is)
				}
				for _, s := range tc.want {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
			})
		}
	}
	// sklearn casts tree input to float32 and rejects what overflows it;
	// linear models work in float64 and accept it.
	big := map[string]float64{"a": 1e300, "b": 0}
	for _, kind := range []string{"tree", "forest"} {
		_, err := mustParse(t, doc(kind)).Predict(big)
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "float32") {
			t.Errorf("%s: Predict(1e300) = %v, want ErrInvalidInput about float32", kind, err)
		}
	}
	if _, err := mustParse(t, doc("linear")).Predict(big); err != nil {
		t.Errorf("linear: Predict(1e300) = %v, want no error", err)
	}
}

func checkPrediction(t *testing.T, p Prediction, label string, proba map[string]float64) {
	t.Helper()
	if p.Label != label {
		t.Errorf("label = %q, want %q", p.Label, label)
	}
	if len(p.Probabilities) != len(proba) {
		t.Errorf("probabilities = %v, want %v", p.Probabilities, proba)
	}
	for c, want := range proba {
		if got, ok := p.Probabilities[c]; !ok || math.Abs(got-want) > 1e-12 {
			t.Errorf("P(%s) = %v (present %v), want %v", c, got, ok, want)
		}
	}
}

func TestTreeRoutingAndTies(t *testing.T) {
	m := mustParse(t, doc("tree"))
	// a <= 0.5 goes left; the leaf is pure.
	p, err := m.Predict(map[string]float64{"a": 0.5, "b": 9, "unused": 1})
	if err != nil {
		t.Fatal(err)
	}
	checkPrediction(t, p, "x", map[string]float64{"x": 1, "y": 0, "z": 0})
	// a > 0.5, b <= 1: leaf 3.
	p, _ = m.Predict(map[string]float64{"a": 0.6, "b": 1})
	checkPrediction(t, p, "y", map[string]float64{"x": 0, "y": 0.75, "z": 0.25})

	// A tie goes to the first class, like numpy.argmax.
	d := doc("tree")
	d["value"].([]any)[4] = []any{0.0, 0.5, 0.5}
	p, _ = mustParse(t, d).Predict(map[string]float64{"a": 1, "b": 2})
	checkPrediction(t, p, "y", map[string]float64{"x": 0, "y": 0.5, "z": 0.5})
	d["value"].([]any)[4] = []any{0.25, 0.5, 0.25}
	d["classes"] = []any{"z", "y", "x"}
	p, _ = mustParse(t, d).Predict(map[string]float64{"a": 1, "b": 2})
	checkPrediction(t, p, "y", map[string]float64{"z": 0.25, "y": 0.5, "x": 0.25})
}

// sklearn compares float32(x) <= threshold with a float64 threshold. 0.1
// rounds up in float32, so an input of exactly 0.1 must go right of a 0.1
// threshold even though 0.1 <= 0.1 in float64.
func TestTreeFloat32Input(t *testing.T) {
	if float64(float32(0.1)) <= 0.1 {
		t.Fatal("test premise: float32(0.1) should exceed 0.1")
	}
	for _, kind := range []string{"tree", "forest"} {
		d := doc(kind)
		tr := treeOf(d)
		tr["threshold"] = []any{0.1, -2.0, 1.0, -2.0, -2.0}
		p, err := mustParse(t, d).Predict(map[string]float64{"a": 0.1, "b": 5})
		if err != nil {
			t.Fatal(err)
		}
		if kind == "tree" {
			checkPrediction(t, p, "z", map[string]float64{"x": 0, "y": 0, "z": 1})
		} else {
			// tree 0 still splits at 0.5 (goes left), tree 1 at 0.1 (goes right)
			checkPrediction(t, p, "x", map[string]float64{"x": 0.5, "y": 0, "z": 0.5})
		}
	}
	// The linear model does not round: 0.1 stays 0.1.
	d := doc("linear")
	d["coef"] = []any{[]any{1.0, 0.0}, []any{0.0, 0.0}, []any{0.0, 0.0}}
	d["intercept"] = []any{0.0, 0.0, 0.0}
	p, err := mustParse(t, d).Predict(map[string]float64{"a": 0.1, "b": 0})
	if err != nil {
		t.Fatal(err)
	}
	a := 0.1
	px := math.Exp(a) / (math.Exp(a) + 2)
	a32 := float64(float32(a))
	if px32 := math.Exp(a32) / (math.Exp(a32) + 2); math.Abs(px-px32) < 1e-11 {
		t.Fatalf("test premise: float32 rounding should be visible (%v vs %v)", px, px32)
	}
	checkPrediction(t, p, "x", map[string]float64{"x": px, "y": (1 - px) / 2, "z": (1 - px) / 2})
}

// Older scikit-learn versions export class counts; predict_proba divides
// them by their sum. The label is the argmax of the counts.
func TestTreeCounts(t *testing.T) {
	d := doc("tree")
	d["value"] = []any{
		[]any{50.0, 50.0, 50.0}, []any{50.0, 0.0, 0.0}, []any{0.0, 50.0, 50.0},
		[]any{0.0, 6.0, 2.0}, []any{0.0, 0.0, 0.0},
	}
	m := mustParse(t, d)
	p, _ := m.Predict(map[string]float64{"a": 1, "b": 0})
	checkPrediction(t, p, "y", map[string]float64{"x": 0, "y": 0.75, "z": 0.25})
	// An all-zero leaf gives zero probabilities (sklearn's normalizer of 1)
	// and the first class.
	p, _ = m.Predict(map[string]float64{"a": 1, "b": 2})
	checkPrediction(t, p, "x", map[string]float64{"x": 0, "y": 0, "z": 0})
}

func TestForestAverages(t *testing.T) {
	d := doc("forest")
	// Tree 1 ends in a leaf favouring z where tree 0 favours y.
	treeOf(d)["value"].([]any)[3] = []any{0.0, 0.0, 1.0}
	p, err := mustParse(t, d).Predict(map[string]float64{"a": 1, "b": 0})
	if err != nil {
		t.Fatal(err)
	}
	// (0.75+0)/2 = 0.375 for y, (0.25+1)/2 = 0.625 for z
	checkPrediction(t, p, "z", map[string]float64{"x": 0, "y": 0.375, "z": 0.625})
	// Tie between y and z across the two trees: first class wins.
	treeOf(d)["value"].([]any)[3] = []any{0.0, 0.25, 0.75}
	p, _ = mustParse(t, d).Predict(map[string]float64{"a": 1, "b": 0})
	checkPrediction(t, p, "y", map[string]float64{"x": 0, "y": 0.5, "z": 0.5})
}

func TestLinear(t *testing.T) {
	x := map[string]float64{"a": 0.3, "b": -0.2}
	scores := []float64{0.3, -0.2, -(0.3 - 0.2) + 0.5}

	// softmax
	p, err := mustParse(t, doc("linear")).Predict(x)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, s := range scores {
		sum += math.Exp(s)
	}
	checkPrediction(t, p, "z", map[string]float64{
		"x": math.Exp(scores[0]) / sum, "y": math.Exp(scores[1]) / sum, "z": math.Exp(scores[2]) / sum,
	})

	// one-vs-rest, normalized
	d := doc("linear")
	d["link"] = "ovr"
	p, _ = mustParse(t, d).Predict(x)
	sig := func(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
	sum = sig(scores[0]) + sig(scores[1]) + sig(scores[2])
	checkPrediction(t, p, "z", map[string]float64{
		"x": sig(scores[0]) / sum, "y": sig(scores[1]) / sum, "z": sig(scores[2]) / sum,
	})

	// Equal scores: uniform probabilities, first class.
	for _, link := range []string{"softmax", "ovr"} {
		d = doc("linear")
		d["link"] = link
		d["intercept"] = []any{0.0, 0.0, 0.0}
		d["coef"] = []any{[]any{0.0, 0.0}, []any{0.0, 0.0}, []any{0.0, 0.0}}
		p, _ = mustParse(t, d).Predict(x)
		checkPrediction(t, p, "x", map[string]float64{"x": 1.0 / 3, "y": 1.0 / 3, "z": 1.0 / 3})
	}

	// Binary: one coefficient row scoring the second class.
	d = doc("linear")
	d["classes"] = []any{"neg", "pos"}
	d["coef"] = []any{[]any{2.0, 1.0}}
	d["intercept"] = []any{-0.4}
	p, _ = mustParse(t, d).Predict(x) // score 0.6-0.2-0.4 = 0: exactly on the boundary
	checkPrediction(t, p, "neg", map[string]float64{"neg": 0.5, "pos": 0.5})
	p, _ = mustParse(t, d).Predict(map[string]float64{"a": 1, "b": 0})
	checkPrediction(t, p, "pos", map[string]float64{"neg": 1 - sig(1.6), "pos": sig(1.6)})
}

func TestModelIsolation(t *testing.T) {
	m := mustParse(t, doc("tree"))
	f := m.Features()
	f[0] = "changed"
	if got := m.Features(); got[0] != "a" {
		t.Errorf("Features() shares its slice: %v", got)
	}
	p1, _ := m.Predict(map[string]float64{"a": 1, "b": 0})
	p1.Probabilities["y"] = 42
	p2, _ := m.Predict(map[string]float64{"a": 1, "b": 0})
	if p2.Probabilities["y"] != 0.75 {
		t.Errorf("Probabilities map shared between calls: %v", p2.Probabilities)
	}
}

// Predict allocates only the result map: for a three-class model that is
// the map header and its single group.
func TestPredictAllocations(t *testing.T) {
	rows := readIris(t)
	for _, stem := range []string{"dt", "canary", "challenger"} {
		m, err := Load(filepath.Join(modelsDir, "iris", stem+".json"))
		if err != nil {
			t.Fatal(err)
		}
		x := rows[100].x
		n := testing.AllocsPerRun(100, func() {
			if _, err := m.Predict(x); err != nil {
				t.Fatal(err)
			}
		})
		if n > 2 {
			t.Errorf("%s: Predict allocates %v times, want at most 2", stem, n)
		}
	}
}

func benchmarkPredict(b *testing.B, stem string) {
	m, err := Load(filepath.Join(modelsDir, "iris", stem+".json"))
	if err != nil {
		b.Fatal(err)
	}
	rows := readIris(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := m.Predict(rows[i].x); err != nil {
			b.Fatal(err)
		}
		i++
		if i == len(rows) {
			i = 0
		}
	}
}

func BenchmarkPredictTree(b *testing.B)   { benchmarkPredict(b, "dt") }
func BenchmarkPredictLinear(b *testing.B) { benchmarkPredict(b, "canary") }
func BenchmarkPredictForest(b *testing.B) { benchmarkPredict(b, "challenger") }
