package evaluator

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite models/iris/stateful.json from canary.json and iris.csv")

// The iris stateful model is not trained: it is the canary's logistic
// regression with two more inputs, the entity's shrunk means of petal
// length and width, weighted at historyWeight times the current value's
// coefficient. The intercepts are moved so that an entity with no history
// (mean = prior) gets exactly the canary's answer; an entity whose earlier
// flowers had long petals leans towards virginica.
const historyWeight = 0.5

// priorWeight is how many pseudo-inputs at the data set's mean an entity
// starts with, so one odd flower does not swing its mean.
const priorWeight = 2.0

// statefulIris builds models/iris/stateful.json's content.
func statefulIris(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(modelsDir, "iris", "canary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var canary document
	if err := json.Unmarshal(data, &canary); err != nil {
		t.Fatal(err)
	}
	if canary.Kind != "linear" || len(canary.Features) != 4 {
		t.Fatalf("canary.json is a %s model with features %v; the stateful model expects the 4-feature linear canary", canary.Kind, canary.Features)
	}
	rows := readIris(t)
	tracked := []string{"petalLength", "petalWidth"}
	prior := map[string]float64{}
	for _, f := range tracked {
		var sum float64
		for _, r := range rows {
			sum += r.x[f]
		}
		// Rounded so the file reads well; any fixed value would do.
		prior[f] = roundTo(sum/float64(len(rows)), 4)
	}
	col := map[string]int{}
	for i, f := range canary.Features {
		col[f] = i
	}
	features := append(append([]string{}, canary.Features...), tracked[0]+suffixMean, tracked[1]+suffixMean)
	coef := make([][]float64, len(canary.Coef))
	intercept := make([]float64, len(canary.Intercept))
	for r, row := range canary.Coef {
		coef[r] = append([]float64{}, row...)
		intercept[r] = canary.Intercept[r]
		for _, f := range tracked {
			w := historyWeight * row[col[f]]
			coef[r] = append(coef[r], w)
			intercept[r] -= w * prior[f]
		}
	}
	// Written field by field, arrays on one line, like the trained files.
	var buf bytes.Buffer
	field := func(indent, name string, v any, last bool) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		sep := ","
		if last {
			sep = ""
		}
		fmt.Fprintf(&buf, "%s%q: %s%s\n", indent, name, b, sep)
	}
	buf.WriteString("{\n")
	field("  ", "format", Format, false)
	field("  ", "name", "iris-stateful", false)
	field("  ", "version", "1", false)
	field("  ", "kind", kindStateful, false)
	field("  ", "features", canary.Features, false)
	field("  ", "classes", canary.Classes, false)
	field("  ", "derived_from", "canary.json, by: go test ./stages/model/evaluator -run TestStatefulIrisFile -update", false)
	field("  ", "entity", EntityKey, false)
	field("  ", "track", tracked, false)
	field("  ", "prior", map[string]any{"weight": priorWeight, "mean": prior}, false)
	buf.WriteString("  \"model\": {\n")
	field("    ", "kind", "linear", false)
	field("    ", "features", features, false)
	field("    ", "classes", canary.Classes, false)
	buf.WriteString("    \"coef\": [\n")
	for r, row := range coef {
		b, _ := json.Marshal(row)
		sep := ","
		if r == len(coef)-1 {
			sep = ""
		}
		fmt.Fprintf(&buf, "      %s%s\n", b, sep)
	}
	buf.WriteString("    ],\n")
	field("    ", "intercept", intercept, false)
	field("    ", "link", canary.Link, true)
	buf.WriteString("  }\n}\n")
	return buf.Bytes()
}

func roundTo(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

// TestStatefulIrisFile keeps the shipped file in step with canary.json:
// a retrained canary makes it fail until the file is regenerated with
// -update.
func TestStatefulIrisFile(t *testing.T) {
	want := statefulIris(t)
	path := filepath.Join(modelsDir, "iris", "stateful.json")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./stages/model/evaluator -run TestStatefulIrisFile -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale against canary.json; regenerate it: go test ./stages/model/evaluator -run TestStatefulIrisFile -update", path)
	}
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	canary, err := Load(filepath.Join(modelsDir, "iris", "canary.json"))
	if err != nil {
		t.Fatal(err)
	}
	// With no history every answer is the canary's, to rounding.
	for i, r := range readIris(t) {
		fresh, err := Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		p, err := fresh.Predict(r.x)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := canary.Predict(r.x)
		if p.Label != q.Label {
			t.Errorf("row %d: fresh stateful model says %s, canary %s", i, p.Label, q.Label)
		}
		for c, v := range q.Probabilities {
			if d := p.Probabilities[c] - v; d > 1e-9 || d < -1e-9 {
				t.Errorf("row %d: P(%s) = %v, canary %v", i, c, p.Probabilities[c], v)
			}
		}
	}
	if _, ok := m.(Stateful); !ok {
		t.Fatalf("%T does not implement Stateful", m)
	}
}
