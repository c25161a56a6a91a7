package evaluator

// Kind "stateful": a model that remembers. It keeps running statistics of
// some features per entity (the request's routing key, or the value of a
// feature), turns them into extra features, and hands the lot to an inner
// model of any stateless kind. Its answer to an input therefore depends on
// every input of the same entity it scored before: a runner that restarts
// empty answers differently until it has been warmed up on history.
//
// # File format
//
//	{
//	  "format": "rdv-model/v1", "name": "iris-stateful", "version": "1",
//	  "kind": "stateful",
//	  "features": ["sepalLength", "sepalWidth", "petalLength", "petalWidth"],
//	  "classes": ["setosa", "versicolor", "virginica"],
//	  "entity": "key",                       // or "feature:<name>"
//	  "track": ["petalLength", "petalWidth"],
//	  "prior": {"weight": 2, "mean": {"petalLength": 3.758, "petalWidth": 1.199}},
//	  "model": { a tree, forest or linear document (format, name and
//	             version may be left out) whose features are drawn from
//	             the raw features and the derived ones below }
//	}
//
// Derived features, computed from the entity's history before the input:
//
//   - "<f>.mean": the entity's mean of tracked feature f, shrunk towards the
//     prior: (sum + weight*prior) / (count + weight);
//   - "<f>.delta": the input's f minus "<f>.mean";
//   - "entity.count": how many inputs of the entity were seen before.
//
// # How it answers
//
// PredictKeyed(key, x) first computes the derived features from the state,
// asks the inner model, and only then adds x to the entity's statistics: an
// answer never depends on the input itself through the state. Predict(x)
// is PredictKeyed("", x). Observe(key, x) updates the state without
// predicting, which is all a warm-up on history needs. An input the model
// refuses (a missing or non-finite feature) leaves the state untouched.
//
// # Determinism and replay
//
// The statistics are a count and a sum per tracked feature, the sum kept in
// fixed point (micro-units, int64), so the state after a set of inputs is
// exact and does not depend on the order they came in: a replay that reads
// the inputs' partitions in another interleaving rebuilds the very same
// state. Each answer depends on the order of the same entity's earlier
// inputs, as any history-dependent answer must. Hence the contract the
// tests check, and that a replay end-to-end test can rely on:
//
//	warm := Parse(file); for in := range history[:n] { warm.Observe(in) }
//	ref  := Parse(file); for in := range history[:n] { ref.PredictKeyed(in) }
//	// for every later input, in the same order:
//	warm.PredictKeyed(in) == ref.PredictKeyed(in)    // bit for bit
//	warm.Snapshot().Equal(ref.Snapshot())             // and Digest() equal
//
// Snapshot returns a deep copy of the state; State.Equal, State.Diff and
// State.Digest compare two snapshots (Digest is a SHA-256 of the canonical
// encoding, short enough to log or export from two processes and compare);
// Restore loads a snapshot, for example one saved as JSON.
//
// The model counts what it is fed: an input delivered twice (an
// at-least-once redelivery) is counted twice, so whoever replays must
// replay each input once. The state holds one entry per distinct entity and
// is never evicted, since any eviction rule would make the state depend on
// arrival order.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

const kindStateful = "stateful"

// Entity sources of a stateful model.
const (
	EntityKey           = "key"      // the input's routing key
	entityFeaturePrefix = "feature:" // the value of a feature, e.g. a store id
)

// Derived feature names.
const (
	suffixMean  = ".mean"
	suffixDelta = ".delta"
	countName   = "entity.count"
)

// fixedScale is the fixed-point unit of the sums: 1e-6 of a feature's unit.
// Values are limited to ±maxTracked so that a sum of millions of them stays
// far inside int64.
const (
	fixedScale = 1e6
	maxTracked = 1e6
)

// ErrStateMismatch: a snapshot given to Restore was taken from a model with
// other tracked features, or is inconsistent.
var ErrStateMismatch = errors.New("state does not fit the model")

// statefulDoc holds the fields of kind "stateful".
type statefulDoc struct {
	Entity string          `json:"entity"`
	Track  []string        `json:"track"`
	Prior  *priorDoc       `json:"prior"`
	Inner  json.RawMessage `json:"model"`
}

type priorDoc struct {
	Weight float64            `json:"weight"`
	Mean   map[string]float64 `json:"mean"`
}

