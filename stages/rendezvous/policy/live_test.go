package policy

import (
	"strings"
	"testing"
	"time"
)

// Bound to the models deployed now, a policy tolerates what a document
// may not: no model at all, arms and ensemble members that are not
// deployed. It answers what it can, and the default at the SLA.
func TestLiveBinding(t *testing.T) {
	base, err := ParseLive([]byte(`{"sla": "100ms", "policy": "ab", "ab": {"arms": [
		{"name": "A", "percent": 50, "models": ["dt"]},
		{"name": "B", "percent": 50, "models": ["nn@2", "dt"]}]}}`))
	if err != nil {
		t.Fatalf("a document without models, for live binding: %v", err)
	}
	if _, err := Parse([]byte(`{"sla": "100ms", "models": []}`)); err == nil || !strings.Contains(err.Error(), "models:") {
		t.Fatalf("a strict document without models: %v", err)
	}
	dt := okv("dt", "1", "setosa")
	keyB := keyInArm(t, base, "B")

	t.Run("nothing deployed: default at the SLA", func(t *testing.T) {
		c, err := Live(base, nil)
		if err != nil {
			t.Fatal(err)
		}
		e, err := New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		run(t, e, []dcase{
			{name: "before the SLA: wait for it", req: Request{ID: "r", Key: keyB}, elapsed: 10 * ms, policy: KindAB, arm: "B", wake: 100 * ms},
			{name: "at the SLA: default", req: Request{ID: "r", Key: keyB}, elapsed: 100 * ms, decided: true, policy: KindAB, reason: ReasonDefault, arm: "B"},
		})
	})
	t.Run("arm B's nn@2 not deployed: its chain is dt", func(t *testing.T) {
		c, err := Live(base, []ModelConfig{{Name: "dt", Version: "1", Role: RoleChampion}})
		if err != nil {
			t.Fatal(err)
		}
		e, err := New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(e.Chain(Request{ID: "r", Key: keyB}), ","); got != "dt@1" {
			t.Fatalf("arm B chain %q", got)
		}
		run(t, e, []dcase{
			{name: "dt answers for B", req: Request{ID: "r", Key: keyB}, elapsed: 3 * ms, scores: scores(dt), decided: true, policy: KindAB, reason: "ab:B", arm: "B", winner: "dt@1"},
		})
	})
	t.Run("ensemble quorum above the members deployed: the chain answers", func(t *testing.T) {
		ens, err := ParseLive([]byte(`{"sla": "100ms", "policy": "ensemble", "ensemble": {"method": "vote", "quorum": 3}}`))
		if err != nil {
			t.Fatal(err)
		}
		c, err := Live(ens, []ModelConfig{{Name: "dt", Version: "1", Role: RoleChampion}, {Name: "lr", Version: "1", Role: RoleCanary}})
		if err != nil {
			t.Fatal(err)
		}
		e, err := New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		run(t, e, []dcase{
			{name: "quorum unreachable: the champion as a fallback", elapsed: 2 * ms, scores: scores(dt), decided: true, policy: KindEnsemble, reason: ReasonFallback, winner: "dt@1"},
		})
	})
}

// In a priority chain "champion" means the champion answered: with no
// champion deployed (it died, or was retired) the canary at the head of the
// chain answers as a fallback.
func TestCanaryAtTheHeadIsAFallback(t *testing.T) {
	c, err := Live(Config{SLA: Duration(100 * time.Millisecond)}, []ModelConfig{{Name: "canary", Version: "1", Role: RoleCanary}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, e, []dcase{
		{name: "canary answers", elapsed: 2 * ms, scores: scores(okv("canary", "1", "setosa")), decided: true, policy: KindPriority, reason: ReasonFallback, winner: "canary@1"},
	})
}

// keyInArm finds a request key the A/B split puts in arm.
func keyInArm(t *testing.T, c Config, arm string) string {
	t.Helper()
	c2, err := Live(c, []ModelConfig{{Name: "dt", Version: "1", Role: RoleChampion}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(c2, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		k := "user-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		if e.Arm(Request{Key: k}) == arm {
			return k
		}
	}
	t.Fatalf("no key lands in arm %s", arm)
	return ""
}
