// Package topics names the topics of an objective. Every name is derived
// here so that no stage spells one by hand.
package topics

import "fmt"

// Models is the compacted topic on which model runners announce themselves.
const Models = "rdv.models"

// Set is the topic names of one objective.
type Set struct {
	Objective string
	Requests  string
	Inputs    string
	Scores    string
	Results   string
	Decisions string
	Decoy     string
	Context   string
	DLQ       string

	// ReplayScores holds the scores a model runner computes over history
	// (a replay), kept apart from the live scores the rendezvous races.
	ReplayScores string
}

// For returns the topic names of an objective: rdv.<objective>.<name>.
func For(objective string) Set {
	p := func(n string) string { return fmt.Sprintf("rdv.%s.%s", objective, n) }
	return Set{
		Objective: objective,
		Requests:  p("requests"),
		Inputs:    p("inputs"),
		Scores:    p("scores"),
		Results:   p("results"),
		Decisions: p("decisions"),
		Decoy:     p("decoy"),
		Context:   p("context"),
		DLQ:       p("dlq"),

		ReplayScores: p("replay-scores"),
	}
}

// Logs lists the topics the log connector archives.
func (s Set) Logs() []string {
	return []string{s.Requests, s.Inputs, s.Scores, s.Results, s.Decisions, s.Decoy}
}

// Subject is the registry subject of a topic's values (topic-name strategy).
func Subject(topic string) string { return topic + "-value" }
