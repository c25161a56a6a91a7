package stage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

const (
	group   = "rdv.test.stage"
	waitFor = 15 * time.Second
)

type kafka struct {
	t     *testing.T
	c     *kfake.Cluster
	addrs []string
}

// newKafka starts an in-process cluster with topics in, out and dlq of two
// partitions each; it is closed when the test ends, after the clients.
func newKafka(t *testing.T) *kafka {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "out", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &kafka{t: t, c: c, addrs: c.ListenAddrs()}
}

func (k *kafka) client(opts ...kgo.Opt) *kgo.Client {
	k.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.addrs...)}, opts...)...)
	if err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(cl.Close)
	return cl
}

// loopClient is a stage's group consumer, as Loop requires it.
func (k *kafka) loopClient(opts ...kgo.Opt) *kgo.Client {
	base := append(stage.HotPathOpts(),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics("in"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitMarks(),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	return k.client(append(base, opts...)...)
}

// seed writes records to in, each to the partition it names.
func (k *kafka) seed(recs ...*kgo.Record) {
	k.t.Helper()
	cl := k.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	defer cl.Close()
	for _, r := range recs {
		r.Topic = "in"
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		k.t.Fatal(err)
	}
}

func rec(p int32, key, value string, hs ...kgo.RecordHeader) *kgo.Record {
	return &kgo.Record{Partition: p, Key: []byte(key), Value: []byte(value), Headers: hs}
}

// read consumes topic from the start until it holds n records.
func (k *kafka) read(topic string, n int) []*kgo.Record {
	k.t.Helper()
	cl := k.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			k.t.Fatalf("%s: %d records after %v, want %d", topic, len(out), waitFor, n)
		}
		out = append(out, fs.Records()...)
	}
	if ends := k.ends(topic); sum(ends) != int64(n) {
		k.t.Fatalf("%s holds %d records (%v), want %d", topic, sum(ends), ends, n)
	}
	return out
}

func sum(m map[int32]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

func (k *kafka) ends(topic string) map[int32]int64 {
	k.t.Helper()
	cl := k.client()
	defer cl.Close()
	lo, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		k.t.Fatal(err)
	}
	out := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// committed is the group's committed offset of in, by partition.
func (k *kafka) committed() map[int32]int64 {
	k.t.Helper()
	cl := k.client()
	defer cl.Close()
	os, err := kadm.NewClient(cl).FetchOffsets(context.Background(), group)
	out := map[int32]int64{}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return out // nothing committed yet
	}
	if err != nil {
		k.t.Fatal(err)
	}
	for p, o := range os["in"] {
		if o.Err == nil && o.At >= 0 {
			out[p] = o.At
		}
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run starts Loop; stop cancels it and returns its error. Cleanup stops it
// too, before the clients and the cluster close.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func run(t *testing.T, cl *kgo.Client, h stage.Handler, m *stage.Metrics) *running {
	ctx, cancel := context.WithCancel(context.Background())
	return runCtx(t, ctx, cancel, cl, h, m)
}

func runCtx(t *testing.T, ctx context.Context, cancel context.CancelFunc, cl *kgo.Client, h stage.Handler, m *stage.Metrics) *running {
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- stage.Loop(ctx, cl, h, m, quietLog()) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(waitFor):
			t.Fatalf("Loop did not return within %v of cancel", waitFor)
		}
	})
	return r.err
}

// wait returns Loop's error once it returns by itself.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.once.Do(func() { r.err = err })
		return err
	case <-time.After(waitFor):
		t.Fatalf("Loop did not return within %v", waitFor)
		return nil
	}
}

func upper(_ context.Context, r *kgo.Record) ([]*kgo.Record, error) {
	return []*kgo.Record{{Topic: "out", Key: r.Key, Value: bytes.ToUpper(r.Value), Headers: r.Headers}}, nil
}

func values(rs []*kgo.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r.Value)
	}
	sort.Strings(out)
	return out
}

