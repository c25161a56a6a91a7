package archive_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
	"github.com/rendezvous-ml/rendezvous/connectors/archive/blobstore"
	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

var iris = topics.For("iris")

// rig is a kfake cluster and an embedded registry on loopback, with the
// iris request and decision schemas registered, and a producer.
type rig struct {
	t        *testing.T
	ctx      context.Context
	cluster  *kfake.Cluster
	regDown  atomic.Bool // the registry answers 503 while set
	reg      *httptest.Server
	regSrv   *embedded.Server
	regCl    registry.Client
	prod     *kgo.Client
	encoders map[string]*serde.Encoder // by topic
	produced map[string]map[int32][]int64
	mu       sync.Mutex
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	r := &rig{t: t, ctx: ctx, encoders: map[string]*serde.Encoder{}, produced: map[string]map[int32][]int64{}}
	var err error
	r.cluster, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, iris.Requests, iris.Decisions, iris.DLQ))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.cluster.Close)
	r.regSrv, err = embedded.New(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.regSrv.Close() })
	h := r.regSrv.Handler()
	r.reg = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.regDown.Load() {
			w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error_code":50003,"message":"registry down for the test"}`)
			return
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(r.reg.Close)
	r.regCl, err = registry.New(registry.Config{URL: r.reg.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.regCl.Close() })
	set, err := schemas.For("iris")
	if err != nil {
		t.Fatal(err)
	}
	sd := serde.New(r.regCl)
	for topic, kind := range map[string]schemas.Kind{iris.Requests: schemas.Request, iris.Decisions: schemas.Decision} {
		if r.encoders[topic], err = sd.Encoder(ctx, topics.Subject(topic), set.Text[kind]); err != nil {
			t.Fatal(err)
		}
	}
	r.prod, err = kgo.NewClient(kgo.SeedBrokers(r.cluster.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.prod.Close)
	return r
}

func (r *rig) common() config.Common {
	c := config.Defaults()
	c.Kafka.Brokers = r.cluster.ListenAddrs()
	c.RegistryURL = r.reg.URL
	c.LogLevel = "error"
	return c
}

// value encodes the i-th record of topic.
func (r *rig) value(topic string, i int) []byte {
	id := fmt.Sprintf("req-%06d", i)
	var native map[string]any
	switch topic {
	case iris.Requests:
		native = map[string]any{
			"request_id": id, "objective": "iris", "key": "", "received_us": int64(i), "deadline_us": int64(i + 100000),
			"reply_topic": iris.Results, "reply_partition": int32(0),
			"features": map[string]any{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2},
		}
	default:
		native = irisDecision(id, int64(i))
	}
	b, err := r.encoders[topic].Encode(nil, native)
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

// produce writes n records with ids from first to each topic and
// partition, round robin, and remembers their offsets.
func (r *rig) produce(first, n int) {
	r.t.Helper()
	var recs []*kgo.Record
	for i := first; i < first+n; i++ {
		for _, topic := range []string{iris.Requests, iris.Decisions} {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 2), Key: []byte(fmt.Sprintf("req-%06d", i)), Value: r.value(topic, i)})
		}
	}
	r.produceRecords(recs...)
}

func (r *rig) produceRecords(recs ...*kgo.Record) {
	r.t.Helper()
	if err := r.prod.ProduceSync(r.ctx, recs...).FirstErr(); err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		if r.produced[rec.Topic] == nil {
			r.produced[rec.Topic] = map[int32][]int64{}
		}
		r.produced[rec.Topic][rec.Partition] = append(r.produced[rec.Topic][rec.Partition], rec.Offset)
	}
}

func (r *rig) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ps := range r.produced {
		for _, offs := range ps {
			n += len(offs)
		}
	}
	return n
}

