// Package evaluator loads the JSON models exported by models/train_iris.py
// (format "rdv-model/v1", see models/README.md) and evaluates them in Go
// with the same numerics as scikit-learn:
//
//   - trees and forests cast every input to float32 before the
//     x <= threshold comparison, as sklearn does (thresholds stay float64);
//   - a forest's probabilities are the per-tree leaf distributions summed
//     in tree order and then divided by the number of trees;
//   - linear models compute the decision function in float64 and apply a
//     softmax (multinomial) or a normalized one-vs-rest sigmoid;
//   - ties in an argmax go to the first class, like numpy.
//
// A Model is safe for concurrent use. Trees, forests and linear models are
// immutable once parsed; kind "stateful" (stateful.go) learns per-entity
// statistics from every input it scores.
package evaluator

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
)

// Format is the value of the "format" field this package understands.
const Format = "rdv-model/v1"

// Sentinel errors; every error returned by this package wraps one of them
// (or an error from the os / encoding/json packages) with context.
var (
	// ErrMissingFeature: an input lacks a feature the model needs. The
	// error message names the feature.
	ErrMissingFeature = errors.New("missing feature")
	// ErrInvalidInput: an input value is NaN, infinite, or (for trees and
	// forests) too large to be represented as float32.
	ErrInvalidInput = errors.New("invalid input")
	// ErrUnsupportedFormat: the "format" field is not Format.
	ErrUnsupportedFormat = errors.New("unsupported model format")
	// ErrUnknownKind: the "kind" field is not tree, forest, linear or
	// stateful.
	ErrUnknownKind = errors.New("unknown model kind")
	// ErrMalformed: the model document is not valid JSON or its fields are
	// inconsistent (array lengths, indices, non-finite numbers, ...).
	ErrMalformed = errors.New("malformed model")
)

// Prediction is the result of one evaluation.
type Prediction struct {
	// Label is the predicted class, as scikit-learn's predict returns it.
	Label string
	// Probabilities maps every class of the model to its probability, as
	// scikit-learn's predict_proba returns it. The map is new for every
	// call and belongs to the caller.
	Probabilities map[string]float64
}

// Model is a loaded model. Implementations are safe for concurrent use.
type Model interface {
	Name() string
	Version() string
	// Features returns the input feature names in model order (a copy).
	Features() []string
	// Predict evaluates the model on one input record. Features not used by
	// the model are ignored.
	Predict(x map[string]float64) (Prediction, error)
}

// Load reads and parses a JSON model file.
func Load(path string) (Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("evaluator: load model: %w", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("evaluator: load model %s: %w", path, err)
	}
	return m, nil
}

// document is the on-disk JSON layout; the fields of every kind are
// optional at this level and checked by the kind's builder.
type document struct {
	Format   string   `json:"format"`
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Kind     string   `json:"kind"`
	Features []string `json:"features"`
	Classes  []string `json:"classes"`

	treeDoc // kind "tree": the tree's arrays at top level

	Trees []treeDoc `json:"trees"` // kind "forest"

	Coef      [][]float64 `json:"coef"` // kind "linear"
	Intercept []float64   `json:"intercept"`
	Link      string      `json:"link"`

	statefulDoc // kind "stateful", see stateful.go
}

// Parse parses a JSON model document.
func Parse(data []byte) (Model, error) {
	var doc document
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("evaluator: parse model: %w: %w", ErrMalformed, err)
	}
	m, err := build(&doc)
	if err != nil {
		if doc.Name != "" {
			return nil, fmt.Errorf("evaluator: parse model %q: %w", doc.Name, err)
		}
		return nil, fmt.Errorf("evaluator: parse model: %w", err)
	}
	return m, nil
}

