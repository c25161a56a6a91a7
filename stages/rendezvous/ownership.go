package rendezvous

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

func (s *stageState) handleRebalances(ctx context.Context) {
	for {
		select {
		case r := <-s.revoked:
			s.onRevoke(ctx, r)
		case a := <-s.assigned:
			// Every partition's restore reads the log; they run side by
			// side, since no request of those partitions is answered until
			// all are done.
			start := time.Now()
			parts := a[s.env.Topics.Requests]
			states := make([]*partState, len(parts))
			for i, p := range parts {
				states[i] = s.take(p)
			}
			var wg sync.WaitGroup
			since := make([]time.Time, len(parts))
			for i, p := range parts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var err error
					if since[i], err = s.restore(ctx, p, states[i]); err != nil {
						s.env.Log.Error("restore partition", "partition", p, "err", err)
					}
				}()
			}
			wg.Wait()
			s.restoreAnswers(ctx, states, since)
			s.env.Log.Info("partitions restored", "partitions", parts, "took", time.Since(start).Round(time.Millisecond))
		default:
			return
		}
	}
}

// onRevoke gives partitions up: what was decided for them is committed
// first (unless they were lost, when another owner may already have them),
// so the next owner replays exactly the undecided requests.
func (s *stageState) onRevoke(ctx context.Context, r revocation) {
	defer close(r.ack)
	if !r.lost {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.drain(cctx)
		if err := s.commitOffsets(cctx, true); err != nil {
			s.env.Log.Error("commit on revoke", "err", err)
		}
		cancel()
	}
	for _, p := range r.parts[s.env.Topics.Requests] {
		s.dropPartition(p)
	}
}

func (s *stageState) dropPartition(p int32) {
	for id, b := range s.boxes {
		if b.Partition == p {
			delete(s.boxes, id)
		}
	}
	delete(s.parts, p)
	s.m.open.Set(float64(len(s.boxes)))
	s.m.owned.Set(float64(len(s.parts)))
}

// take starts partition p afresh.
func (s *stageState) take(p int32) *partState {
	s.dropPartition(p)
	ps := &partState{reqNext: -1, scoreNext: -1, decided: map[string]bool{}}
	s.parts[p] = ps
	s.m.owned.Set(float64(len(s.parts)))
	return ps
}

