package rendezvous

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// batch is a set of decision records to commit in one transaction, and the
// mailboxes they close, so the consumer may move past those requests once
// the transaction committed.
type batch struct {
	seq     uint64
	records []*kgo.Record
	err     error
}

// writer commits decisions in Kafka transactions on its own client and
// goroutine, so the answering loop never waits for a transaction. The loop
// hands it one batch at a time and hears back on done.
type writer struct {
	cl   *kgo.Client
	in   chan *batch
	done chan *batch
	log  *slog.Logger
	took prometheus.Observer
}

func newWriter(cl *kgo.Client, log *slog.Logger, took prometheus.Observer) *writer {
	return &writer{cl: cl, in: make(chan *batch), done: make(chan *batch, 1), log: log, took: took}
}

func (w *writer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-w.in:
			start := time.Now()
			b.err = w.commit(ctx, b)
			w.took.Observe(time.Since(start).Seconds())
			w.done <- b
		}
	}
}

// commit writes a batch in one transaction, retrying a failed one from the
// start: an aborted transaction left nothing visible to read_committed
// readers, so writing the batch again cannot duplicate it.
func (w *writer) commit(ctx context.Context, b *batch) error {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := w.once(ctx, b)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || attempt == 10 {
			return fmt.Errorf("commit %d decisions after %d attempts: %w", len(b.records), attempt, err)
		}
		w.log.Warn("decision transaction failed; retrying", "attempt", attempt, "err", err)
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (w *writer) once(ctx context.Context, b *batch) error {
	if err := w.cl.BeginTransaction(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	var firstErr error
	for _, r := range b.records {
		r := r
		w.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	if err := w.cl.Flush(ctx); err != nil {
		_ = w.cl.EndTransaction(context.Background(), kgo.TryAbort)
		return fmt.Errorf("flush: %w", err)
	}
	if firstErr != nil {
		if err := w.cl.AbortBufferedRecords(ctx); err != nil {
			return err
		}
		_ = w.cl.EndTransaction(ctx, kgo.TryAbort)
		return fmt.Errorf("produce: %w", firstErr)
	}
	if err := w.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("end: %w", err)
	}
	return nil
}