func build(doc *document) (Model, error) {
	if doc.Format != Format {
		return nil, fmt.Errorf("%w %q (want %q)", ErrUnsupportedFormat, doc.Format, Format)
	}
	b, err := newBase(doc)
	if err != nil {
		return nil, err
	}
	switch doc.Kind {
	case "tree":
		t, err := newTree(&doc.treeDoc, len(b.features), len(b.classes))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return &treeModel{base: b, tree: t}, nil
	case "forest":
		if len(doc.Trees) == 0 {
			return nil, fmt.Errorf("%w: forest: \"trees\" is empty", ErrMalformed)
		}
		f := &forestModel{base: b, trees: make([]tree, len(doc.Trees))}
		for i := range doc.Trees {
			t, err := newTree(&doc.Trees[i], len(b.features), len(b.classes))
			if err != nil {
				return nil, fmt.Errorf("%w: forest: trees[%d]: %w", ErrMalformed, i, err)
			}
			f.trees[i] = t
		}
		return f, nil
	case "linear":
		l, err := newLinear(b, doc)
		if err != nil {
			return nil, fmt.Errorf("%w: linear: %w", ErrMalformed, err)
		}
		return l, nil
	case kindStateful:
		return newStateful(b, doc)
	default:
		return nil, fmt.Errorf("%w %q (want tree, forest, linear or stateful)", ErrUnknownKind, doc.Kind)
	}
}

// base holds what every kind shares.
type base struct {
	name     string
	version  string
	features []string
	classes  []string
	// float32Input: round inputs to float32 (trees and forests).
	float32Input bool
}

func newBase(doc *document) (base, error) {
	if doc.Name == "" {
		return base{}, fmt.Errorf("%w: \"name\" is empty", ErrMalformed)
	}
	if doc.Version == "" {
		return base{}, fmt.Errorf("%w: \"version\" is empty", ErrMalformed)
	}
	if err := checkNames("features", doc.Features); err != nil {
		return base{}, err
	}
	if err := checkNames("classes", doc.Classes); err != nil {
		return base{}, err
	}
	return base{
		name:         doc.Name,
		version:      doc.Version,
		features:     slices.Clone(doc.Features),
		classes:      slices.Clone(doc.Classes),
		float32Input: doc.Kind == "tree" || doc.Kind == "forest",
	}, nil
}

func checkNames(field string, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: %q is empty", ErrMalformed, field)
	}
	seen := make(map[string]int, len(names))
	for i, n := range names {
		if n == "" {
			return fmt.Errorf("%w: %s[%d] is an empty string", ErrMalformed, field, i)
		}
		if j, dup := seen[n]; dup {
			return fmt.Errorf("%w: %s[%d] %q duplicates %s[%d]", ErrMalformed, field, i, n, field, j)
		}
		seen[n] = i
	}
	return nil
}

func (b *base) Name() string       { return b.name }
func (b *base) Version() string    { return b.version }
func (b *base) Features() []string { return slices.Clone(b.features) }

// stackN bounds the feature and class counts for which Predict keeps its
// scratch buffers on the stack; larger models fall back to the heap.
const stackN = 16

// gather copies the model's features from x into dst (len(dst) must equal
// len(b.features)), validating and, for trees, rounding to float32.
func (b *base) gather(x map[string]float64, dst []float64) error {
	for i, f := range b.features {
		v, ok := x[f]
		if !ok {
			return b.predictErr(fmt.Errorf("%w %q", ErrMissingFeature, f))
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return b.predictErr(fmt.Errorf("%w: feature %q is %v", ErrInvalidInput, f, v))
		}
		if b.float32Input {
			r := float64(float32(v))
			if math.IsInf(r, 0) {
				return b.predictErr(fmt.Errorf("%w: feature %q = %v is too large for float32", ErrInvalidInput, f, v))
			}
			v = r
		}
		dst[i] = v
	}
	return nil
}

func (b *base) predictErr(err error) error {
	return fmt.Errorf("evaluator: model %q version %s: predict: %w", b.name, b.version, err)
}

// prediction builds the caller-owned result from probabilities in class
// order; label is the index of the predicted class.
func (b *base) prediction(label int, proba []float64) Prediction {
	p := make(map[string]float64, len(b.classes))
	for i, c := range b.classes {
		p[c] = proba[i]
	}
	return Prediction{Label: b.classes[label], Probabilities: p}
}

// argmax returns the index of the first maximum, like numpy.argmax (inputs
// are never NaN here).
func argmax(v []float64) int {
	best := 0
	for i := 1; i < len(v); i++ {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

// scratch returns a slice of length n backed by buf when it fits.
func scratch(buf *[stackN]float64, n int) []float64 {
	if n <= stackN {
		return buf[:n]
	}
	return make([]float64, n)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
