package main

import (
	"context"
	"testing"
	"time"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// BenchmarkWritePath is the archive's per-record work without the disk:
// envelope, body check, Avro blocks, into a store that discards.
func BenchmarkWritePath(b *testing.B) { benchArchiver(b, discard{}) }

// BenchmarkArchive is the whole write path to a local directory, fsync and
// rename included, in 64 MiB files.
func BenchmarkArchive(b *testing.B) { benchArchiver(b, archive.NewLocalStore(b.TempDir())) }

// benchArchiver feeds iris decisions, three partitions, to an archiver on
// st, with offsets that keep growing across the loop.
func benchArchiver(b *testing.B, st archive.Store) {
	set, err := schemas.For("iris")
	if err != nil {
		b.Fatal(err)
	}
	text := set.Text[schemas.Decision]
	recs, size := decisions(text, 100_000, 3)
	a := archive.NewArchiver(st, fixedSchemas{schemaID: text}, archive.ArchiverConfig{Objective: "iris", RotateBytes: 64 << 20, RotateInterval: time.Hour})
	ctx := context.Background()
	b.SetBytes(int64(size / len(recs)))
	b.ReportAllocs()
	i, base := 0, int64(0)
	for b.Loop() {
		r := recs[i]
		r.Offset = base + int64(i)
		if _, err := a.Add(ctx, r); err != nil {
			b.Fatal(err)
		}
		if i++; i == len(recs) {
			i, base = 0, base+int64(len(recs))
		}
	}
	if err := a.FinishAll(ctx); err != nil {
		b.Fatal(err)
	}
}
