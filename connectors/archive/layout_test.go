package archive

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestNameForParseNameRoundTrip(t *testing.T) {
	tests := []struct {
		first, last int64
		raw         bool
		name        string
	}{
		{0, 0, false, "00000000000000000000-00000000000000000000.avro"},
		{5, 17, true, "00000000000000000005-00000000000000000017.raw.avro"},
		{1234567, 1234999, false, "00000000000001234567-00000000000001234999.avro"},
		{math.MaxInt64 - 1, math.MaxInt64, false, "09223372036854775806-09223372036854775807.avro"},
	}
	for _, tt := range tests {
		name := nameFor(tt.first, tt.last, tt.raw)
		if name != tt.name {
			t.Errorf("nameFor(%d, %d, %v) = %q, want %q", tt.first, tt.last, tt.raw, name, tt.name)
		}
		f, l, raw, ok := parseName(name)
		if !ok || f != tt.first || l != tt.last || raw != tt.raw {
			t.Errorf("parseName(%q) = %d, %d, %v, %v", name, f, l, raw, ok)
		}
	}
}

func TestNamesSortByOffset(t *testing.T) {
	// Zero padding makes a directory listing come out in offset order.
	a, b := nameFor(9, 9, false), nameFor(10, 10, false)
	if !(a < b) {
		t.Fatalf("%q sorts after %q", a, b)
	}
}

func TestParseNameRejects(t *testing.T) {
	for _, name := range []string{
		"",
		".avro",
		"readme.txt",
		"00000000000000000001-00000000000000000002.txt",
		"00000000000000000001-00000000000000000002.raw",
		"00000000000000000001-00000000000000000002.avro.tmp",
		".00000000000000000001.tmp",
		"0000000000000000000100000000000000000002.avro",  // no dash
		"00000000000000000002-00000000000000000001.avro", // last before first
		"a-b.avro",
		"1-2-3.avro",
		"-1-2.avro",
		"1-.avro",
		"-2.avro",
		"99999999999999999999-99999999999999999999.avro", // over int64
	} {
		if f, l, raw, ok := parseName(name); ok {
			t.Errorf("parseName(%q) accepted: %d, %d, %v", name, f, l, raw)
		}
	}
}

