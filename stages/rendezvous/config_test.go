package rendezvous

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/fleet"
	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

func TestParseModels(t *testing.T) {
	tests := []struct {
		in   string
		want []ModelSpec
	}{
		{"", nil},
		{" , ", nil},
		{"dt:champion", []ModelSpec{{Name: "dt", Role: "champion"}}},
		{"dt:champion:50ms,canary:canary,challenger:shadow", []ModelSpec{
			{Name: "dt", Role: "champion", Budget: 50 * time.Millisecond},
			{Name: "canary", Role: "canary"},
			{Name: "challenger", Role: "shadow"},
		}},
		{" dt:champion:1s , lr:challenger:250us ,", []ModelSpec{
			{Name: "dt", Role: "champion", Budget: time.Second},
			{Name: "lr", Role: "challenger", Budget: 250 * time.Microsecond},
		}},
		{"a:canary:0s", []ModelSpec{{Name: "a", Role: "canary", Budget: 0}}},
	}
	for _, tt := range tests {
		got, err := ParseModels(tt.in)
		if err != nil {
			t.Errorf("ParseModels(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseModels(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseModelsRejects(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"dt", []string{`models: "dt" is not name:role[:budget]`}},
		{"dt:champion,lr", []string{`"lr" is not name:role[:budget]`}},
		{"dt:champion:1s:extra", []string{`"dt:champion:1s:extra" is not name:role[:budget]`}},
		{"dt:king", []string{`role "king" of "dt"`, "champion, canary, challenger or shadow"}},
		{"dt:Champion", []string{`role "Champion"`}},
		{"dt:", []string{`role "" of "dt"`}},
		{"dt:champion:soon", []string{`budget of "dt"`, "soon"}},
		{"dt:champion:50", []string{`budget of "dt"`}},
		{"dt:champion:", []string{`budget of "dt"`}},
	}
	for _, tt := range tests {
		got, err := ParseModels(tt.in)
		if err == nil {
			t.Errorf("ParseModels(%q) accepted: %+v", tt.in, got)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseModels(%q) error %q does not say %q", tt.in, err, w)
			}
		}
	}
}

func TestModelSpecAnswers(t *testing.T) {
	for role, want := range map[string]bool{"champion": true, "canary": true, "challenger": false, "shadow": false} {
		if got := (ModelSpec{Name: "m", Role: role}).Answers(); got != want {
			t.Errorf("%s answers = %v", role, got)
		}
	}
}

func validConfig() Config {
	c := Defaults()
	c.LiveModels = false
	c.Models = []ModelSpec{{Name: "dt", Role: "champion", Budget: 30 * time.Millisecond}, {Name: "lr", Role: "challenger"}, {Name: "nn", Role: "canary"}}
	return c
}

func TestConfigValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no models", func(c *Config) { c.Models = nil }, "models: at least one champion or canary is required"},
		{"only challengers", func(c *Config) { c.Models = []ModelSpec{{Name: "a", Role: "challenger"}, {Name: "b", Role: "shadow"}} },
			"models: at least one champion or canary"},
		{"duplicate model", func(c *Config) { c.Models = append(c.Models, ModelSpec{Name: "dt", Role: "shadow"}) }, `models: "dt" is listed twice`},
		{"negative grace", func(c *Config) { c.Grace = -time.Second }, "grace: -1s must not be negative"},
		{"zero commit interval", func(c *Config) { c.CommitInterval = 0 }, "commit-interval: 0s must be positive"},
		{"zero orphan ttl", func(c *Config) { c.OrphanTTL = 0 }, "orphan-ttl: 0s must be positive"},
		{"zero max open", func(c *Config) { c.MaxOpen = 0 }, "max-open: 0 must be positive"},
		{"bad common", func(c *Config) { c.Common.Kafka.Brokers = nil }, "brokers:"},
	}
	for _, tt := range tests {
		c := validConfig()
		tt.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want it to say %q", tt.name, err, tt.want)
		}
	}
	c := validConfig()
	c.Grace = 0 // no grace is allowed
	if err := c.Validate(); err != nil {
		t.Errorf("zero grace: %v", err)
	}
}