func irisDecision(id string, i int64) map[string]any {
	score := func(model, role, result string, late bool) map[string]any {
		return map[string]any{"model": model, "version": "1", "role": role, "result": map[string]any{"string": result},
			"error": nil, "compute_us": int64(40 + i%7), "arrived_us": int64(900 + i%300), "late": late, "duplicates": int32(0)}
	}
	return map[string]any{
		"request_id": id, "objective": "iris", "key": "", "received_us": 1_790_000_000_000_000 + i, "deadline_us": 1_790_000_000_100_000 + i,
		"decided_us": 1_790_000_000_001_200 + i, "closed_us": 1_790_000_000_002_000 + i, "reason": "champion", "policy": "priority",
		"model": "dt", "version": "1", "result": map[string]any{"string": "setosa"},
		"features": map[string]any{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2},
		"scores":   []any{score("dt", "champion", "setosa", false), score("canary", "canary", "setosa", false), score("challenger", "shadow", "setosa", true)},
		"missing":  []any{},
	}
}

// running is a connector started by start.
type running struct {
	env  *stage.Env
	stop func() error
}

func (r *rig) start(st archive.Store, tweak func(*archive.Config)) *running {
	r.t.Helper()
	cfg := archive.Defaults()
	cfg.Common = r.common()
	cfg.Storage = st
	cfg.Topics = []string{iris.Requests, iris.Decisions}
	cfg.RotateInterval = 150 * time.Millisecond
	cfg.RotateBytes = 8 << 10
	cfg.RetryDelay = 100 * time.Millisecond
	if tweak != nil {
		tweak(&cfg)
	}
	env, err := stage.NewEnv("log-connector", cfg.Common)
	if err != nil {
		r.t.Fatal(err)
	}
	c, err := archive.New(r.ctx, cfg, env)
	if err != nil {
		env.Registry.Close()
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
			env.Registry.Close()
		})
		return runErr
	}
	r.t.Cleanup(func() { stop() })
	return &running{env: env, stop: stop}
}

