package evaluator_test

import (
	"fmt"
	"log"
	"path/filepath"

	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
)

// A stateful model answers from the entity's history, so a runner that
// restarts must be warmed up on the inputs it missed. Observe replays
// history without scoring; the snapshot then matches the always-on model's.
func ExampleStateful() {
	load := func() evaluator.Stateful {
		m, err := evaluator.Load(filepath.Join("..", "..", "..", "models", "iris", "stateful.json"))
		if err != nil {
			log.Fatal(err)
		}
		return m.(evaluator.Stateful)
	}
	history := []map[string]float64{ // three virginica flowers from user "u1"
		{"sepalLength": 6.3, "sepalWidth": 3.3, "petalLength": 6.0, "petalWidth": 2.5},
		{"sepalLength": 7.1, "sepalWidth": 3.0, "petalLength": 5.9, "petalWidth": 2.1},
		{"sepalLength": 6.5, "sepalWidth": 3.0, "petalLength": 5.8, "petalWidth": 2.2},
	}
	next := map[string]float64{"sepalLength": 5.9, "sepalWidth": 3.2, "petalLength": 4.8, "petalWidth": 1.8}

	alwaysOn, restarted := load(), load()
	for _, x := range history {
		if _, err := alwaysOn.PredictKeyed("u1", x); err != nil {
			log.Fatal(err)
		}
	}
	cold, _ := load().PredictKeyed("u1", next) // a runner that forgot u1
	for _, x := range history {
		if err := restarted.Observe("u1", x); err != nil { // the warm-up
			log.Fatal(err)
		}
	}
	a, _ := alwaysOn.PredictKeyed("u1", next)
	b, _ := restarted.PredictKeyed("u1", next)
	fmt.Printf("no history: %s %.3f\n", cold.Label, cold.Probabilities["virginica"])
	fmt.Printf("always on:  %s %.3f\n", a.Label, a.Probabilities["virginica"])
	fmt.Printf("warmed up:  %s %.3f\n", b.Label, b.Probabilities["virginica"])
	sa, sb := alwaysOn.Snapshot(), restarted.Snapshot()
	fmt.Println("states equal:", sa.Equal(sb), "inputs seen:", sa.Observed())
	// Output:
	// no history: virginica 0.557
	// always on:  virginica 0.955
	// warmed up:  virginica 0.955
	// states equal: true inputs seen: 4
}
