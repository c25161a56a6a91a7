package compare_test

import (
	"fmt"
	"log"
	"time"

	"github.com/rendezvous-ml/rendezvous/ops/compare"
)

func ExampleCompare() {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	score := func(model, result string, ms int64) compare.Score {
		return compare.Score{Model: model, Result: result, HasResult: true, ArrivedUS: ms * 1000, ComputeUS: 50}
	}
	var decisions []compare.Decision
	answers := [][2]string{{"setosa", "setosa"}, {"virginica", "virginica"}, {"versicolor", "virginica"}, {"setosa", "setosa"}}
	for i, a := range answers {
		decisions = append(decisions, compare.Decision{
			RequestID:  fmt.Sprint("r", i),
			ReceivedUS: at.Add(time.Duration(i) * time.Second).UnixMicro(),
			Reason:     "champion", Model: "dt", Result: a[0],
			Scores: []compare.Score{score("dt", a[0], 4+int64(i)), score("challenger", a[1], 9)},
		})
	}
	r, err := compare.Compare(decisions, nil, compare.Options{Champion: "dt", Challenger: "challenger"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("agreement %.2f (%d of %d)\n", r.Agreement(), r.Agree, r.Both)
	fmt.Println("labels", r.Confusion.Labels)
	for i, row := range r.Confusion.Counts {
		fmt.Println(r.Confusion.Labels[i], row)
	}
	dt, _ := r.Model("dt")
	fmt.Printf("dt latency p50 %.0f ms, max %.0f ms\n", dt.Latency.P50, dt.Latency.Max)
	// Output:
	// agreement 0.75 (3 of 4)
	// labels [setosa versicolor virginica]
	// setosa [2 0 0]
	// versicolor [0 0 1]
	// virginica [0 0 1]
	// dt latency p50 5 ms, max 7 ms
}
