// Package archive is the log connector: it copies an objective's log topics
// into Avro object container files, exactly once, and reads them back.
//
// Exactly once does not trust the consumer group. A file's name states the
// offsets it holds, and it appears under that name whole or not at all: in
// a local directory it is written under a temporary name, synced and
// renamed; in an object store (package blobstore) it is uploaded once,
// complete, under its final name. At start the connector reads each
// partition's position from those names and deletes temporary leftovers.
// A crash or a failed write therefore loses only unfinished files, whose
// records are read again, and a replayed file rewrites its own name
// instead of adding a copy.
package archive

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// File is one finished archive file.
type File struct {
	Path      string
	Topic     string
	Partition int32
	First     int64
	Last      int64
	Raw       bool // holds records that could not be decoded
}

const (
	tmpSuffix = ".tmp"
	ext       = ".avro"
	rawExt    = ".raw.avro"
)

// dirFor is the folder of a partition's files of one day:
// <objective>/<topic>/<partition>/<yyyy-mm-dd>.
func dirFor(objective, topic string, partition int32, day time.Time) string {
	return joinName(objective, topic, strconv.Itoa(int(partition)), day.UTC().Format("2006-01-02"))
}

// tmpNameFor is the temporary name of a file whose first offset is first.
func tmpNameFor(dir string, first int64) string {
	return joinName(dir, fmt.Sprintf(".%020d%s", first, tmpSuffix))
}

// nameFor is a finished file's name: the first and last offsets it holds.
func nameFor(first, last int64, raw bool) string {
	e := ext
	if raw {
		e = rawExt
	}
	return fmt.Sprintf("%020d-%020d%s", first, last, e)
}

func parseName(name string) (first, last int64, raw, ok bool) {
	base := name
	switch {
	case strings.HasSuffix(name, rawExt):
		base, raw = strings.TrimSuffix(name, rawExt), true
	case strings.HasSuffix(name, ext):
		base = strings.TrimSuffix(name, ext)
	default:
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(base, "-")
	if !found {
		return 0, 0, false, false
	}
	f, err1 := strconv.ParseInt(a, 10, 64)
	l, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || l < f {
		return 0, 0, false, false
	}
	return f, l, raw, true
}

// Scan lists the finished files under root for an objective, sorted by
// topic, partition and first offset. With clean set it deletes the
// temporary files an interrupted writer left. Each file's Path is its path
// under root.
func Scan(root, objective string, clean bool) ([]File, error) {
	st := NewLocalStore(root)
	files, err := ScanStore(context.Background(), st, objective, clean)
	if err != nil {
		return nil, err
	}
	for i := range files {
		if files[i].Path, err = st.Path(files[i].Path); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// ScanStore is Scan for any Store: each file's Path is its name in the
// store, for EachIn.
func ScanStore(ctx context.Context, st Store, objective string, clean bool) ([]File, error) {
	names, err := st.List(ctx, objective+"/")
	if err != nil {
		return nil, fmt.Errorf("scan archive %s/%s: %w", st, objective, err)
	}
	var files []File
	for _, name := range names {
		base := path.Base(name)
		if strings.HasSuffix(base, tmpSuffix) {
			if clean {
				if err := st.Remove(ctx, name); err != nil {
					return nil, fmt.Errorf("remove partial file: %w", err)
				}
			}
			continue
		}
		first, last, raw, ok := parseName(base)
		if !ok {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(name, objective+"/"), "/")
		if len(parts) != 4 {
			continue
		}
		p, err := strconv.Atoi(parts[1])
		if err != nil {
			continue
		}
		files = append(files, File{Path: name, Topic: parts[0], Partition: int32(p), First: first, Last: last, Raw: raw})
	}
	sort.Slice(files, func(i, j int) bool {
		a, b := files[i], files[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		if a.Partition != b.Partition {
			return a.Partition < b.Partition
		}
		return a.First < b.First
	})
	return files, nil
}

// Positions is the next offset to archive, by topic and partition, as the
// archive itself records it.
func Positions(files []File) map[string]map[int32]int64 {
	out := map[string]map[int32]int64{}
	for _, f := range files {
		m := out[f.Topic]
		if m == nil {
			m = map[int32]int64{}
			out[f.Topic] = m
		}
		if f.Last+1 > m[f.Partition] {
			m[f.Partition] = f.Last + 1
		}
	}
	return out
}