// Keyed is a model whose answer depends on the request's routing key (the
// input's "key" field). A runner that knows the key calls PredictKeyed
// instead of Predict.
type Keyed interface {
	PredictKeyed(key string, x map[string]float64) (Prediction, error)
}

// Stateful is a model with state learnt from the inputs it has seen. See
// the comment at the top of stateful.go for the contract.
type Stateful interface {
	Model
	Keyed
	// Observe adds an input to the state without predicting.
	Observe(key string, x map[string]float64) error
	// Snapshot returns a deep copy of the state.
	Snapshot() State
	// Restore replaces the state with a snapshot of a model that tracks the
	// same features.
	Restore(State) error
}

// State is a snapshot of a stateful model's memory. It marshals to JSON
// as is (map keys sorted), so it can be saved and restored.
type State struct {
	Model   string   `json:"model"`
	Version string   `json:"version"`
	Track   []string `json:"track"`
	// Entities maps an entity to its statistics.
	Entities map[string]EntityState `json:"entities"`
}

// EntityState is one entity's statistics.
type EntityState struct {
	Count int64 `json:"count"`
	// Sums are the sums of the tracked features, in Track order, in
	// micro-units (fixed point): exact, whatever the order of addition.
	Sums []int64 `json:"sums"`
}

// Observed is how many inputs the state holds, over every entity.
func (s State) Observed() int64 {
	var n int64
	for _, e := range s.Entities {
		n += e.Count
	}
	return n
}

// Equal reports whether two snapshots hold the same statistics for the same
// tracked features (model name and version are not compared).
func (s State) Equal(o State) bool { return len(s.Diff(o)) == 0 }

// Diff lists the differences between two snapshots, one line each, sorted
// by entity: empty when they are equal.
func (s State) Diff(o State) []string {
	var out []string
	if !slices.Equal(s.Track, o.Track) {
		out = append(out, fmt.Sprintf("tracked features %v vs %v", s.Track, o.Track))
	}
	keys := map[string]bool{}
	for k := range s.Entities {
		keys[k] = true
	}
	for k := range o.Entities {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		a, okA := s.Entities[k]
		b, okB := o.Entities[k]
		switch {
		case !okA:
			out = append(out, fmt.Sprintf("entity %q: missing vs count %d", k, b.Count))
		case !okB:
			out = append(out, fmt.Sprintf("entity %q: count %d vs missing", k, a.Count))
		case a.Count != b.Count || !slices.Equal(a.Sums, b.Sums):
			out = append(out, fmt.Sprintf("entity %q: count %d sums %v vs count %d sums %v", k, a.Count, a.Sums, b.Count, b.Sums))
		}
	}
	return out
}