// gauge reads a gauge from the connector's registry.
func gauge(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	v, err := gaugeValue(reg, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func gaugeValue(reg prometheus.Gatherer, name string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("no metric %s", name)
}

func counter(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// archivedRecord is one record read back from the archive.
type archivedRecord struct {
	file string
	raw  bool
	rec  map[string]any
}

// readArchive reads every record of every finished file, by topic and
// partition, in file order.
func readArchive(t *testing.T, st archive.Store) map[string]map[int32][]archivedRecord {
	t.Helper()
	ctx := context.Background()
	files, err := archive.ScanStore(ctx, st, "iris", false)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[int32][]archivedRecord{}
	for _, f := range files {
		if out[f.Topic] == nil {
			out[f.Topic] = map[int32][]archivedRecord{}
		}
		err := archive.EachIn(ctx, st, f.Path, func(rec map[string]any) error {
			off := rec["offset"].(int64)
			if off < f.First || off > f.Last {
				return fmt.Errorf("%s holds offset %d", f.Path, off)
			}
			out[f.Topic][f.Partition] = append(out[f.Topic][f.Partition], archivedRecord{file: f.Path, raw: f.Raw, rec: rec})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func countArchived(t *testing.T, st archive.Store) int {
	n := 0
	for _, ps := range readArchive(t, st) {
		for _, recs := range ps {
			n += len(recs)
		}
	}
	return n
}

// checkExactlyOnce compares the archive with what the rig produced: every
// produced offset exactly once, in order, nothing else, every request id
// once per topic; and Verify agrees.
func (r *rig) checkExactlyOnce(st archive.Store) {
	t := r.t
	t.Helper()
	got := readArchive(t, st)
	r.mu.Lock()
	defer r.mu.Unlock()
	for topic, ps := range r.produced {
		ids := map[string]int{}
		for p, want := range ps {
			var offs []int64
			for _, a := range got[topic][p] {
				offs = append(offs, a.rec["offset"].(int64))
				if v, ok := a.rec["value"].(map[string]any); ok {
					ids[v["request_id"].(string)]++
				}
			}
			if fmt.Sprint(offs) != fmt.Sprint(want) {
				t.Errorf("%s/%d archived offsets\n%v\nwant\n%v", topic, p, offs, want)
			}
		}
		for id, n := range ids {
			if n != 1 {
				t.Errorf("%s: %s archived %d times", topic, id, n)
			}
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	reps, err := archive.VerifyStore(r.ctx, cl, st, "iris")
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) == 0 {
		t.Error("Verify found no partitions")
	}
	for _, rep := range reps {
		if !rep.OK() {
			t.Errorf("Verify %s/%d: %+v", rep.Topic, rep.Partition, rep)
		}
	}
}

// faultStore is a Store whose operations fail while a fault is set.
type faultStore struct {
	archive.Store
	fault    atomic.Int32
	failures atomic.Int64
}

const (
	faultNone      = iota
	faultWrite     // writes fail: the disk is full
	faultCommit    // commits fail and do not happen
	faultGhost     // commits happen but report a failure (a lost answer)
	faultOffline   // every call fails: the store is unreachable
	faultCreateAll // Create fails
)

var errDiskFull = fmt.Errorf("write: %w", syscall.ENOSPC)

func (s *faultStore) fail(kinds ...int32) error {
	f := s.fault.Load()
	for _, k := range kinds {
		if f == k {
			s.failures.Add(1)
			if f == faultWrite {
				return errDiskFull
			}
			return errors.New("store unreachable (injected)")
		}
	}
	return nil
}

func (s *faultStore) Create(ctx context.Context, tmp string) (archive.Upload, error) {
	if err := s.fail(faultOffline, faultCreateAll); err != nil {
		return nil, err
	}
	up, err := s.Store.Create(ctx, tmp)
	if err != nil {
		return nil, err
	}
	return &faultUpload{Upload: up, s: s}, nil
}

func (s *faultStore) List(ctx context.Context, prefix string) ([]string, error) {
	if err := s.fail(faultOffline); err != nil {
		return nil, err
	}
	return s.Store.List(ctx, prefix)
}

func (s *faultStore) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := s.fail(faultOffline); err != nil {
		return nil, err
	}
	return s.Store.Open(ctx, name)
}

type faultUpload struct {
	archive.Upload
	s *faultStore
}

func (u *faultUpload) Write(p []byte) (int, error) {
	if err := u.s.fail(faultWrite, faultOffline); err != nil {
		return 0, err
	}
	return u.Upload.Write(p)
}

func (u *faultUpload) Commit(ctx context.Context, name string) error {
	if err := u.s.fail(faultCommit, faultOffline); err != nil {
		u.Upload.Abort()
		return err
	}
	if err := u.Upload.Commit(ctx, name); err != nil {
		return err
	}
	return u.s.fail(faultGhost)
}

// TestPauseWithoutLoss: records flow while the store fails for a while in
// each way it can, then recovers. The archive ends with every record
// exactly once, and the paused gauge went to 1 and back to 0.
func TestPauseWithoutLoss(t *testing.T) {
	stores := map[string]func(t *testing.T) archive.Store{
		"local dir": func(t *testing.T) archive.Store { return archive.NewLocalStore(t.TempDir()) },
		"mem bucket": func(t *testing.T) archive.Store {
			st := blobstore.New(memblob.OpenBucket(nil), "mem://", blobstore.Options{SpoolMemory: 4 << 10, SpoolDir: t.TempDir()})
			t.Cleanup(func() { st.Close() })
			return st
		},
	}
	faults := []struct {
		name  string
		fault int32
	}{
		{"disk full", faultWrite},
		{"commit fails", faultCommit},
		{"commit lands but reports failure", faultGhost},
		{"store unreachable", faultOffline},
		{"create fails", faultCreateAll},
	}
	for sname, open := range stores {
		for _, f := range faults {
			t.Run(sname+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				r := newRig(t)
				st := &faultStore{Store: open(t)}
				c := r.start(st, nil)

				// Sample the gauge as a person watching /metrics would.
				var seen []float64
				var seenMu sync.Mutex
				sampleCtx, stopSampling := context.WithCancel(context.Background())
				sampled := make(chan struct{})
				go func() {
					defer close(sampled)
					for sampleCtx.Err() == nil {
						v, err := gaugeValue(c.env.Reg, "rdv_log_connector_paused")
						if err != nil {
							v = -1
						}
						seenMu.Lock()
						if len(seen) == 0 || seen[len(seen)-1] != v {
							seen = append(seen, v)
						}
						seenMu.Unlock()
						time.Sleep(2 * time.Millisecond)
					}
				}()

				r.produce(0, 100)
				waitFor(t, "the first records archived", 20*time.Second, func() bool { return countArchived(t, st) == r.total() })
				archivedBefore := r.total()

				// The store fails while records keep coming, in small batches
				// further apart than the rotation interval: each retry reads
				// further than the one before, so its files differ from the
				// ones that failed (and, for a commit that landed but said
				// it failed, would overlap them if the connector did not
				// check).
				st.fault.Store(f.fault)
				// (Batches smaller than a file, so that files end by time.)
				for i := 100; i < 220; i += 20 {
					r.produce(i, 20)
					time.Sleep(200 * time.Millisecond)
				}
				waitFor(t, "the connector to pause", 20*time.Second, func() bool { return gauge(t, c.env.Reg, "rdv_log_connector_paused") == 1 })
				before := st.failures.Load()
				waitFor(t, "retries while the store fails", 20*time.Second, func() bool { return st.failures.Load() >= before+3 })
				if f.fault != faultGhost {
					// Nothing of the failed period reached the archive
					// (a ghost commit does: that is the point of it).
					if n := countArchived(t, st.Store); n != archivedBefore {
						t.Errorf("archived %d records during the outage, had %d before", n, archivedBefore)
					}
				}

				st.fault.Store(faultNone)
				r.produce(220, 100)
				waitFor(t, "every record archived", 30*time.Second, func() bool { return countArchived(t, st) >= r.total() })
				waitFor(t, "the gauge back to 0", 10*time.Second, func() bool { return gauge(t, c.env.Reg, "rdv_log_connector_paused") == 0 })
				if err := c.stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				stopSampling()
				<-sampled

				r.checkExactlyOnce(st)
				seenMu.Lock()
				defer seenMu.Unlock()
				if fmt.Sprint(seen) != "[0 1 0]" {
					t.Errorf("paused gauge went %v, want [0 1 0]", seen)
				}
				if n := counter(t, c.env.Reg, "rdv_log_connector_errors_total", map[string]string{"reason": "storage"}); n < 1 {
					t.Errorf("storage errors counted %v", n)
				}
				if n := counter(t, c.env.Reg, "rdv_log_connector_records_total", map[string]string{"outcome": "dead_letter"}); n != 0 {
					t.Errorf("%v records dead-lettered: a storage failure is not the record's fault", n)
				}
			})
		}
	}
}

// TestRestartResumesFromTheArchive: a connector stopped and started again
// on an object store (file bucket) picks up where the archive ends.
func TestRestartResumesFromTheArchive(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	open := func() archive.Store {
		b, err := fileblob.OpenBucket(dir, &fileblob.Options{Metadata: fileblob.MetadataDontWrite})
		if err != nil {
			t.Fatal(err)
		}
		st := blobstore.New(b, "file bucket", blobstore.Options{})
		t.Cleanup(func() { st.Close() })
		return st
	}
	st := open()
	c := r.start(st, nil)
	r.produce(0, 150)
	waitFor(t, "records archived", 20*time.Second, func() bool { return countArchived(t, st) == r.total() })
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	r.produce(150, 150)
	st = open()
	c = r.start(st, func(cfg *archive.Config) { cfg.RotateBytes = 1 << 20 })
	waitFor(t, "records archived after the restart", 20*time.Second, func() bool { return countArchived(t, st) >= r.total() })
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	r.checkExactlyOnce(st)
}

// TestBadRecords: a record that is not in the wire format, one with an
// unknown schema id, and one whose body does not match its schema each go
// to the dead-letter topic with the reason and their source, and to a raw
// file; the records around them are archived as usual.
func TestBadRecords(t *testing.T) {
	for sname, open := range map[string]func(t *testing.T) archive.Store{
		"local dir": func(t *testing.T) archive.Store { return archive.NewLocalStore(t.TempDir()) },
		"mem bucket": func(t *testing.T) archive.Store {
			return blobstore.New(memblob.OpenBucket(nil), "mem://", blobstore.Options{})
		},
	} {
		t.Run(sname, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			st := open(t)
			defer st.Close()
			c := r.start(st, nil)

			good := r.value(iris.Decisions, 1)
			truncated := good[:len(good)-3]
			garbage := append(append([]byte(nil), good[:5]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
			trailing := append(append([]byte(nil), good...), 0)
			bad := []struct {
				name   string
				value  []byte
				reason string
			}{
				{"not wire format", []byte(`{"request_id":"json, not avro"}`), "magic byte is 123"},
				{"empty", nil, "0 bytes is shorter than the 5-byte wire-format header"},
				{"unknown schema id", []byte{0, 0, 0, 0x30, 0x39, 2, 'x'}, "writer schema 12345 is not in the registry"},
				{"truncated body", truncated, "body does not match writer schema"},
				{"garbage body", garbage, "body does not match writer schema"},
				{"trailing bytes", trailing, "1 trailing bytes"},
			}
			// Partition 0 of decisions: good, bad, good, bad, ... good.
			var recs []*kgo.Record
			recs = append(recs, &kgo.Record{Topic: iris.Decisions, Partition: 0, Key: []byte("g0"), Value: r.value(iris.Decisions, 0)})
			for i, b := range bad {
				recs = append(recs,
					&kgo.Record{Topic: iris.Decisions, Partition: 0, Key: []byte("bad-" + strconv.Itoa(i)), Value: b.value,
						Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("test")}}},
					&kgo.Record{Topic: iris.Decisions, Partition: 0, Key: []byte(fmt.Sprintf("g%d", i+1)), Value: r.value(iris.Decisions, i+1)})
			}
			r.produceRecords(recs...)

			waitFor(t, "every record archived", 20*time.Second, func() bool { return countArchived(t, st) == len(recs) })

			// The dead-letter topic holds the bad records, in order, with
			// their reasons and sources.
			dl := readTopic(t, r, iris.DLQ, len(bad))
			for i, b := range bad {
				d := dl[i]
				src := recs[1+2*i]
				h := map[string]string{}
				for _, hd := range d.Headers {
					h[hd.Key] = string(hd.Value)
				}
				if !strings.Contains(h[stage.HeaderError], b.reason) || !strings.Contains(h[stage.HeaderError], "undecodable record") {
					t.Errorf("%s: %s = %q, want it to say %q", b.name, stage.HeaderError, h[stage.HeaderError], b.reason)
				}
				if h[stage.HeaderStage] != "log-connector" || h[stage.HeaderTopic] != iris.Decisions || h[stage.HeaderPartition] != "0" ||
					h[stage.HeaderOffset] != strconv.FormatInt(src.Offset, 10) || h["origin"] != "test" {
					t.Errorf("%s: headers %v, want the source %s/0@%d", b.name, h, iris.Decisions, src.Offset)
				}
				if !bytes.Equal(d.Key, src.Key) || !bytes.Equal(d.Value, src.Value) {
					t.Errorf("%s: dead letter key %q value %q, want the original", b.name, d.Key, d.Value)
				}
			}

			// The archive holds all of them in order: good ones decoded,
			// bad ones raw with the reason.
			got := readArchive(t, st)[iris.Decisions][0]
			if len(got) != len(recs) {
				t.Fatalf("archived %d records of partition 0, want %d", len(got), len(recs))
			}
			for i, a := range got {
				src := recs[i]
				if a.rec["offset"] != src.Offset {
					t.Fatalf("record %d: offset %v, want %d", i, a.rec["offset"], src.Offset)
				}
				if i%2 == 0 {
					if a.raw || a.rec["value"].(map[string]any)["request_id"] != fmt.Sprintf("req-%06d", i/2) {
						t.Errorf("record %d: %v in %s, want a decoded decision", i, a.rec, a.file)
					}
					continue
				}
				b := bad[i/2]
				if !a.raw || !strings.HasSuffix(a.file, ".raw.avro") {
					t.Errorf("%s: archived in %s, not a raw file", b.name, a.file)
				}
				if reason, _ := a.rec["error"].(string); !strings.Contains(reason, b.reason) {
					t.Errorf("%s: raw record's error %q, want %q", b.name, reason, b.reason)
				}
				if v, _ := a.rec["value"].([]byte); !bytes.Equal(v, src.Value) {
					t.Errorf("%s: raw value %q, want the original bytes", b.name, v)
				}
			}
			if n := counter(t, c.env.Reg, "rdv_log_connector_records_total", map[string]string{"outcome": "dead_letter"}); n != float64(len(bad)) {
				t.Errorf("dead_letter count %v, want %d", n, len(bad))
			}
			if err := c.stop(); err != nil {
				t.Fatal(err)
			}
			r.checkExactlyOnce(st)
		})
	}
}

// TestRegistryDownPausesInsteadOfDeadLettering: a good record whose schema
// the registry cannot serve right now is not the record's fault: the
// connector pauses and archives it once the registry is back.
func TestRegistryDownPausesInsteadOfDeadLettering(t *testing.T) {
	r := newRig(t)
	st := archive.NewLocalStore(t.TempDir())
	r.regDown.Store(true)
	c := r.start(st, nil)
	r.produce(0, 20)
	waitFor(t, "the connector to pause", 20*time.Second, func() bool { return gauge(t, c.env.Reg, "rdv_log_connector_paused") == 1 })
	if n := counter(t, c.env.Reg, "rdv_log_connector_errors_total", map[string]string{"reason": "registry"}); n < 1 {
		t.Errorf("registry errors counted %v", n)
	}
	r.regDown.Store(false)
	waitFor(t, "every record archived", 20*time.Second, func() bool { return countArchived(t, st) == r.total() })
	waitFor(t, "the gauge back to 0", 10*time.Second, func() bool { return gauge(t, c.env.Reg, "rdv_log_connector_paused") == 0 })
	if n := counter(t, c.env.Reg, "rdv_log_connector_records_total", map[string]string{"outcome": "dead_letter"}); n != 0 {
		t.Errorf("%v good records dead-lettered while the registry was down", n)
	}
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	r.checkExactlyOnce(st)
}

func readTopic(t *testing.T, r *rig, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.cluster.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(20 * time.Second)
	for len(out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("read %d records of %s, want %d", len(out), topic, n)
		}
		ctx, cancel := context.WithTimeout(r.ctx, time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(rec *kgo.Record) { out = append(out, rec) })
	}
	// Sort by source offset: the dead-letter topic has two partitions.
	byOffset := func(rec *kgo.Record) int64 {
		for _, h := range rec.Headers {
			if h.Key == stage.HeaderOffset {
				o, _ := strconv.ParseInt(string(h.Value), 10, 64)
				return o
			}
		}
		return -1
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && byOffset(out[j]) < byOffset(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(r.ctx, 300*time.Millisecond)
	defer cancel()
	if extra := cl.PollFetches(ctx).NumRecords(); extra != 0 {
		t.Fatalf("%d more records in %s than expected", extra, topic)
	}
	return out
}
