// Package fleet is the live model registry: the compacted rdv.models topic
// on which every model runner announces itself with heartbeats, and on
// which operators write directives (promote, retire, set) that override
// what runners announce. The rendezvous stage folds both into the set of
// models it waits for, so a model version joins, is promoted or retired
// without restarting anything.
//
// Heartbeats are keyed hb|objective|name|version|instance and directives
// ctl|objective|name|version, so compaction keeps the last of each.
package fleet

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
)

// Schema is the Avro schema of rdv.models values.
//
//go:embed model.avsc
var Schema string

// Subject is the registry subject of rdv.models.
var Subject = topics.Subject(topics.Models)

// Event kinds.
const (
	KindHeartbeat = "heartbeat"
	KindDirective = "directive"
)

// Runner statuses (heartbeats).
const (
	StatusWarming   = "warming"   // loading, not scoring yet
	StatusReplaying = "replaying" // scoring history; its scores are not waited for
	StatusLive      = "live"      // scoring live inputs: the rendezvous waits for it
	StatusDraining  = "draining"  // shutting down: no longer waited for
	StatusStopped   = "stopped"   // shut down cleanly
)

// Directive statuses.
const (
	StatusRetired = "retired" // never waited for, whatever the runner says
	StatusActive  = "active"  // undoes a retirement
)

// Event is one record of rdv.models.
type Event struct {
	Kind      string
	Objective string
	Name      string
	Version   string
	Instance  string
	Role      string
	Priority  *int
	Budget    *time.Duration
	Tenant    *string
	Status    string
	At        time.Time
	Started   time.Time
	Replay    Progress
	By        string
}

// Progress is a replaying runner's position in history.
type Progress struct {
	Done, Left int64
	Rate       float64 // records per second
}

// ETA is the time left at the current rate, zero when unknown.
func (p Progress) ETA() time.Duration {
	if p.Rate <= 0 || p.Left <= 0 {
		return 0
	}
	return time.Duration(float64(p.Left) / p.Rate * float64(time.Second))
}

// Key is the record key of an event: the last event of a key is what
// compaction keeps.
func (e Event) Key() string {
	if e.Kind == KindDirective {
		return strings.Join([]string{"ctl", e.Objective, e.Name, e.Version}, "|")
	}
	return strings.Join([]string{"hb", e.Objective, e.Name, e.Version, e.Instance}, "|")
}

// Validate names the bad field.
func (e Event) Validate() error {
	var errs []error
	switch e.Kind {
	case KindHeartbeat:
		if e.Version == "" {
			errs = append(errs, errors.New("version: a heartbeat names its version"))
		}
		switch e.Status {
		case StatusWarming, StatusReplaying, StatusLive, StatusDraining, StatusStopped:
		default:
			errs = append(errs, fmt.Errorf("status: %q is not warming, replaying, live, draining or stopped", e.Status))
		}
	case KindDirective:
		switch e.Status {
		case "", StatusRetired, StatusActive:
		default:
			errs = append(errs, fmt.Errorf("status: %q is not retired or active", e.Status))
		}
	default:
		errs = append(errs, fmt.Errorf("kind: %q is not heartbeat or directive", e.Kind))
	}
	if e.Objective == "" {
		errs = append(errs, errors.New("objective: empty"))
	}
	if e.Name == "" || strings.ContainsAny(e.Name, "|@") {
		errs = append(errs, fmt.Errorf("name: %q must be non-empty, without '|' or '@'", e.Name))
	}
	switch e.Role {
	case "", "champion", "canary", "challenger", "shadow":
	default:
		errs = append(errs, fmt.Errorf("role: %q is not champion, canary, challenger or shadow", e.Role))
	}
	if e.Priority != nil && *e.Priority < 0 {
		errs = append(errs, fmt.Errorf("priority: %d is negative", *e.Priority))
	}
	if e.Budget != nil && *e.Budget < 0 {
		errs = append(errs, fmt.Errorf("budget: %v is negative", *e.Budget))
	}
	return errors.Join(errs...)
}