// Digest is a SHA-256 (hex) of the snapshot's statistics in a canonical
// order: two processes that saw the same inputs report the same digest.
func (s State) Digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "track=%s\n", strings.Join(s.Track, ","))
	keys := make([]string, 0, len(s.Entities))
	for k := range s.Entities {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e := s.Entities[k]
		fmt.Fprintf(h, "%s\x00%d", strconv.Quote(k), e.Count)
		for _, v := range e.Sums {
			fmt.Fprintf(h, " %d", v)
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// statefulModel is kind "stateful".
type statefulModel struct {
	base
	inner Model
	// entityFeature is the feature naming the entity; empty: the key.
	entityFeature string
	track         []string
	trackIdx      map[string]int
	priorWeight   float64
	priorMean     []float64 // in track order
	// derived lists the inner model's features that come from the state.
	derived []derivedFeature

	mu       sync.Mutex
	entities map[string]*EntityState
}

type derivedFeature struct {
	name  string
	kind  string // suffixMean, suffixDelta or countName
	track int    // index in track, for mean and delta
}

func newStateful(b base, doc *document) (Model, error) {
	sd := &doc.statefulDoc
	m := &statefulModel{base: b, entities: map[string]*EntityState{}, trackIdx: map[string]int{}}
	raw := map[string]bool{}
	for _, f := range b.features {
		raw[f] = true
	}
	switch {
	case sd.Entity == EntityKey:
	case strings.HasPrefix(sd.Entity, entityFeaturePrefix):
		f := strings.TrimPrefix(sd.Entity, entityFeaturePrefix)
		if !raw[f] {
			return nil, fmt.Errorf("%w: stateful: entity %q names a feature not in \"features\"", ErrMalformed, sd.Entity)
		}
		m.entityFeature = f
	default:
		return nil, fmt.Errorf("%w: stateful: entity %q is not %q or \"feature:<name>\"", ErrMalformed, sd.Entity, EntityKey)
	}
	if err := checkNames("track", sd.Track); err != nil {
		return nil, fmt.Errorf("stateful: %w", err)
	}
	if sd.Prior == nil {
		return nil, fmt.Errorf("%w: stateful: \"prior\" is missing", ErrMalformed)
	}
	if w := sd.Prior.Weight; !finite(w) || w < 0 {
		return nil, fmt.Errorf("%w: stateful: prior weight %v must be a finite number >= 0", ErrMalformed, w)
	}
	m.priorWeight = sd.Prior.Weight
	for i, f := range sd.Track {
		if !raw[f] {
			return nil, fmt.Errorf("%w: stateful: track[%d] %q is not in \"features\"", ErrMalformed, i, f)
		}
		mean, ok := sd.Prior.Mean[f]
		if !ok || !finite(mean) {
			return nil, fmt.Errorf("%w: stateful: prior mean of %q is missing or not finite", ErrMalformed, f)
		}
		m.track = append(m.track, f)
		m.trackIdx[f] = i
		m.priorMean = append(m.priorMean, mean)
	}
	if len(sd.Inner) == 0 {
		return nil, fmt.Errorf("%w: stateful: \"model\" (the inner model) is missing", ErrMalformed)
	}
	var inner document
	if err := json.Unmarshal(sd.Inner, &inner); err != nil {
		return nil, fmt.Errorf("%w: stateful: inner model: %w", ErrMalformed, err)
	}
	if inner.Kind == kindStateful {
		return nil, fmt.Errorf("%w: stateful: the inner model must be a tree, forest or linear model", ErrMalformed)
	}
	if inner.Format == "" {
		inner.Format = Format
	}
	if inner.Name == "" {
		inner.Name = b.name + "/inner"
	}
	if inner.Version == "" {
		inner.Version = b.version
	}
	if !slices.Equal(inner.Classes, b.classes) {
		return nil, fmt.Errorf("%w: stateful: inner model classes %v differ from %v", ErrMalformed, inner.Classes, b.classes)
	}
	im, err := build(&inner)
	if err != nil {
		return nil, fmt.Errorf("stateful: inner model: %w", err)
	}
	m.inner = im
	for _, f := range im.Features() {
		if raw[f] {
			continue
		}
		d, ok := m.derivedFeature(f)
		if !ok {
			return nil, fmt.Errorf("%w: stateful: inner feature %q is neither a feature nor a derived one (<tracked>.mean, <tracked>.delta, %s)", ErrMalformed, f, countName)
		}
		m.derived = append(m.derived, d)
	}
	return m, nil
}

func (m *statefulModel) derivedFeature(name string) (derivedFeature, bool) {
	if name == countName {
		return derivedFeature{name: name, kind: countName}, true
	}
	for _, suffix := range []string{suffixMean, suffixDelta} {
		if f, ok := strings.CutSuffix(name, suffix); ok {
			if i, ok := m.trackIdx[f]; ok {
				return derivedFeature{name: name, kind: suffix, track: i}, true
			}
		}
	}
	return derivedFeature{}, false
}

// entity names the entity of an input, and checks the tracked features.
func (m *statefulModel) entity(key string, x map[string]float64) (string, []int64, error) {
	fixed := make([]int64, len(m.track))
	for i, f := range m.track {
		v, ok := x[f]
		if !ok {
			return "", nil, m.predictErr(fmt.Errorf("%w %q", ErrMissingFeature, f))
		}
		if !finite(v) || math.Abs(v) > maxTracked {
			return "", nil, m.predictErr(fmt.Errorf("%w: tracked feature %q = %v is not a finite number within ±%g", ErrInvalidInput, f, v, float64(maxTracked)))
		}
		fixed[i] = int64(math.Round(v * fixedScale))
	}
	if m.entityFeature == "" {
		return key, fixed, nil
	}
	v, ok := x[m.entityFeature]
	if !ok {
		return "", nil, m.predictErr(fmt.Errorf("%w %q (the entity)", ErrMissingFeature, m.entityFeature))
	}
	if !finite(v) {
		return "", nil, m.predictErr(fmt.Errorf("%w: entity feature %q is %v", ErrInvalidInput, m.entityFeature, v))
	}
	return strconv.FormatFloat(v, 'g', -1, 64), fixed, nil
}

// add puts one input into an entity's statistics; the caller holds mu.
func (m *statefulModel) add(entity string, fixed []int64) error {
	e := m.entities[entity]
	if e == nil {
		e = &EntityState{Sums: make([]int64, len(m.track))}
		m.entities[entity] = e
	}
	for i, v := range fixed {
		s := e.Sums[i] + v
		if (v > 0 && s < e.Sums[i]) || (v < 0 && s > e.Sums[i]) {
			return m.predictErr(fmt.Errorf("%w: the sum of %q for entity %q overflows", ErrInvalidInput, m.track[i], entity))
		}
		fixed[i] = s
	}
	copy(e.Sums, fixed)
	e.Count++
	return nil
}

// mean is the shrunk mean of tracked feature i; the caller holds mu.
func (m *statefulModel) mean(e *EntityState, i int) float64 {
	var count, sum float64
	if e != nil {
		count, sum = float64(e.Count), float64(e.Sums[i])/fixedScale
	}
	den := count + m.priorWeight
	if den == 0 {
		return m.priorMean[i]
	}
	return (sum + m.priorWeight*m.priorMean[i]) / den
}

func (m *statefulModel) Predict(x map[string]float64) (Prediction, error) {
	return m.PredictKeyed("", x)
}

func (m *statefulModel) PredictKeyed(key string, x map[string]float64) (Prediction, error) {
	entity, fixed, err := m.entity(key, x)
	if err != nil {
		return Prediction{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// The inner model's errors name it ("<name>/inner") already.
	p, err := m.inner.Predict(m.innerInput(m.entities[entity], x))
	if err != nil {
		return Prediction{}, err
	}
	if err := m.add(entity, fixed); err != nil {
		return Prediction{}, err
	}
	return p, nil
}

func (m *statefulModel) Observe(key string, x map[string]float64) error {
	entity, fixed, err := m.entity(key, x)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// An input the inner model would refuse must not count here either,
	// or a warm-up would build another state than scoring does.
	if g, ok := m.inner.(interface {
		gather(map[string]float64, []float64) error
	}); ok {
		if err := g.gather(m.innerInput(m.entities[entity], x), make([]float64, len(m.inner.Features()))); err != nil {
			return err
		}
	}
	return m.add(entity, fixed)
}

// innerInput is x plus the derived features of entity state e (nil for an
// entity not seen yet); the caller holds mu.
func (m *statefulModel) innerInput(e *EntityState, x map[string]float64) map[string]float64 {
	in := make(map[string]float64, len(x)+len(m.derived))
	for k, v := range x {
		in[k] = v
	}
	for _, d := range m.derived {
		switch d.kind {
		case countName:
			in[d.name] = 0
			if e != nil {
				in[d.name] = float64(e.Count)
			}
		case suffixMean:
			in[d.name] = m.mean(e, d.track)
		case suffixDelta:
			in[d.name] = x[m.track[d.track]] - m.mean(e, d.track)
		}
	}
	return in
}

func (m *statefulModel) Snapshot() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := State{Model: m.name, Version: m.version, Track: slices.Clone(m.track), Entities: make(map[string]EntityState, len(m.entities))}
	for k, e := range m.entities {
		s.Entities[k] = EntityState{Count: e.Count, Sums: slices.Clone(e.Sums)}
	}
	return s
}

func (m *statefulModel) Restore(s State) error {
	if !slices.Equal(s.Track, m.track) {
		return fmt.Errorf("evaluator: model %q: restore: %w: snapshot tracks %v, the model %v", m.name, ErrStateMismatch, s.Track, m.track)
	}
	entities := make(map[string]*EntityState, len(s.Entities))
	for k, e := range s.Entities {
		if len(e.Sums) != len(m.track) || e.Count < 0 {
			return fmt.Errorf("evaluator: model %q: restore: %w: entity %q has count %d and %d sums, want %d", m.name, ErrStateMismatch, k, e.Count, len(e.Sums), len(m.track))
		}
		entities[k] = &EntityState{Count: e.Count, Sums: slices.Clone(e.Sums)}
	}
	m.mu.Lock()
	m.entities = entities
	m.mu.Unlock()
	return nil
}
