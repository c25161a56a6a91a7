package stage_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

func source() *kgo.Record {
	hs := make([]kgo.RecordHeader, 1, 8) // spare capacity: appending must not write into it
	hs[0] = kgo.RecordHeader{Key: "trace", Value: []byte("t-1")}
	return &kgo.Record{Topic: "rdv.iris.requests", Partition: 3, Offset: 1234, Key: []byte("req-1"), Value: []byte{0, 0, 0, 0, 1, 2}, Headers: hs}
}

func TestChainFirstIsOutermost(t *testing.T) {
	var trace []string
	mw := func(name string) stage.Middleware {
		return func(next stage.Handler) stage.Handler {
			return func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
				trace = append(trace, name+">")
				out, err := next(ctx, r)
				trace = append(trace, "<"+name)
				return out, err
			}
		}
	}
	h := func(context.Context, *kgo.Record) ([]*kgo.Record, error) {
		trace = append(trace, "handler")
		return []*kgo.Record{{Topic: "out"}}, nil
	}
	out, err := stage.Chain(h, mw("a"), mw("b"), mw("c"))(context.Background(), source())
	if err != nil || len(out) != 1 || out[0].Topic != "out" {
		t.Fatalf("out %v, err %v", out, err)
	}
	want := []string{"a>", "b>", "c>", "handler", "<c", "<b", "<a"}
	if !reflect.DeepEqual(trace, want) {
		t.Fatalf("call order %v, want %v", trace, want)
	}

	trace = nil
	if _, err := stage.Chain(h)(context.Background(), source()); err != nil || !reflect.DeepEqual(trace, []string{"handler"}) {
		t.Fatalf("Chain without middleware: trace %v, err %v", trace, err)
	}
}

func failing(err error) (stage.Handler, *int) {
	calls := new(int)
	return func(context.Context, *kgo.Record) ([]*kgo.Record, error) {
		*calls++
		return nil, err
	}, calls
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

func TestWithDeadLetter(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		reason string
	}{
		{"decode error", fmt.Errorf("decode request: %w", fmt.Errorf("%w: magic byte is 7", serde.ErrDecode)), "decode"},
		{"poison", fmt.Errorf("%w: no request_id", stage.ErrPoison), "poison"},
		{"any other error", errors.New("gave up after 5 attempts: boom"), "handler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, reg := newMetrics(t, "enricher")
			h, calls := failing(tt.err)
			r := source()
			out, err := stage.WithDeadLetter("rdv.iris.dlq", "enricher", m, quietLog())(h)(context.Background(), r)
			if err != nil {
				t.Fatalf("err = %v, want the failure absorbed", err)
			}
			if *calls != 1 {
				t.Fatalf("handler called %d times", *calls)
			}
			if len(out) != 1 {
				t.Fatalf("%d outputs, want one dead-letter record", len(out))
			}
			d := out[0]
			if d.Topic != "rdv.iris.dlq" || string(d.Key) != "req-1" || !reflect.DeepEqual(d.Value, r.Value) {
				t.Fatalf("dead letter %s key %q value % x", d.Topic, d.Key, d.Value)
			}
			want := map[string]string{
				"trace":               "t-1",
				stage.HeaderError:     tt.err.Error(),
				stage.HeaderStage:     "enricher",
				stage.HeaderTopic:     "rdv.iris.requests",
				stage.HeaderPartition: "3",
				stage.HeaderOffset:    "1234",
			}
			if len(d.Headers) != len(want) {
				t.Fatalf("headers %v, want %d of them", d.Headers, len(want))
			}
			if d.Headers[0].Key != "trace" {
				t.Errorf("the original headers come first: %v", d.Headers)
			}
			for k, v := range want {
				if got, ok := header(d, k); !ok || got != v {
					t.Errorf("header %s = %q (present %v), want %q", k, got, ok, v)
				}
			}
			if len(r.Headers) != 1 || cap(r.Headers) != 8 || r.Headers[:2][1].Key != "" {
				t.Errorf("the source record's headers were modified: %v", r.Headers[:2])
			}
			if got := metric(t, reg, "rdv_enricher_errors_total", "reason", tt.reason); got != 1 {
				t.Errorf("errors_total{reason=%s} = %v, want 1\n%s", tt.reason, got, series(t, reg, "rdv_enricher_errors_total"))
			}
			if got := metric(t, reg, "rdv_enricher_records_total", "topic", "rdv.iris.requests", "outcome", "dead_letter"); got != 1 {
				t.Errorf("records_total{dead_letter} = %v, want 1", got)
			}
		})
	}
}