// restoreAnswers reads back, for the partitions that replay, the answers
// given since the first replayed request (since[i] is zero for a partition
// with nothing to replay). Once for all of them: the results topic is
// partitioned by frontend, not by request.
func (s *stageState) restoreAnswers(ctx context.Context, states []*partState, since []time.Time) {
	var first time.Time
	for _, t := range since {
		if !t.IsZero() && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	if first.IsZero() {
		return
	}
	answered, err := s.readAnswered(ctx, first.Add(-5*time.Second))
	if err != nil {
		// Without them a replayed request is decided from its scores'
		// arrival times, which is what the owner answered unless it was
		// starved of CPU (README, "The rendezvous stage").
		s.env.Log.Error("read the answers already given; replayed requests are decided from their scores' times", "err", err)
		return
	}
	for i, ps := range states {
		if !since[i].IsZero() {
			ps.answered = answered
		}
	}
	s.env.Log.Info("answers already given read back", "since", first.Add(-5*time.Second), "answers", len(answered))
}

// restore takes partition p on: it notes how far the partition reaches, so
// no deadline fires before what was already there is read, and which
// requests already have a logged decision. It returns the time of the
// first request to replay, or zero when there is none.
func (s *stageState) restore(ctx context.Context, p int32, ps *partState) (time.Time, error) {
	adm := kadm.NewClient(s.cons)
	ends, err := adm.ListEndOffsets(ctx, s.env.Topics.Requests, s.env.Topics.Scores)
	if err != nil {
		return time.Time{}, fmt.Errorf("end offsets: %w", err)
	}
	reqEnd, _ := ends.Lookup(s.env.Topics.Requests, p)
	scoreEnd, _ := ends.Lookup(s.env.Topics.Scores, p)
	ps.catchReq, ps.catchScore = reqEnd.Offset, scoreEnd.Offset
	offs, err := adm.FetchOffsets(ctx, s.cfg.Group)
	if err != nil {
		return time.Time{}, fmt.Errorf("committed offsets: %w", err)
	}
	committed := int64(0)
	if o, ok := offs.Lookup(s.env.Topics.Requests, p); ok && o.At >= 0 {
		committed = o.At
	}
	if o, ok := offs.Lookup(s.env.Topics.Scores, p); ok && o.At >= ps.catchScore {
		ps.catchScore = 0
	}
	if committed >= ps.catchReq {
		ps.catchReq = 0
		return time.Time{}, nil // nothing to replay: nothing can have been decided twice
	}
	// The requests from the committed offset on will be read again. Those
	// decided before the last owner stopped have their decision in the
	// log, written after the request: read the log from the time of the
	// first request to be replayed.
	since, err := s.timestampAt(ctx, p, committed)
	if err != nil {
		return time.Time{}, err
	}
	n, err := s.readDecided(ctx, adm, p, since.Add(-5*time.Second), ps.decided)
	if err != nil {
		return time.Time{}, err
	}
	s.env.Log.Info("partition restored", "partition", p, "replay_from", committed, "replay_to", ps.catchReq, "already_decided", n)
	return since, nil
}

func (s *stageState) partitionClient(topic string, p int32, at kgo.Offset) (*kgo.Client, error) {
	return s.env.Client(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: at}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
}

func (s *stageState) timestampAt(ctx context.Context, p int32, offset int64) (time.Time, error) {
	cl, err := s.partitionClient(s.env.Topics.Requests, p, kgo.NewOffset().At(offset))
	if err != nil {
		return time.Time{}, err
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		fs := cl.PollRecords(rctx, 1)
		if rctx.Err() != nil {
			return time.Time{}, fmt.Errorf("read request %d of partition %d: %w", offset, p, rctx.Err())
		}
		if recs := fs.Records(); len(recs) > 0 {
			return recs[0].Timestamp, nil
		}
	}
}

// readDecided adds the request ids of the decisions logged since t on
// partition p to into.
func (s *stageState) readDecided(ctx context.Context, adm *kadm.Client, p int32, since time.Time, into map[string]bool) (int, error) {
	ends, err := adm.ListEndOffsets(ctx, s.env.Topics.Decisions)
	if err != nil {
		return 0, fmt.Errorf("end of decisions: %w", err)
	}
	end, _ := ends.Lookup(s.env.Topics.Decisions, p)
	if end.Offset <= 0 {
		return 0, nil
	}
	cl, err := s.partitionClient(s.env.Topics.Decisions, p, kgo.NewOffset().AfterMilli(since.UnixMilli()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	n := 0
	err = readTo(ctx, cl, map[int32]int64{p: end.Offset}, func(r *kgo.Record) {
		into[string(r.Key)] = true
		n++
	})
	return n, err
}

// readTo polls cl until every partition in end (partition to end offset)
// was read up to its end, a poll comes back empty, or 30 s pass. A
// transactional log ends in control markers, which are never returned as
// records, and a partition with nothing after the start never reaches its
// end: an idle poll means the end was reached.
func readTo(ctx context.Context, cl *kgo.Client, end map[int32]int64, each func(*kgo.Record)) error {
	deadline := time.Now().Add(30 * time.Second)
	for len(end) > 0 && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fs.NumRecords() == 0 {
			return nil
		}
		fs.EachRecord(func(r *kgo.Record) {
			if e, ok := end[r.Partition]; ok && r.Offset+1 >= e {
				delete(end, r.Partition)
			}
			each(r)
		})
	}
	return nil
}

// readAnswered reads every partition of the results topic from since to
// its end: the answers given, by request id.
func (s *stageState) readAnswered(ctx context.Context, since time.Time) (map[string]*answerGiven, error) {
	topic := s.env.Topics.Results
	ends, err := kadm.NewClient(s.cons).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end of %s: %w", topic, err)
	}
	from := map[int32]kgo.Offset{}
	end := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			from[o.Partition] = kgo.NewOffset().AfterMilli(since.UnixMilli())
			end[o.Partition] = o.Offset
		}
	})
	out := map[string]*answerGiven{}
	if len(from) == 0 {
		return out, nil
	}
	// Answers are written outside any transaction, as they are sent.
	cl, err := s.env.Client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	err = readTo(ctx, cl, end, func(r *kgo.Record) {
		rec, err := s.env.Serde.Decode(ctx, r.Value, s.resRd)
		if err != nil {
			return // not an answer this stage can read: it decides from the scores
		}
		g := &answerGiven{reason: serde.Str(rec, "reason"), policy: serde.Str(rec, "policy")}
		if m := serde.Str(rec, "model"); m != "" && m != "default" {
			res, _ := serde.OptStr(rec, "result")
			g.winner = &policy.Score{Model: m, Version: serde.Str(rec, "version"), Result: res, Probabilities: serde.Doubles(rec, "probabilities")}
		}
		// The caller took the first answer; a later one was an orphan.
		if id := serde.Str(rec, "request_id"); out[id] == nil {
			out[id] = g
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// caughtUp reports whether partition p has read what existed when it was
// assigned.
func (s *stageState) caughtUp(p int32) bool {
	ps, ok := s.parts[p]
	return !ok || (ps.catchReq <= 0 && ps.catchScore <= 0)
}

func (s *stageState) advance(r *kgo.Record) {
	ps, ok := s.parts[r.Partition]
	if !ok {
		return
	}
	switch r.Topic {
	case s.env.Topics.Requests:
		ps.reqNext = r.Offset + 1
		if ps.catchReq > 0 && r.Offset+1 >= ps.catchReq {
			ps.catchReq = 0
			ps.decided = map[string]bool{} // replay over: no more old requests
			ps.answered = nil
		}
	case s.env.Topics.Scores:
		ps.scoreNext = r.Offset + 1
		if ps.catchScore > 0 && r.Offset+1 >= ps.catchScore {
			ps.catchScore = 0
		}
	}
}

// handOff gives the writer the decisions made since the last batch, if it
// is idle.
func (s *stageState) handOff() {
	if s.inFlight != nil || len(s.next) == 0 {
		return
	}
	s.seq++
	b := &batch{seq: s.seq, records: s.next}
	s.inFlight, s.flightSet = b, s.nextClose
	s.next, s.nextClose = nil, nil
	s.w.in <- b
}

// collect takes the writer's result, if there is one (waiting for it when
// wait is set); after a committed batch, the offsets move forward. It
// reports false when waiting was cut short.
func (s *stageState) collect(ctx context.Context, wait bool) bool {
	if s.inFlight == nil {
		return true
	}
	var b *batch
	if wait {
		select {
		case b = <-s.w.done:
		case <-ctx.Done():
			return false
		}
	} else {
		select {
		case b = <-s.w.done:
		default:
			return true
		}
	}
	if b.err != nil {
		// Nothing of the batch is visible; keep it for the next attempt.
		s.m.txns.WithLabelValues("failed").Inc()
		s.env.Log.Error("decision batch not committed; will retry", "err", b.err)
		s.next = append(b.records, s.next...)
		s.nextClose = append(s.flightSet, s.nextClose...)
		s.inFlight, s.flightSet = nil, nil
		return true
	}
	s.m.txns.WithLabelValues("committed").Inc()
	s.inFlight, s.flightSet = nil, nil
	if err := s.commitOffsets(ctx, false); err != nil {
		s.env.Log.Warn("commit offsets", "err", err)
	}
	return true
}

// commitOffsets commits, per owned partition, the offset of the oldest
// request (and score) still needed: in an open mailbox, or in a decision
// not yet committed. Past those, everything read is done.
func (s *stageState) commitOffsets(ctx context.Context, sync bool) error {
	type lows struct{ req, score int64 }
	low := map[int32]*lows{}
	for p, ps := range s.parts {
		low[p] = &lows{req: ps.reqNext, score: ps.scoreNext}
	}
	hold := func(p int32, req, score int64) {
		l, ok := low[p]
		if !ok {
			return
		}
		if req >= 0 && (l.req < 0 || req < l.req) {
			l.req = req
		}
		if score >= 0 && (l.score < 0 || score < l.score) {
			l.score = score
		}
	}
	for _, b := range s.boxes {
		req := int64(-1)
		if b.Req != nil {
			req = b.Req.Offset
		}
		hold(b.Partition, req, b.minScore)
	}
	for _, set := range [][]pending{s.flightSet, s.nextClose} {
		for _, pd := range set {
			hold(pd.partition, pd.reqOffset, pd.minScore)
		}
	}
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for p, l := range low {
		if l.req >= 0 {
			if offsets[s.env.Topics.Requests] == nil {
				offsets[s.env.Topics.Requests] = map[int32]kgo.EpochOffset{}
			}
			offsets[s.env.Topics.Requests][p] = kgo.EpochOffset{Epoch: -1, Offset: l.req}
		}
		if l.score >= 0 {
			if offsets[s.env.Topics.Scores] == nil {
				offsets[s.env.Topics.Scores] = map[int32]kgo.EpochOffset{}
			}
			offsets[s.env.Topics.Scores][p] = kgo.EpochOffset{Epoch: -1, Offset: l.score}
		}
	}
	if len(offsets) == 0 {
		return nil
	}
	if sync {
		var cerr error
		s.cons.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) { cerr = err })
		return cerr
	}
	s.cons.CommitOffsets(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			s.env.Log.Warn("commit offsets", "err", err)
		}
	})
	return nil
}
