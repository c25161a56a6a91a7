package archive

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
)

// SchemaSource finds a writer schema by its registry id; *serde.Serde is
// one. An error that wraps serde.ErrDecode condemns the record (the id is
// unknown, the schema does not parse); any other error is the registry's
// and is retried.
type SchemaSource interface {
	Writer(ctx context.Context, id int) (*serde.Schema, error)
}

// ArchiverConfig configures an Archiver.
type ArchiverConfig struct {
	Objective string
	// RotateBytes finishes a file once it reaches this size.
	RotateBytes int64
	// RotateInterval finishes a file this long after its first record
	// (FinishDue).
	RotateInterval time.Duration
	// BlockBytes ends an Avro block at this size; 1 MiB when zero. (Zero
	// rotation settings take the connector's defaults.)
	BlockBytes int
}

// Archiver is the write path of the log connector, without Kafka: it turns
// records into archive files in a Store. Each partition has at most one
// file open; a file is committed by size, by age, when the writer schema
// changes, or at FinishAll.
//
// After an error from Add, FinishDue or FinishAll, nothing since the last
// commit can be trusted: the Archiver refuses records until Recover has
// succeeded, and the caller reads each partition again from the positions
// Recover returns. Not safe for concurrent use.
type Archiver struct {
	st      Store
	cfg     ArchiverConfig
	schemas SchemaSource
	known   map[int]*writerSchema
	parts   map[topicPartition]*partWriter
	lastW   *partWriter // the partition of the last record: records come in runs
	failed  error
	skipped int64

	// BeforeCommit, when set, runs before each commit; its error keeps the
	// file from being committed (the connector makes sure the file's
	// dead-lettered records have reached the dead-letter topic).
	BeforeCommit func(ctx context.Context) error
	// Committed, when set, is told about each committed file: its name in
	// the store, its record count and its size.
	Committed func(f File, records, bytes int64)
}

type topicPartition struct {
	topic     string
	partition int32
}

type writerSchema struct {
	id       int
	envelope string // the schema of files holding this writer's records
	check    *bodyCheck
}

// NewArchiver returns an Archiver writing to st.
func NewArchiver(st Store, schemas SchemaSource, cfg ArchiverConfig) *Archiver {
	if cfg.BlockBytes <= 0 {
		cfg.BlockBytes = 1 << 20
	}
	if cfg.RotateBytes <= 0 {
		cfg.RotateBytes = Defaults().RotateBytes
	}
	if cfg.RotateInterval <= 0 {
		cfg.RotateInterval = Defaults().RotateInterval
	}
	return &Archiver{st: st, cfg: cfg, schemas: schemas, known: map[int]*writerSchema{}, parts: map[topicPartition]*partWriter{}}
}

// ErrRecover is returned by Add and the Finish methods after a failure,
// until Recover succeeds.
var ErrRecover = errors.New("archive: a write failed; Recover before going on")

// partWriter is one partition's position and current file.
type partWriter struct {
	topic     string
	partition int32
	// next is the archive's position: the offset after the last committed
	// record. Records before expect are already archived or in the open file.
	next, expect int64
	// The open file, when up is set.
	up          Upload
	ocf         ocfWriter
	dir         string
	schemaID    int
	first, last int64
	records     int64
	opened      time.Time
	// A commit that failed, which may have happened all the same.
	uncertain *File
}

// SetPosition tells the Archiver where a partition's archive ends: the
// offset of the first record it does not hold. Records before it are
// dropped as duplicates.
func (a *Archiver) SetPosition(topic string, partition int32, next int64) {
	w := a.part(topic, partition)
	w.next, w.expect = next, next
}

// Positions returns, for each partition the Archiver knows, the offset
// after the last record it has committed: where to read again after
// Recover.
func (a *Archiver) Positions() map[string]map[int32]int64 {
	out := map[string]map[int32]int64{}
	for k, w := range a.parts {
		if out[k.topic] == nil {
			out[k.topic] = map[int32]int64{}
		}
		out[k.topic][k.partition] = w.next
	}
	return out
}

// Skipped counts records dropped because the archive already held them.
func (a *Archiver) Skipped() int64 { return a.skipped }

func (a *Archiver) part(topic string, p int32) *partWriter {
	if w := a.lastW; w != nil && w.partition == p && w.topic == topic {
		return w
	}
	k := topicPartition{topic, p}
	w := a.parts[k]
	if w == nil {
		w = &partWriter{topic: topic, partition: p}
		a.parts[k] = w
	}
	a.lastW = w
	return w
}

// Add appends r to its partition's file. A record that is not a valid
// datum of its writer schema is archived raw, in a .raw.avro file, and bad
// says why: the caller dead-letters it. err is a failure of the store or
// the registry: see Recover.
func (a *Archiver) Add(ctx context.Context, r *kgo.Record) (bad error, err error) {
	if a.failed != nil {
		return nil, ErrRecover
	}
	w := a.part(r.Topic, r.Partition)
	if r.Offset < w.expect {
		a.skipped++
		return nil, nil
	}
	ws, bad, err := a.classify(ctx, r.Value)
	if err != nil {
		return nil, a.fail(err)
	}
	id, schema := -1, rawSchema
	if ws != nil {
		id, schema = ws.id, ws.envelope
	}
	if w.up != nil && (w.schemaID != id || w.ocf.size() >= a.cfg.RotateBytes) {
		if err := a.finish(ctx, w); err != nil {
			return nil, err
		}
	}
	if w.up == nil {
		if err := a.open(ctx, w, r, id, schema); err != nil {
			return nil, a.fail(err)
		}
	}
	o := &w.ocf
	o.block = appendHead(o.block, r)
	if ws != nil {
		o.block = append(o.block, r.Value[5:]...)
	} else {
		o.block = appendString(o.block, bad.Error())
		o.block = appendBytes(o.block, r.Value)
	}
	o.count++
	w.last, w.expect = r.Offset, r.Offset+1
	w.records++
	if len(o.block) >= a.cfg.BlockBytes {
		if err := o.flushBlock(); err != nil {
			return nil, a.fail(err)
		}
	}
	return bad, nil
}