func TestWithDeadLetterPassesSuccessThrough(t *testing.T) {
	m, reg := newMetrics(t, "s")
	want := []*kgo.Record{{Topic: "out", Value: []byte("a")}, {Topic: "out", Value: []byte("b")}}
	h := func(context.Context, *kgo.Record) ([]*kgo.Record, error) { return want, nil }
	out, err := stage.WithDeadLetter("dlq", "s", m, quietLog())(h)(context.Background(), source())
	if err != nil || !reflect.DeepEqual(out, want) {
		t.Fatalf("out %v, err %v", out, err)
	}
	if got := metric(t, reg, "rdv_s_records_total", "topic", "rdv.iris.requests", "outcome", "dead_letter"); got != 0 {
		t.Fatalf("dead_letter counted %v for a success", got)
	}
}

func TestWithDeadLetterLeavesCancellationAlone(t *testing.T) {
	m, reg := newMetrics(t, "s")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h, _ := failing(fmt.Errorf("%w: while shutting down", stage.ErrPoison))
	out, err := stage.WithDeadLetter("dlq", "s", m, quietLog())(h)(ctx, source())
	if err == nil || out != nil {
		t.Fatalf("a failure during shutdown was dead-lettered: out %v, err %v", out, err)
	}
	if got := metric(t, reg, "rdv_s_errors_total", "reason", "poison"); got != 0 {
		t.Fatalf("errors counted %v", got)
	}
}

func TestDeadLetterRecordWithoutHeaders(t *testing.T) {
	r := &kgo.Record{Topic: "in", Partition: 0, Offset: 0, Key: nil, Value: nil}
	d := stage.DeadLetterRecord("dlq", "x", r, errors.New("why"))
	keys := make([]string, len(d.Headers))
	for i, h := range d.Headers {
		keys[i] = h.Key
	}
	want := []string{stage.HeaderError, stage.HeaderStage, stage.HeaderTopic, stage.HeaderPartition, stage.HeaderOffset}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("header keys %v, want %v", keys, want)
	}
	if v, _ := header(d, stage.HeaderOffset); v != "0" {
		t.Fatalf("offset header %q", v)
	}
}

func TestWithRetryRetriesUntilSuccess(t *testing.T) {
	m, reg := newMetrics(t, "s")
	calls := 0
	h := func(context.Context, *kgo.Record) ([]*kgo.Record, error) {
		calls++
		if calls < 3 {
			return nil, errors.New("registry unavailable")
		}
		return []*kgo.Record{{Topic: "out"}}, nil
	}
	out, err := stage.WithRetry(5, m)(h)(context.Background(), source())
	if err != nil || len(out) != 1 {
		t.Fatalf("out %v, err %v", out, err)
	}
	if calls != 3 {
		t.Fatalf("handler called %d times, want 3", calls)
	}
	if got := metric(t, reg, "rdv_s_records_total", "topic", "rdv.iris.requests", "outcome", "retried"); got != 2 {
		t.Fatalf("retried = %v, want 2", got)
	}
}

func TestWithRetryDoesNotRetryPoison(t *testing.T) {
	for _, cause := range []error{
		fmt.Errorf("%w: bad", stage.ErrPoison),
		fmt.Errorf("%w: bad bytes", serde.ErrDecode),
	} {
		m, reg := newMetrics(t, "s")
		h, calls := failing(cause)
		_, err := stage.WithRetry(5, m)(h)(context.Background(), source())
		if err != cause {
			t.Errorf("err = %v, want the handler's error unchanged", err)
		}
		if *calls != 1 {
			t.Errorf("%v: handler called %d times, want 1", cause, *calls)
		}
		if got := metric(t, reg, "rdv_s_records_total", "topic", "rdv.iris.requests", "outcome", "retried"); got != 0 {
			t.Errorf("retried = %v", got)
		}
	}
}

