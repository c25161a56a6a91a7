// Command archive measures the log connector's write path against a plain
// sequential write of the same bytes to the same disk.
//
// The archive side is archive.Archiver on a local directory: per record the
// envelope, the schema check of the body and the copy into an Avro block;
// per file the container header, the blocks, fsync, rename and the
// directory's fsync. It is fed realistic records from memory: iris
// decisions (three scores each) in the Confluent wire format, in runs of
// 500 records per partition as fetches give them. The plain side writes as many bytes through a bufio
// writer and fsyncs once. `make bench` runs it; it asserts nothing.
//
//	go run ./bench/archive [-records 400000] [-runs 3] [-dir DIR]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

const (
	schemaID = 1
	fetchRun = 500 // records of one partition in a row, as a fetch gives them
)

func main() {
	n := flag.Int("records", 400_000, "records per run")
	runs := flag.Int("runs", 3, "runs; the median is reported")
	parts := flag.Int("partitions", 3, "partitions the records are spread over")
	rotate := flag.Int64("rotate-bytes", archive.Defaults().RotateBytes, "archive file size")
	dir := flag.String("dir", os.TempDir(), "where to write (the same disk for both)")
	flag.Parse()

	set, err := schemas.For("iris")
	if err != nil {
		log.Fatal(err)
	}
	text := set.Text[schemas.Decision]
	recs, inBytes := decisions(text, *n, *parts)
	src := fixedSchemas{schemaID: text}

	var arch, plain []time.Duration
	var outBytes int64
	var files int
	for i := 0; i < *runs; i++ {
		work, err := os.MkdirTemp(*dir, "rdv-bench-archive-")
		if err != nil {
			log.Fatal(err)
		}
		runtime.GC()
		d, size, nf := archiveRun(filepath.Join(work, "archive"), src, recs, *rotate)
		arch, outBytes, files = append(arch, d), size, nf
		runtime.GC()
		plain = append(plain, plainRun(filepath.Join(work, "plain"), size))
		if err := os.RemoveAll(work); err != nil {
			log.Fatal(err)
		}
	}
	a, p := median(arch), median(plain)
	mb := func(d time.Duration) float64 { return float64(outBytes) / 1e6 / d.Seconds() }
	fmt.Printf("records: %s iris decisions, %d B each on average (%.1f MB of values), %d partitions; %d files of up to %d MiB, %.1f MB written; median of %d runs in %s\n",
		group(float64(*n)), inBytes / *n, float64(inBytes)/1e6, *parts, files, *rotate>>20, float64(outBytes)/1e6, *runs, *dir)
	fmt.Printf("archive: %s rec/s, %.1f MB/s; plain write: %.1f MB/s; ratio %.2f\n",
		group(float64(*n)/a.Seconds()), mb(a), mb(p), p.Seconds()/a.Seconds())

	// Where the time goes: the per-record work without the disk, against
	// decoding the body with goavro alone, the check it replaced.
	cpu := cpuOnly(src, recs)
	fmt.Printf("write path without the disk: %s rec/s, %.0f ns/record; goavro decode alone: %.0f ns/record\n",
		group(float64(*n)/cpu.Seconds()), float64(cpu.Nanoseconds())/float64(*n), decodeCost(text, recs))
}

// decisions makes n wire-format decisions of the iris schema.
func decisions(text string, n, parts int) ([]*kgo.Record, int) {
	codec, err := goavro.NewCodec(text)
	if err != nil {
		log.Fatal(err)
	}
	ts := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	recs := make([]*kgo.Record, n)
	total := 0
	for i := range recs {
		id := fmt.Sprintf("%08x-2b82-4119-a0f7-%012x", i, i*7919)
		v, err := codec.BinaryFromNative([]byte{0, 0, 0, 0, schemaID}, decision(id, int64(i)))
		if err != nil {
			log.Fatal(err)
		}
		total += len(v)
		// Fetches hand records over in runs of one partition.
		p, run := (i/fetchRun)%parts, i/(fetchRun*parts)
		recs[i] = &kgo.Record{
			Topic: "rdv.iris.decisions", Partition: int32(p), Offset: int64(run*fetchRun + i%fetchRun),
			Timestamp: ts.Add(time.Duration(i) * time.Millisecond), Key: []byte(id), Value: v,
		}
	}
	return recs, total
}

