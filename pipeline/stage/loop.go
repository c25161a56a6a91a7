package stage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// HotPathOpts are the producer and consumer settings for the latency-bound
// hops: no linger (a request must not wait for a batch to fill), idempotent
// acks=all writes, and fetches that return as soon as one byte is there.
func HotPathOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.ProducerLinger(0),
		// A stage's first produce to a topic waits for metadata; the default
		// minimum age of 5s can hold the first requests past their SLA.
		kgo.MetadataMinAge(250 * time.Millisecond),
		kgo.FetchMinBytes(1),
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.ProduceRequestTimeout(10 * time.Second),
		kgo.RecordDeliveryTimeout(30 * time.Second),
	}
}

// LogPathOpts are the consumer settings for readers off the answer's path
// (the decoy, the log connector, the Elasticsearch connector): they may lag
// by a fraction of a second, so the broker holds each fetch until 64 KiB
// are there or 250 ms have passed. Every fetch answered and every record
// handed over costs each side a wake-up and a few syscalls, which on a
// small machine is most of the pipeline's CPU; a reader that takes records
// by the hundred instead of one at a time leaves that CPU to the hot path.
func LogPathOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.FetchMinBytes(64 << 10),
		kgo.FetchMaxWait(250 * time.Millisecond),
	}
}

// GroupReadiness returns client options that mark h ready when the group
// first assigns partitions, and not ready when they are all lost.
func GroupReadiness(h *Health, log *slog.Logger) []kgo.Opt {
	return []kgo.Opt{
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			log.Info("partitions assigned", "partitions", m)
			h.SetReady()
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			log.Info("partitions revoked", "partitions", m)
		}),
	}
}

// Loop is the at-least-once consume-handle-produce cycle of a hot-path
// stage. The client must be created with kgo.AutoCommitMarks: a record's
// offset is marked only after everything produced for it was acknowledged,
// so a crash replays, never skips. On ctx's end it finishes the batch in
// hand, flushes, commits what it marked and returns.
func Loop(ctx context.Context, cl *kgo.Client, h Handler, m *Metrics, log *slog.Logger) error {
	var (
		mu      sync.Mutex
		prodErr error
	)
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			prodErr = fmt.Errorf("produce to %s: %w", r.Topic, err)
			mu.Unlock()
			return
		}
		m.Produced.WithLabelValues(r.Topic).Inc()
	}
	for {
		fs := cl.PollFetches(ctx)
		if fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				m.Errors.WithLabelValues("fetch").Inc()
				log.Error("fetch", "topic", t, "partition", p, "err", err)
			}
		})
		var done []*kgo.Record
		stopped := false
		fs.EachRecord(func(r *kgo.Record) {
			if stopped {
				return
			}
			out, err := h(ctx, r)
			if err != nil {
				// Only a cancelled context gets here: the dead-letter wrapper
				// absorbs everything else. Neither this record nor any after
				// it may be marked, or a restart would skip it.
				stopped = true
				return
			}
			for _, o := range out {
				// Not ctx: what was handled must be written even when
				// shutdown has begun.
				cl.Produce(context.Background(), o, promise)
			}
			done = append(done, r)
		})
		if len(done) > 0 {
			// Flush outlives ctx: what was handled must be written before its
			// offset may be marked.
			fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := cl.Flush(fctx)
			cancel()
			mu.Lock()
			perr := prodErr
			prodErr = nil
			mu.Unlock()
			if err != nil || perr != nil {
				return fmt.Errorf("flush outputs: %w", errors.Join(err, perr))
			}
			cl.MarkCommitRecords(done...)
		}
		// With kgo.BlockRebalanceOnPoll, a rebalance waits for this: the
		// batch is handled and marked, so another member may take over.
		cl.AllowRebalance()
		if ctx.Err() != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := cl.CommitMarkedOffsets(cctx); err != nil {
				return fmt.Errorf("commit on shutdown: %w", err)
			}
			return nil
		}
	}
}

// TrackLag updates m.Lag for a group every interval until ctx ends.
func TrackLag(ctx context.Context, adm *kadm.Client, group string, m *Metrics, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lags, err := adm.Lag(ctx, group)
		if err != nil {
			continue
		}
		for _, gl := range lags {
			for _, l := range gl.Lag.Sorted() {
				m.Lag.WithLabelValues(l.Topic, fmt.Sprint(l.Partition)).Set(float64(l.Lag))
			}
		}
	}
}
