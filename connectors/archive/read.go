package archive

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Each reads every record of an archive file with goavro's standard
// container reader, in order.
func Each(path string, fn func(rec map[string]any) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return eachRecord(f, path, fn)
}

// EachIn is Each for a file of a Store, by its name.
func EachIn(ctx context.Context, st Store, name string, fn func(rec map[string]any) error) error {
	rc, err := st.Open(ctx, name)
	if err != nil {
		return err
	}
	defer rc.Close()
	return eachRecord(rc, name, fn)
}

func eachRecord(in io.Reader, path string, fn func(rec map[string]any) error) error {
	r, err := goavro.NewOCFReader(bufio.NewReaderSize(in, 256<<10))
	if err != nil {
		return fmt.Errorf("%s: not an Avro container file: %w", path, err)
	}
	for r.Scan() {
		v, err := r.Read()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: record is %T, not an archived record", path, v)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// PartitionReport is verify's finding for one partition.
type PartitionReport struct {
	Topic     string
	Partition int32
	Files     int
	Archived  int64 // records in the archive
	InTopic   int64 // committed records in the topic over the compared range
	Missing   []int64
	Extra     []int64 // archived offsets the topic does not hold (aborted or invented)
	Overlaps  []string
	Dupes     int64
}

// OK reports a partition with no gap, overlap or duplicate.
func (r PartitionReport) OK() bool {
	return len(r.Missing) == 0 && len(r.Extra) == 0 && len(r.Overlaps) == 0 && r.Dupes == 0
}

// Verify compares the archive with the topics it archives: per partition,
// the files' offset ranges must not overlap, every offset in the archive
// must be a committed record of the topic, and every committed record from
// the topic's log start up to the archive's last offset must be archived.
// Records after the last finished file are not yet due and not counted.
func Verify(ctx context.Context, cl *kgo.Client, root, objective string) ([]PartitionReport, error) {
	files, err := Scan(root, objective, false)
	if err != nil {
		return nil, err
	}
	return verify(ctx, cl, files, Each)
}

// VerifyStore is Verify for an archive in any Store.
func VerifyStore(ctx context.Context, cl *kgo.Client, st Store, objective string) ([]PartitionReport, error) {
	files, err := ScanStore(ctx, st, objective, false)
	if err != nil {
		return nil, err
	}
	return verify(ctx, cl, files, func(name string, fn func(map[string]any) error) error {
		return EachIn(ctx, st, name, fn)
	})
}

func verify(ctx context.Context, cl *kgo.Client, files []File, each func(string, func(map[string]any) error) error) ([]PartitionReport, error) {
	type key struct {
		t string
		p int32
	}
	byPart := map[key][]File{}
	for _, f := range files {
		k := key{f.Topic, f.Partition}
		byPart[k] = append(byPart[k], f)
	}
	var reports []PartitionReport
	adm := kadm.NewClient(cl)
	for k, fs := range byPart {
		rep := PartitionReport{Topic: k.t, Partition: k.p, Files: len(fs)}
		sort.Slice(fs, func(i, j int) bool { return fs[i].First < fs[j].First })
		archived := map[int64]int{}
		for i, f := range fs {
			if i > 0 && f.First <= fs[i-1].Last {
				rep.Overlaps = append(rep.Overlaps, fmt.Sprintf("%s overlaps %s", f.Path, fs[i-1].Path))
			}
			err := each(f.Path, func(rec map[string]any) error {
				off, _ := rec["offset"].(int64)
				if off < f.First || off > f.Last {
					rep.Overlaps = append(rep.Overlaps, fmt.Sprintf("%s holds offset %d outside its name", f.Path, off))
				}
				archived[off]++
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		last := fs[len(fs)-1].Last
		for off, n := range archived {
			rep.Archived += int64(n)
			if n > 1 {
				rep.Dupes += int64(n - 1)
			}
			_ = off
		}
		starts, err := adm.ListStartOffsets(ctx, k.t)
		if err != nil {
			return nil, fmt.Errorf("start offset of %s: %w", k.t, err)
		}
		so, _ := starts.Lookup(k.t, k.p)
		inTopic, err := committedOffsets(ctx, cl, k.t, k.p, so.Offset, last)
		if err != nil {
			return nil, err
		}
		rep.InTopic = int64(len(inTopic))
		for off := range inTopic {
			if archived[off] == 0 {
				rep.Missing = append(rep.Missing, off)
			}
		}
		for off := range archived {
			if off >= so.Offset && !inTopic[off] {
				rep.Extra = append(rep.Extra, off)
			}
		}
		sort.Slice(rep.Missing, func(i, j int) bool { return rep.Missing[i] < rep.Missing[j] })
		sort.Slice(rep.Extra, func(i, j int) bool { return rep.Extra[i] < rep.Extra[j] })
		reports = append(reports, rep)
	}
	sort.Slice(reports, func(i, j int) bool {
		if reports[i].Topic != reports[j].Topic {
			return reports[i].Topic < reports[j].Topic
		}
		return reports[i].Partition < reports[j].Partition
	})
	return reports, nil
}

// committedOffsets reads a partition with read_committed from start and
// returns the offsets of its records up to last.
func committedOffsets(ctx context.Context, base *kgo.Client, topic string, p int32, start, last int64) (map[int64]bool, error) {
	out := map[int64]bool{}
	if last < start {
		return out, nil
	}
	opts := append(append([]kgo.Opt(nil), base.Opts()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(start)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if fs.NumRecords() == 0 {
			return out, nil // idle: past last (the rest are markers)
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset <= last {
				out[r.Offset] = true
			}
			if r.Offset >= last {
				done = true
			}
		})
		if done {
			return out, nil
		}
	}
}
