package drift

import (
	"math"
	"slices"
	"sort"
)

// Threshold is the population stability index above which a distribution
// is taken to have drifted. By the usual reading, under 0.1 is stable, 0.1
// to 0.25 a moderate shift, above 0.25 a shift worth acting on; the alert
// rules use this value.
const Threshold = 0.25

// Epsilon is the smallest proportion a bin is given before the logarithm:
// a bin empty on one side would otherwise make the index infinite. With
// it, one bin that goes from 10% to empty adds about 0.69.
const Epsilon = 1e-4

// DefaultBins is how many bins a feature is cut into.
const DefaultBins = 10

// Bins are fixed bins cut at a reference sample's quantiles. Bin 0 holds
// values <= Edges[0], bin i values in (Edges[i-1], Edges[i]], and the last
// bin values > Edges[len(Edges)-1]: there are len(Edges)+1 bins, and every
// number, however far outside the reference, falls into one.
type Bins struct {
	Edges []float64 `json:"edges"`
}

// QuantileBins cuts n bins at the reference's quantiles 1/n ... (n-1)/n.
// Tied quantiles collapse, so a feature with few distinct values gets fewer
// bins. A constant reference gets three: below, at and above its value.
// Non-finite values are ignored.
func QuantileBins(ref []float64, n int) Bins {
	s := make([]float64, 0, len(ref))
	for _, v := range ref {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			s = append(s, v)
		}
	}
	if len(s) == 0 {
		return Bins{}
	}
	if n < 2 {
		n = 2
	}
	sort.Float64s(s)
	var edges []float64
	for i := 1; i < n; i++ {
		// The lower empirical quantile: the value at rank ceil(i*len/n).
		idx := (i*len(s)+n-1)/n - 1
		e := s[max(idx, 0)]
		if len(edges) == 0 || e > edges[len(edges)-1] {
			edges = append(edges, e)
		}
	}
	if s[0] == s[len(s)-1] {
		edges = []float64{math.Nextafter(s[0], math.Inf(-1)), s[0]}
	}
	return Bins{Edges: edges}
}

// Len is the number of bins.
func (b Bins) Len() int { return len(b.Edges) + 1 }

// Index is the bin of v.
func (b Bins) Index(v float64) int { return sort.SearchFloat64s(b.Edges, v) }

// Counts counts values per bin, skipping NaN (a missing value).
func (b Bins) Counts(values []float64) []int {
	c := make([]int, b.Len())
	for _, v := range values {
		if !math.IsNaN(v) {
			c[b.Index(v)]++
		}
	}
	return c
}

// Proportions turns counts into proportions that sum to one (all zero for
// no counts).
func Proportions(counts []int) []float64 {
	total := 0
	for _, c := range counts {
		total += c
	}
	p := make([]float64, len(counts))
	if total == 0 {
		return p
	}
	for i, c := range counts {
		p[i] = float64(c) / float64(total)
	}
	return p
}

// PSI is the population stability index of the current proportions
// against the reference ones, over the same bins:
// sum over bins of (cur - ref) * ln(cur / ref), each proportion raised to
// at least Epsilon. It is 0 for identical distributions, symmetric, and
// grows with the shift. Mismatched lengths give NaN.
func PSI(ref, cur []float64) float64 {
	if len(ref) != len(cur) {
		return math.NaN()
	}
	var psi float64
	for i := range ref {
		r, c := max(ref[i], Epsilon), max(cur[i], Epsilon)
		psi += (c - r) * math.Log(c/r)
	}
	return psi
}

// FeaturePSI is the PSI of a numeric feature: n bins cut at the reference's
// quantiles, the current sample counted into the same bins.
func FeaturePSI(ref, cur []float64, n int) float64 {
	b := QuantileBins(ref, n)
	return PSI(Proportions(b.Counts(ref)), Proportions(b.Counts(cur)))
}

// CategoricalPSI is the PSI of a categorical variable (a model's predicted
// class), with one bin per category seen on either side.
func CategoricalPSI(ref, cur map[string]int) float64 {
	cats := make([]string, 0, len(ref)+len(cur))
	for c := range ref {
		cats = append(cats, c)
	}
	for c := range cur {
		if _, ok := ref[c]; !ok {
			cats = append(cats, c)
		}
	}
	slices.Sort(cats)
	rc, cc := make([]int, len(cats)), make([]int, len(cats))
	for i, c := range cats {
		rc[i], cc[i] = ref[c], cur[c]
	}
	return PSI(Proportions(rc), Proportions(cc))
}
