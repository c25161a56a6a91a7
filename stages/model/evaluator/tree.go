package evaluator

import (
	"fmt"
	"math"
)

// treeDoc is one tree as exported from sklearn's tree_ attribute.
type treeDoc struct {
	ChildrenLeft  []int       `json:"children_left"`
	ChildrenRight []int       `json:"children_right"`
	Feature       []int       `json:"feature"`
	Threshold     []float64   `json:"threshold"`
	Value         [][]float64 `json:"value"`
}

// leafMarker is sklearn's TREE_LEAF: the child index of a leaf.
const leafMarker = -1

// node is one split; leaves have left == right == leafMarker.
type node struct {
	threshold float64
	left      int32
	right     int32
	feature   int32
}

// tree is a validated decision tree ready for evaluation.
type tree struct {
	nodes    []node
	nclasses int
	// proba holds, for node i, its class distribution in
	// proba[i*nclasses:(i+1)*nclasses]: the exported value normalized to sum
	// to one (see normalize). Only the leaves' rows are used.
	proba []float64
	// label holds, for node i, the argmax of its exported value row.
	label []int32
}

func newTree(d *treeDoc, nfeatures, nclasses int) (tree, error) {
	n := len(d.ChildrenLeft)
	if n == 0 {
		return tree{}, fmt.Errorf("tree has no nodes (\"children_left\" is empty)")
	}
	if n > math.MaxInt32 {
		return tree{}, fmt.Errorf("tree has %d nodes, more than supported", n)
	}
	for _, a := range []struct {
		name string
		len  int
	}{
		{"children_right", len(d.ChildrenRight)},
		{"feature", len(d.Feature)},
		{"threshold", len(d.Threshold)},
		{"value", len(d.Value)},
	} {
		if a.len != n {
			return tree{}, fmt.Errorf("%q has %d entries, \"children_left\" has %d", a.name, a.len, n)
		}
	}
	t := tree{
		nodes:    make([]node, n),
		nclasses: nclasses,
		proba:    make([]float64, n*nclasses),
		label:    make([]int32, n),
	}
	for i := range n {
		l, r := d.ChildrenLeft[i], d.ChildrenRight[i]
		row := d.Value[i]
		if len(row) != nclasses {
			return tree{}, fmt.Errorf("value[%d] has %d entries, want one per class (%d)", i, len(row), nclasses)
		}
		for c, v := range row {
			if !finite(v) || v < 0 {
				return tree{}, fmt.Errorf("value[%d][%d] = %v, want a finite non-negative number", i, c, v)
			}
		}
		copy(t.proba[i*nclasses:], row)
		normalize(t.proba[i*nclasses : (i+1)*nclasses])
		t.label[i] = int32(argmax(row))

		if l == leafMarker || r == leafMarker {
			if l != r {
				return tree{}, fmt.Errorf("node %d: children_left = %d, children_right = %d: a leaf needs both to be %d", i, l, r, leafMarker)
			}
			t.nodes[i] = node{left: leafMarker, right: leafMarker, feature: -1}
			continue
		}
		// sklearn numbers children after their parent; requiring it rules
		// out cycles, so evaluation always reaches a leaf.
		for _, c := range []struct {
			name  string
			child int
		}{{"children_left", l}, {"children_right", r}} {
			if c.child <= i || c.child >= n {
				return tree{}, fmt.Errorf("node %d: %s = %d out of range (%d, %d)", i, c.name, c.child, i, n)
			}
		}
		f := d.Feature[i]
		if f < 0 || f >= nfeatures {
			return tree{}, fmt.Errorf("node %d: feature = %d out of range [0, %d)", i, f, nfeatures)
		}
		th := d.Threshold[i]
		if !finite(th) {
			return tree{}, fmt.Errorf("node %d: threshold = %v, want a finite number", i, th)
		}
		t.nodes[i] = node{threshold: th, left: int32(l), right: int32(r), feature: int32(f)}
	}
	return t, nil
}

// normalize makes p a distribution the way scikit-learn's predict_proba
// does for the sklearn version that exported it: recent versions store
// per-class fractions in tree_.value and return them unchanged, older ones
// store (weighted) counts and divide by their sum. Rows that already sum to
// one are therefore left untouched, bit for bit; an all-zero row stays zero.
func normalize(p []float64) {
	var sum float64
	for _, v := range p {
		sum += v
	}
	if sum == 0 || math.Abs(sum-1) <= 1e-12 {
		return
	}
	for i := range p {
		p[i] /= sum
	}
}

// leaf returns the index of the leaf x falls in. x holds float32-rounded
// values, compared with float64 thresholds exactly as sklearn does.
func (t *tree) leaf(x []float64) int {
	i := 0
	for {
		nd := &t.nodes[i]
		if nd.left == leafMarker {
			return i
		}
		if x[nd.feature] <= nd.threshold {
			i = int(nd.left)
		} else {
			i = int(nd.right)
		}
	}
}

func (t *tree) leafProba(leaf int) []float64 {
	return t.proba[leaf*t.nclasses : (leaf+1)*t.nclasses]
}

// treeModel is kind "tree": sklearn's DecisionTreeClassifier.
type treeModel struct {
	base
	tree tree
}

func (m *treeModel) Predict(x map[string]float64) (Prediction, error) {
	var xb [stackN]float64
	xs := scratch(&xb, len(m.features))
	if err := m.gather(x, xs); err != nil {
		return Prediction{}, err
	}
	leaf := m.tree.leaf(xs)
	return m.prediction(int(m.tree.label[leaf]), m.tree.leafProba(leaf)), nil
}

// forestModel is kind "forest": sklearn's RandomForestClassifier.
type forestModel struct {
	base
	trees []tree
}

func (m *forestModel) Predict(x map[string]float64) (Prediction, error) {
	var xb, pb [stackN]float64
	xs := scratch(&xb, len(m.features))
	if err := m.gather(x, xs); err != nil {
		return Prediction{}, err
	}
	// Same order of operations as ForestClassifier.predict_proba: add the
	// trees' distributions one after the other, then divide once.
	acc := scratch(&pb, len(m.classes))
	clear(acc)
	for i := range m.trees {
		t := &m.trees[i]
		for c, v := range t.leafProba(t.leaf(xs)) {
			acc[c] += v
		}
	}
	n := float64(len(m.trees))
	for c := range acc {
		acc[c] /= n
	}
	return m.prediction(argmax(acc), acc), nil
}
