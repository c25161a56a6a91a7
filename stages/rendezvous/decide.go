package rendezvous

import (
	"container/heap"
	"context"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

func (s *stageState) handle(ctx context.Context, r *kgo.Record, now time.Time) {
	if _, owned := s.parts[r.Partition]; !owned {
		return // buffered before a revocation
	}
	defer s.advance(r)
	switch r.Topic {
	case s.env.Topics.Requests:
		rec, err := s.env.Serde.Decode(ctx, r.Value, s.reqRd)
		if err != nil {
			s.deadLetter(ctx, r, err)
			return
		}
		s.onRequest(ctx, r, rec, now)
	case s.env.Topics.Scores:
		rec, err := s.env.Serde.Decode(ctx, r.Value, s.scoreRd)
		if err != nil {
			s.deadLetter(ctx, r, err)
			return
		}
		s.onScore(ctx, r, rec, now)
	}
}

func (s *stageState) deadLetter(ctx context.Context, r *kgo.Record, err error) {
	s.env.Metrics.Errors.WithLabelValues("decode").Inc()
	s.env.Metrics.Records.WithLabelValues(r.Topic, "dead_letter").Inc()
	s.env.Log.Warn("dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
	s.hot.Produce(ctx, stage.DeadLetterRecord(s.env.Topics.DLQ, s.env.Name, r, err), nil)
}

func (s *stageState) onRequest(ctx context.Context, r *kgo.Record, rec map[string]any, now time.Time) {
	s.env.Metrics.Records.WithLabelValues(r.Topic, "ok").Inc()
	id := serde.Str(rec, "request_id")
	ps := s.parts[r.Partition]
	if ps.decided[id] {
		s.m.skipped.Inc() // replayed, and its decision is already logged
		return
	}
	b, ok := s.boxes[id]
	if ok && b.Req != nil {
		return // the same request twice (a producer retry)
	}
	if !ok {
		if len(s.boxes) >= s.cfg.MaxOpen {
			s.shed(ctx, r, id, rec, now)
			return
		}
		b = newMailbox(id, r.Partition)
		s.boxes[id] = b
		s.m.open.Set(float64(len(s.boxes)))
	}
	b.OrphanAt = 0
	b.late = !s.caughtUp(r.Partition) || now.UnixMicro() > serde.Long(rec, "deadline_us")
	b.Req = &request{
		Offset:         r.Offset,
		Key:            serde.Str(rec, "key"),
		ReceivedUS:     serde.Long(rec, "received_us"),
		DeadlineUS:     serde.Long(rec, "deadline_us"),
		ReplyTopic:     serde.Str(rec, "reply_topic"),
		ReplyPartition: serde.Int(rec, "reply_partition"),
		Features:       serde.Doubles(rec, "features"),
	}
	// Kept on the mailbox: the partition forgets them once caught up,
	// which may be before this request is decided.
	b.prior = ps.answered[id]
	s.evaluate(ctx, b, now)
}

func (s *stageState) onScore(ctx context.Context, r *kgo.Record, rec map[string]any, now time.Time) {
	s.env.Metrics.Records.WithLabelValues(r.Topic, "ok").Inc()
	id := serde.Str(rec, "request_id")
	model, version := serde.Str(rec, "model"), serde.Str(rec, "version")
	key := s.scoreKey(model, version)
	if model == markerModel {
		key = markerModel
	}
	if s.parts[r.Partition].decided[id] {
		s.m.scores.WithLabelValues(key, "after_close").Inc()
		return
	}
	b, ok := s.boxes[id]
	if !ok {
		// The request is on another topic: its record may come later.
		b = newMailbox(id, r.Partition)
		b.OrphanAt = now.UnixMicro()
		s.boxes[id] = b
		s.m.open.Set(float64(len(s.boxes)))
		s.wake.schedule(b, now.Add(s.cfg.OrphanTTL))
		s.m.scores.WithLabelValues(key, "orphan").Inc()
	}
	if b.minScore < 0 || r.Offset < b.minScore {
		b.minScore = r.Offset
	}
	if prev, dup := b.Scores[key]; dup {
		prev.Duplicates++
		s.m.scores.WithLabelValues(key, "duplicate").Inc()
		return
	}
	result, hasResult := serde.OptStr(rec, "result")
	errText, failed := serde.OptStr(rec, "error")
	sc := &seen{
		Score: policy.Score{
			Model:         model,
			Version:       version,
			Role:          serde.Str(rec, "role"),
			Result:        result,
			Probabilities: serde.Doubles(rec, "probabilities"),
			Failed:        failed || !hasResult,
		},
		Error:     errText,
		ComputeUS: serde.Long(rec, "compute_us"),
		ArrivedUS: now.UnixMicro(),
		Late:      b.Decided,
	}
	if !s.caughtUp(r.Partition) {
		// Read again after a takeover: it arrived when it was written.
		sc.ArrivedUS = min(sc.ArrivedUS, r.Timestamp.UnixMicro())
	}
	if key == markerModel {
		s.onMarker(ctx, b, sc, now)
		return
	}
	b.add(key, sc)
	if b.Req != nil && b.pending > 0 && s.eng.Expects(key, b.request()) {
		b.pending--
	}
	switch {
	case sc.Failed:
		s.m.scores.WithLabelValues(key, "failed").Inc()
		s.m.errs.WithLabelValues(key).Inc()
	case b.Decided:
		s.m.scores.WithLabelValues(key, "late").Inc()
		s.m.late.WithLabelValues(key).Inc()
	default:
		s.m.scores.WithLabelValues(key, "in_time").Inc()
	}
	if b.Req != nil {
		s.m.latency.WithLabelValues(key).Observe(float64(sc.ArrivedUS-b.Req.ReceivedUS) / 1e6)
		s.judge(b, key, sc, now)
		s.evaluate(ctx, b, now)
	}
}

// onMarker notes that the frontend answered b's request with the default
// itself: b is decided so, or, when it was decided but the answer reached
// the frontend too late, the decision is corrected to what the caller got.
func (s *stageState) onMarker(ctx context.Context, b *mailbox, sc *seen, now time.Time) {
	sc.Late = false
	b.Scores[markerModel] = sc
	b.Arrival = append(b.Arrival, markerModel)
	b.expired = true
	s.m.scores.WithLabelValues(markerModel, "expired").Inc()
	if b.Req == nil {
		return
	}
	if b.Decided && b.Reason != ReasonExpired {
		s.m.overtaken.Inc()
		s.env.Log.Warn("answer overtaken by the frontend's default", "request_id", b.ID, "was", b.Reason, "winner", b.Winner)
		b.Reason, b.Winner = ReasonExpired, ""
	}
	s.evaluate(ctx, b, now)
}

// judge records how the model with key did on b's request, once its score
// is there: ok when it answered within its budget, an error, or a timeout
// when the answer came after the budget (it held the answer up).
func (s *stageState) judge(b *mailbox, key string, sc *seen, now time.Time) {
	req := b.request()
	budget, ok := s.eng.Budget(key, req)
	if !ok {
		return // not a model the policy uses: nothing to break
	}
	switch {
	case sc.Failed:
		s.record(b, key, policy.ResultError, now)
	case sc.ArrivedUS-b.Req.ReceivedUS > budget.Microseconds():
		s.record(b, key, policy.ResultTimeout, now)
	default:
		s.record(b, key, policy.ResultOK, now)
	}
}

// evaluate decides and closes b as far as it can now, and schedules its
// next look otherwise.
func (s *stageState) evaluate(ctx context.Context, b *mailbox, now time.Time) {
	if b.Req == nil {
		return
	}
	received := time.UnixMicro(b.Req.ReceivedUS)
	deadline := time.UnixMicro(b.Req.DeadlineUS)
	req := b.request()
	if !b.Decided {
		elapsed := now.Sub(received)
		if !s.caughtUp(b.Partition) && elapsed >= deadline.Sub(received) {
			// Catching up after a rebalance: the scores may be next in the
			// partition. Decide once what was there is read.
			s.wake.schedule(b, now.Add(10*time.Millisecond))
			return
		}
		var o policy.Outcome
		switch {
		case b.expired:
			// The frontend answered the default itself.
			o = policy.Outcome{Decided: true, Policy: s.eng.Kind(), Reason: ReasonExpired}
		case elapsed > req.SLA:
			if g := b.prior; g != nil {
				// A previous owner answered it and died before logging it:
				// the log says what the caller was told.
				o = policy.Outcome{Decided: true, Policy: g.policy, Reason: g.reason, Winner: g.winner}
				b.given = true
				s.m.asGiven.Inc()
				break
			}
			// Decided late (a partition taken over, a stall): as the policy
			// would have at the time, from when each score arrived.
			o = s.decideAsOf(b, req)
		default:
			o = s.eng.Decide(req, elapsed, b.policyScores())
		}
		if !o.Decided {
			s.wake.schedule(b, received.Add(o.WakeAt))
			return
		}
		s.answer(ctx, b, o, now)
		// The models the answer did not wait for any longer are late.
		for _, key := range s.eng.Chain(req) {
			if _, there := b.Scores[key]; there {
				continue
			}
			if budget, ok := s.eng.Budget(key, req); ok && elapsed >= budget {
				s.record(b, key, policy.ResultTimeout, now)
			}
		}
	}
	settle := min(s.cfg.Settle, s.cfg.Grace)
	if b.DecidedUS > b.Req.DeadlineUS {
		// Decided late: the frontend may have answered by itself, and its
		// marker may still be behind a backlog: wait the whole grace.
		settle = s.cfg.Grace
	}
	settled := !now.Before(deadline.Add(settle))
	if (settled && s.complete(b, req)) || !now.Before(deadline.Add(s.cfg.Grace)) {
		s.closeBox(ctx, b, now)
		return
	}
	if !settled && s.complete(b, req) {
		s.wake.schedule(b, deadline.Add(settle))
		return
	}
	s.wake.schedule(b, deadline.Add(s.cfg.Grace))
}

// decideAsOf replays the policy over the scores in the order they arrived,
// each at its arrival time, up to the SLA: the answer the stage would have
// given had it been there.
func (s *stageState) decideAsOf(b *mailbox, req policy.Request) policy.Outcome {
	type arrival struct {
		at  time.Duration
		key string
	}
	var order []arrival
	for _, key := range b.Arrival {
		if sc := b.Scores[key]; sc != nil && key != markerModel {
			order = append(order, arrival{time.Duration(sc.ArrivedUS-b.Req.ReceivedUS) * time.Microsecond, key})
		}
	}
	sort.Slice(order, func(i, j int) bool { return order[i].at < order[j].at })
	visible := map[string]*policy.Score{}
	at, i := time.Duration(0), 0
	for {
		for i < len(order) && order[i].at <= at {
			visible[order[i].key] = &b.Scores[order[i].key].Score
			i++
		}
		o := s.eng.Decide(req, at, visible)
		if o.Decided {
			return o
		}
		next := o.WakeAt
		if i < len(order) && order[i].at < next {
			next = order[i].at
		}
		if next <= at {
			next = at + time.Millisecond
		}
		at = next
	}
}

// complete reports whether every expected model has reported. The count
// kept as scores arrive answers in one step; only when it reaches zero is
// the list checked, as the models may have changed since the request came.
func (s *stageState) complete(b *mailbox, req policy.Request) bool {
	if b.pending > 0 {
		return false
	}
	b.pending = 0
	for _, key := range s.eng.Expected(req) {
		if _, ok := b.Scores[key]; !ok {
			b.pending++
		}
	}
	return b.pending == 0
}

func (s *stageState) fire(ctx context.Context, now time.Time) {
	for len(s.wake) > 0 && !s.wake[0].at.After(now) {
		w := heap.Pop(&s.wake).(wakeup)
		b, ok := s.boxes[w.id]
		if !ok || !b.wake.Equal(w.at) {
			continue
		}
		b.wake = time.Time{}
		if b.Req == nil {
			// Its request never came: a score for a request this stage
			// never saw (a replay, or a request lost upstream).
			delete(s.boxes, b.ID)
			s.m.open.Set(float64(len(s.boxes)))
			continue
		}
		s.evaluate(ctx, b, now)
	}
}

func (s *stageState) answer(ctx context.Context, b *mailbox, o policy.Outcome, now time.Time) {
	b.Decided = true
	b.Reason = o.Reason
	b.Policy = o.Policy
	if b.Policy == "" {
		b.Policy = policy.KindPriority
	}
	b.DecidedUS = now.UnixMicro()
	res := map[string]any{
		"request_id":    b.ID,
		"objective":     s.cfg.Common.Objective,
		"reason":        o.Reason,
		"policy":        b.Policy,
		"model":         "default",
		"version":       "",
		"result":        serde.Opt(s.cfg.DefaultResult),
		"probabilities": map[string]any{},
		"received_us":   b.Req.ReceivedUS,
		"decided_us":    b.DecidedUS,
	}
	if o.Winner != nil {
		b.Winner = s.scoreKey(o.Winner.Model, o.Winner.Version)
		if _, ok := b.Scores[b.Winner]; !ok {
			// A synthesized score (an ensemble's): keep it for the decision.
			b.add(b.Winner, &seen{Score: *o.Winner, ArrivedUS: now.UnixMicro()})
		}
		s.m.wins.WithLabelValues(b.Winner).Inc()
		res["model"] = o.Winner.Model
		res["version"] = o.Winner.Version
		res["result"] = serde.Opt(o.Winner.Result)
		res["probabilities"] = serde.DoubleMap(o.Winner.Probabilities)
	}
	s.m.decisions.WithLabelValues(o.Reason, res["model"].(string)).Inc()
	s.m.toDecide.Observe(now.Sub(time.UnixMicro(b.Req.ReceivedUS)).Seconds())
	if b.expired || b.given {
		return // the caller has its answer
	}
	s.reply(ctx, b, res)
}

func (s *stageState) reply(ctx context.Context, b *mailbox, res map[string]any) {
	value, err := s.resultE.Encode(make([]byte, 0, 128), res)
	if err != nil {
		s.env.Log.Error("encode result", "request_id", b.ID, "err", err)
		return
	}
	s.hot.Produce(ctx, &kgo.Record{
		Topic: b.Req.ReplyTopic, Partition: b.Req.ReplyPartition, Key: []byte(b.ID), Value: value,
	}, func(r *kgo.Record, err error) {
		if err != nil {
			s.env.Metrics.Errors.WithLabelValues("reply").Inc()
			s.env.Log.Error("reply", "request_id", b.ID, "err", err)
		}
	})
}

// shed answers at once with the default, when too many mailboxes are open.
func (s *stageState) shed(ctx context.Context, r *kgo.Record, id string, rec map[string]any, now time.Time) {
	b := newMailbox(id, r.Partition)
	b.Req = &request{Offset: r.Offset, Key: serde.Str(rec, "key"), ReceivedUS: serde.Long(rec, "received_us"),
		DeadlineUS: serde.Long(rec, "deadline_us"), ReplyTopic: serde.Str(rec, "reply_topic"),
		ReplyPartition: serde.Int(rec, "reply_partition"), Features: serde.Doubles(rec, "features")}
	s.answer(ctx, b, policy.Outcome{Decided: true, Reason: ReasonShed}, now)
	s.closeBox(ctx, b, now)
}

func (s *stageState) closeBox(ctx context.Context, b *mailbox, now time.Time) {
	if b.Reason != ReasonShed {
		// The answering models that never reported: timeouts.
		req := b.request()
		for _, key := range s.eng.Chain(req) {
			if _, there := b.Scores[key]; !there {
				s.record(b, key, policy.ResultTimeout, now)
			}
		}
	}
	delete(s.boxes, b.ID)
	s.m.open.Set(float64(len(s.boxes)))
	value, err := s.decideE.Encode(make([]byte, 0, 512), s.decision(b, now))
	if err != nil {
		s.env.Log.Error("encode decision", "request_id", b.ID, "err", err)
		return
	}
	s.next = append(s.next, &kgo.Record{Topic: s.env.Topics.Decisions, Key: []byte(b.ID), Value: value})
	s.nextClose = append(s.nextClose, pending{partition: b.Partition, reqOffset: b.Req.Offset, minScore: b.minScore})
}

func (s *stageState) decision(b *mailbox, now time.Time) map[string]any {
	scores := make([]any, 0, len(b.Arrival))
	for _, name := range b.Arrival {
		sc := b.Scores[name]
		var errV any
		if sc.Failed {
			msg := sc.Error
			if msg == "" {
				msg = "model error"
			}
			errV = serde.Opt(msg)
		}
		scores = append(scores, map[string]any{
			"model":      sc.Model,
			"version":    sc.Version,
			"role":       sc.Role,
			"result":     serde.Opt(sc.Result),
			"error":      errV,
			"compute_us": sc.ComputeUS,
			"arrived_us": sc.ArrivedUS - b.Req.ReceivedUS,
			"late":       sc.Late,
			"duplicates": sc.Duplicates,
		})
	}
	var missing []any
	for _, key := range s.eng.Expected(b.request()) {
		if _, ok := b.Scores[key]; !ok {
			missing = append(missing, key)
		}
	}
	if missing == nil {
		missing = []any{}
	}
	model, version, result := "default", "", s.cfg.DefaultResult
	if w, ok := b.Scores[b.Winner]; ok && b.Winner != "" {
		model, version, result = w.Model, w.Version, w.Result
	}
	return map[string]any{
		"request_id":  b.ID,
		"objective":   s.cfg.Common.Objective,
		"key":         b.Req.Key,
		"received_us": b.Req.ReceivedUS,
		"deadline_us": b.Req.DeadlineUS,
		"decided_us":  b.DecidedUS,
		"closed_us":   now.UnixMicro(),
		"reason":      b.Reason,
		"policy":      b.Policy,
		"model":       model,
		"version":     version,
		"result":      serde.Opt(result),
		"features":    serde.DoubleMap(b.Req.Features),
		"scores":      scores,
		"missing":     missing,
	}
}