func TestLoopCommitsOnlyAfterOutputsAreWritten(t *testing.T) {
	k := newKafka(t)
	k.seed(rec(0, "a", "a"), rec(0, "b", "b"), rec(0, "c", "c"), rec(1, "d", "d"), rec(1, "e", "e"))

	// From here on only the loop produces: hold its produce requests until
	// released. (Newer produce requests name topics by id, so every
	// produce is held rather than matching the topic name.)
	var (
		held, release         = make(chan struct{}), make(chan struct{})
		heldOnce, releaseOnce sync.Once
		releaseProduce        = func() { releaseOnce.Do(func() { close(release) }) }
	)
	k.c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		heldOnce.Do(func() { close(held) })
		k.c.SleepControl(func() { <-release })
		return nil, nil, false
	})

	m, reg := newMetrics(t, "s")
	var handled atomic.Int32
	cl := k.loopClient(kgo.AutoCommitInterval(100 * time.Millisecond))
	loop := run(t, cl, func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		handled.Add(1)
		return upper(ctx, r)
	}, m)
	t.Cleanup(releaseProduce) // runs before the loop is stopped

	select {
	case <-held:
	case <-time.After(waitFor):
		t.Fatal("the handler's outputs were never produced")
	}
	// The outputs are on their way but not acknowledged: nothing may be
	// marked, so even an explicit commit commits nothing.
	if got := handled.Load(); got == 0 {
		t.Fatal("outputs produced before any record was handled")
	}
	if mk := cl.MarkedOffsets(); len(mk) != 0 {
		t.Fatalf("offsets marked before the outputs were acknowledged: %v", mk)
	}
	if err := cl.CommitMarkedOffsets(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := k.committed(); len(c) != 0 {
		t.Fatalf("offsets committed before the outputs were acknowledged: %v", c)
	}

	releaseProduce()
	want := map[int32]int64{0: 3, 1: 2}
	eventually(t, "the group to commit every record", func() bool { return reflect.DeepEqual(k.committed(), want) })
	if got := values(k.read("out", 5)); !reflect.DeepEqual(got, []string{"A", "B", "C", "D", "E"}) {
		t.Fatalf("out holds %v", got)
	}
	if handled.Load() != 5 {
		t.Fatalf("handled %d records, want 5", handled.Load())
	}
	if got := metric(t, reg, "rdv_s_produced_total", "topic", "out"); got != 5 {
		t.Fatalf("produced_total{out} = %v, want 5", got)
	}
	if err := loop.stop(t); err != nil {
		t.Fatalf("Loop = %v, want nil", err)
	}
}

func TestLoopDeadLettersPoison(t *testing.T) {
	k := newKafka(t)
	trace := kgo.RecordHeader{Key: "trace", Value: []byte("t-9")}
	k.seed(rec(0, "k1", "good-1"), rec(0, "k2", "poison", trace), rec(0, "k3", "good-2"), rec(1, "k4", "good-3"))

	m, reg := newMetrics(t, "enricher")
	h := stage.Chain(func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		if string(r.Value) == "poison" {
			return nil, fmt.Errorf("%w: value is poison", stage.ErrPoison)
		}
		return upper(ctx, r)
	}, stage.WithDeadLetter("dlq", "enricher", m, quietLog()))
	cl := k.loopClient(kgo.AutoCommitInterval(100 * time.Millisecond))
	loop := run(t, cl, h, m)

	want := map[int32]int64{0: 3, 1: 1}
	eventually(t, "the group to commit past the poison record", func() bool { return reflect.DeepEqual(k.committed(), want) })
	if got := values(k.read("out", 3)); !reflect.DeepEqual(got, []string{"GOOD-1", "GOOD-2", "GOOD-3"}) {
		t.Fatalf("out holds %v", got)
	}
	dl := k.read("dlq", 1)[0]
	if string(dl.Key) != "k2" || string(dl.Value) != "poison" {
		t.Fatalf("dead letter key %q value %q", dl.Key, dl.Value)
	}
	wantHeaders := map[string]string{
		"trace":               "t-9",
		stage.HeaderError:     "poison record: value is poison",
		stage.HeaderStage:     "enricher",
		stage.HeaderTopic:     "in",
		stage.HeaderPartition: "0",
		stage.HeaderOffset:    "1",
	}
	for key, v := range wantHeaders {
		if got, ok := header(dl, key); !ok || got != v {
			t.Errorf("dead letter header %s = %q, want %q", key, got, v)
		}
	}
	if got := metric(t, reg, "rdv_enricher_produced_total", "topic", "dlq"); got != 1 {
		t.Errorf("produced_total{dlq} = %v", got)
	}
	if got := metric(t, reg, "rdv_enricher_errors_total", "reason", "poison"); got != 1 {
		t.Errorf("errors_total{poison} = %v", got)
	}
	if err := loop.stop(t); err != nil {
		t.Fatalf("Loop = %v, want nil", err)
	}
}