// Native is the event as the Avro record goavro encodes.
func (e Event) Native() map[string]any {
	var prio, budget, tenant any
	if e.Priority != nil {
		prio = map[string]any{"int": int32(*e.Priority)}
	}
	if e.Budget != nil {
		budget = map[string]any{"long": e.Budget.Microseconds()}
	}
	if e.Tenant != nil {
		tenant = serde.Opt(*e.Tenant)
	}
	var started int64
	if !e.Started.IsZero() {
		started = e.Started.UnixMicro()
	}
	return map[string]any{
		"kind": e.Kind, "objective": e.Objective, "name": e.Name, "version": e.Version,
		"instance": e.Instance, "role": e.Role, "priority": prio, "budget_us": budget, "tenant": tenant,
		"status": e.Status, "at_us": e.At.UnixMicro(), "started_us": started,
		"replay_done": e.Replay.Done, "replay_left": e.Replay.Left, "replay_rate": e.Replay.Rate, "by": e.By,
	}
}

// FromNative reads a decoded record.
func FromNative(m map[string]any) Event {
	e := Event{
		Kind: serde.Str(m, "kind"), Objective: serde.Str(m, "objective"), Name: serde.Str(m, "name"),
		Version: serde.Str(m, "version"), Instance: serde.Str(m, "instance"), Role: serde.Str(m, "role"),
		Status: serde.Str(m, "status"), At: time.UnixMicro(serde.Long(m, "at_us")), By: serde.Str(m, "by"),
		Replay: Progress{Done: serde.Long(m, "replay_done"), Left: serde.Long(m, "replay_left")},
	}
	if s := serde.Long(m, "started_us"); s > 0 {
		e.Started = time.UnixMicro(s)
	}
	if r, ok := m["replay_rate"].(float64); ok {
		e.Replay.Rate = r
	}
	if p, ok := union(m["priority"]).(int32); ok {
		v := int(p)
		e.Priority = &v
	}
	if b, ok := union(m["budget_us"]).(int64); ok {
		d := time.Duration(b) * time.Microsecond
		e.Budget = &d
	}
	if t, ok := serde.OptStr(m, "tenant"); ok {
		e.Tenant = &t
	}
	return e
}

// union unwraps goavro's {"type": value} encoding of a union branch.
func union(v any) any {
	if m, ok := v.(map[string]any); ok {
		for _, x := range m {
			return x
		}
	}
	return v
}

// Model is one model version as the registry sees it: what its runners
// announce, overridden by directives.
type Model struct {
	Objective, Name, Version string
	Role                     string
	Priority                 *int
	Budget                   *time.Duration
	Tenant                   string
	// Status is the freshest instance's status, or "retired", or "stale"
	// when no instance has heartbeaten within the TTL.
	Status    string
	Retired   bool
	Instances []string // instances with a fresh heartbeat
	LastSeen  time.Time
	Replay    Progress
	// Directed is true when a directive changed the role, priority or budget.
	Directed bool
}

// Waited reports whether the rendezvous stage waits for this model: it is
// live, heartbeating and not retired.
func (m Model) Waited() bool { return m.Status == StatusLive && !m.Retired }

// Key is "name@version".
func (m Model) Key() string { return m.Name + "@" + m.Version }

// State is the folded content of rdv.models: the last event per key.
type State struct {
	events map[string]Event
}

// NewState returns an empty state.
func NewState() *State { return &State{events: map[string]Event{}} }

// Apply folds one record in; a nil value (a tombstone) deletes its key.
func (s *State) Apply(key string, e *Event) {
	if e == nil {
		delete(s.events, key)
		return
	}
	s.events[key] = *e
}

// Directive is the directive in force for exactly objective, name and
// version (version "" for the whole name). A new directive for the same
// version replaces it whole, so a writer starts from it to change one
// setting and keep the others.
func (s *State) Directive(objective, name, version string) (Event, bool) {
	e, ok := s.events[Event{Kind: KindDirective, Objective: objective, Name: name, Version: version}.Key()]
	return e, ok
}

