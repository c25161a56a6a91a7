package evaluator_test

import (
	"fmt"
	"log"
	"path/filepath"

	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
)

func ExampleLoad() {
	m, err := evaluator.Load(filepath.Join("..", "..", "..", "models", "iris", "dt.json"))
	if err != nil {
		log.Fatal(err)
	}
	p, err := m.Predict(map[string]float64{
		"sepalLength": 6.0, "sepalWidth": 2.7, "petalLength": 5.1, "petalWidth": 1.6,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Name(), "version", m.Version(), "predicts", p.Label)
	for _, class := range []string{"setosa", "versicolor", "virginica"} {
		fmt.Printf("%-10s %.3f\n", class, p.Probabilities[class])
	}
	// Output:
	// iris-dt version 1 predicts versicolor
	// setosa     0.000
	// versicolor 0.667
	// virginica  0.333
}
