package model

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
	"github.com/rendezvous-ml/rendezvous/pipeline/fleet"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// ReplayHeader marks a score computed over history: it is written to the
// objective's replay-scores topic and never answers a user.
const ReplayHeader = "rdv-replay"

// Replay is where a new model version starts scoring: history first, as
// fast as it can, into the replay-scores topic, then live. Exactly one of
// Since, From, Offset (>= 0) and Archive is set for a replay.
type Replay struct {
	Since  time.Duration // history of the last Since
	From   time.Time     // history from this time on
	Offset int64         // history from this offset of every partition; -1 when unset
	// Archive is the log connector's archive directory: the inputs kept
	// there are replayed first, then the topic from where the archive ends,
	// so history older than the topic's retention is replayed too.
	Archive string
	// OnProgress, when set, is called about twice a second while history
	// is replayed, and once with status live.
	OnProgress func(p fleet.Progress, status string)
}

// Register adds the replay flags (-since, -from-timestamp, -from-offset,
// -from-archive) to fs.
func (r *Replay) Register(fs *flag.FlagSet) {
	fs.DurationVar(&r.Since, "since", r.Since, "replay: score the inputs of this long ago up to now into the replay-scores topic, then go live (e.g. 2h)")
	fs.Func("from-timestamp", "replay: score the inputs from this time (RFC 3339) on, then go live", func(v string) error {
		t, err := time.Parse(time.RFC3339, v)
		r.From = t
		return err
	})
	fs.Int64Var(&r.Offset, "from-offset", r.Offset, "replay: score the inputs from this offset of every partition on, then go live")
	fs.StringVar(&r.Archive, "from-archive", r.Archive, "replay: score the inputs in this archive directory (the log connector's), then the topic from where the archive ends, then go live")
}

// Active reports whether a replay is configured.
func (r Replay) Active() bool {
	return r.Since > 0 || !r.From.IsZero() || r.Offset >= 0 || r.Archive != ""
}

func (r Replay) validate() error {
	n := 0
	for _, set := range []bool{r.Since > 0, !r.From.IsZero(), r.Offset >= 0, r.Archive != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("replay: give one of -since, -from-timestamp, -from-offset and -from-archive")
	}
	if r.Since < 0 {
		return fmt.Errorf("since: %v must not be negative", r.Since)
	}
	if r.Offset < -1 {
		return fmt.Errorf("from-offset: %d must not be negative", r.Offset)
	}
	return nil
}

// replayer drives a runner through history, then live.
type replayer struct {
	cfg   Replay
	env   *stage.Env
	group string
	log   func(msg string, args ...any)

	active atomic.Bool // still replaying
	live   chan struct{}
	once   sync.Once

	mu       sync.Mutex
	next     map[int32]int64 // next offset to handle, per partition
	livePart map[int32]bool  // partitions whose history is done
	done     int64
	start    time.Time
	total    int64 // records to replay at the start (archive + topic)

	replayed prometheus.Counter
	left     prometheus.Gauge
	rate     prometheus.Gauge
	progress func(fleet.Progress)
}

func newReplayer(cfg Replay, env *stage.Env, group string, labels prometheus.Labels) *replayer {
	rp := &replayer{cfg: cfg, env: env, group: group, live: make(chan struct{}), next: map[int32]int64{}, livePart: map[int32]bool{},
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "rdv_model_replay_records_total", Help: "History records scored into the replay-scores topic.", ConstLabels: labels}),
		left:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "rdv_model_replay_left_records", Help: "History records still to replay before the runner goes live.", ConstLabels: labels}),
		rate:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "rdv_model_replay_rate", Help: "History records replayed per second (recent).", ConstLabels: labels}),
	}
	rp.log = env.Log.Info
	rp.active.Store(true)
	env.Reg.MustRegister(rp.replayed, rp.left, rp.rate)
	return rp
}