// Len is the number of keys held.
func (s *State) Len() int { return len(s.events) }

// Models lists the objective's model versions at now (every objective when
// objective is empty): a version is listed while some instance has a
// heartbeat record, live or not; heartbeats older than ttl make it stale.
// Sorted by objective, name and version.
func (s *State) Models(objective string, now time.Time, ttl time.Duration) []Model {
	byKey := map[string]*Model{}
	var directives []Event
	for _, e := range s.events {
		if objective != "" && e.Objective != objective {
			continue
		}
		if e.Kind == KindDirective {
			directives = append(directives, e)
			continue
		}
		if e.Kind != KindHeartbeat {
			continue
		}
		k := e.Objective + "|" + e.Name + "@" + e.Version
		m := byKey[k]
		if m == nil {
			m = &Model{Objective: e.Objective, Name: e.Name, Version: e.Version, Status: "stale"}
			byKey[k] = m
		}
		fresh := now.Sub(e.At) <= ttl && e.Status != StatusStopped
		if e.At.After(m.LastSeen) {
			m.LastSeen = e.At
			// The freshest heartbeat speaks for the version's settings.
			m.Role, m.Priority, m.Budget, m.Replay = e.Role, e.Priority, e.Budget, e.Replay
			if e.Tenant != nil {
				m.Tenant = *e.Tenant
			}
		}
		if fresh {
			m.Instances = append(m.Instances, e.Instance)
			if rank(e.Status) > rank(m.Status) {
				m.Status = e.Status
			}
		} else if m.Status == "stale" && e.Status == StatusStopped {
			m.Status = StatusStopped
		}
	}
	// Directives for every version first, so an exact version's wins.
	sort.Slice(directives, func(i, j int) bool {
		if (directives[i].Version == "") != (directives[j].Version == "") {
			return directives[i].Version == ""
		}
		return directives[i].At.Before(directives[j].At)
	})
	for _, d := range directives {
		for _, m := range byKey {
			if m.Objective != d.Objective || m.Name != d.Name || (d.Version != "" && m.Version != d.Version) {
				continue
			}
			if d.Role != "" {
				m.Role, m.Directed = d.Role, true
			}
			if d.Priority != nil {
				m.Priority, m.Directed = d.Priority, true
			}
			if d.Budget != nil {
				m.Budget, m.Directed = d.Budget, true
			}
			switch d.Status {
			case StatusRetired:
				m.Retired = true
			case StatusActive:
				m.Retired = false
			}
		}
	}
	out := make([]Model, 0, len(byKey))
	for _, m := range byKey {
		sort.Strings(m.Instances)
		if m.Retired {
			m.Status = StatusRetired
		}
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Objective != b.Objective {
			return a.Objective < b.Objective
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Version < b.Version
	})
	return out
}

// rank orders statuses so that one live instance makes the version live.
func rank(s string) int {
	switch s {
	case StatusLive:
		return 5
	case StatusReplaying:
		return 4
	case StatusWarming:
		return 3
	case StatusDraining:
		return 2
	case StatusStopped:
		return 1
	}
	return 0
}

// Codec encodes and decodes events with the registered schema.
type Codec struct {
	sd  *serde.Serde
	enc *serde.Encoder
	rd  *serde.Schema
}

// NewCodec registers the schema (idempotent) and returns a codec.
func NewCodec(ctx context.Context, sd *serde.Serde) (*Codec, error) {
	enc, err := sd.Encoder(ctx, Subject, Schema)
	if err != nil {
		return nil, err
	}
	return &Codec{sd: sd, enc: enc, rd: enc.Schema}, nil
}

// Encode validates and encodes e.
func (c *Codec) Encode(e Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("model event %s: %w", e.Key(), err)
	}
	return c.enc.Encode(make([]byte, 0, 128), e.Native())
}

// Decode reads one record value.
func (c *Codec) Decode(ctx context.Context, v []byte) (Event, error) {
	m, err := c.sd.Decode(ctx, v, c.rd)
	if err != nil {
		return Event{}, err
	}
	return FromNative(m), nil
}
