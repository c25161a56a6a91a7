package compare

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceTxn writes n records to topic in one transaction, committed or
// aborted.
func produceTxn(t *testing.T, cl *kgo.Client, topic string, first, n int, commit bool, ts time.Time) {
	t.Helper()
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := first; i < first+n; i++ {
		r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i)), Timestamp: ts}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatal(err)
	}
}

// A transactional log ends in a marker, and may hold aborted records: the
// read returns the committed records only, and stops at the end the topic
// had when it began.
func TestReadTopicTransactional(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	base := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	prod, err := kgo.NewClient(append(base, kgo.TransactionalID("test"), kgo.DefaultProduceTopic("log"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	old := time.Now().Add(-time.Hour)
	produceTxn(t, prod, "log", 0, 30, true, old)
	produceTxn(t, prod, "log", 1000, 20, false, time.Now()) // aborted
	produceTxn(t, prod, "log", 30, 30, true, time.Now())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := map[string]int{}
	var calls int
	n, err := ReadTopic(ctx, base, "log", ReadOptions{
		Progress: func(topic string, read, total int64) { calls++ },
		Stall:    5 * time.Second,
	}, func(r *kgo.Record) error {
		seen[string(r.Value)]++
		// Records written during the read are not waited for, nor read.
		if len(seen) == 1 {
			produceTxn(t, prod, "log", 5000, 5, true, time.Now())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 60 || len(seen) != 60 {
		t.Errorf("read %d records (%d distinct), want the 60 committed before the read", n, len(seen))
	}
	for v, k := range seen {
		if k != 1 || len(v) >= 4 {
			t.Errorf("record %s read %d times (aborted or late records are 1000+)", v, k)
		}
	}
	if calls == 0 {
		t.Error("progress was never reported")
	}

	// Since skips what came before.
	n, err = ReadTopic(ctx, base, "log", ReadOptions{Since: old.Add(time.Minute)}, func(*kgo.Record) error { return nil })
	if err != nil || n != 35 {
		t.Errorf("since: read %d (%v), want the 30 recent records and the 5 written during the first read", n, err)
	}

	// An error from the callback stops the read and comes back.
	boom := errors.New("boom")
	if _, err := ReadTopic(ctx, base, "log", ReadOptions{}, func(*kgo.Record) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("callback error: got %v", err)
	}

	if _, err := ReadTopic(ctx, base, "nope", ReadOptions{}, func(*kgo.Record) error { return nil }); !errors.Is(err, ErrNoTopic) {
		t.Errorf("missing topic: %v, want ErrNoTopic", err)
	}
}
