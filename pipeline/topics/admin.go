package topics

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Layout is how many partitions an objective's topics get. Requests and
// scores must have the same count: the rendezvous stage relies on a request
// and its scores landing on the same partition number.
type Layout struct {
	Partitions      int32 // requests, inputs, scores, decisions, decoy
	Replicas        int16 // -1 for the broker's default
	ReplyPartitions int32 // results: one per frontend instance
}

// DefaultLayout suits one machine.
func DefaultLayout() Layout { return Layout{Partitions: 4, Replicas: -1, ReplyPartitions: 4} }

// Ensure creates the objective's topics and the model registry topic if they
// do not exist. An existing topic with the wrong partition count for
// co-partitioning is an error, since answers would silently go astray.
func Ensure(ctx context.Context, adm *kadm.Client, objective string, l Layout) error {
	s := For(objective)
	compact := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	want := []struct {
		name  string
		parts int32
		cfg   map[string]*string
	}{
		{s.Requests, l.Partitions, nil},
		{s.Inputs, l.Partitions, nil},
		{s.Scores, l.Partitions, nil},
		{s.ReplayScores, l.Partitions, nil},
		{s.Results, l.ReplyPartitions, nil},
		{s.Decisions, l.Partitions, nil},
		{s.Decoy, l.Partitions, nil},
		{s.DLQ, 1, nil},
		{s.Context, 1, compact},
		{Models, 1, compact},
	}
	for _, w := range want {
		resp, err := adm.CreateTopic(ctx, w.parts, l.Replicas, w.cfg, w.name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", w.name, err)
		}
	}
	td, err := adm.ListTopics(ctx, s.Requests, s.Scores)
	if err != nil {
		return fmt.Errorf("describe %s and %s: %w", s.Requests, s.Scores, err)
	}
	if a, b := len(td[s.Requests].Partitions), len(td[s.Scores].Partitions); a != b {
		return fmt.Errorf("%s has %d partitions but %s has %d: they must match for co-partitioning", s.Requests, a, s.Scores, b)
	}
	return nil
}
