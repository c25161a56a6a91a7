package evaluator

import (
	"fmt"
	"math"
)

// Links of a linear model, mapping decision scores to probabilities.
const (
	linkSoftmax = "softmax" // multinomial: softmax over the classes' scores
	linkOVR     = "ovr"     // one-vs-rest: sigmoid per class, normalized to sum to one
)

// linearModel is kind "linear": sklearn's LogisticRegression.
type linearModel struct {
	base
	// coef is row-major, rows x len(features); intercept has rows entries.
	coef      []float64
	intercept []float64
	rows      int
	// binary: two classes and a single coefficient row, scoring classes[1]
	// (sklearn's binary case, whatever the link).
	binary bool
	ovr    bool
}

func newLinear(b base, doc *document) (*linearModel, error) {
	nf, nc := len(b.features), len(b.classes)
	rows := len(doc.Coef)
	switch {
	case nc == 2 && rows == 1:
	case rows != nc:
		return nil, fmt.Errorf("\"coef\" has %d rows, want one per class (%d)", rows, nc)
	}
	if len(doc.Intercept) != rows {
		return nil, fmt.Errorf("\"intercept\" has %d entries, \"coef\" has %d rows", len(doc.Intercept), rows)
	}
	m := &linearModel{
		base:      b,
		coef:      make([]float64, 0, rows*nf),
		intercept: make([]float64, rows),
		rows:      rows,
		binary:    rows == 1,
	}
	switch doc.Link {
	case linkSoftmax:
	case linkOVR:
		m.ovr = true
	default:
		return nil, fmt.Errorf("link %q unknown (want %q or %q)", doc.Link, linkSoftmax, linkOVR)
	}
	for r, row := range doc.Coef {
		if len(row) != nf {
			return nil, fmt.Errorf("coef[%d] has %d entries, want one per feature (%d)", r, len(row), nf)
		}
		for j, v := range row {
			if !finite(v) {
				return nil, fmt.Errorf("coef[%d][%d] = %v, want a finite number", r, j, v)
			}
		}
		m.coef = append(m.coef, row...)
	}
	for r, v := range doc.Intercept {
		if !finite(v) {
			return nil, fmt.Errorf("intercept[%d] = %v, want a finite number", r, v)
		}
		m.intercept[r] = v
	}
	return m, nil
}

func expit(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

func (m *linearModel) Predict(x map[string]float64) (Prediction, error) {
	var xb, sb [stackN]float64
	nf := len(m.features)
	xs := scratch(&xb, nf)
	if err := m.gather(x, xs); err != nil {
		return Prediction{}, err
	}
	// Decision function: X @ coef.T + intercept.
	scores := scratch(&sb, len(m.classes))
	for r := range m.rows {
		w := m.coef[r*nf : (r+1)*nf]
		var s float64
		for j, v := range xs {
			s += v * w[j]
		}
		scores[r] = s + m.intercept[r]
	}

	if m.binary {
		// sklearn: P(classes[1]) = expit(score), label = classes[score > 0].
		z := scores[0]
		p := expit(z)
		scores[0], scores[1] = 1-p, p
		label := 0
		if z > 0 {
			label = 1
		}
		return m.prediction(label, scores), nil
	}

	// sklearn's predict takes the argmax of the scores, not of the
	// probabilities; both agree except for rounding, so follow it.
	label := argmax(scores)
	if m.ovr {
		var sum float64
		for i, s := range scores {
			scores[i] = expit(s)
			sum += scores[i]
		}
		if sum == 0 {
			for i := range scores {
				scores[i] = 1
			}
			sum = float64(len(scores))
		}
		for i := range scores {
			scores[i] /= sum
		}
	} else {
		hi := scores[label]
		var sum float64
		for i, s := range scores {
			scores[i] = math.Exp(s - hi)
			sum += scores[i]
		}
		for i := range scores {
			scores[i] /= sum
		}
	}
	return m.prediction(label, scores), nil
}
