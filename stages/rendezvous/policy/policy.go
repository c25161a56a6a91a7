// Package policy decides which answer a request gets from the scores its
// mailbox holds so far. It is pure: the rendezvous stage calls Decide when a
// score arrives and when the wake-up time Decide asked for comes.
package policy

import (
	"errors"
	"fmt"
	"time"
)

// Reasons an answer is given.
const (
	ReasonChampion = "champion" // the first model in priority order answered in time
	ReasonFallback = "fallback" // a lower-priority model answered because the ones above it failed or ran out of budget
	ReasonDefault  = "default"  // nobody answered within the SLA
)

// Model is one answering model in priority order, with its wait budget: how
// long after the request the rendezvous waits for it before it moves on to
// the next. A budget of zero, or one past the SLA, means the whole SLA.
type Model struct {
	Name   string
	Budget time.Duration
}

// Score is what a model said.
type Score struct {
	Model, Version, Role string
	Result               string
	Probabilities        map[string]float64
	Failed               bool // the model answered with an error
}

// Outcome is a decision or the time to look again.
type Outcome struct {
	Decided bool
	Reason  string
	// Policy names the policy that produced the outcome ("priority", "ab",
	// "latest", "ensemble", "tenant"). Priority.Decide leaves it empty; the
	// Engine always sets it.
	Policy string
	// Arm is the A/B arm the request fell in, when the policy splits.
	Arm    string
	Winner *Score // nil for the default answer
	// WakeAt is, when not decided, the elapsed time at which the decision
	// may change without a new score arriving.
	WakeAt time.Duration
}

// Priority answers with the first model in order that answered, waiting for
// each model up to its budget; at the SLA it gives up and answers the
// default.
type Priority struct {
	Order []Model
	SLA   time.Duration
}

// Validate names the problem with a priority configuration.
func (p Priority) Validate() error {
	if p.SLA <= 0 {
		return fmt.Errorf("sla: %v must be positive", p.SLA)
	}
	if len(p.Order) == 0 {
		return errors.New("models: at least one answering model is required")
	}
	seen := map[string]bool{}
	for _, m := range p.Order {
		if m.Name == "" {
			return errors.New("models: a model has no name")
		}
		if seen[m.Name] {
			return fmt.Errorf("models: %q is listed twice", m.Name)
		}
		seen[m.Name] = true
		if m.Budget < 0 {
			return fmt.Errorf("models: budget of %q is negative", m.Name)
		}
	}
	return nil
}

func (p Priority) budget(m Model) time.Duration {
	if m.Budget <= 0 || m.Budget > p.SLA {
		return p.SLA
	}
	return m.Budget
}

// Decide looks at the scores so far, elapsed time after the request was
// received.
func (p Priority) Decide(elapsed time.Duration, scores map[string]*Score) Outcome {
	for i, m := range p.Order {
		s, ok := scores[m.Name]
		if ok && !s.Failed {
			reason := ReasonFallback
			if i == 0 {
				reason = ReasonChampion
			}
			return Outcome{Decided: true, Reason: reason, Winner: s}
		}
		if ok {
			continue // it failed: the next one
		}
		if b := p.budget(m); elapsed < b {
			return Outcome{WakeAt: b} // still worth waiting for
		}
	}
	if elapsed >= p.SLA {
		return Outcome{Decided: true, Reason: ReasonDefault}
	}
	// Every budget ran out before the SLA: the first model in order that
	// answers before the SLA still wins.
	return Outcome{WakeAt: p.SLA}
}