// prepare replays the archive (if asked) through score, then sets where
// the group starts in the topic, unless the group already has a position
// (a restarted replay resumes where it was).
func (rp *replayer) prepare(ctx context.Context, score func(ctx context.Context, in map[string]any, partition int32, key []byte) error) error {
	cl, err := rp.env.Client()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := rp.env.Topics.Inputs
	committed, err := adm.FetchOffsets(ctx, rp.group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		err = nil // a new group: no position yet (real Kafka answers empty)
	}
	if err != nil {
		return fmt.Errorf("replay: position of group %s: %w", rp.group, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("replay: end of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("replay: start of %s: %w", topic, err)
	}
	rp.start = time.Now()
	resumed := false
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At >= 0 {
			resumed = true
			rp.next[o.Partition] = o.At
		}
	})
	if resumed {
		rp.log("replay resumes where the group left it", "group", rp.group, "positions", rp.next)
		rp.total = rp.leftIn(ends)
		return nil
	}
	from := map[int32]int64{}
	switch {
	case rp.cfg.Archive != "":
		last, n, err := rp.replayArchive(ctx, score)
		if err != nil {
			return err
		}
		rp.total += n
		starts.Each(func(o kadm.ListedOffset) {
			at := o.Offset
			if l, ok := last[o.Partition]; ok && l+1 > at {
				at = l + 1
			} else if ok && l+1 < at {
				rp.env.Log.Warn("replay: the archive ends before the topic's oldest record: a gap in history",
					"partition", o.Partition, "archive_last", l, "topic_start", at)
			}
			from[o.Partition] = at
		})
	case rp.cfg.Offset >= 0:
		starts.Each(func(o kadm.ListedOffset) {
			from[o.Partition] = max(o.Offset, rp.cfg.Offset)
		})
	default:
		t := rp.cfg.From
		if rp.cfg.Since > 0 {
			t = time.Now().Add(-rp.cfg.Since)
		}
		after, err := adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), topic)
		if err == nil {
			err = after.Error()
		}
		if err != nil {
			return fmt.Errorf("replay: offsets of %s after %s: %w", topic, t.Format(time.RFC3339), err)
		}
		after.Each(func(o kadm.ListedOffset) {
			at := o.Offset
			if at < 0 { // nothing after t
				e, _ := ends.Lookup(topic, o.Partition)
				at = e.Offset
			}
			from[o.Partition] = at
		})
	}
	offs := kadm.Offsets{}
	for p, at := range from {
		rp.next[p] = at
		offs.AddOffset(topic, p, at, -1)
	}
	if len(offs) > 0 {
		resp, err := adm.CommitOffsets(ctx, rp.group, offs)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("replay: set the start of group %s: %w", rp.group, err)
		}
	}
	rp.total += rp.leftIn(ends)
	rp.log("replay starts", "group", rp.group, "from", rp.next, "records", rp.total)
	return nil
}

// leftIn is what is left to replay against ends; a partition with nothing
// left is done with its history.
func (rp *replayer) leftIn(ends kadm.ListedOffsets) int64 {
	rp.mu.Lock()
	var left int64
	ends.Each(func(o kadm.ListedOffset) {
		n, ok := rp.next[o.Partition]
		switch {
		case !ok || rp.livePart[o.Partition]:
		case o.Offset > n:
			left += o.Offset - n
		default:
			rp.livePart[o.Partition] = true
		}
	})
	all := rp.allLive()
	rp.mu.Unlock()
	if all && len(rp.next) > 0 {
		rp.goLive("reached the end of the inputs")
	}
	return left
}

// allLive reports whether every partition is done with its history; mu held.
func (rp *replayer) allLive() bool {
	for p := range rp.next {
		if !rp.livePart[p] {
			return false
		}
	}
	return true
}

