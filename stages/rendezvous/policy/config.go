package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Policy kinds: the main policy of an objective. Tenant routing is not a
// kind: it applies on top of any of them when a model names a tenant.
const (
	KindPriority = "priority" // first model in priority order that answers
	KindLatest   = "latest"   // highest live version of a model name, older ones as fallbacks
	KindAB       = "ab"       // split by a hash of the request key
	KindEnsemble = "ensemble" // vote or mean over the models that answered, with a quorum
	KindTenant   = "tenant"   // (outcome only) a tenant's own model, or its fallback
)

// Roles of a model.
const (
	RoleChampion   = "champion"   // answers, first in the priority chain
	RoleCanary     = "canary"     // answers, as a fallback
	RoleChallenger = "challenger" // answers only as an A/B arm or ensemble member
	RoleShadow     = "shadow"     // never answers; logged, possibly sampled
)

// Shadow sampling modes.
const (
	SampleRequest = "request"  // hash of the request id: an independent draw per request
	SampleKeyHash = "key-hash" // hash of the request key: all requests of a key alike
)

// Duration is a time.Duration written in JSON as a Go duration string such
// as "50ms".
type Duration time.Duration

// UnmarshalJSON reads "50ms" (or 0).
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "0" || string(b) == "null" {
		*d = 0
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s is not a string such as \"50ms\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want e.g. \"50ms\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Config is the decision policy of one objective.
type Config struct {
	Objective string          `json:"objective,omitempty"`
	SLA       Duration        `json:"sla"`
	Policy    string          `json:"policy,omitempty"` // priority (the default), latest, ab, ensemble
	Models    []ModelConfig   `json:"models"`
	AB        *ABConfig       `json:"ab,omitempty"`
	Ensemble  *EnsembleConfig `json:"ensemble,omitempty"`
	Breaker   *BreakerConfig  `json:"breaker,omitempty"`

	// live marks a config bound to the models deployed right now (Live):
	// references to models that are not deployed are not errors.
	live bool
}

// Live binds base to the models deployed now: its models are replaced by
// models. A/B arms and ensemble members that name a model not deployed now
// are not errors, as they are in a document: models come and go at run
// time, and an arm or an ensemble with no deployed member answers by its
// fallback, or the default at the SLA. Everything else is validated as
// usual.
func Live(base Config, models []ModelConfig) (Config, error) {
	c := base
	c.Models = models
	c.live = true
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// ModelConfig is one deployed model version.
type ModelConfig struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Role    string `json:"role"`
	// Priority orders the answering models: lower first; equal priorities
	// keep the order of the document.
	Priority int `json:"priority,omitempty"`
	// Budget is how long after the request the engine waits for this model
	// before moving on; zero (or more than the SLA) means the whole SLA.
	Budget Duration `json:"budget,omitempty"`
	// Tenant makes the model client-specific: it answers only requests whose
	// key is this tenant, ahead of the shared models.
	Tenant string `json:"tenant,omitempty"`
	// Sample selects the requests a shadow is expected for (shadows only).
	Sample *Sample `json:"sample,omitempty"`
}

// Key is how scores of the model are keyed: "name@version", or the name
// when the version is empty.
func (m ModelConfig) Key() string { return Key(m.Name, m.Version) }

// Key is the key of a model version's score: "name@version", or name when
// version is empty.
func Key(name, version string) string {
	if version == "" {
		return name
	}
	return name + "@" + version
}

// Sample is a shadow's sampling: Percent of the requests, drawn by a hash of
// the request id (By "request", the default) or of the request key (By
// "key-hash"). In JSON it is an object, or a bare number for the percent.
type Sample struct {
	Percent float64 `json:"percent"`
	By      string  `json:"by,omitempty"`
}

// UnmarshalJSON accepts 25 or {"percent":25,"by":"key-hash"}.
func (s *Sample) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] != '{' {
		return json.Unmarshal(b, &s.Percent)
	}
	type plain Sample
	return json.Unmarshal(b, (*plain)(s))
}

// ABConfig splits requests over arms by a hash of the request key.
type ABConfig struct {
	Arms []ArmConfig `json:"arms"`
}

// ArmConfig is one arm: a percentage of keys and the priority chain that
// answers them. Models are references: "name@version", or "name" for every
// version of the name, newest first.
type ArmConfig struct {
	Name    string   `json:"name"`
	Percent float64  `json:"percent"`
	Models  []string `json:"models"`
}

// Ensemble methods.
const (
	MethodVote = "vote" // majority of results; ties go to the higher-priority member's result
	MethodMean = "mean" // mean of the probabilities; the answer is the most probable label
)

