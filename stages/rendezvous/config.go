package rendezvous

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/fleet"
	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

// ModelSpec is one model the rendezvous expects a score from.
type ModelSpec struct {
	Name string
	Role string // champion, canary: answer in the order given; challenger, shadow: recorded only
	// Budget is how long after the request the stage waits for this model
	// before moving on to the next in order; zero means the whole SLA.
	Budget time.Duration
}

// Answers reports whether the model's scores can be returned to callers.
func (m ModelSpec) Answers() bool { return m.Role == "champion" || m.Role == "canary" }

// ParseModels reads "name:role[:budget],..." such as
// "dt:champion:50ms,canary:canary,challenger:shadow".
func ParseModels(s string) ([]ModelSpec, error) {
	var out []ModelSpec
	for _, item := range config.SplitList(s) {
		parts := strings.Split(item, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return nil, fmt.Errorf("models: %q is not name:role[:budget]", item)
		}
		m := ModelSpec{Name: parts[0], Role: parts[1]}
		if m.Name == "" {
			return nil, fmt.Errorf("models: %q has no model name", item)
		}
		switch m.Role {
		case "champion", "canary", "challenger", "shadow":
		default:
			return nil, fmt.Errorf("models: role %q of %q is not champion, canary, challenger or shadow", m.Role, m.Name)
		}
		if len(parts) == 3 {
			d, err := time.ParseDuration(parts[2])
			if err != nil {
				return nil, fmt.Errorf("models: budget of %q: %w", m.Name, err)
			}
			if d < 0 {
				return nil, fmt.Errorf("models: budget of %q is negative (%v)", m.Name, d)
			}
			m.Budget = d
		}
		out = append(out, m)
	}
	return out, nil
}

// Config is the rendezvous stage's configuration.
type Config struct {
	Common config.Common
	// Models are the declared models, in priority order, with their wait
	// budgets: with LiveModels they give the defaults (role, budget,
	// priority) of the versions the registry announces; without, they are
	// the models waited for.
	Models []ModelSpec
	// Policy is the objective's decision policy: priority (the default),
	// latest, ab or ensemble, the breaker, and per-model settings (budget,
	// priority, tenant, shadow sampling). Its SLA is only a fallback: each
	// request carries its own deadline.
	Policy policy.Config
	// LiveModels makes the stage wait for the model versions the live
	// registry (rdv.models) shows live, as they come and go, instead of a
	// fixed list.
	LiveModels bool
	// HeartbeatTTL is how long after its last heartbeat a model runner is
	// still waited for.
	HeartbeatTTL time.Duration
	// DefaultResult is the meaningful default answered when no model
	// answers within the SLA.
	DefaultResult string
	// Settle is how long past its deadline a decided mailbox stays open
	// even when every model has reported: long enough for the frontend's
	// marker of a call it answered itself (its -fallback past the SLA, plus
	// the trip), so the decision records what the caller got. The grace
	// bounds it.
	Settle time.Duration
	// Grace is how long after a request's deadline its mailbox stays open
	// for the models that have not reported, before the decision is logged.
	Grace time.Duration
	// CommitInterval is how often decisions and offsets are committed in one
	// transaction.
	CommitInterval time.Duration
	// OrphanTTL is how long a score whose request has not been seen is kept.
	OrphanTTL time.Duration
	// MaxOpen caps open mailboxes; past it new requests get the default
	// answer at once, with reason "shed".
	MaxOpen int
	Group   string
}

// DefaultBreaker opens a model's circuit when at least half of its answers
// of the last second (20 at least) were errors or later than its budget,
// and probes it again after 5 s. A time window, not a count: at a thousand
// calls a second a count of 20 is a 20 ms stall.
func DefaultBreaker() *policy.BreakerConfig {
	return &policy.BreakerConfig{Period: policy.Duration(time.Second), MinSamples: 20, Threshold: 0.5, CoolDown: policy.Duration(5 * time.Second)}
}

// Defaults returns the rendezvous defaults.
func Defaults() Config {
	return Config{
		Common:         config.Defaults(),
		Policy:         policy.Config{SLA: policy.Duration(time.Second), Breaker: DefaultBreaker()},
		LiveModels:     true,
		HeartbeatTTL:   3 * time.Second,
		Grace:          time.Second,
		Settle:         80 * time.Millisecond,
		CommitInterval: 100 * time.Millisecond,
		OrphanTTL:      10 * time.Second,
		MaxOpen:        200_000,
	}
}

