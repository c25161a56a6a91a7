package enricher

import (
	"context"
	"errors"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// testEnv is the enricher's stage environment over an in-memory embedded
// registry and, when brokers are given, a kfake cluster.
func testEnv(t *testing.T, brokers ...string) *stage.Env {
	t.Helper()
	reg, err := embedded.New(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(func() { srv.Close(); reg.Close() })
	cfg := config.Defaults()
	cfg.RegistryURL = srv.URL
	cfg.LogLevel = "error"
	if len(brokers) > 0 {
		cfg.Kafka.Brokers = brokers
	}
	env, err := stage.NewEnv("enricher", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Registry.Close() })
	return env
}

func encoder(t *testing.T, env *stage.Env, topic string, k schemas.Kind) *serde.Encoder {
	t.Helper()
	enc, err := env.Encoder(context.Background(), topic, k)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

func encode(t *testing.T, enc *serde.Encoder, native map[string]any) []byte {
	t.Helper()
	b, err := enc.Encode(nil, native)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandler(t *testing.T) {
	ctx := context.Background()
	env := testEnv(t)
	table := newTable()
	table.put("tenant-7", map[string]any{"segment": "gold"})
	h := handler(env, table, encoder(t, env, env.Topics.Inputs, schemas.Input))
	reqEnc := encoder(t, env, env.Topics.Requests, schemas.Request)

	received := time.Date(2024, 1, 8, 6, 0, 0, 0, time.UTC)
	in := &kgo.Record{
		Topic: env.Topics.Requests, Key: []byte("r-1"),
		Value:   encode(t, reqEnc, request(received)),
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("x")}},
	}
	out, err := h(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Topic != "rdv.iris.inputs" || string(out[0].Key) != "r-1" || !reflect.DeepEqual(out[0].Headers, in.Headers) {
		t.Fatalf("outputs %+v", out)
	}
	got, err := env.Serde.Decode(ctx, out[0].Value, env.Reader(schemas.Input))
	if err != nil {
		t.Fatal(err)
	}
	if got["request_id"] != "r-1" || got["hour_of_day"] != int32(6) || got["day_of_week"] != int32(1) ||
		!reflect.DeepEqual(got["context"], map[string]any{"segment": "gold"}) || got["received_us"] != received.UnixMicro() {
		t.Fatalf("input %v", got)
	}
	if enriched := got["enriched_us"].(int64); time.Since(time.UnixMicro(enriched)) > time.Minute {
		t.Fatalf("enriched_us %d is not now", enriched)
	}

	// Undecodable: the decode error, for the dead-letter wrapper.
	if _, err := h(ctx, &kgo.Record{Topic: env.Topics.Requests, Value: []byte("{}")}); !errors.Is(err, serde.ErrDecode) {
		t.Fatalf("garbage: err = %v, want ErrDecode", err)
	}
	// Decodable but unusable: poison.
	req := request(received)
	req["request_id"] = ""
	if _, err := h(ctx, &kgo.Record{Topic: env.Topics.Requests, Value: encode(t, reqEnc, req)}); !errors.Is(err, stage.ErrPoison) {
		t.Fatalf("no request_id: err = %v, want ErrPoison", err)
	}
}

func TestApplyContext(t *testing.T) {
	ctx := context.Background()
	env := testEnv(t)
	table := newTable()
	reader := env.Reader(schemas.Context)
	enc := encoder(t, env, env.Topics.Context, schemas.Context)
	row := func(key string, attrs map[string]any) *kgo.Record {
		return &kgo.Record{Key: []byte(key), Value: encode(t, enc, map[string]any{"key": key, "attributes": attrs, "updated_us": int64(1)})}
	}

	applyContext(ctx, env, table, reader, row("*", map[string]any{"segment": "default"}))
	applyContext(ctx, env, table, reader, row("alice", map[string]any{"segment": "gold"}))
	applyContext(ctx, env, table, reader, row("bob", map[string]any{}))
	if table.Len() != 3 || table.Lookup("alice")["segment"] != "gold" || len(table.Lookup("bob")) != 0 {
		t.Fatalf("table after three rows: %v", table.rows)
	}
	applyContext(ctx, env, table, reader, &kgo.Record{Key: []byte("alice")}) // tombstone
	if got := table.Lookup("alice"); got["segment"] != "default" {
		t.Fatalf("alice after her tombstone: %v", got)
	}
	applyContext(ctx, env, table, reader, &kgo.Record{Key: []byte("bob"), Value: []byte("junk")})
	if _, ok := table.rows["bob"]; !ok || table.Len() != 2 {
		t.Fatalf("an undecodable row changed the table: %v", table.rows)
	}
	mfs, _ := env.Reg.Gather()
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "rdv_enricher_errors_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "context_decode" && m.GetCounter().GetValue() == 1 {
					found = true
				}
			}
		}
	}
	if !found {
		t.Fatal("the undecodable row was not counted as a context_decode error")
	}
}

func TestLoadTableThenFollow(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "rdv.iris.context"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	env := testEnv(t, c.ListenAddrs()...)
	enc := encoder(t, env, env.Topics.Context, schemas.Context)
	row := func(p int32, key, segment string) *kgo.Record {
		r := &kgo.Record{Topic: env.Topics.Context, Partition: p, Key: []byte(key)}
		if segment != "" {
			r.Value = encode(t, enc, map[string]any{"key": key, "attributes": map[string]any{"segment": segment}, "updated_us": int64(1)})
		}
		return r
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := prod.ProduceSync(ctx, row(0, "*", "default"), row(0, "alice", "gold"), row(1, "bob", "silver"), row(1, "carol", "x"), row(1, "carol", "")).FirstErr(); err != nil {
		t.Fatal(err)
	}

	table := newTable()
	tail, err := loadTable(ctx, env, table)
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Close()
	want := map[string]map[string]any{"*": {"segment": "default"}, "alice": {"segment": "gold"}, "bob": {"segment": "silver"}}
	if !reflect.DeepEqual(table.rows, want) {
		t.Fatalf("loaded %v, want %v (carol deleted by her tombstone)", table.rows, want)
	}
	if env.Health.Ready() {
		t.Fatal("loadTable marked the stage ready: that is the consumer group's job")
	}

	// Updates after the load are followed.
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); followTable(fctx, env, tail, table) }()
	if err := prod.ProduceSync(ctx, row(0, "alice", "platinum"), row(1, "dave", "new")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for table.Lookup("alice")["segment"] != "platinum" || table.Lookup("dave")["segment"] != "new" {
		if time.Now().After(deadline) {
			t.Fatalf("updates not followed: alice %v dave %v", table.Lookup("alice"), table.Lookup("dave"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-done
}

func TestLoadTableOfAnEmptyTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "rdv.iris.context"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	env := testEnv(t, c.ListenAddrs()...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tail, err := loadTable(ctx, env, newTable())
	if err != nil {
		t.Fatal(err)
	}
	tail.Close()
}
