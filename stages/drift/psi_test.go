package drift

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func normal(rng *rand.Rand, n int, mean, sd float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = mean + sd*rng.NormFloat64()
	}
	return out
}

func TestQuantileBins(t *testing.T) {
	seq := func(n int) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = float64(n - i) // unsorted on purpose
		}
		return s
	}
	nan, inf := math.NaN(), math.Inf(1)
	cases := []struct {
		name string
		ref  []float64
		n    int
		want []float64
	}{
		{"deciles of 1..10", seq(10), 10, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"quintiles of 1..10", seq(10), 5, []float64{2, 4, 6, 8}},
		{"quartiles of 1..100", seq(100), 4, []float64{25, 50, 75}},
		{"ties collapse", []float64{1, 1, 1, 1, 1, 1, 2, 3, 4, 5}, 5, []float64{1, 3}},
		{"constant: below, at, above", []float64{4, 4, 4}, 10, []float64{math.Nextafter(4, math.Inf(-1)), 4}},
		{"non-finite ignored", []float64{nan, 1, 2, inf, 3, 4}, 2, []float64{2}},
		{"empty", nil, 10, nil},
		{"n below 2 means 2", seq(4), 1, []float64{2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := QuantileBins(c.ref, c.n).Edges
			if !slices.Equal(got, c.want) {
				t.Errorf("edges %v, want %v", got, c.want)
			}
		})
	}
}

func TestBinsIndex(t *testing.T) {
	b := Bins{Edges: []float64{1, 2, 3}}
	for _, c := range []struct {
		v    float64
		want int
	}{{-100, 0}, {1, 0}, {1.5, 1}, {2, 1}, {3, 2}, {3.0001, 3}, {1e300, 3}} {
		if got := b.Index(c.v); got != c.want {
			t.Errorf("Index(%v) = %d, want %d", c.v, got, c.want)
		}
	}
	if got := b.Counts([]float64{0, 1, 2.5, 9, math.NaN()}); !slices.Equal(got, []int{2, 0, 1, 1}) {
		t.Errorf("Counts = %v, NaN must be skipped", got)
	}
}

func TestPSIValues(t *testing.T) {
	cases := []struct {
		name     string
		ref, cur []float64
		want     float64
	}{
		{"identical", []float64{0.25, 0.25, 0.5}, []float64{0.25, 0.25, 0.5}, 0},
		{"half to 90/10", []float64{0.5, 0.5}, []float64{0.9, 0.1}, 0.4*math.Log(1.8) + 0.4*math.Log(5)},
		{"empty bin floored at epsilon", []float64{0.5, 0.5}, []float64{1, 0}, (1-0.5)*math.Log(1/0.5) + (Epsilon-0.5)*math.Log(Epsilon/0.5)},
		{"length mismatch", []float64{1}, []float64{0.5, 0.5}, math.NaN()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := PSI(c.ref, c.cur)
			if math.IsNaN(c.want) {
				if !math.IsNaN(got) {
					t.Errorf("PSI = %v, want NaN", got)
				}
				return
			}
			if math.Abs(got-c.want) > 1e-12 {
				t.Errorf("PSI = %v, want %v", got, c.want)
			}
			if back := PSI(c.cur, c.ref); math.Abs(back-got) > 1e-12 {
				t.Errorf("PSI is not symmetric: %v one way, %v the other", got, back)
			}
		})
	}
}

// Samples of one distribution give a PSI near zero; a shift of the mean by
// one standard deviation gives far more than the threshold; a small shift
// stays under it.
func TestFeaturePSIDetectsShift(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ref := normal(rng, 5000, 10, 2)
	same := normal(rng, 5000, 10, 2)
	if psi := FeaturePSI(ref, ref, DefaultBins); psi != 0 {
		t.Errorf("a sample against itself: PSI %v, want exactly 0", psi)
	}
	cases := []struct {
		name   string
		cur    []float64
		lo, hi float64
	}{
		{"same distribution", same, 0, 0.02},
		{"shift 0.1 sd", normal(rng, 5000, 10.2, 2), 0, 0.1},
		{"shift 1 sd", normal(rng, 5000, 12, 2), 0.5, 5},
		{"spread doubled", normal(rng, 5000, 10, 4), Threshold, 5},
		{"everything above the reference", normal(rng, 5000, 100, 2), 5, 20},
	}
	for _, c := range cases {
		psi := FeaturePSI(ref, c.cur, DefaultBins)
		t.Logf("%-32s PSI %.4f", c.name, psi)
		if !(psi >= c.lo && psi <= c.hi) {
			t.Errorf("%s: PSI %v, want within [%v, %v]", c.name, psi, c.lo, c.hi)
		}
	}
}

func TestCategoricalPSI(t *testing.T) {
	mix := map[string]int{"setosa": 50, "versicolor": 50, "virginica": 50}
	if psi := CategoricalPSI(mix, map[string]int{"setosa": 5, "versicolor": 5, "virginica": 5}); math.Abs(psi) > 1e-12 {
		t.Errorf("same mix at another scale: PSI %v, want 0", psi)
	}
	tilted := CategoricalPSI(mix, map[string]int{"setosa": 10, "versicolor": 20, "virginica": 120})
	if tilted <= Threshold {
		t.Errorf("mix tilted to virginica: PSI %v, want above %v", tilted, Threshold)
	}
	novel := CategoricalPSI(mix, map[string]int{"setosa": 50, "versicolor": 50, "virginica": 20, "error": 30})
	if novel <= Threshold {
		t.Errorf("a fifth of the scores turned to errors: PSI %v, want above %v", novel, Threshold)
	}
	t.Logf("tilted %.3f, errors appearing %.3f", tilted, novel)
}