// EnsembleConfig combines the members that answered in time.
type EnsembleConfig struct {
	Method string `json:"method"`
	Quorum int    `json:"quorum"`
	// Models are the members (references as in ArmConfig); empty means the
	// priority chain.
	Models []string `json:"models,omitempty"`
	// Name is the model name of the synthesized score; "ensemble" if empty.
	Name string `json:"name,omitempty"`
}

// BreakerConfig configures the circuit breaker. The window is either the
// last Window outcomes (count-based) or the outcomes of the last Period
// (time-based); exactly one of them is set.
type BreakerConfig struct {
	Window     int      `json:"window,omitempty"`
	Period     Duration `json:"period,omitempty"`
	MinSamples int      `json:"minSamples"`
	// Threshold is the failed fraction (errors plus timeouts) at or above
	// which the breaker opens, in (0, 1].
	Threshold float64  `json:"threshold"`
	CoolDown  Duration `json:"coolDown"`
}

// Parse reads and validates a JSON policy document. Unknown fields are
// errors.
func Parse(data []byte) (Config, error) {
	c, err := decode(data)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func decode(data []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("policy config: %w", err)
	}
	if dec.More() {
		return Config{}, errors.New("policy config: trailing data after the document")
	}
	return c, nil
}

// ParseLive reads a policy document for a stage that learns its models
// from the live registry: models may be omitted (they come and go), and
// references to models not listed are not errors (see Live).
func ParseLive(data []byte) (Config, error) {
	c, err := decode(data)
	if err != nil {
		return Config{}, err
	}
	return Live(c, c.Models)
}

func fieldErr(field, format string, a ...any) error {
	return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...))
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if c.SLA <= 0 {
		return fieldErr("sla", "%v must be positive", time.Duration(c.SLA))
	}
	switch c.kind() {
	case KindPriority, KindLatest, KindAB, KindEnsemble:
	default:
		return fieldErr("policy", "%q is not priority, latest, ab or ensemble", c.Policy)
	}
	if len(c.Models) == 0 && !c.live {
		return fieldErr("models", "at least one model is required")
	}
	seen := map[string]bool{}
	shared := 0
	for i, m := range c.Models {
		f := "models[" + strconv.Itoa(i) + "]"
		if m.Name == "" {
			return fieldErr(f+".name", "is empty")
		}
		if strings.Contains(m.Name, "@") {
			return fieldErr(f+".name", "%q must not contain '@'", m.Name)
		}
		if seen[m.Key()] {
			return fieldErr(f, "%q version %q is listed twice", m.Name, m.Version)
		}
		seen[m.Key()] = true
		switch m.Role {
		case RoleChampion, RoleCanary:
			if m.Tenant == "" {
				shared++
			}
		case RoleChallenger, RoleShadow:
		case "":
			if !c.live {
				return fieldErr(f+".role", "is empty: champion, canary, challenger or shadow")
			}
			// Bound live, a model's role is what its runner announces: the
			// document only sets its budget, priority, tenant or sampling.
		default:
			return fieldErr(f+".role", "%q is not champion, canary, challenger or shadow", m.Role)
		}
		if m.Priority < 0 {
			return fieldErr(f+".priority", "%d is negative", m.Priority)
		}
		if m.Budget < 0 {
			return fieldErr(f+".budget", "%v is negative", time.Duration(m.Budget))
		}
		if m.Sample != nil {
			if m.Role != RoleShadow && !(c.live && m.Role == "") {
				return fieldErr(f+".sample", "only shadows are sampled, %q is a %s", m.Name, m.Role)
			}
			if m.Sample.Percent < 0 || m.Sample.Percent > 100 || math.IsNaN(m.Sample.Percent) {
				return fieldErr(f+".sample.percent", "%v is not within 0..100", m.Sample.Percent)
			}
			switch m.Sample.By {
			case "", SampleRequest, SampleKeyHash:
			default:
				return fieldErr(f+".sample.by", "%q is not request or key-hash", m.Sample.By)
			}
		}
	}
	if (c.kind() == KindPriority || c.kind() == KindLatest) && shared == 0 && !c.live {
		return fieldErr("models", "a %s policy needs a champion or canary without a tenant", c.kind())
	}
	if c.kind() == KindAB {
		if err := c.validateAB(); err != nil {
			return err
		}
	} else if c.AB != nil {
		return fieldErr("ab", "set, but the policy is %q", c.kind())
	}
	if c.kind() == KindEnsemble {
		if err := c.validateEnsemble(); err != nil {
			return err
		}
	} else if c.Ensemble != nil {
		return fieldErr("ensemble", "set, but the policy is %q", c.kind())
	}
	if c.Breaker != nil {
		if err := c.Breaker.validate("breaker"); err != nil {
			return err
		}
	}
	return nil
}

func (c Config) kind() string {
	if c.Policy == "" {
		return KindPriority
	}
	return c.Policy
}