// replaying reports whether records of partition are still history.
func (rp *replayer) replaying(partition int32) bool {
	if !rp.active.Load() {
		return false
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return !rp.livePart[partition]
}

// partitionLive ends partition's history: it met an input that can still
// be answered. The runner is live once every partition is.
func (rp *replayer) partitionLive(partition int32) {
	rp.mu.Lock()
	rp.livePart[partition] = true
	all := rp.allLive()
	rp.mu.Unlock()
	if all {
		rp.goLive("reached inputs that can still be answered")
	}
}

// replayArchive scores the archived inputs, partition by partition in
// offset order, and returns the last archived offset of each partition.
func (rp *replayer) replayArchive(ctx context.Context, score func(ctx context.Context, in map[string]any, partition int32, key []byte) error) (map[int32]int64, int64, error) {
	files, err := archive.Scan(rp.cfg.Archive, rp.env.Cfg.Objective, false)
	if err != nil {
		return nil, 0, fmt.Errorf("replay: archive %s: %w", rp.cfg.Archive, err)
	}
	var mine []archive.File
	for _, f := range files {
		if f.Topic == rp.env.Topics.Inputs && !f.Raw {
			mine = append(mine, f)
		}
	}
	sort.Slice(mine, func(i, j int) bool {
		if mine[i].Partition != mine[j].Partition {
			return mine[i].Partition < mine[j].Partition
		}
		return mine[i].First < mine[j].First
	})
	last := map[int32]int64{}
	var n int64
	for _, f := range mine {
		if l, ok := last[f.Partition]; ok && f.Last <= l {
			continue // already replayed (an overlap after a connector crash)
		}
		err := archive.Each(f.Path, func(rec map[string]any) error {
			off := serde.Long(rec, "offset")
			if l, ok := last[f.Partition]; ok && off <= l {
				return nil
			}
			in, ok := rec["value"].(map[string]any)
			if !ok {
				return fmt.Errorf("%s: offset %d has no input value", f.Path, off)
			}
			key, _ := rec["key"].([]byte)
			if err := score(ctx, in, f.Partition, key); err != nil {
				return err
			}
			last[f.Partition] = off
			n++
			rp.count()
			return nil
		})
		if err != nil {
			return nil, 0, fmt.Errorf("replay: %w", err)
		}
	}
	rp.log("archive replayed", "files", len(mine), "records", n)
	return last, n, nil
}

// count notes one replayed record.
func (rp *replayer) count() {
	rp.mu.Lock()
	rp.done++
	rp.mu.Unlock()
	rp.replayed.Inc()
}

// handled notes that the record at offset of partition is done.
func (rp *replayer) handled(partition int32, offset int64) {
	rp.mu.Lock()
	if offset+1 > rp.next[partition] {
		rp.next[partition] = offset + 1
	}
	rp.mu.Unlock()
}

// goLive ends the replay: what comes next is scored live.
func (rp *replayer) goLive(why string) {
	rp.once.Do(func() {
		rp.active.Store(false)
		rp.mu.Lock()
		done := rp.done
		rp.mu.Unlock()
		rp.left.Set(0)
		rp.log("replay caught up: live", "why", why, "replayed", done, "took", time.Since(rp.start).Round(time.Millisecond))
		if rp.progress != nil {
			rp.progress(fleet.Progress{Done: done})
		}
		if rp.cfg.OnProgress != nil {
			rp.cfg.OnProgress(fleet.Progress{Done: done}, fleet.StatusLive)
		}
		close(rp.live)
	})
}

// watch measures what is left against the topic's end, reports progress,
// and ends the replay when nothing is left.
func (rp *replayer) watch(ctx context.Context) {
	cl, err := rp.env.Client()
	if err != nil {
		rp.env.Log.Error("replay progress", "err", err)
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// A short tick so the switch to live follows the end of history
	// closely; progress is reported every fifth.
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	tick := 0
	var lastDone int64
	lastAt := time.Now()
	var rate float64
	lastLog := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-rp.live:
			return
		case <-t.C:
		}
		ends, err := adm.ListEndOffsets(ctx, rp.env.Topics.Inputs)
		if err != nil || ends.Error() != nil {
			continue
		}
		left := rp.leftIn(ends)
		if tick++; left > 0 && tick%5 != 0 {
			continue
		}
		rp.mu.Lock()
		done := rp.done
		rp.mu.Unlock()
		now := time.Now()
		inst := float64(done-lastDone) / now.Sub(lastAt).Seconds()
		if rate == 0 {
			rate = inst
		} else {
			rate = 0.5*rate + 0.5*inst
		}
		lastDone, lastAt = done, now
		p := fleet.Progress{Done: done, Left: left, Rate: rate}
		rp.left.Set(float64(left))
		rp.rate.Set(rate)
		if rp.progress != nil {
			rp.progress(p)
		}
		if rp.cfg.OnProgress != nil {
			rp.cfg.OnProgress(p, fleet.StatusReplaying)
		}
		if now.Sub(lastLog) >= 2*time.Second {
			lastLog = now
			rp.log("replay progress", "done", done, "left", left, "rate", fmt.Sprintf("%.0f/s", rate), "eta", p.ETA().Round(time.Second))
		}
	}
}

// replayRecord is the score record of a replayed input, for the
// replay-scores topic.
func (r *runner) replayRecord(in map[string]any, key []byte) (*kgo.Record, error) {
	score := Score(r.model, r.cfg, in)
	value, err := r.replayEnc.Encode(make([]byte, 0, 128), score)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", stage.ErrPoison, err)
	}
	return &kgo.Record{Topic: r.env.Topics.ReplayScores, Key: key, Value: value,
		Headers: []kgo.RecordHeader{{Key: ReplayHeader, Value: []byte("1")}}}, nil
}

// startReplay sets the replay up before the group consumer starts: the
// archive is replayed, and the group's start is set.
func (r *runner) startReplay(ctx context.Context, group string, ann *fleet.Announcer) error {
	enc, err := r.env.Encoder(ctx, r.env.Topics.ReplayScores, schemas.Score)
	if err != nil {
		return err
	}
	r.replayEnc = enc
	rp := newReplayer(r.cfg.Replay, r.env, group, prometheus.Labels{"model": r.cfg.Name, "version": r.cfg.Version})
	if ann != nil {
		rp.progress = ann.SetProgress
	}
	r.env.Health.SetNotReady("replaying history")
	prod, err := r.env.Client(kgo.ProducerLinger(5 * time.Millisecond))
	if err != nil {
		return err
	}
	defer prod.Close()
	err = rp.prepare(ctx, func(ctx context.Context, in map[string]any, partition int32, key []byte) error {
		out, err := r.replayRecord(in, key)
		if err != nil {
			return err
		}
		prod.Produce(ctx, out, nil)
		return nil
	})
	if err != nil {
		return err
	}
	if err := prod.Flush(ctx); err != nil {
		return fmt.Errorf("replay: write the archive's scores: %w", err)
	}
	r.replay = rp
	go func() {
		select {
		case <-rp.live:
			r.env.Health.SetReady()
		case <-ctx.Done():
		}
	}()
	return nil
}