func TestWithRetryGivesUp(t *testing.T) {
	m, reg := newMetrics(t, "s")
	cause := errors.New("still down")
	h, calls := failing(cause)
	_, err := stage.WithRetry(2, m)(h)(context.Background(), source())
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Fatalf("err = %v", err)
	}
	if errors.Is(err, stage.ErrPoison) {
		t.Fatal("giving up is not poison")
	}
	if *calls != 2 {
		t.Fatalf("handler called %d times, want 2", *calls)
	}
	if got := metric(t, reg, "rdv_s_records_total", "topic", "rdv.iris.requests", "outcome", "retried"); got != 1 {
		t.Fatalf("retried = %v, want 1 (two attempts are one retry)", got)
	}
}

func TestWithRetryStopsOnCancel(t *testing.T) {
	m, _ := newMetrics(t, "s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	h := func(context.Context, *kgo.Record) ([]*kgo.Record, error) {
		calls++
		cancel() // shutdown starts while the record is being handled
		return nil, errors.New("transient")
	}
	_, err := stage.WithRetry(1000, m)(h)(ctx, source())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if calls != 1 {
		t.Fatalf("handler called %d times after cancellation", calls)
	}
}

// The last attempt's failure is final: waiting out one more backoff before
// returning it only holds up the partition (800ms with 5 attempts).
func TestWithRetryDoesNotSleepAfterLastAttempt(t *testing.T) {
	m, _ := newMetrics(t, "s")
	h, _ := failing(errors.New("down"))
	start := time.Now()
	_, _ = stage.WithRetry(1, m)(h)(context.Background(), source())
	if d := time.Since(start); d >= 50*time.Millisecond {
		t.Fatalf("one attempt took %v: it waited a backoff with nothing left to retry", d)
	}
}

func TestWithMetrics(t *testing.T) {
	m, reg := newMetrics(t, "model-dt")
	ok := stage.WithMetrics(m)(func(context.Context, *kgo.Record) ([]*kgo.Record, error) { return nil, nil })
	bad := stage.WithMetrics(m)(func(context.Context, *kgo.Record) ([]*kgo.Record, error) { return nil, errors.New("x") })
	for i := 0; i < 3; i++ {
		if _, err := ok(context.Background(), source()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bad(context.Background(), source()); err == nil {
		t.Fatal("WithMetrics swallowed the error")
	}
	if got := metric(t, reg, "rdv_model_dt_records_total", "topic", "rdv.iris.requests", "outcome", "ok"); got != 3 {
		t.Errorf("ok = %v, want 3\n%s", got, series(t, reg, "rdv_model_dt_records_total"))
	}
	if got := metric(t, reg, "rdv_model_dt_handle_seconds"); got != 4 {
		t.Errorf("handle_seconds observed %v times, want 4 (failures are timed too)", got)
	}
}

// Composed with the dead-letter wrapper outside the metrics, a record is
// either ok or dead-lettered, never both.
func TestMiddlewareComposition(t *testing.T) {
	m, reg := newMetrics(t, "s")
	h := func(_ context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		if string(r.Value) == "bad" {
			return nil, fmt.Errorf("%w: bad", stage.ErrPoison)
		}
		return []*kgo.Record{{Topic: "out", Value: r.Value}}, nil
	}
	full := stage.Chain(h,
		stage.WithDeadLetter("dlq", "s", m, quietLog()),
		stage.WithMetrics(m),
		stage.WithRetry(3, m),
	)
	for _, v := range []string{"a", "bad", "b"} {
		out, err := full(context.Background(), &kgo.Record{Topic: "in", Value: []byte(v)})
		if err != nil || len(out) != 1 {
			t.Fatalf("%s: out %v, err %v", v, out, err)
		}
		wantTopic := "out"
		if v == "bad" {
			wantTopic = "dlq"
		}
		if out[0].Topic != wantTopic {
			t.Errorf("%s went to %s, want %s", v, out[0].Topic, wantTopic)
		}
	}
	if ok, dl := metric(t, reg, "rdv_s_records_total", "topic", "in", "outcome", "ok"),
		metric(t, reg, "rdv_s_records_total", "topic", "in", "outcome", "dead_letter"); ok != 2 || dl != 1 {
		t.Fatalf("ok %v dead_letter %v, want 2 and 1", ok, dl)
	}
}