func TestLoopCommitsOnCancel(t *testing.T) {
	k := newKafka(t)
	k.seed(rec(0, "a", "a"), rec(0, "b", "b"), rec(1, "c", "c"), rec(1, "d", "d"))
	m, _ := newMetrics(t, "s")
	// No periodic commit: only Loop's commit on the way out can move the
	// group's offsets.
	cl := k.loopClient(kgo.AutoCommitInterval(time.Hour))
	loop := run(t, cl, upper, m)

	k.read("out", 4)
	eventually(t, "every record to be marked", func() bool {
		mk := cl.MarkedOffsets()["in"]
		return mk[0].Offset == 2 && mk[1].Offset == 2
	})
	if c := k.committed(); len(c) != 0 {
		t.Fatalf("committed %v before the loop ended", c)
	}
	if err := loop.stop(t); err != nil {
		t.Fatalf("Loop after cancel = %v, want nil", err)
	}
	// Read before the client closes (closing commits too).
	if got, want := k.committed(), map[int32]int64{0: 2, 1: 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("committed on shutdown %v, want %v", got, want)
	}
}

func TestLoopReturnsWhenClientCloses(t *testing.T) {
	k := newKafka(t)
	m, _ := newMetrics(t, "s")
	cl := k.loopClient()
	loop := run(t, cl, upper, m)
	cl.Close()
	if err := loop.wait(t); err != nil {
		t.Fatalf("Loop on a closed client = %v, want nil", err)
	}
}

func TestLoopFailsWhenOutputsCannotBeWritten(t *testing.T) {
	k := newKafka(t)
	k.seed(rec(0, "a", "a"), rec(1, "b", "b"))
	m, _ := newMetrics(t, "s")
	cl := k.loopClient(kgo.AutoCommitInterval(100*time.Millisecond), kgo.UnknownTopicRetries(0), kgo.RecordDeliveryTimeout(2*time.Second))
	loop := run(t, cl, func(_ context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		return []*kgo.Record{{Topic: "no-such-topic", Value: r.Value}}, nil
	}, m)
	err := loop.wait(t)
	if err == nil || !strings.Contains(err.Error(), "flush outputs") || !strings.Contains(err.Error(), "no-such-topic") {
		t.Fatalf("Loop = %v, want a produce failure naming the topic", err)
	}
	if mk := cl.MarkedOffsets(); len(mk["in"]) != 0 {
		t.Fatalf("records whose outputs failed were marked: %v", mk)
	}
	if c := k.committed(); len(c) != 0 {
		t.Fatalf("records whose outputs failed were committed: %v", c)
	}
}

// Loop's contract: on ctx's end it finishes the batch in hand, flushes,
// commits and returns nil.
func TestLoopFinishesTheBatchInHandOnCancel(t *testing.T) {
	k := newKafka(t)
	k.seed(rec(0, "a", "a"), rec(0, "b", "b"), rec(0, "c", "c"))
	m, _ := newMetrics(t, "s")
	cl := k.loopClient(kgo.AutoCommitInterval(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	loop := runCtx(t, ctx, cancel, cl, func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		once.Do(cancel) // shutdown starts while the first record is handled
		return upper(ctx, r)
	}, m)
	err := loop.wait(t)
	if err != nil {
		t.Fatalf("Loop = %v, want nil", err)
	}
	if got, want := k.committed(), map[int32]int64{0: 3}; !reflect.DeepEqual(got, want) {
		t.Fatalf("committed %v, want %v", got, want)
	}
	if got := values(k.read("out", 3)); !reflect.DeepEqual(got, []string{"A", "B", "C"}) {
		t.Fatalf("out holds %v", got)
	}
}

// A record left unmarked because the handler stopped on cancellation must
// not be committed past because a later record of the same batch was marked.
func TestLoopDoesNotCommitPastAnUnhandledRecord(t *testing.T) {
	k := newKafka(t)
	k.seed(rec(0, "a", "first"), rec(0, "b", "second"))
	m, _ := newMetrics(t, "s")
	cl := k.loopClient(kgo.AutoCommitInterval(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	loop := runCtx(t, ctx, cancel, cl, func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		if string(r.Value) == "first" {
			cancel() // e.g. WithRetry's backoff interrupted by shutdown
			return nil, ctx.Err()
		}
		return nil, nil // a filter: nothing to produce for this one
	}, m)
	if err := loop.wait(t); err != nil {
		t.Fatalf("Loop = %v", err)
	}
	if got := k.committed(); got[0] > 0 {
		t.Fatalf("committed offset %d of partition 0: record 0 was never handled and will not be replayed", got[0])
	}
}

func TestLoopCountsFetchErrorsButNotCancellation(t *testing.T) {
	k := newKafka(t)
	k.seed(rec(0, "a", "a"))
	m, reg := newMetrics(t, "s")
	cl := k.loopClient()
	loop := run(t, cl, upper, m)
	k.read("out", 1)
	if err := loop.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, reg, "rdv_s_errors_total", "reason", "fetch"); got != 0 {
		t.Fatalf("cancellation counted as %v fetch errors", got)
	}
}
