// Package archive is the log connector: it copies an objective's log topics
// into Avro object container files, exactly once, and reads them back.
//
// Exactly once does not trust the consumer group. A file is written under a
// temporary name, synced and renamed to a name that states the offsets it
// holds; at start the connector reads each partition's position from those
// names and deletes temporary leftovers. A crash therefore loses only an
// unfinished file, whose records are read again, and a finished file is
// never written twice.
package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// dirFor is where a partition's files of one day go:
// <root>/<objective>/<topic>/<partition>/<yyyy-mm-dd>/.
func dirFor(root, objective, topic string, partition int32, day time.Time) string {
	return filepath.Join(root, objective, topic, strconv.Itoa(int(partition)), day.UTC().Format("2006-01-02"))
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
// temporary files an interrupted writer left.
func Scan(root, objective string, clean bool) ([]File, error) {
	base := filepath.Join(root, objective)
	var files []File
	err := filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == base {
				return fs.SkipDir
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		if strings.HasSuffix(d.Name(), tmpSuffix) {
			if clean {
				if err := os.Remove(path); err != nil {
					return fmt.Errorf("remove partial file: %w", err)
				}
			}
			return nil
		}
		first, last, raw, ok := parseName(d.Name())
		if !ok {
			return nil
		}
		rel, _ := filepath.Rel(base, path)
		parts := strings.Split(rel, string(filepath.Separator))
		if len(parts) != 4 {
			return nil
		}
		p, err := strconv.Atoi(parts[1])
		if err != nil {
			return nil
		}
		files = append(files, File{Path: path, Topic: parts[0], Partition: int32(p), First: first, Last: last, Raw: raw})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan archive %s: %w", base, err)
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