func decision(id string, i int64) map[string]any {
	us := 1_795_000_000_000_000 + i*1000
	classes := []string{"setosa", "versicolor", "virginica"}
	result := classes[i%3]
	score := func(model, role string, late bool) map[string]any {
		return map[string]any{"model": model, "version": "1", "role": role, "result": map[string]any{"string": result},
			"error": nil, "compute_us": 30 + i%40, "arrived_us": 800 + i%900, "late": late, "duplicates": int32(0)}
	}
	return map[string]any{
		"request_id": id, "objective": "iris", "key": "", "received_us": us, "deadline_us": us + 100_000,
		"decided_us": us + 1_100 + i%500, "closed_us": us + 1_000_000, "reason": "champion", "policy": "priority",
		"model": "dt", "version": "1", "result": map[string]any{"string": result},
		"features": map[string]any{"sepalLength": 5.1 + float64(i%10)/10, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2},
		"scores":   []any{score("dt", "champion", false), score("canary", "canary", false), score("challenger", "shadow", i%5 == 0)},
		"missing":  []any{},
	}
}

type fixedSchemas map[int]string

func (m fixedSchemas) Writer(_ context.Context, id int) (*serde.Schema, error) {
	text, ok := m[id]
	if !ok {
		return nil, fmt.Errorf("%w: schema %d", serde.ErrDecode, id)
	}
	return serde.Parse(text)
}

func archiveRun(dir string, src archive.SchemaSource, recs []*kgo.Record, rotate int64) (time.Duration, int64, int) {
	ctx := context.Background()
	a := archive.NewArchiver(archive.NewLocalStore(dir), src, archive.ArchiverConfig{Objective: "iris", RotateBytes: rotate, RotateInterval: time.Hour})
	var size int64
	files := 0
	a.Committed = func(_ archive.File, _, bytes int64) { size += bytes; files++ }
	start := time.Now()
	for _, r := range recs {
		if bad, err := a.Add(ctx, r); bad != nil || err != nil {
			log.Fatalf("archive: %v %v", bad, err)
		}
	}
	if err := a.FinishAll(ctx); err != nil {
		log.Fatal(err)
	}
	return time.Since(start), size, files
}

// plainRun writes size bytes sequentially through bufio and fsyncs once.
func plainRun(path string, size int64) time.Duration {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Fatal(err)
	}
	chunk := []byte(strings.Repeat("rendezvous archive plain write ", 2048))
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	for left := size; left > 0; {
		p := chunk[:min(int64(len(chunk)), left)]
		if _, err := w.Write(p); err != nil {
			log.Fatal(err)
		}
		left -= int64(len(p))
	}
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	return time.Since(start)
}

// cpuOnly runs the write path into a store that discards the bytes.
func cpuOnly(src archive.SchemaSource, recs []*kgo.Record) time.Duration {
	ctx := context.Background()
	a := archive.NewArchiver(discard{}, src, archive.ArchiverConfig{Objective: "iris", RotateBytes: 64 << 20, RotateInterval: time.Hour})
	runtime.GC()
	start := time.Now()
	for _, r := range recs {
		if _, err := a.Add(ctx, r); err != nil {
			log.Fatal(err)
		}
	}
	if err := a.FinishAll(ctx); err != nil {
		log.Fatal(err)
	}
	return time.Since(start)
}

// decodeCost is what goavro takes to decode one record's body: the check
// the archive made per record before it had its own.
func decodeCost(text string, recs []*kgo.Record) float64 {
	codec, err := goavro.NewCodec(text)
	if err != nil {
		log.Fatal(err)
	}
	sample := recs[:min(len(recs), 100_000)]
	runtime.GC()
	start := time.Now()
	for _, r := range sample {
		if _, _, err := codec.NativeFromBinary(r.Value[5:]); err != nil {
			log.Fatal(err)
		}
	}
	return float64(time.Since(start).Nanoseconds()) / float64(len(sample))
}

type discard struct{}

func (discard) Create(context.Context, string) (archive.Upload, error) { return discardUpload{}, nil }
func (discard) List(context.Context, string) ([]string, error)         { return nil, nil }
func (discard) Open(context.Context, string) (io.ReadCloser, error)    { return nil, os.ErrNotExist }
func (discard) Remove(context.Context, string) error                   { return nil }
func (discard) Close() error                                           { return nil }
func (discard) String() string                                         { return "discard" }

type discardUpload struct{}

func (discardUpload) Write(p []byte) (int, error)          { return len(p), nil }
func (discardUpload) Commit(context.Context, string) error { return nil }
func (discardUpload) Abort()                               {}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// group writes n with thousands separators.
func group(n float64) string {
	s := fmt.Sprintf("%d", int64(math.Round(n)))
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
