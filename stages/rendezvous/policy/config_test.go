package policy

import (
	"strings"
	"testing"
)

func TestParseErrorsNameTheField(t *testing.T) {
	const m = `"models":[{"name":"dt","role":"champion"}]`
	cases := []struct{ doc, want string }{
		{`{` + m + `}`, "sla:"},
		{`{"sla":"fast",` + m + `}`, `duration "fast"`},
		{`{"sla":"1s","models":[]}`, "models: at least one"},
		{`{"sla":"1s","models":[{"role":"champion"}]}`, "models[0].name"},
		{`{"sla":"1s","models":[{"name":"a@b","role":"champion"}]}`, "models[0].name"},
		{`{"sla":"1s","models":[{"name":"dt","role":"boss"}]}`, "models[0].role"},
		{`{"sla":"1s","models":[{"name":"dt","role":"champion"},{"name":"dt","role":"canary"}]}`, "models[1]: \"dt\" version \"\" is listed twice"},
		{`{"sla":"1s","models":[{"name":"dt","role":"champion","budget":"-1ms"}]}`, "models[0].budget"},
		{`{"sla":"1s","models":[{"name":"dt","role":"champion","priority":-1}]}`, "models[0].priority"},
		{`{"sla":"1s","models":[{"name":"dt","role":"champion","sample":50}]}`, "models[0].sample"},
		{`{"sla":"1s","models":[{"name":"dt","role":"champion"},{"name":"s","role":"shadow","sample":150}]}`, "models[1].sample.percent"},
		{`{"sla":"1s","models":[{"name":"dt","role":"champion"},{"name":"s","role":"shadow","sample":{"percent":5,"by":"dice"}}]}`, "models[1].sample.by"},
		{`{"sla":"1s","models":[{"name":"s","role":"shadow"}]}`, "needs a champion or canary"},
		{`{"sla":"1s","policy":"random",` + m + `}`, "policy:"},
		{`{"sla":"1s","policy":"ab",` + m + `}`, "ab: is required"},
		{`{"sla":"1s",` + m + `,"ab":{"arms":[]}}`, "ab: set, but the policy is \"priority\""},
		{`{"sla":"1s","policy":"ab",` + m + `,"ab":{"arms":[{"name":"A","percent":100,"models":["dt"]}]}}`, "ab.arms: needs at least two"},
		{`{"sla":"1s","policy":"ab",` + m + `,"ab":{"arms":[{"name":"A","percent":50,"models":["dt"]},{"name":"A","percent":50,"models":["dt"]}]}}`, "ab.arms[1].name"},
		{`{"sla":"1s","policy":"ab",` + m + `,"ab":{"arms":[{"name":"A","percent":50,"models":["dt"]},{"name":"B","percent":40,"models":["dt"]}]}}`, "add up to 90"},
		{`{"sla":"1s","policy":"ab",` + m + `,"ab":{"arms":[{"name":"A","percent":50,"models":["dt"]},{"name":"B","percent":50,"models":["nn"]}]}}`, "ab.arms[1].models[0]: \"nn\" is not a configured model"},
		{`{"sla":"1s","policy":"ab",` + m + `,"ab":{"arms":[{"name":"A","percent":50.001,"models":["dt"]},{"name":"B","percent":49.999,"models":["dt"]}]}}`, "ab.arms[0].percent"},
		{`{"sla":"1s","policy":"ab",` + m + `,"ab":{"arms":[{"name":"A","percent":50,"models":[]},{"name":"B","percent":50,"models":["dt"]}]}}`, "ab.arms[0].models"},
		{`{"sla":"1s","policy":"ab","models":[{"name":"dt","role":"champion"},{"name":"s","role":"shadow"}],"ab":{"arms":[{"name":"A","percent":50,"models":["dt"]},{"name":"B","percent":50,"models":["s"]}]}}`, "shadows never answer"},
		{`{"sla":"1s","policy":"ensemble",` + m + `,"ensemble":{"method":"median","quorum":1}}`, "ensemble.method"},
		{`{"sla":"1s","policy":"ensemble",` + m + `,"ensemble":{"method":"vote","quorum":2}}`, "ensemble.quorum: 2 is not within 1..1"},
		{`{"sla":"1s","policy":"ensemble",` + m + `,"ensemble":{"method":"vote","quorum":1,"models":["x"]}}`, "ensemble.models[0]"},
		{`{"sla":"1s",` + m + `,"breaker":{"minSamples":1,"threshold":0.5,"coolDown":"1s"}}`, "set exactly one of window"},
		{`{"sla":"1s",` + m + `,"breaker":{"window":5,"minSamples":6,"threshold":0.5,"coolDown":"1s"}}`, "breaker.minSamples"},
		{`{"sla":"1s",` + m + `,"breaker":{"window":5,"minSamples":2,"threshold":1.5,"coolDown":"1s"}}`, "breaker.threshold"},
		{`{"sla":"1s",` + m + `,"breaker":{"window":5,"minSamples":2,"threshold":0.5}}`, "breaker.coolDown"},
		{`{"sla":"1s",` + m + `,"colour":"blue"}`, `unknown field "colour"`},
		{`{"sla":"1s",` + m + `} {}`, "trailing data"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%s)\n  error %v\n  want it to contain %q", c.doc, err, c.want)
		}
	}
}

func TestParseGood(t *testing.T) {
	for _, doc := range []string{priorityDoc, abDoc, tenantDoc, ensembleDoc} {
		c, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Parse([]byte(`{"sla":"1s","models":[{"name":"dt","role":"champion"},
		{"name":"s","role":"shadow","sample":{"percent":12.5,"by":"key-hash"}}],
		"breaker":{"period":"30s","minSamples":5,"threshold":0.5,"coolDown":"10s"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Models[1].Sample; s.Percent != 12.5 || s.By != SampleKeyHash {
		t.Fatalf("sample %+v", s)
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Fatal("New accepted an invalid config")
	}
}
