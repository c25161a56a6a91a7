package policy

import (
	"testing"
	"time"
)

func TestPriorityDecide(t *testing.T) {
	ms := time.Millisecond
	p := Priority{SLA: 100 * ms, Order: []Model{{Name: "dt", Budget: 50 * ms}, {Name: "canary"}}}
	ok := func(name string) *Score { return &Score{Model: name, Result: name + "-result"} }
	failed := func(name string) *Score { return &Score{Model: name, Failed: true} }
	cases := []struct {
		name    string
		elapsed time.Duration
		scores  map[string]*Score
		decided bool
		reason  string
		winner  string
		wake    time.Duration
	}{
		{"nothing yet waits for the champion's budget", 1 * ms, nil, false, "", "", 50 * ms},
		{"champion answers", 3 * ms, map[string]*Score{"dt": ok("dt")}, true, ReasonChampion, "dt", 0},
		{"champion wins over an earlier canary", 4 * ms, map[string]*Score{"dt": ok("dt"), "canary": ok("canary")}, true, ReasonChampion, "dt", 0},
		{"canary early still waits for the champion", 2 * ms, map[string]*Score{"canary": ok("canary")}, false, "", "", 50 * ms},
		{"champion's budget out, canary answered", 50 * ms, map[string]*Score{"canary": ok("canary")}, true, ReasonFallback, "canary", 0},
		{"champion failed, canary answered at once", 2 * ms, map[string]*Score{"dt": failed("dt"), "canary": ok("canary")}, true, ReasonFallback, "canary", 0},
		{"champion failed, canary pending waits up to SLA", 2 * ms, map[string]*Score{"dt": failed("dt")}, false, "", "", 100 * ms},
		{"everything failed before SLA: wait for SLA", 5 * ms, map[string]*Score{"dt": failed("dt"), "canary": failed("canary")}, false, "", "", 100 * ms},
		{"SLA reached with nothing: default", 100 * ms, nil, true, ReasonDefault, "", 0},
		{"SLA reached, all failed: default", 120 * ms, map[string]*Score{"dt": failed("dt"), "canary": failed("canary")}, true, ReasonDefault, "", 0},
		{"late champion after its budget but before SLA still wins", 70 * ms, map[string]*Score{"dt": ok("dt")}, true, ReasonChampion, "dt", 0},
		{"exactly at the champion's budget moves on", 50 * ms, nil, false, "", "", 100 * ms},
		{"unknown model's score is ignored", 10 * ms, map[string]*Score{"other": ok("other")}, false, "", "", 50 * ms},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := p.Decide(c.elapsed, c.scores)
			if o.Decided != c.decided || o.Reason != c.reason {
				t.Fatalf("got decided=%v reason=%q, want %v %q", o.Decided, o.Reason, c.decided, c.reason)
			}
			w := ""
			if o.Winner != nil {
				w = o.Winner.Model
			}
			if w != c.winner {
				t.Fatalf("winner %q, want %q", w, c.winner)
			}
			if !o.Decided && o.WakeAt != c.wake {
				t.Fatalf("wake at %v, want %v", o.WakeAt, c.wake)
			}
		})
	}
}

func TestPriorityValidate(t *testing.T) {
	bad := []Priority{
		{SLA: 0, Order: []Model{{Name: "a"}}},
		{SLA: time.Second},
		{SLA: time.Second, Order: []Model{{Name: "a"}, {Name: "a"}}},
		{SLA: time.Second, Order: []Model{{Name: ""}}},
		{SLA: time.Second, Order: []Model{{Name: "a", Budget: -1}}},
	}
	for i, p := range bad {
		if p.Validate() == nil {
			t.Errorf("case %d: want an error for %+v", i, p)
		}
	}
	if err := (Priority{SLA: time.Second, Order: []Model{{Name: "a"}}}).Validate(); err != nil {
		t.Fatal(err)
	}
}