// Validate names the bad field.
func (c Config) Validate() error {
	var errs []error
	if err := c.Common.Validate(); err != nil {
		errs = append(errs, err)
	}
	answering := 0
	seen := map[string]bool{}
	for _, m := range c.Models {
		if seen[m.Name] {
			errs = append(errs, fmt.Errorf("models: %q is listed twice", m.Name))
		}
		seen[m.Name] = true
		if m.Answers() {
			answering++
		}
	}
	if c.LiveModels {
		if _, err := policy.Live(c.Policy, c.declared()); err != nil {
			errs = append(errs, fmt.Errorf("policy: %w", err))
		}
		if c.HeartbeatTTL <= 0 {
			errs = append(errs, fmt.Errorf("heartbeat-ttl: %v must be positive", c.HeartbeatTTL))
		}
	} else {
		if answering == 0 && len(c.Policy.Models) == 0 {
			errs = append(errs, errors.New("models: at least one champion or canary is required (or live models)"))
		}
		if _, err := c.static(); err != nil {
			errs = append(errs, fmt.Errorf("policy: %w", err))
		}
	}
	if c.Settle < 0 {
		errs = append(errs, fmt.Errorf("settle: %v must not be negative", c.Settle))
	}
	if c.Grace < 0 {
		errs = append(errs, fmt.Errorf("grace: %v must not be negative", c.Grace))
	}
	if c.CommitInterval <= 0 {
		errs = append(errs, fmt.Errorf("commit-interval: %v must be positive", c.CommitInterval))
	}
	if c.OrphanTTL <= 0 {
		errs = append(errs, fmt.Errorf("orphan-ttl: %v must be positive", c.OrphanTTL))
	}
	if c.MaxOpen <= 0 {
		errs = append(errs, fmt.Errorf("max-open: %d must be positive", c.MaxOpen))
	}
	return errors.Join(errs...)
}

// declared is the policy document's models followed by the -models list's
// models it does not name; a -models entry's priority is its place in the
// list.
func (c Config) declared() []policy.ModelConfig {
	out := append([]policy.ModelConfig(nil), c.Policy.Models...)
	named := map[string]bool{}
	for _, m := range out {
		named[m.Name] = true
	}
	for i, m := range c.Models {
		if named[m.Name] {
			continue
		}
		out = append(out, policy.ModelConfig{Name: m.Name, Role: m.Role, Priority: 10 * i, Budget: policy.Duration(m.Budget)})
	}
	return out
}

// static is the policy with the declared models: what the stage waits for
// without the live registry.
func (c Config) static() (policy.Config, error) {
	p := c.Policy
	p.Models = c.declared()
	if err := p.Validate(); err != nil {
		return policy.Config{}, err
	}
	return p, nil
}

// bind is the policy for the model versions the registry shows live. Each
// takes what it announces (or what an operator's directive set): role,
// priority, budget, tenant; and what the runner leaves unset from the
// declared model of the same name (and version, when the declaration has
// one).
func (c Config) bind(live []fleet.Model) (policy.Config, error) {
	decl := c.declared()
	var ms []policy.ModelConfig
	for _, m := range live {
		if !m.Waited() {
			continue
		}
		mc := policy.ModelConfig{Name: m.Name, Version: m.Version, Role: m.Role, Priority: -1, Tenant: m.Tenant}
		for _, d := range decl {
			if d.Name != m.Name || (d.Version != "" && d.Version != m.Version) {
				continue
			}
			if mc.Role == "" {
				mc.Role = d.Role
			}
			mc.Priority, mc.Budget, mc.Sample = d.Priority, d.Budget, d.Sample
			if mc.Tenant == "" {
				mc.Tenant = d.Tenant
			}
			break
		}
		if mc.Role == "" {
			mc.Role = policy.RoleShadow
		}
		if m.Priority != nil {
			mc.Priority = *m.Priority
		}
		if m.Budget != nil {
			mc.Budget = policy.Duration(*m.Budget)
		}
		if mc.Priority < 0 {
			mc.Priority = 1000 // after every declared model
		}
		if mc.Role != policy.RoleShadow {
			mc.Sample = nil // a promoted shadow answers every request it can
		}
		ms = append(ms, mc)
	}
	return policy.Live(c.Policy, ms)
}

// LoadPolicy reads a policy document. Without a breaker section it gets
// DefaultBreaker, and without an SLA one second (each request carries its
// own deadline, which wins): {"breaker": null} is how to turn it off.
func LoadPolicy(path string) (policy.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return policy.Config{}, fmt.Errorf("policy: %w", err)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return policy.Config{}, fmt.Errorf("policy %s: %w", path, err)
	}
	if _, ok := probe["sla"]; !ok {
		probe["sla"] = json.RawMessage(`"1s"`)
	}
	if _, ok := probe["breaker"]; !ok {
		b, _ := json.Marshal(DefaultBreaker())
		probe["breaker"] = b
	}
	data, _ = json.Marshal(probe)
	c, err := policy.ParseLive(data)
	if err != nil {
		return policy.Config{}, fmt.Errorf("policy %s: %w", path, err)
	}
	return c, nil
}
