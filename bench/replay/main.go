// Command replay measures how fast a model runner scores history (a
// replay, into the replay-scores topic) against how fast the same model
// scores the same inputs live (the hot-path loop, into the scores topic).
//
// It starts an embedded broker and registry in process, writes N iris
// inputs, then runs the runner twice over them, each time in a consumer
// group of its own: once with -from-offset 0 (replay; done when it
// announces itself live) and once with -from-start (live scoring of a
// backlog; done when it wrote N scores). `make bench` runs it; it asserts
// nothing and prints records per second, and writes
// bench/results/replay.json.
//
//	go run ./bench/replay [-records 200000] [-partitions 4] [-out bench/results/replay.json]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/fleet"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/model"
)

type result struct {
	Mode       string  `json:"mode"`
	Records    int     `json:"records"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"records_per_s"`
	Model      string  `json:"model"`
	Partitions int     `json:"partitions"`
}

func main() {
	n := flag.Int("records", 200000, "inputs written, then scored by each run")
	parts := flag.Int("partitions", 4, "partitions of the inputs topic")
	modelPath := flag.String("model", "models/iris/dt.json", "model file")
	out := flag.String("out", "bench/results/replay.json", "where to write the results")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	ts := topics.For("iris")
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	reg, err := embedded.New(embedded.Config{})
	if err != nil {
		log.Fatal(err)
	}
	hs := httptest.NewServer(reg.Handler())
	defer hs.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	layout := topics.DefaultLayout()
	layout.Partitions = int32(*parts)
	if err := topics.Ensure(ctx, kadm.NewClient(cl), "iris", layout); err != nil {
		log.Fatal(err)
	}
	rc, err := registry.New(registry.Config{URL: hs.URL})
	if err != nil {
		log.Fatal(err)
	}
	sd := serde.New(rc)
	set, _ := schemas.For("iris")
	enc, err := sd.Encoder(ctx, topics.Subject(ts.Inputs), set.Text[schemas.Input])
	if err != nil {
		log.Fatal(err)
	}
	if _, err := fleet.NewCodec(ctx, sd); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("writing %d inputs over %d partitions...\n", *n, *parts)
	past := time.Now().Add(-time.Hour)
	for i := 0; i < *n; i++ {
		id := fmt.Sprintf("req-%07d", i)
		v, err := enc.Encode(nil, map[string]any{
			"request_id": id, "objective": "iris", "key": "", "received_us": past.UnixMicro(), "deadline_us": past.Add(100 * time.Millisecond).UnixMicro(),
			"enriched_us": past.UnixMicro(), "hour_of_day": int32(past.UTC().Hour()), "day_of_week": int32(past.UTC().Weekday()),
			"context":  map[string]any{},
			"features": map[string]any{"sepalLength": 5.1 + float64(i%30)/10, "sepalWidth": 3.5, "petalLength": 1.4 + float64(i%50)/10, "petalWidth": 0.2 + float64(i%20)/10},
		})
		if err != nil {
			log.Fatal(err)
		}
		cl.Produce(ctx, &kgo.Record{Topic: ts.Inputs, Key: []byte(id), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				log.Fatal(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		log.Fatal(err)
	}

	run := func(mode string, tweak func(*model.Config), done func(context.Context) error) result {
		cfg := model.Defaults()
		cfg.Common.Kafka.Brokers = brokers
		cfg.Common.RegistryURL = hs.URL
		cfg.Common.LogLevel = "warn"
		cfg.ModelPath = *modelPath
		cfg.Name, cfg.Version, cfg.Role = "bench-"+mode, "1", model.RoleShadow
		cfg.MaxStaleness = 0
		tweak(&cfg)
		rctx, stop := context.WithCancel(ctx)
		errc := make(chan error, 1)
		start := time.Now()
		go func() { errc <- model.Run(rctx, cfg) }()
		if err := done(rctx); err != nil {
			log.Fatalf("%s: %v", mode, err)
		}
		took := time.Since(start)
		stop()
		<-errc
		r := result{Mode: mode, Records: *n, Seconds: took.Seconds(), PerSecond: float64(*n) / took.Seconds(), Model: *modelPath, Partitions: *parts}
		fmt.Printf("  %-7s %d records in %6.2fs: %8.0f records/s\n", mode, r.Records, r.Seconds, r.PerSecond)
		return r
	}

	fmt.Println("scoring them, each run from process start to the last score:")
	var results []result
	// Replay: done when it says it is live.
	liveCh := make(chan struct{})
	results = append(results, run("replay", func(c *model.Config) {
		c.Replay.Offset = 0
		c.Replay.OnProgress = func(_ fleet.Progress, status string) {
			if status == fleet.StatusLive {
				close(liveCh)
			}
		}
	}, func(ctx context.Context) error {
		select {
		case <-liveCh:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}))
	// Live: the hot-path loop over the same backlog; done at N scores.
	results = append(results, run("live", func(c *model.Config) { c.FromStart = true }, func(ctx context.Context) error {
		return waitScores(ctx, brokers, ts.Scores, *n)
	}))
	fmt.Printf("replay / live: %.2fx\n", results[0].PerSecond/results[1].PerSecond)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		log.Fatal(err)
	}
	b, _ := json.MarshalIndent(results, "", "  ")
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrote", *out)
}

// waitScores counts the records of topic until want are there.
func waitScores(ctx context.Context, brokers []string, topic string, want int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	got := 0
	for got < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("%d of %d scores: %w", got, want, ctx.Err())
		}
		got += fs.NumRecords()
	}
	return nil
}