func TestStaticPolicy(t *testing.T) {
	pc, err := validConfig().static()
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.Chain(policy.Request{}), ","); got != "dt,nn" {
		t.Fatalf("chain %s, want the answering models in the order given: dt,nn", got)
	}
	if b, _ := e.Budget("dt", policy.Request{SLA: 100 * time.Millisecond}); b != 30*time.Millisecond {
		t.Fatalf("dt budget %v", b)
	}
}

func ptr[T any](v T) *T { return &v }

// What the stage waits for, given what the registry holds: announced and
// directed settings win over the declared ones, which fill in the rest.
func TestBind(t *testing.T) {
	c := Defaults()
	c.Models = []ModelSpec{{Name: "dt", Role: "champion", Budget: 50 * time.Millisecond}, {Name: "canary", Role: "canary"}, {Name: "challenger", Role: "shadow"}}
	live := func(name, version, role string) fleet.Model {
		return fleet.Model{Name: name, Version: version, Role: role, Status: fleet.StatusLive}
	}
	promoted := live("challenger", "1", "champion")
	promoted.Priority, promoted.Budget = ptr(0), ptr(40*time.Millisecond)
	demoted := live("dt", "1", "challenger")
	stale := live("dt", "2", "champion")
	stale.Status = "stale"
	retired := live("canary", "2", "canary")
	retired.Retired = true
	tests := []struct {
		name   string
		models []fleet.Model
		chain  string
		budget map[string]time.Duration
		want   []string // every model bound, key:role
	}{
		{"nothing live", nil, "", nil, nil},
		{"declared defaults fill in", []fleet.Model{live("dt", "1", "champion"), live("canary", "1", "canary"), live("challenger", "1", "shadow")},
			"dt@1,canary@1", map[string]time.Duration{"dt@1": 50 * time.Millisecond, "canary@1": 100 * time.Millisecond},
			[]string{"dt@1:champion", "canary@1:canary", "challenger@1:shadow"}},
		{"a promotion", []fleet.Model{demoted, live("canary", "1", "canary"), promoted},
			"challenger@1,canary@1", map[string]time.Duration{"challenger@1": 40 * time.Millisecond},
			[]string{"dt@1:challenger", "canary@1:canary", "challenger@1:champion"}},
		{"stale and retired are not waited for", []fleet.Model{stale, retired, live("canary", "1", "canary")},
			"canary@1", nil, []string{"canary@1:canary"}},
		{"an unknown model joins as a shadow after the declared ones", []fleet.Model{live("dt", "1", "champion"), {Name: "new", Version: "3", Status: fleet.StatusLive}},
			"dt@1", nil, []string{"dt@1:champion", "new@3:shadow"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, err := c.bind(tt.models)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range pc.Models {
				got = append(got, m.Key()+":"+m.Role)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("bound %v, want %v", got, tt.want)
			}
			e, err := policy.New(pc, nil)
			if err != nil {
				t.Fatal(err)
			}
			req := policy.Request{ID: "r", SLA: 100 * time.Millisecond}
			if got := strings.Join(e.Chain(req), ","); got != tt.chain {
				t.Fatalf("chain %q, want %q", got, tt.chain)
			}
			for key, want := range tt.budget {
				if got, _ := e.Budget(key, req); got != want {
					t.Errorf("budget of %s: %v, want %v", key, got, want)
				}
			}
		})
	}
}

// The policy refuses a model without a name or with a negative budget
// (policy.Priority.Validate), but nothing on the way from the -models flag
// to the stage calls it: the stage then waits for a model named "" that
// never answers, or treats -50ms as the whole SLA.
func TestModelsThePolicyRejectsAreRejected(t *testing.T) {
	for _, spec := range []string{":champion", "dt:champion:-50ms"} {
		ms, err := ParseModels(spec)
		if err == nil {
			c := Defaults()
			c.Models = ms
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%q accepted", spec)
		}
	}
}
