package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
)

const valueSchema = `{"type":"record","name":"Decision","namespace":"rdv","fields":[
	{"name":"request_id","type":"string"},
	{"name":"latency_us","type":"long"},
	{"name":"result","type":["null","string"],"default":null},
	{"name":"probabilities","type":{"type":"map","values":"double"}}
]}`

var ts0 = time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)

// framed builds a Confluent-framed value of valueSchema with schema id id.
func framed(t *testing.T, id uint32, native map[string]any) []byte {
	t.Helper()
	codec, err := goavro.NewCodec(valueSchema)
	if err != nil {
		t.Fatal(err)
	}
	head := []byte{0, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
	out, err := codec.BinaryFromNative(head, native)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func decision(i int) map[string]any {
	var result any
	if i%2 == 0 {
		result = map[string]any{"string": fmt.Sprintf("class-%d", i)}
	}
	return map[string]any{
		"request_id":    fmt.Sprintf("req-%d", i),
		"latency_us":    int64(1000 * i),
		"result":        result,
		"probabilities": map[string]any{"a": float64(i) / 10},
	}
}

func records(t *testing.T, n int) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	for i := 0; i < n; i++ {
		out = append(out, &kgo.Record{
			Topic:     "rdv.iris.decisions",
			Partition: 2,
			Offset:    int64(40 + i),
			Timestamp: ts0.Add(time.Duration(i) * time.Millisecond),
			Key:       []byte(fmt.Sprintf("req-%d", i)),
			Value:     framed(t, 7, decision(i)),
		})
	}
	return out
}

// writeOCF writes recs as envelopes with the hand-written container writer,
// flushing a block after every blockEvery records.
func writeOCF(t *testing.T, path, identity string, recs []*kgo.Record, blockEvery int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o, err := newOCFWriter(f, envelopeSchema(valueSchema), syncMarker(identity))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		o.append(append(encodeHead(r), r.Value[5:]...))
		if blockEvery > 0 && (i+1)%blockEvery == 0 {
			if err := o.flushBlock(); err != nil {
				t.Fatal(err)
			}
		}
	}
	est := o.size()
	if err := o.close(); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != o.n {
		t.Fatalf("writer counted %d bytes, file has %d", o.n, st.Size())
	}
	if st.Size() > est {
		t.Fatalf("size() estimated %d bytes before the last block, the file has %d", est, st.Size())
	}
}

func readAll(t *testing.T, path string) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := Each(path, func(rec map[string]any) error { out = append(out, rec); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOCFReadsBackWithGoavro(t *testing.T) {
	for _, blockEvery := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("block every %d", blockEvery), func(t *testing.T) {
			recs := records(t, 5)
			path := filepath.Join(t.TempDir(), "f.avro")
			writeOCF(t, path, "rdv.iris.decisions/2/40", recs, blockEvery)

			got := readAll(t, path)
			if len(got) != len(recs) {
				t.Fatalf("read %d records, wrote %d", len(got), len(recs))
			}
			for i, rec := range got {
				want := map[string]any{
					"topic":        "rdv.iris.decisions",
					"partition":    int32(2),
					"offset":       int64(40 + i),
					"timestamp_ms": ts0.Add(time.Duration(i) * time.Millisecond).UnixMilli(),
					"key":          []byte(fmt.Sprintf("req-%d", i)),
					"schema_id":    int32(7),
					"value":        decision(i),
				}
				if !reflect.DeepEqual(rec, want) {
					t.Errorf("record %d:\ngot  %#v\nwant %#v", i, rec, want)
				}
			}
		})
	}
}

func TestOCFHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.avro")
	writeOCF(t, path, "x/0/0", records(t, 1), 0)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("Obj\x01")) {
		t.Fatalf("file starts % x, not the Avro container magic", b[:4])
	}
	sync := syncMarker("x/0/0")
	if !bytes.HasSuffix(b, sync[:]) {
		t.Fatal("the file does not end with its sync marker")
	}
	r, err := goavro.NewOCFReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r.CompressionName() != "null" {
		t.Fatalf("codec %q", r.CompressionName())
	}
	if !strings.Contains(r.Codec().Schema(), "ArchivedRecord") {
		t.Fatalf("schema %s", r.Codec().Schema())
	}
}

func TestOCFEmptyFileIsValid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.avro")
	writeOCF(t, path, "x/0/0", nil, 0)
	if got := readAll(t, path); len(got) != 0 {
		t.Fatalf("read %d records from an empty file", len(got))
	}
}

func TestOCFIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	writeOCF(t, a, "rdv.iris.decisions/2/40", records(t, 4), 3)
	writeOCF(t, b, "rdv.iris.decisions/2/40", records(t, 4), 3)
	writeOCF(t, c, "rdv.iris.decisions/2/41", records(t, 4), 3)
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	bc, _ := os.ReadFile(c)
	if !bytes.Equal(ba, bb) {
		t.Fatal("the same records and identity gave different files")
	}
	if bytes.Equal(ba, bc) {
		t.Fatal("a different identity gave the same sync marker")
	}
	if syncMarker("a") == syncMarker("b") || syncMarker("a") != syncMarker("a") {
		t.Fatal("syncMarker is not a function of the identity")
	}
}

func TestRawEnvelope(t *testing.T) {
	recs := []*kgo.Record{
		{Topic: "rdv.iris.requests", Partition: 1, Offset: 9, Timestamp: ts0, Key: []byte("k"), Value: []byte("not avro at all")},
		{Topic: "rdv.iris.requests", Partition: 1, Offset: 10, Timestamp: ts0, Key: nil, Value: []byte{0, 0, 0, 0, 99, 1, 2}},
		{Topic: "rdv.iris.requests", Partition: 1, Offset: 11, Timestamp: ts0, Key: []byte{}, Value: nil},
	}
	reasons := []string{"magic byte is 110", "writer schema 99: not found", "0 bytes"}
	path := filepath.Join(t.TempDir(), nameFor(9, 11, true))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	o, err := newOCFWriter(f, rawSchema, syncMarker("rdv.iris.requests/1/9"))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		o.append(appendBytes(appendBytes(encodeHead(r), []byte(reasons[i])), r.Value))
	}
	if err := o.close(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	got := readAll(t, path)
	if len(got) != 3 {
		t.Fatalf("read %d records", len(got))
	}
	wantIDs := []int32{-1, 99, -1} // the framed id when there is one
	for i, rec := range got {
		if rec["error"] != reasons[i] || !bytes.Equal(rec["value"].([]byte), recs[i].Value) ||
			rec["offset"] != recs[i].Offset || rec["schema_id"] != wantIDs[i] || !bytes.Equal(rec["key"].([]byte), recs[i].Key) {
			t.Errorf("raw record %d = %#v", i, rec)
		}
	}
}

