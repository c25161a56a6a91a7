package policy

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// A 3-model priority decision: the champion's budget is over, its score
// failed, the canary answered.
func BenchmarkDecidePriority3(b *testing.B) {
	e := mustEngine(b, `{"sla":"100ms","models":[
		{"name":"dt","version":"1","role":"champion","budget":"50ms"},
		{"name":"canary","version":"1","role":"canary","budget":"70ms"},
		{"name":"nn","version":"1","role":"canary"}]}`)
	s := scores(failv("dt", "1"), okv("nn", "1", "x"))
	req := Request{ID: "r", Key: "k"}
	b.ReportAllocs()
	for b.Loop() {
		if o := e.Decide(req, 80*time.Millisecond, s); o.Winner == nil {
			b.Fatal(o)
		}
	}
}

// The legacy Priority.Decide on the same case, for comparison.
func BenchmarkDecidePriorityLegacy3(b *testing.B) {
	p := Priority{SLA: 100 * time.Millisecond, Order: []Model{{Name: "dt", Budget: 50 * time.Millisecond}, {Name: "canary", Budget: 70 * time.Millisecond}, {Name: "nn"}}}
	s := map[string]*Score{"dt": {Model: "dt", Failed: true}, "nn": {Model: "nn", Result: "x"}}
	b.ReportAllocs()
	for b.Loop() {
		if o := p.Decide(80*time.Millisecond, s); o.Winner == nil {
			b.Fatal(o)
		}
	}
}

func latest100(b *testing.B) *Engine {
	doc := `{"sla":"100ms","policy":"latest","models":[`
	for v := 1; v <= 100; v++ {
		if v > 1 {
			doc += ","
		}
		doc += fmt.Sprintf(`{"name":"m","version":"1.%d.0","role":"canary","budget":"%dms"}`, v, v%90+1)
	}
	return mustEngine(b, doc+`]}`)
}

// 100 versions of one model: the latest answered (the usual case).
func BenchmarkDecideLatest100(b *testing.B) {
	e := latest100(b)
	s := map[string]*Score{}
	for v := 1; v <= 100; v++ {
		s[Key("m", "1."+strconv.Itoa(v)+".0")] = okv("m", "1."+strconv.Itoa(v)+".0", "x")
	}
	b.ReportAllocs()
	for b.Loop() {
		if o := e.Decide(Request{}, time.Millisecond, s); o.Reason != ReasonLatest {
			b.Fatal(o)
		}
	}
}

// Worst case: every version but the oldest failed; the walk visits all 100.
func BenchmarkDecideLatest100Worst(b *testing.B) {
	e := latest100(b)
	s := map[string]*Score{}
	for v := 2; v <= 100; v++ {
		s[Key("m", "1."+strconv.Itoa(v)+".0")] = failv("m", "1."+strconv.Itoa(v)+".0")
	}
	s["m@1.1.0"] = okv("m", "1.1.0", "x")
	b.ReportAllocs()
	for b.Loop() {
		if o := e.Decide(Request{}, time.Millisecond, s); o.Reason != ReasonFallback {
			b.Fatal(o)
		}
	}
}

// One request's whole race: 100 scores arrive newest-last, Decide after each.
func BenchmarkDecideLatest100PerRequest(b *testing.B) {
	e := latest100(b)
	var arrivals []*Score
	var keys []string
	for v := 1; v <= 100; v++ {
		arrivals = append(arrivals, okv("m", "1."+strconv.Itoa(v)+".0", "x"))
		keys = append(keys, Key("m", "1."+strconv.Itoa(v)+".0"))
	}
	s := make(map[string]*Score, 100)
	b.ReportAllocs()
	for b.Loop() {
		clear(s)
		for i, sc := range arrivals {
			s[keys[i]] = sc
			o := e.Decide(Request{}, time.Duration(i)*time.Microsecond, s)
			if o.Decided != (i == 99) {
				b.Fatal(i, o)
			}
		}
	}
}
