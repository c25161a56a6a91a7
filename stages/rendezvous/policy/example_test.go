package policy_test

import (
	"fmt"
	"time"

	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

func ExampleEngine() {
	cfg, err := policy.Parse([]byte(`{
	  "objective": "iris", "sla": "100ms",
	  "models": [
	    {"name": "dt", "version": "1", "role": "champion", "budget": "50ms"},
	    {"name": "canary", "version": "1", "role": "canary"},
	    {"name": "dt-acme", "version": "1", "role": "champion", "tenant": "acme", "budget": "30ms"},
	    {"name": "challenger", "version": "1", "role": "shadow", "sample": {"percent": 100, "by": "key-hash"}}
	  ]
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	e, _ := policy.New(cfg, nil)
	req := policy.Request{ID: "r1", Key: "someone"}
	ms := time.Millisecond

	// The canary answers first: the engine waits for the champion's budget.
	s := map[string]*policy.Score{"canary@1": {Model: "canary", Version: "1", Result: "versicolor"}}
	fmt.Println(e.Decide(req, 3*ms, s))
	// The champion never comes: at its budget the canary answers.
	fmt.Println(e.Decide(req, 50*ms, s))
	// acme has its own model; it failed, so the shared chain answers.
	acme := policy.Request{ID: "r2", Key: "acme"}
	s = map[string]*policy.Score{
		"dt-acme@1": {Model: "dt-acme", Version: "1", Failed: true},
		"dt@1":      {Model: "dt", Version: "1", Result: "setosa"},
	}
	fmt.Println(e.Decide(acme, 5*ms, s))
	// Nothing by the SLA: the default.
	fmt.Println(e.Decide(req, 100*ms, nil))
	// The scores to wait for before the decision is logged.
	fmt.Println(e.Expected(acme))
	// Output:
	// undecided policy=priority wake_at=50ms
	// policy=priority reason=fallback winner=canary@1 -> versicolor
	// policy=tenant reason=fallback winner=dt@1 -> setosa
	// policy=priority reason=default winner=default
	// [dt@1 canary@1 dt-acme@1 challenger@1]
}
