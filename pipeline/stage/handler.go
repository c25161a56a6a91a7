package stage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
)

// Handler turns one consumed record into the records to produce.
type Handler func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error)

// Middleware wraps a Handler with a cross-cutting concern.
type Middleware func(Handler) Handler

// Chain applies middleware so that the first one given is the outermost.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// ErrPoison marks a record that no retry can fix. The handler wraps it (or
// serde.ErrDecode) to send the record straight to the dead-letter topic.
var ErrPoison = errors.New("poison record")

// Dead-letter headers: why, where from, and who gave up.
const (
	HeaderError     = "rdv.error"
	HeaderStage     = "rdv.stage"
	HeaderTopic     = "rdv.source.topic"
	HeaderPartition = "rdv.source.partition"
	HeaderOffset    = "rdv.source.offset"
)

// DeadLetterRecord builds the dead-letter copy of r: the original key, value
// and headers, plus the reason and the source position.
func DeadLetterRecord(dlqTopic, stageName string, r *kgo.Record, cause error) *kgo.Record {
	hs := append([]kgo.RecordHeader(nil), r.Headers...)
	hs = append(hs,
		kgo.RecordHeader{Key: HeaderError, Value: []byte(cause.Error())},
		kgo.RecordHeader{Key: HeaderStage, Value: []byte(stageName)},
		kgo.RecordHeader{Key: HeaderTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: HeaderOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
	)
	return &kgo.Record{Topic: dlqTopic, Key: r.Key, Value: r.Value, Headers: hs}
}

// WithDeadLetter sends a record whose handling failed for good to the
// dead-letter topic instead of failing the stage. The dead-letter record is
// returned as the handler's output, so it is produced with, and committed
// like, any other output.
func WithDeadLetter(dlqTopic, stageName string, m *Metrics, log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
			out, err := next(ctx, r)
			if err == nil || ctx.Err() != nil {
				return out, err
			}
			reason := "handler"
			if errors.Is(err, serde.ErrDecode) {
				reason = "decode"
			} else if errors.Is(err, ErrPoison) {
				reason = "poison"
			}
			m.Errors.WithLabelValues(reason).Inc()
			m.Records.WithLabelValues(r.Topic, "dead_letter").Inc()
			log.Warn("dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			return []*kgo.Record{DeadLetterRecord(dlqTopic, stageName, r, err)}, nil
		}
	}
}

// WithRetry retries a handler whose error is not poison, with exponential
// backoff from 50ms, up to attempts times. A record that still fails is
// returned as an error for the dead-letter wrapper outside it.
func WithRetry(attempts int, m *Metrics) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
			backoff := 50 * time.Millisecond
			var err error
			for i := 0; i < attempts; i++ {
				var out []*kgo.Record
				out, err = next(ctx, r)
				if err == nil || errors.Is(err, serde.ErrDecode) || errors.Is(err, ErrPoison) {
					return out, err
				}
				if i == attempts-1 {
					break
				}
				m.Records.WithLabelValues(r.Topic, "retried").Inc()
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 2*time.Second)
			}
			return nil, fmt.Errorf("gave up after %d attempts: %w", attempts, err)
		}
	}
}

// WithMetrics times the handler and counts its outcomes.
func WithMetrics(m *Metrics) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
			start := time.Now()
			out, err := next(ctx, r)
			m.Handle.Observe(time.Since(start).Seconds())
			if err == nil {
				m.Records.WithLabelValues(r.Topic, "ok").Inc()
			}
			return out, err
		}
	}
}