func TestEncodeHeadSchemaID(t *testing.T) {
	codec, err := goavro.NewCodec(envelopeSchema(`"bytes"`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		value []byte
		want  int32
	}{
		{[]byte{0, 1, 2, 3, 4}, 0x01020304},
		{[]byte{0, 0, 0, 0, 1, 0xff}, 1},
		{[]byte{1, 0, 0, 0, 1}, -1}, // wrong magic byte
		{[]byte{0, 0, 0, 1}, -1},    // short
		{nil, -1},
	} {
		r := &kgo.Record{Topic: "t", Offset: 1 << 40, Partition: 1 << 20, Timestamp: ts0, Value: tt.value}
		datum := appendBytes(encodeHead(r), []byte("v"))
		native, rest, err := codec.NativeFromBinary(datum)
		if err != nil || len(rest) != 0 {
			t.Fatalf("% x: %v (rest % x)", tt.value, err, rest)
		}
		m := native.(map[string]any)
		if m["schema_id"] != tt.want || m["offset"] != int64(1<<40) || m["partition"] != int32(1<<20) || m["timestamp_ms"] != ts0.UnixMilli() {
			t.Errorf("% x: head %v, want schema_id %d", tt.value, m, tt.want)
		}
	}
}

func TestEnvelopeSchemasParse(t *testing.T) {
	for name, s := range map[string]string{"envelope": envelopeSchema(valueSchema), "raw": rawSchema} {
		if _, err := goavro.NewCodec(s); err != nil {
			t.Errorf("%s schema: %v", name, err)
		}
	}
}

func TestEachErrors(t *testing.T) {
	dir := t.TempDir()
	if err := Each(filepath.Join(dir, "missing.avro"), func(map[string]any) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	junk := filepath.Join(dir, "junk.avro")
	if err := os.WriteFile(junk, []byte("definitely not avro"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Each(junk, func(map[string]any) error { return nil }); err == nil || !strings.Contains(err.Error(), "not an Avro container file") {
		t.Fatalf("junk file: %v", err)
	}
	// fn's error stops the walk and comes back as is.
	path := filepath.Join(dir, "f.avro")
	writeOCF(t, path, "x/0/0", records(t, 3), 0)
	stop := errors.New("stop")
	calls := 0
	if err := Each(path, func(map[string]any) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("Each = %v after %d calls", err, calls)
	}
	// A truncated file is an error, not a short read.
	b, _ := os.ReadFile(path)
	trunc := filepath.Join(dir, "trunc.avro")
	if err := os.WriteFile(trunc, b[:len(b)-20], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Each(trunc, func(map[string]any) error { return nil }); err == nil {
		t.Fatal("a truncated file read without error")
	}
}

// schemaMap is a SchemaSource over fixed ids.
type schemaMap map[int]string

func (m schemaMap) Writer(_ context.Context, id int) (*serde.Schema, error) {
	text, ok := m[id]
	if !ok {
		return nil, fmt.Errorf("%w: writer schema %d: %w", serde.ErrDecode, id, serde.ErrUnknownSchema)
	}
	return serde.Parse(text)
}

func newTestArchiver(root string) *Archiver {
	return NewArchiver(NewLocalStore(root), schemaMap{7: valueSchema}, ArchiverConfig{Objective: "iris", RotateBytes: 1 << 30, RotateInterval: time.Hour})
}

func tmpFiles(t *testing.T, root string) []string {
	t.Helper()
	names, err := NewLocalStore(root).List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var tmp []string
	for _, n := range names {
		if strings.HasSuffix(n, tmpSuffix) {
			tmp = append(tmp, n)
		}
	}
	return tmp
}

// writePart archives recs with the connector's Archiver under root.
func writePart(t *testing.T, root string, recs []*kgo.Record) (path string, n, size int64) {
	t.Helper()
	ctx := context.Background()
	a := newTestArchiver(root)
	var committed []File
	a.Committed = func(f File, records, bytes int64) { committed, n, size = append(committed, f), records, bytes }
	for _, r := range recs {
		if bad, err := a.Add(ctx, r); bad != nil || err != nil {
			t.Fatalf("Add %d: %v, %v", r.Offset, bad, err)
		}
	}
	if tmp := tmpFiles(t, root); len(tmp) != 1 {
		t.Fatalf("writing to %v, not one temporary file", tmp)
	}
	if err := a.FinishAll(ctx); err != nil {
		t.Fatal(err)
	}
	if tmp := tmpFiles(t, root); len(tmp) != 0 {
		t.Fatalf("temporary files %v are still there after finish", tmp)
	}
	files, err := Scan(root, "iris", false)
	if err != nil || len(files) != 1 || len(committed) != 1 {
		t.Fatalf("Scan after finish = %v, %v; committed %v", files, err, committed)
	}
	if want := filepath.Join(root, filepath.FromSlash(committed[0].Path)); want != files[0].Path {
		t.Fatalf("committed %s, Scan found %s", want, files[0].Path)
	}
	return files[0].Path, n, size
}

func TestPartWriterFinishedFile(t *testing.T) {
	recs := records(t, 3)
	root := t.TempDir()
	path, n, size := writePart(t, root, recs)
	wantPath := filepath.Join(root, "iris", "rdv.iris.decisions", "2", "2026-05-04", nameFor(40, 42, false))
	if path != wantPath {
		t.Fatalf("file %s, want %s", path, wantPath)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 || size != st.Size() {
		t.Fatalf("finish reported %d records, %d bytes; the file has %d bytes", n, size, st.Size())
	}
	got := readAll(t, path)
	if len(got) != 3 || got[0]["offset"] != int64(40) || got[2]["offset"] != int64(42) {
		t.Fatalf("read back %v", got)
	}
	if pos := Positions([]File{{Topic: "rdv.iris.decisions", Partition: 2, Last: 42}}); pos["rdv.iris.decisions"][2] != 43 {
		t.Fatalf("position %v", pos)
	}

	// A replay after a crash writes the same file, byte for byte.
	again, _, _ := writePart(t, t.TempDir(), records(t, 3))
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(again)
	if filepath.Base(again) != filepath.Base(path) || !bytes.Equal(a, b) {
		t.Fatalf("replay wrote %s (%d bytes), first run %s (%d bytes)", filepath.Base(again), len(b), filepath.Base(path), len(a))
	}
}

func TestPartWriterAbandon(t *testing.T) {
	root := t.TempDir()
	recs := records(t, 2)
	a := newTestArchiver(root)
	if _, err := a.Add(context.Background(), recs[0]); err != nil {
		t.Fatal(err)
	}
	if len(tmpFiles(t, root)) != 1 {
		t.Fatal("no temporary file while writing")
	}
	a.Abandon()
	if tmp := tmpFiles(t, root); len(tmp) != 0 {
		t.Fatalf("abandon left %v", tmp)
	}
	if files, err := Scan(root, "iris", false); err != nil || len(files) != 0 {
		t.Fatalf("Scan after abandon = %v, %v", files, err)
	}
	// The abandoned record is not archived: the position stays put, and the
	// record is taken again.
	if pos := a.Positions()["rdv.iris.decisions"][2]; pos != 0 {
		t.Fatalf("position %d after abandon", pos)
	}
	if _, err := a.Add(context.Background(), recs[0]); err != nil {
		t.Fatal(err)
	}
	if err := a.FinishAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pos := a.Positions()["rdv.iris.decisions"][2]; pos != 41 {
		t.Fatalf("position %d after the replay", pos)
	}
}
