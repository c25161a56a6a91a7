package policy

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

func okv(name, version, result string) *Score {
	return &Score{Model: name, Version: version, Result: result}
}

func failv(name, version string) *Score { return &Score{Model: name, Version: version, Failed: true} }

// scores keys each score by Key(model, version), as the stage should.
func scores(ss ...*Score) map[string]*Score {
	m := map[string]*Score{}
	for _, s := range ss {
		m[Key(s.Model, s.Version)] = s
	}
	return m
}

func mustEngine(t testing.TB, doc string) *Engine {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type dcase struct {
	name    string
	req     Request
	elapsed time.Duration
	scores  map[string]*Score
	decided bool
	policy  string
	reason  string
	winner  string // Key of the winner, "" for the default
	result  string // checked when not empty
	arm     string
	wake    time.Duration
}

func run(t *testing.T, e *Engine, cases []dcase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := e.Decide(c.req, c.elapsed, c.scores)
			if o.Decided != c.decided || o.Reason != c.reason || o.Policy != c.policy || o.Arm != c.arm {
				t.Fatalf("got %v (arm %q), want decided=%v policy=%s reason=%s arm=%q", o, o.Arm, c.decided, c.policy, c.reason, c.arm)
			}
			w := ""
			if o.Winner != nil {
				w = Key(o.Winner.Model, o.Winner.Version)
				if c.result != "" && o.Winner.Result != c.result {
					t.Fatalf("result %q, want %q", o.Winner.Result, c.result)
				}
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

const priorityDoc = `{
  "objective": "iris", "sla": "100ms",
  "models": [
    {"name": "canary", "version": "1", "role": "canary", "priority": 2},
    {"name": "dt", "version": "1", "role": "champion", "priority": 1, "budget": "50ms"},
    {"name": "nn", "version": "3", "role": "canary", "priority": 2, "budget": "80ms"},
    {"name": "challenger", "version": "1", "role": "challenger"},
    {"name": "rf", "version": "1", "role": "shadow"}
  ]
}`

func TestEnginePriority(t *testing.T) {
	e := mustEngine(t, priorityDoc)
	if got := strings.Join(e.Chain(Request{}), ","); got != "dt@1,canary@1,nn@3" {
		t.Fatalf("chain %s: priority, then document order for ties", got)
	}
	dt, canary, nn := okv("dt", "1", "setosa"), okv("canary", "1", "versicolor"), okv("nn", "3", "virginica")
	P := KindPriority
	run(t, e, []dcase{
		{name: "nothing yet: wait for the champion's budget", elapsed: 0, wake: 50 * ms, policy: P},
		{name: "champion answers", elapsed: 3 * ms, scores: scores(dt), decided: true, policy: P, reason: ReasonChampion, winner: "dt@1"},
		{name: "champion wins over earlier canaries", elapsed: 4 * ms, scores: scores(canary, nn, dt), decided: true, policy: P, reason: ReasonChampion, winner: "dt@1"},
		{name: "canary early still waits for the champion", elapsed: 2 * ms, scores: scores(canary), wake: 50 * ms, policy: P},
		{name: "one ns before the budget still waits", elapsed: 50*ms - 1, scores: scores(canary), wake: 50 * ms, policy: P},
		{name: "exactly at the champion's budget: canary answers", elapsed: 50 * ms, scores: scores(canary), decided: true, policy: P, reason: ReasonFallback, winner: "canary@1"},
		{name: "tie in priority: document order, canary before nn", elapsed: 60 * ms, scores: scores(nn, canary), decided: true, policy: P, reason: ReasonFallback, winner: "canary@1"},
		{name: "champion failed: canary at once", elapsed: 1 * ms, scores: scores(failv("dt", "1"), canary), decided: true, policy: P, reason: ReasonFallback, winner: "canary@1"},
		{name: "champion and canary failed: nn pending, wait for its budget", elapsed: 1 * ms, scores: scores(failv("dt", "1"), failv("canary", "1")), wake: 80 * ms, policy: P},
		{name: "exactly at nn's budget, all else failed: wait for the SLA", elapsed: 80 * ms, scores: scores(failv("dt", "1"), failv("canary", "1")), wake: 100 * ms, policy: P},
		{name: "late champion after its budget, before the SLA, still wins", elapsed: 99 * ms, scores: scores(dt), decided: true, policy: P, reason: ReasonChampion, winner: "dt@1"},
		{name: "exactly at the SLA with nothing: default", elapsed: 100 * ms, decided: true, policy: P, reason: ReasonDefault},
		{name: "after the SLA, all failed: default", elapsed: 120 * ms, scores: scores(failv("dt", "1"), failv("canary", "1"), failv("nn", "3")), decided: true, policy: P, reason: ReasonDefault},
		{name: "challengers and shadows never answer", elapsed: 100 * ms, scores: scores(okv("challenger", "1", "x"), okv("rf", "1", "y")), decided: true, policy: P, reason: ReasonDefault},
		{name: "a score of an unknown version is ignored", elapsed: 10 * ms, scores: scores(okv("dt", "2", "x")), wake: 50 * ms, policy: P},
		{name: "a score keyed by the bare name counts when its version matches", elapsed: 10 * ms, scores: map[string]*Score{"dt": dt}, decided: true, policy: P, reason: ReasonChampion, winner: "dt@1"},
		{name: "a score keyed by the bare name with another version does not", elapsed: 10 * ms, scores: map[string]*Score{"dt": okv("dt", "9", "x")}, wake: 50 * ms, policy: P},
		{name: "per-request SLA override", req: Request{SLA: 40 * ms}, elapsed: 40 * ms, decided: true, policy: P, reason: ReasonDefault},
		{name: "per-request SLA clamps the budgets", req: Request{SLA: 40 * ms}, elapsed: 0, wake: 40 * ms, policy: P},
	})
}

// The engine's priority policy agrees with Priority.Decide everywhere.
func TestEnginePriorityMatchesPriority(t *testing.T) {
	e := mustEngine(t, `{"sla":"100ms","models":[
		{"name":"dt","role":"champion","budget":"50ms"},{"name":"canary","role":"canary"}]}`)
	p := Priority{SLA: 100 * ms, Order: []Model{{Name: "dt", Budget: 50 * ms}, {Name: "canary"}}}
	states := []func(string) *Score{
		func(string) *Score { return nil },
		func(n string) *Score { return &Score{Model: n, Result: n} },
		func(n string) *Score { return &Score{Model: n, Failed: true} },
	}
	for _, el := range []time.Duration{0, 49 * ms, 50 * ms, 51 * ms, 99 * ms, 100 * ms, 101 * ms} {
		for _, a := range states {
			for _, b := range states {
				m := map[string]*Score{}
				if s := a("dt"); s != nil {
					m["dt"] = s
				}
				if s := b("canary"); s != nil {
					m["canary"] = s
				}
				want, got := p.Decide(el, m), e.Decide(Request{}, el, m)
				got.Policy = ""
				if fmt.Sprint(want) != fmt.Sprint(got) || want.WakeAt != got.WakeAt {
					t.Errorf("elapsed %v scores %v: engine %v, Priority %v", el, m, got, want)
				}
			}
		}
	}
}

func TestEngineLatest(t *testing.T) {
	e := mustEngine(t, `{"sla":"100ms","policy":"latest","models":[
		{"name":"dt","version":"9","role":"champion","budget":"30ms"},
		{"name":"dt","version":"10","role":"canary","budget":"40ms"},
		{"name":"dt","version":"1.10.0-rc1","role":"canary"},
		{"name":"lr","version":"2","role":"canary","priority":1},
		{"name":"dt","version":"v1.9.3","role":"canary"}]}`)
	if got := strings.Join(e.Chain(Request{}), ","); got != "dt@10,dt@9,dt@1.10.0-rc1,dt@v1.9.3,lr@2" {
		t.Fatalf("chain %s", got)
	}
	L := KindLatest
	run(t, e, []dcase{
		{name: "latest answered", elapsed: 1 * ms, scores: scores(okv("dt", "9", "a"), okv("dt", "10", "b")), decided: true, policy: L, reason: ReasonLatest, winner: "dt@10", result: "b"},
		{name: "older versions early: wait for the latest's budget", elapsed: 1 * ms, scores: scores(okv("dt", "9", "a")), wake: 40 * ms, policy: L},
		{name: "exactly at the latest's budget: the previous version", elapsed: 40 * ms, scores: scores(okv("dt", "9", "a")), decided: true, policy: L, reason: ReasonFallback, winner: "dt@9"},
		{name: "latest failed: previous version at once", elapsed: 1 * ms, scores: scores(failv("dt", "10"), okv("dt", "9", "a")), decided: true, policy: L, reason: ReasonFallback, winner: "dt@9"},
		{name: "latest failed, previous pending: wait for its budget", elapsed: 1 * ms, scores: scores(failv("dt", "10")), wake: 30 * ms, policy: L},
		{name: "semver: 1.10.0-rc1 before 1.9.3", elapsed: 40 * ms, scores: scores(okv("dt", "v1.9.3", "c"), okv("dt", "1.10.0-rc1", "d")), decided: true, policy: L, reason: ReasonFallback, winner: "dt@1.10.0-rc1"},
		{name: "every dt failed: the next name", elapsed: 1 * ms, scores: scores(failv("dt", "10"), failv("dt", "9"), failv("dt", "1.10.0-rc1"), failv("dt", "v1.9.3"), okv("lr", "2", "e")), decided: true, policy: L, reason: ReasonFallback, winner: "lr@2"},
		{name: "SLA: default", elapsed: 100 * ms, decided: true, policy: L, reason: ReasonDefault},
	})
}

func TestCompareVersions(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"1", "2", -1}, {"10", "9", 1}, {"010", "10", 0}, {"1.2", "1.2.0", 0}, {"1.10.0", "1.9.9", 1},
		{"v2.0.0", "1.99.0", 1}, {"1.0.0-rc.1", "1.0.0", -1}, {"1.0.0-rc.2", "1.0.0-rc.10", -1},
		{"1.0.0-alpha", "1.0.0-alpha.1", -1}, {"1.0.0-1", "1.0.0-alpha", -1}, {"1.0.0+b1", "1.0.0+b2", 0},
		{"", "0", 0}, {"abc", "abd", -1}, {"2", "v10", -1},
	}
	for _, c := range cases {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := CompareVersions(c.b, c.a); got != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}

const abDoc = `{"sla":"100ms","policy":"ab","models":[
	{"name":"dt","version":"1","role":"champion","budget":"50ms"},
	{"name":"canary","version":"1","role":"canary"},
	{"name":"nn","version":"1","role":"challenger","budget":"20ms"}],
  "ab":{"arms":[
	{"name":"A","percent":50,"models":["dt"]},
	{"name":"B","percent":30,"models":["nn","dt"]},
	{"name":"C","percent":20,"models":["canary@1"]}]}}`

// keyIn finds a key that falls in arm.
func keyIn(t *testing.T, e *Engine, arm string) string {
	for i := 0; i < 1000; i++ {
		k := fmt.Sprintf("client-%d", i)
		if e.Arm(Request{Key: k}) == arm {
			return k
		}
	}
	t.Fatalf("no key in arm %s", arm)
	return ""
}

func TestEngineAB(t *testing.T) {
	e := mustEngine(t, abDoc)
	a, b, c := Request{Key: keyIn(t, e, "A")}, Request{Key: keyIn(t, e, "B")}, Request{Key: keyIn(t, e, "C")}
	dt, nn, canary := okv("dt", "1", "x"), okv("nn", "1", "y"), okv("canary", "1", "z")
	all := scores(dt, nn, canary)
	run(t, e, []dcase{
		{name: "arm A: dt", req: a, elapsed: 1 * ms, scores: all, decided: true, policy: KindAB, reason: "ab:A", arm: "A", winner: "dt@1"},
		{name: "arm B: nn first", req: b, elapsed: 1 * ms, scores: all, decided: true, policy: KindAB, reason: "ab:B", arm: "B", winner: "nn@1"},
		{name: "arm C: canary", req: c, elapsed: 1 * ms, scores: all, decided: true, policy: KindAB, reason: "ab:C", arm: "C", winner: "canary@1"},
		{name: "arm A waits for dt, not the others", req: a, elapsed: 1 * ms, scores: scores(nn, canary), wake: 50 * ms, policy: KindAB, arm: "A"},
		{name: "arm B: nn failed, dt answers within the arm", req: b, elapsed: 1 * ms, scores: scores(failv("nn", "1"), dt), decided: true, policy: KindAB, reason: "ab:B", arm: "B", winner: "dt@1"},
		{name: "arm B exactly at nn's budget: dt", req: b, elapsed: 20 * ms, scores: scores(dt), decided: true, policy: KindAB, reason: "ab:B", arm: "B", winner: "dt@1"},
		{name: "arm A: dt failed, nothing else in the arm: wait for the SLA", req: a, elapsed: 1 * ms, scores: scores(failv("dt", "1"), canary), wake: 100 * ms, policy: KindAB, arm: "A"},
		{name: "arm A at the SLA: default, arm named", req: a, elapsed: 100 * ms, decided: true, policy: KindAB, reason: ReasonDefault, arm: "A"},
		{name: "no key: the request id is hashed", req: Request{ID: a.Key}, elapsed: 1 * ms, scores: all, decided: true, policy: KindAB, reason: "ab:A", arm: "A", winner: "dt@1"},
	})
}

func TestABDeterminismAndSplit(t *testing.T) {
	e := mustEngine(t, abDoc)
	e2 := mustEngine(t, abDoc) // another instance (another process) agrees
	n := 10000
	count := map[string]int{}
	for i := 0; i < n; i++ {
		req := Request{Key: fmt.Sprintf("user-%d", i), ID: fmt.Sprintf("req-%d", i)}
		arm := e.Arm(req)
		for j := 0; j < 3; j++ {
			req.ID = fmt.Sprintf("other-%d-%d", i, j) // the key decides, not the id
			if e.Arm(req) != arm || e2.Arm(req) != arm {
				t.Fatalf("key %s changed arm", req.Key)
			}
		}
		count[arm]++
	}
	for arm, want := range map[string]float64{"A": 50, "B": 30, "C": 20} {
		got := 100 * float64(count[arm]) / float64(n)
		if math.Abs(got-want) > 2 {
			t.Errorf("arm %s: %.2f%% of keys, want %v%% ± 2", arm, got, want)
		}
		t.Logf("arm %s: %.2f%% (want %v%%)", arm, got, want)
	}
}

const tenantDoc = `{"sla":"100ms","models":[
	{"name":"dt","version":"1","role":"champion","budget":"50ms"},
	{"name":"canary","version":"1","role":"canary"},
	{"name":"dt-acme","version":"2","role":"champion","tenant":"acme","budget":"30ms"},
	{"name":"dt-acme","version":"1","role":"canary","tenant":"acme","budget":"30ms"},
	{"name":"lr-zeta","version":"1","role":"champion","tenant":"zeta"}]}`

func TestEngineTenant(t *testing.T) {
	e := mustEngine(t, tenantDoc)
	acme, other := Request{Key: "acme"}, Request{Key: "someone"}
	if got := strings.Join(e.Chain(acme), ","); got != "dt-acme@2,dt-acme@1,dt@1,canary@1" {
		t.Fatalf("acme chain %s", got)
	}
	a2, a1, dt, canary := okv("dt-acme", "2", "t2"), okv("dt-acme", "1", "t1"), okv("dt", "1", "s"), okv("canary", "1", "c")
	T := KindTenant
	run(t, e, []dcase{
		{name: "tenant model answers", req: acme, elapsed: 1 * ms, scores: scores(dt, a2), decided: true, policy: T, reason: ReasonTenant, winner: "dt-acme@2"},
		{name: "tenant's newer version failed: its older one", req: acme, elapsed: 1 * ms, scores: scores(failv("dt-acme", "2"), a1, dt), decided: true, policy: T, reason: ReasonTenant, winner: "dt-acme@1"},
		{name: "tenant pending: wait for its budget even if shared answered", req: acme, elapsed: 1 * ms, scores: scores(dt), wake: 30 * ms, policy: T},
		{name: "tenant models failed: shared chain, reason fallback", req: acme, elapsed: 1 * ms, scores: scores(failv("dt-acme", "2"), failv("dt-acme", "1"), dt), decided: true, policy: T, reason: ReasonFallback, winner: "dt@1"},
		{name: "tenant models failed, shared champion pending: wait", req: acme, elapsed: 1 * ms, scores: scores(failv("dt-acme", "2"), failv("dt-acme", "1"), canary), wake: 50 * ms, policy: T},
		{name: "exactly at the tenant budget: shared champion", req: acme, elapsed: 30 * ms, scores: scores(dt), decided: true, policy: T, reason: ReasonFallback, winner: "dt@1"},
		{name: "tenant at the SLA with nothing: default", req: acme, elapsed: 100 * ms, decided: true, policy: T, reason: ReasonDefault},
		{name: "other key: tenant model ignored", req: other, elapsed: 1 * ms, scores: scores(a2, dt), decided: true, policy: KindPriority, reason: ReasonChampion, winner: "dt@1"},
		{name: "other key waits for the shared champion only", req: other, elapsed: 1 * ms, scores: scores(a2), wake: 50 * ms, policy: KindPriority},
	})
	if got := strings.Join(e.Expected(acme), ","); got != "dt@1,canary@1,dt-acme@2,dt-acme@1" {
		t.Errorf("expected for acme: %s", got)
	}
	if got := strings.Join(e.Expected(other), ","); got != "dt@1,canary@1" {
		t.Errorf("expected for others: %s", got)
	}
}

func TestEngineTenantOverAB(t *testing.T) {
	e := mustEngine(t, strings.Replace(abDoc, `"models":[`, `"models":[{"name":"dt-acme","role":"champion","tenant":"acme","budget":"10ms"},`, 1))
	acme := Request{Key: "acme"}
	arm := e.Arm(acme)
	o := e.Decide(acme, 100*ms, scores(failv("dt-acme", "")))
	if !o.Decided || o.Policy != KindTenant || o.Reason != ReasonDefault || o.Arm != arm {
		t.Fatalf("got %v arm %q, want tenant default in arm %s", o, o.Arm, arm)
	}
	o = e.Decide(acme, 5*ms, scores(okv("dt-acme", "", "t")))
	if !o.Decided || o.Reason != ReasonTenant || o.Winner.Model != "dt-acme" {
		t.Fatalf("got %v", o)
	}
}

const ensembleDoc = `{"sla":"100ms","policy":"ensemble","models":[
	{"name":"a","role":"champion","priority":1,"budget":"40ms"},
	{"name":"b","role":"canary","priority":2,"budget":"40ms"},
	{"name":"c","role":"challenger","budget":"60ms"}],
  "ensemble":{"method":"vote","quorum":2,"models":["a","b","c"]}}`

func TestEngineEnsembleVote(t *testing.T) {
	e := mustEngine(t, ensembleDoc)
	v := func(n, r string) *Score { return okv(n, "", r) }
	E := KindEnsemble
	run(t, e, []dcase{
		{name: "unanimous", elapsed: 1 * ms, scores: scores(v("a", "x"), v("b", "x"), v("c", "x")), decided: true, policy: E, reason: ReasonEnsemble, winner: "ensemble@vote", result: "x"},
		{name: "majority 2-1 against the champion", elapsed: 1 * ms, scores: scores(v("a", "x"), v("b", "y"), v("c", "y")), decided: true, policy: E, reason: ReasonEnsemble, winner: "ensemble@vote", result: "y"},
		{name: "three-way tie: the highest priority's result", elapsed: 1 * ms, scores: scores(v("c", "z"), v("b", "y"), v("a", "x")), decided: true, policy: E, reason: ReasonEnsemble, winner: "ensemble@vote", result: "x"},
		{name: "1-1 tie with c failed: a's result", elapsed: 1 * ms, scores: scores(v("b", "y"), v("a", "x"), failv("c", "")), decided: true, policy: E, reason: ReasonEnsemble, winner: "ensemble@vote", result: "x"},
		{name: "quorum met, c pending: wait for c's budget", elapsed: 1 * ms, scores: scores(v("a", "x"), v("b", "y")), wake: 60 * ms, policy: E},
		{name: "exactly at c's budget: decide with a quorum of two", elapsed: 60 * ms, scores: scores(v("a", "x"), v("b", "x")), decided: true, policy: E, reason: ReasonEnsemble, winner: "ensemble@vote", result: "x"},
		{name: "nothing yet: wait for the earliest budget", elapsed: 1 * ms, wake: 40 * ms, policy: E},
		{name: "quorum impossible (two failed): priority chain answers", elapsed: 1 * ms, scores: scores(failv("a", ""), failv("c", ""), v("b", "y")), decided: true, policy: E, reason: ReasonFallback, winner: "b", result: "y"},
		{name: "quorum not met by the budgets: chain's late answer", elapsed: 60 * ms, scores: scores(v("a", "x")), decided: true, policy: E, reason: ReasonFallback, winner: "a"},
		{name: "quorum impossible, chain pending: wait for the SLA", elapsed: 50 * ms, scores: scores(failv("a", ""), failv("b", "")), wake: 100 * ms, policy: E},
		{name: "quorum not met by the SLA, nothing answered: default", elapsed: 100 * ms, scores: scores(failv("a", ""), v("c", "z")), decided: true, policy: E, reason: ReasonDefault},
	})
	o := e.Decide(Request{}, 1*ms, scores(v("a", "x"), v("b", "y"), v("c", "y")))
	if p := o.Winner.Probabilities; math.Abs(p["y"]-2.0/3) > 1e-12 || math.Abs(p["x"]-1.0/3) > 1e-12 {
		t.Errorf("vote shares %v", p)
	}
}

func TestEngineEnsembleMean(t *testing.T) {
	e := mustEngine(t, `{"sla":"100ms","policy":"ensemble","models":[
		{"name":"a","role":"champion"},{"name":"b","role":"canary"},{"name":"c","role":"canary"}],
	  "ensemble":{"method":"mean","quorum":2,"name":"avg"}}`)
	p := func(n string, px, py float64) *Score {
		return &Score{Model: n, Result: map[bool]string{true: "x", false: "y"}[px >= py], Probabilities: map[string]float64{"x": px, "y": py}}
	}
	cases := []struct {
		name   string
		scores map[string]*Score
		result string
		px     float64
	}{
		{"mean beats the majority", scores(p("a", 0.9, 0.1), p("b", 0.4, 0.6), p("c", 0.45, 0.55)), "x", (0.9 + 0.4 + 0.45) / 3},
		{"two members, c failed", scores(p("a", 0.2, 0.8), p("b", 0.6, 0.4), failv("c", "")), "y", 0.4},
		{"tie: the highest-priority member's label", scores(p("a", 0.3, 0.7), p("b", 0.7, 0.3), failv("c", "")), "y", 0.5},
		{"a score without probabilities counts one-hot", scores(&Score{Model: "a", Result: "x"}, p("b", 0.4, 0.6), failv("c", "")), "x", 0.7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := e.Decide(Request{}, 100*ms, c.scores)
			if !o.Decided || o.Reason != ReasonEnsemble || o.Winner.Model != "avg" || o.Winner.Version != "mean" {
				t.Fatalf("got %v", o)
			}
			if o.Winner.Result != c.result || math.Abs(o.Winner.Probabilities["x"]-c.px) > 1e-12 {
				t.Fatalf("result %s p(x)=%v, want %s %v", o.Winner.Result, o.Winner.Probabilities["x"], c.result, c.px)
			}
		})
	}
}

func TestShadowSampling(t *testing.T) {
	e := mustEngine(t, `{"sla":"100ms","models":[
		{"name":"dt","role":"champion"},
		{"name":"all","role":"shadow"},
		{"name":"quarter","role":"shadow","sample":25},
		{"name":"byclient","role":"shadow","sample":{"percent":30,"by":"key-hash"}},
		{"name":"never","role":"shadow","sample":0}]}`)
	n := 10000
	quarter, clients := 0, 0
	for i := 0; i < n; i++ {
		req := Request{ID: fmt.Sprintf("req-%d", i), Key: fmt.Sprintf("client-%d", i)}
		got := strings.Join(e.Expected(req), ",")
		if !strings.HasPrefix(got, "dt,all") || strings.Contains(got, "never") {
			t.Fatalf("expected %s", got)
		}
		if again := strings.Join(e.Expected(req), ","); again != got {
			t.Fatalf("not deterministic: %s then %s", got, again)
		}
		if strings.Contains(got, "quarter") {
			quarter++
		}
		if strings.Contains(got, "byclient") {
			clients++
			// key-hash: every request of this client is sampled alike
			for j := 0; j < 3; j++ {
				r2 := Request{ID: fmt.Sprintf("x-%d-%d", i, j), Key: req.Key}
				if !strings.Contains(strings.Join(e.Expected(r2), ","), "byclient") {
					t.Fatalf("client %s sampled for one request, not another", req.Key)
				}
			}
		}
	}
	for name, c := range map[string][2]float64{"quarter": {float64(quarter), 25}, "byclient": {float64(clients), 30}} {
		got := 100 * c[0] / float64(n)
		if math.Abs(got-c[1]) > 2 {
			t.Errorf("%s sampled %.2f%%, want %v%% ± 2", name, got, c[1])
		}
	}
	// Shadows never change the answer, nor make the engine wait.
	o := e.Decide(Request{ID: "r"}, 1*ms, scores(okv("all", "", "s"), okv("quarter", "", "q")))
	if o.Decided || o.WakeAt != 100*ms {
		t.Fatalf("got %v", o)
	}
}

func TestEngineBreaker(t *testing.T) {
	e := mustEngine(t, `{"sla":"100ms","models":[
		{"name":"dt","role":"champion","budget":"50ms"},{"name":"canary","role":"canary"}],
	  "breaker":{"window":20,"minSamples":10,"threshold":0.5,"coolDown":"30s"}}`)
	b := e.Breaker()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 10; i++ {
		b.Record("dt", ResultTimeout, t0)
	}
	req := func(id string, at time.Time) Request { return Request{ID: id, Received: at} }
	canary := okv("canary", "", "c")
	P := KindPriority
	run(t, e, []dcase{
		{name: "open: do not wait for dt", req: req("r1", t0), elapsed: 1 * ms, wake: 100 * ms, policy: P},
		{name: "open: canary answers at once", req: req("r1", t0), elapsed: 1 * ms, scores: scores(canary), decided: true, policy: P, reason: ReasonFallback, winner: "canary"},
		{name: "open: dt's answer is not used", req: req("r1", t0), elapsed: 1 * ms, scores: scores(okv("dt", "", "d"), canary), decided: true, policy: P, reason: ReasonFallback, winner: "canary"},
		{name: "open at the SLA: default", req: req("r1", t0), elapsed: 100 * ms, scores: scores(okv("dt", "", "d")), decided: true, policy: P, reason: ReasonDefault},
		// After the cool-down, p1 is the probe and waits for dt; p2 does not.
		{name: "half-open: the probe waits for dt", req: req("p1", t0.Add(30*time.Second)), elapsed: 1 * ms, scores: scores(canary), wake: 50 * ms, policy: P},
		{name: "half-open: another request does not", req: req("p2", t0.Add(30*time.Second)), elapsed: 1 * ms, scores: scores(canary), decided: true, policy: P, reason: ReasonFallback, winner: "canary"},
		{name: "half-open: the probe again", req: req("p1", t0.Add(30*time.Second)), elapsed: 2 * ms, scores: scores(okv("dt", "", "d")), decided: true, policy: P, reason: ReasonChampion, winner: "dt"},
	})
	b.Record("dt", ResultOK, t0.Add(31*time.Second))
	if s := b.State("dt", t0.Add(31*time.Second)); s != Closed {
		t.Fatalf("state %v after the probe's success", s)
	}
	if o := e.Decide(req("r9", t0.Add(32*time.Second)), 1*ms, scores(canary)); o.Decided || o.WakeAt != 50*ms {
		t.Fatalf("closed: want to wait for dt, got %v", o)
	}
}

func TestEngineExample_JSONRoundTrip(t *testing.T) {
	c, err := Parse([]byte(abDoc))
	if err != nil {
		t.Fatal(err)
	}
	if c.SLA != Duration(100*ms) || c.Models[0].Budget != Duration(50*ms) || len(c.AB.Arms) != 3 || c.AB.Arms[2].Models[0] != "canary@1" {
		t.Fatalf("parsed %+v", c)
	}
}