func (c Config) validateAB() error {
	if c.AB == nil {
		return fieldErr("ab", "is required by the ab policy")
	}
	if len(c.AB.Arms) < 2 {
		return fieldErr("ab.arms", "needs at least two arms, has %d", len(c.AB.Arms))
	}
	names := map[string]bool{}
	total := 0
	for i, a := range c.AB.Arms {
		f := "ab.arms[" + strconv.Itoa(i) + "]"
		if a.Name == "" {
			return fieldErr(f+".name", "is empty")
		}
		if names[a.Name] {
			return fieldErr(f+".name", "%q is used twice", a.Name)
		}
		names[a.Name] = true
		bp := a.Percent * 100
		if !(a.Percent > 0) || a.Percent > 100 || math.Abs(bp-math.Round(bp)) > 1e-6 {
			return fieldErr(f+".percent", "%v must be within (0, 100], in steps of 0.01", a.Percent)
		}
		total += int(math.Round(bp))
		if len(a.Models) == 0 {
			return fieldErr(f+".models", "is empty")
		}
		for j, r := range a.Models {
			if _, err := c.resolve(r); err != nil && !c.live {
				return fieldErr(f+".models["+strconv.Itoa(j)+"]", "%v", err)
			}
		}
	}
	if total != 10000 {
		return fieldErr("ab.arms", "percentages add up to %v, not 100", float64(total)/100)
	}
	return nil
}

func (c Config) validateEnsemble() error {
	e := c.Ensemble
	if e == nil {
		return fieldErr("ensemble", "is required by the ensemble policy")
	}
	if e.Method != MethodVote && e.Method != MethodMean {
		return fieldErr("ensemble.method", "%q is not vote or mean", e.Method)
	}
	members := 0
	if len(e.Models) == 0 {
		for _, m := range c.Models {
			if m.Tenant == "" && (m.Role == RoleChampion || m.Role == RoleCanary) {
				members++
			}
		}
	}
	for j, r := range e.Models {
		idx, err := c.resolve(r)
		if err != nil && !c.live {
			return fieldErr("ensemble.models["+strconv.Itoa(j)+"]", "%v", err)
		}
		members += len(idx)
	}
	if c.live {
		// Fewer members than the quorum deployed: the ensemble cannot form
		// and the priority chain answers, until they are back.
		if e.Quorum < 1 {
			return fieldErr("ensemble.quorum", "%d must be at least 1", e.Quorum)
		}
		return nil
	}
	if members == 0 {
		return fieldErr("ensemble.models", "no member: list models, or deploy a champion or canary")
	}
	if e.Quorum < 1 || e.Quorum > members {
		return fieldErr("ensemble.quorum", "%d is not within 1..%d (the members)", e.Quorum, members)
	}
	return nil
}

func (b BreakerConfig) validate(f string) error {
	if (b.Window > 0) == (b.Period > 0) {
		return fieldErr(f, "set exactly one of window (a count) and period (a duration)")
	}
	if b.Window < 0 {
		return fieldErr(f+".window", "%d is negative", b.Window)
	}
	if b.Period < 0 {
		return fieldErr(f+".period", "%v is negative", time.Duration(b.Period))
	}
	if b.MinSamples < 1 {
		return fieldErr(f+".minSamples", "%d must be at least 1", b.MinSamples)
	}
	if b.Window > 0 && b.MinSamples > b.Window {
		return fieldErr(f+".minSamples", "%d is more than the window (%d)", b.MinSamples, b.Window)
	}
	if !(b.Threshold > 0) || b.Threshold > 1 {
		return fieldErr(f+".threshold", "%v is not within (0, 1]", b.Threshold)
	}
	if b.CoolDown <= 0 {
		return fieldErr(f+".coolDown", "%v must be positive", time.Duration(b.CoolDown))
	}
	return nil
}

// resolve turns a reference ("name" or "name@version") into model indices:
// the exact version, or every version of the name, newest first. Shadows
// and tenant models cannot be referenced.
func (c Config) resolve(ref string) ([]int, error) {
	name, version, exact := strings.Cut(ref, "@")
	var out []int
	for i, m := range c.Models {
		if m.Name != name || (exact && m.Version != version) {
			continue
		}
		if m.Role == RoleShadow {
			return nil, fmt.Errorf("%q is a shadow: shadows never answer", ref)
		}
		if m.Tenant != "" {
			return nil, fmt.Errorf("%q belongs to tenant %q", ref, m.Tenant)
		}
		out = append(out, i)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q is not a configured model", ref)
	}
	sortStable(out, func(a, b int) bool { return CompareVersions(c.Models[a].Version, c.Models[b].Version) > 0 })
	return out, nil
}
