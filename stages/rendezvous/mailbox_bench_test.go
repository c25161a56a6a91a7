package rendezvous

import (
	"container/heap"
	"fmt"
	"testing"
	"time"

	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

// The demo objective's race: a champion with a budget, a canary, a shadow.
const benchPolicy = `{"sla":"100ms","models":[
	{"name":"dt","version":"1","role":"champion","budget":"50ms"},
	{"name":"canary","version":"1","role":"canary"},
	{"name":"challenger","version":"1","role":"shadow"}]}`

func benchEngine(b *testing.B) *policy.Engine {
	b.Helper()
	c, err := policy.Parse([]byte(benchPolicy))
	if err != nil {
		b.Fatal(err)
	}
	e, err := policy.New(c, nil)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func benchScores() []*seen {
	probs := map[string]float64{"setosa": 1, "versicolor": 0, "virginica": 0}
	var out []*seen
	for _, m := range []struct{ name, role string }{{"dt", "champion"}, {"canary", "canary"}, {"challenger", "shadow"}} {
		out = append(out, &seen{Score: policy.Score{Model: m.name, Version: "1", Role: m.role, Result: "setosa", Probabilities: probs}})
	}
	return out
}

// BenchmarkMailboxInsert is a request's life in the stage's data
// structures, without Kafka or the policy: its mailbox opened among the
// others open, its three scores filed, its wake-up scheduled and popped,
// the mailbox closed. Open mailboxes stay at about 1,000, as at 10,000
// requests a second with a 100 ms SLA.
func BenchmarkMailboxInsert(b *testing.B) {
	const open = 1024
	ids := make([]string, open)
	for i := range ids {
		ids[i] = fmt.Sprintf("27a927cc-2b82-4119-a0f7-%012d", i)
	}
	scores := benchScores()
	boxes := make(map[string]*mailbox, open)
	var w wakeups
	t0 := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := ids[i%open]
		if old, ok := boxes[id]; ok {
			delete(boxes, old.ID)
		}
		m := newMailbox(id, int32(i%4))
		boxes[id] = m
		m.Req = &request{Offset: int64(i), ReceivedUS: t0.UnixMicro(), DeadlineUS: t0.Add(100 * time.Millisecond).UnixMicro(), ReplyTopic: "rdv.iris.results"}
		for _, sc := range scores {
			m.add(policy.Key(sc.Model, sc.Version), sc)
		}
		w.schedule(m, t0.Add(time.Duration(i)*time.Microsecond))
		if len(w) > open {
			heap.Pop(&w)
		}
		i++
	}
}

// BenchmarkMailboxResolve is the decision over one mailbox as its scores
// arrive: the policy asked after each of the three, as the stage does.
func BenchmarkMailboxResolve(b *testing.B) {
	e := benchEngine(b)
	scores := benchScores()
	t0 := time.Now()
	req := policy.Request{ID: "27a927cc-2b82-4119-a0f7-519483654517", Received: t0, SLA: 100 * time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		m := newMailbox(req.ID, 0)
		var o policy.Outcome
		for i, sc := range scores {
			m.add(policy.Key(sc.Model, sc.Version), sc)
			o = e.Decide(req, time.Duration(i+1)*time.Millisecond, m.policyScores())
		}
		if !o.Decided {
			b.Fatalf("not decided: %+v", o)
		}
	}
}
