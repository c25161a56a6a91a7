// Package contract evolves the Avro contracts between stages safely: it
// checks a set of schemas against what the registry holds, under each
// subject's compatibility level, registers them, shows what changed, and
// tells a stage whether it can read what is in its topic.
package contract

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// ErrUnreadable is returned when a reader schema cannot read the data a
// subject holds.
var ErrUnreadable = errors.New("schema cannot read the topic's data")

// Subject is one registry subject and the contract it carries.
type Subject struct {
	Subject string
	Topic   string
	Kind    schemas.Kind
}

// Subjects lists an objective's subjects in pipeline order. The decoy log
// carries the inputs' bytes, so it holds the input contract too; replayed
// scores are scores, so they share the score contract.
func Subjects(objective string) []Subject {
	ts := topics.For(objective)
	byKind := map[schemas.Kind][]string{
		schemas.Request:  {ts.Requests},
		schemas.Input:    {ts.Inputs, ts.Decoy},
		schemas.Score:    {ts.Scores, ts.ReplayScores},
		schemas.Result:   {ts.Results},
		schemas.Decision: {ts.Decisions},
		schemas.Context:  {ts.Context},
	}
	var out []Subject
	for _, k := range schemas.Kinds {
		for _, t := range byKind[k] {
			out = append(out, Subject{Subject: topics.Subject(t), Topic: t, Kind: k})
		}
	}
	return out
}

// Finding is the verdict on one subject.
type Finding struct {
	Subject
	Compatible bool
	Unchanged  bool     // the registry's latest version is this very schema
	Latest     int      // the registry's latest version, 0 when none
	Previous   string   // its schema text
	Messages   []string // why not, naming the field and the rule
}

// Check compares each schema of set with the registry under its subject's
// compatibility level.
func Check(ctx context.Context, rc registry.Client, set schemas.Set) ([]Finding, error) {
	var out []Finding
	for _, sub := range Subjects(set.Objective) {
		f := Finding{Subject: sub}
		text := set.Text[sub.Kind]
		_, latest, version, err := rc.Latest(ctx, sub.Subject)
		switch {
		case errors.Is(err, registry.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("latest of %s: %w", sub.Subject, err)
		default:
			f.Latest = version
			f.Previous = latest
			if _, v, err := rc.Lookup(ctx, sub.Subject, text); err == nil && v == version {
				f.Unchanged = true
			}
		}
		ok, msgs, err := rc.CheckCompatible(ctx, sub.Subject, text)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", sub.Subject, err)
		}
		f.Compatible, f.Messages = ok, msgs
		out = append(out, f)
	}
	return out, nil
}

// Register registers each schema of set under its subject and returns the
// ids by subject. The registry refuses an incompatible one
// (registry.ErrIncompatible), naming the field.
func Register(ctx context.Context, rc registry.Client, set schemas.Set) (map[string]int, error) {
	ids := map[string]int{}
	for _, sub := range Subjects(set.Objective) {
		id, err := rc.Register(ctx, sub.Subject, set.Text[sub.Kind])
		if err != nil {
			return ids, fmt.Errorf("register %s: %w", sub.Subject, err)
		}
		ids[sub.Subject] = id
	}
	return ids, nil
}

// RequireReadable fails when reader cannot read the latest schema
// registered for topic: a stage calls it before it starts, so that it
// refuses to run rather than dead-letter every record. A subject without
// versions is fine: nothing has been written yet.
func RequireReadable(ctx context.Context, rc registry.Client, topic, reader string) error {
	subject := topics.Subject(topic)
	id, writer, version, err := rc.Latest(ctx, subject)
	if errors.Is(err, registry.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("latest schema of %s: %w", subject, err)
	}
	problem, err := embedded.CanRead(reader, writer)
	if err != nil {
		return fmt.Errorf("compare with %s version %d: %w", subject, version, err)
	}
	if problem != "" {
		return fmt.Errorf("%w: %s version %d (schema id %d) cannot be read by this build's schema: %s", ErrUnreadable, subject, version, id, problem)
	}
	return nil
}

// Sorted returns findings ordered by subject, for stable output.
func Sorted(fs []Finding) []Finding {
	out := append([]Finding(nil), fs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Subject.Subject < out[j].Subject.Subject })
	return out
}