// classify finds r's writer schema and checks its body against it.
func (a *Archiver) classify(ctx context.Context, value []byte) (ws *writerSchema, bad, err error) {
	if len(value) < 5 || value[0] != 0 {
		_, bad = serde.SchemaID(value)
		return nil, bad, nil
	}
	id := int(binary.BigEndian.Uint32(value[1:5]))
	ws = a.known[id]
	if ws == nil {
		s, err := a.schemas.Writer(ctx, id)
		if err != nil {
			if errors.Is(err, serde.ErrDecode) {
				return nil, err, nil
			}
			return nil, nil, fmt.Errorf("%w: %w", errRegistry, err)
		}
		check, err := newBodyCheck(s.Text)
		if err != nil {
			return nil, fmt.Errorf("%w: writer schema %d: %w", serde.ErrDecode, id, err), nil
		}
		ws = &writerSchema{id: id, envelope: envelopeSchema(s.Text), check: check}
		a.known[id] = ws
	}
	if err := ws.check.validate(value[5:]); err != nil {
		return nil, fmt.Errorf("%w: body does not match writer schema %d: %w", serde.ErrDecode, id, err), nil
	}
	return ws, nil, nil
}

func (a *Archiver) open(ctx context.Context, w *partWriter, r *kgo.Record, schemaID int, schema string) error {
	w.dir = dirFor(a.cfg.Objective, w.topic, w.partition, r.Timestamp)
	up, err := a.st.Create(ctx, tmpNameFor(w.dir, r.Offset))
	if err != nil {
		return err
	}
	identity := w.topic + "/" + strconv.Itoa(int(w.partition)) + "/" + strconv.FormatInt(r.Offset, 10)
	if err := w.ocf.reset(up, schema, syncMarker(identity)); err != nil {
		up.Abort()
		return err
	}
	w.up, w.schemaID, w.first, w.last, w.records, w.opened = up, schemaID, r.Offset, r.Offset, 0, time.Now()
	return nil
}

// finish commits w's open file under its final name; only then does the
// archive's position move past its records.
func (a *Archiver) finish(ctx context.Context, w *partWriter) error {
	if a.BeforeCommit != nil {
		if err := a.BeforeCommit(ctx); err != nil {
			return a.fail(err)
		}
	}
	if err := w.ocf.close(); err != nil {
		return a.fail(err)
	}
	f := File{Path: joinName(w.dir, nameFor(w.first, w.last, w.schemaID < 0)), Topic: w.topic, Partition: w.partition, First: w.first, Last: w.last, Raw: w.schemaID < 0}
	up := w.up
	w.up = nil
	if err := up.Commit(ctx, f.Path); err != nil {
		w.uncertain = &f
		return a.fail(fmt.Errorf("commit %s: %w", f.Path, err))
	}
	w.next = w.last + 1
	if a.Committed != nil {
		a.Committed(f, w.records, w.ocf.n)
	}
	return nil
}

func (a *Archiver) fail(err error) error {
	if a.failed == nil {
		a.failed = err
	}
	return err
}

// FinishDue commits every file opened RotateInterval or longer before now.
func (a *Archiver) FinishDue(ctx context.Context, now time.Time) error {
	if a.failed != nil {
		return ErrRecover
	}
	for _, w := range a.sorted() {
		if w.up != nil && now.Sub(w.opened) >= a.cfg.RotateInterval {
			if err := a.finish(ctx, w); err != nil {
				return err
			}
		}
	}
	return nil
}

// FinishAll commits every open file.
func (a *Archiver) FinishAll(ctx context.Context) error {
	if a.failed != nil {
		return ErrRecover
	}
	for _, w := range a.sorted() {
		if w.up != nil {
			if err := a.finish(ctx, w); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *Archiver) sorted() []*partWriter {
	ws := make([]*partWriter, 0, len(a.parts))
	for _, w := range a.parts {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool {
		if ws[i].topic != ws[j].topic {
			return ws[i].topic < ws[j].topic
		}
		return ws[i].partition < ws[j].partition
	})
	return ws
}

// Abandon drops every unfinished file.
func (a *Archiver) Abandon() {
	for _, w := range a.parts {
		if w.up != nil {
			w.up.Abort()
			w.up = nil
		}
		w.expect = w.next
	}
}

// Recover follows a failure: it drops every unfinished file, asks the
// store whether a commit that reported an error happened all the same, and
// returns where each partition's archive ends, the offsets to read again
// from. If the store cannot answer, Recover fails and is to be called again
// later.
func (a *Archiver) Recover(ctx context.Context) (map[string]map[int32]int64, error) {
	a.Abandon()
	for _, w := range a.sorted() {
		if w.uncertain == nil {
			continue
		}
		rc, err := a.st.Open(ctx, w.uncertain.Path)
		switch {
		case err == nil:
			rc.Close()
			w.next = w.uncertain.Last + 1 // the commit happened
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, fmt.Errorf("check %s: %w", w.uncertain.Path, err)
		}
		w.uncertain = nil
		w.expect = w.next
	}
	a.failed = nil
	return a.Positions(), nil
}