func TestDirFor(t *testing.T) {
	// 23:30 on the 1st in New York is the 2nd in UTC.
	ny := time.FixedZone("EST", -5*3600)
	day := time.Date(2026, 3, 1, 23, 30, 0, 0, ny)
	got := dirFor("iris", "rdv.iris.decisions", 7, day)
	want := "iris/rdv.iris.decisions/7/2026-03-02"
	if got != want {
		t.Fatalf("dirFor = %q, want %q", got, want)
	}
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestScan(t *testing.T) {
	root := t.TempDir()
	p := func(parts ...string) string { return filepath.Join(append([]string{root}, parts...)...) }

	// Finished files, created out of order: partition "10" lists before
	// "2", and day 02 holds lower offsets than day 03.
	good := []File{
		{Path: p("iris", "topicB", "0", "2026-01-01", nameFor(0, 4, false)), Topic: "topicB", Partition: 0, First: 0, Last: 4},
		{Path: p("iris", "topicA", "10", "2026-01-01", nameFor(0, 0, false)), Topic: "topicA", Partition: 10, First: 0, Last: 0},
		{Path: p("iris", "topicA", "2", "2026-01-03", nameFor(20, 29, false)), Topic: "topicA", Partition: 2, First: 20, Last: 29},
		{Path: p("iris", "topicA", "2", "2026-01-02", nameFor(10, 19, true)), Topic: "topicA", Partition: 2, First: 10, Last: 19, Raw: true},
		{Path: p("iris", "topicA", "2", "2026-01-03", nameFor(0, 9, false)), Topic: "topicA", Partition: 2, First: 0, Last: 9},
	}
	for _, f := range good {
		touch(t, f.Path)
	}
	tmpHere := p("iris", "topicA", "2", "2026-01-03", ".00000000000000000030.tmp")
	tmpOther := p("fraud", "topicA", "0", "2026-01-01", ".00000000000000000000.tmp")
	junk := []string{
		p("iris", "topicA", "2", "2026-01-03", "notes.txt"),
		p("iris", "topicA", "2", "2026-01-03", "00000000000000000009-00000000000000000001.avro"), // last < first
		p("iris", "topicA", "x", "2026-01-01", nameFor(0, 1, false)),                             // partition not a number
		p("iris", "topicA", "2", "2026-01-03", "deeper", nameFor(0, 1, false)),                   // too deep
		p("iris", "topicA", "2", nameFor(0, 1, false)),                                           // too shallow
		p("iris", nameFor(0, 1, false)),
		p("fraud", "topicA", "0", "2026-01-01", nameFor(0, 1, false)), // another objective
		tmpHere, tmpOther,
	}
	for _, j := range junk {
		touch(t, j)
	}

	// Sorted: topicA/2 by first offset (0, 10, 20), then topicA/10, then
	// topicB/0.
	want := []File{good[4], good[3], good[2], good[1], good[0]}

	got, err := Scan(root, "iris", false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Scan =\n%+v\nwant\n%+v", got, want)
	}
	if !exists(tmpHere) {
		t.Fatal("Scan without clean deleted a temporary file")
	}

	got, err = Scan(root, "iris", true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Scan(clean) =\n%+v\nwant\n%+v", got, want)
	}
	if exists(tmpHere) {
		t.Fatal("Scan with clean left the temporary file")
	}
	if !exists(tmpOther) {
		t.Fatal("Scan of iris deleted another objective's temporary file")
	}
	for _, j := range junk {
		if j != tmpHere && !exists(j) {
			t.Fatalf("Scan deleted %s", j)
		}
	}
}

func TestScanEmpty(t *testing.T) {
	files, err := Scan(t.TempDir(), "iris", true)
	if err != nil || len(files) != 0 {
		t.Fatalf("Scan of an empty root = %v, %v", files, err)
	}
	files, err = Scan(filepath.Join(t.TempDir(), "missing"), "iris", false)
	if err != nil || len(files) != 0 {
		t.Fatalf("Scan of a missing root = %v, %v", files, err)
	}
}

func TestPositions(t *testing.T) {
	files := []File{
		{Topic: "a", Partition: 0, First: 0, Last: 9},
		{Topic: "a", Partition: 0, First: 10, Last: 19},
		{Topic: "a", Partition: 1, First: 5, Last: 5},
		{Topic: "b", Partition: 3, First: 100, Last: 199, Raw: true},
		{Topic: "a", Partition: 0, First: 2, Last: 3}, // order does not matter
	}
	want := map[string]map[int32]int64{"a": {0: 20, 1: 6}, "b": {3: 200}}
	if got := Positions(files); !reflect.DeepEqual(got, want) {
		t.Fatalf("Positions = %v, want %v", got, want)
	}
	if got := Positions(nil); len(got) != 0 {
		t.Fatalf("Positions(nil) = %v", got)
	}
}

func TestScanThenPositions(t *testing.T) {
	root := t.TempDir()
	touch(t, filepath.Join(root, "iris", "t", "0", "2026-01-01", nameFor(0, 99, false)))
	touch(t, filepath.Join(root, "iris", "t", "0", "2026-01-02", nameFor(100, 149, true)))
	touch(t, filepath.Join(root, "iris", "t", "0", "2026-01-02", ".00000000000000000150.tmp"))
	files, err := Scan(root, "iris", true)
	if err != nil {
		t.Fatal(err)
	}
	if got := Positions(files); got["t"][0] != 150 {
		t.Fatalf("position %v, want 150: the temporary file's records are read again", got)
	}
}
