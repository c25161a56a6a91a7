package rendezvous

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
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
	Models []ModelSpec
	// DefaultResult is the meaningful default answered when no model
	// answers within the SLA.
	DefaultResult string
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

// Defaults returns the rendezvous defaults.
func Defaults() Config {
	return Config{
		Common:         config.Defaults(),
		Grace:          time.Second,
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
	if answering == 0 {
		errs = append(errs, errors.New("models: at least one champion or canary is required"))
	} else if err := (policy.Priority{Order: c.order(), SLA: time.Hour}).Validate(); err != nil {
		errs = append(errs, err)
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

// order is the answering models in priority order.
func (c Config) order() []policy.Model {
	var out []policy.Model
	for _, m := range c.Models {
		if m.Answers() {
			out = append(out, policy.Model{Name: m.Name, Budget: m.Budget})
		}
	}
	return out
}
