// Package storetest checks that an archive.Store has the properties the
// archive's exactly-once rests on. Every Store implementation runs it.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
)

// Run runs the contract against the stores open returns, a fresh empty one
// per call.
func Run(t *testing.T, open func(t *testing.T) archive.Store) {
	ctx := context.Background()
	const (
		tmp  = "iris/t/0/2026-01-02/.00000000000000000007.tmp"
		name = "iris/t/0/2026-01-02/00000000000000000007-00000000000000000009.avro"
	)

	t.Run("commit makes the whole file appear", func(t *testing.T) {
		st := open(t)
		up, err := st.Create(ctx, tmp)
		if err != nil {
			t.Fatal(err)
		}
		write(t, up, []byte("hello "), []byte("archive"))
		if finals(t, st, "") != nil {
			t.Fatal("a final name is visible before Commit")
		}
		if err := up.Commit(ctx, name); err != nil {
			t.Fatal(err)
		}
		up.Abort() // a no-op after Commit
		if got := read(t, st, name); string(got) != "hello archive" {
			t.Fatalf("read %q", got)
		}
		if got := list(t, st, ""); !slices.Equal(got, []string{name}) {
			t.Fatalf("List = %v, want only %s", got, name)
		}
	})

	t.Run("abort leaves nothing", func(t *testing.T) {
		st := open(t)
		up, err := st.Create(ctx, tmp)
		if err != nil {
			t.Fatal(err)
		}
		write(t, up, []byte("doomed"))
		up.Abort()
		if got := list(t, st, ""); len(got) != 0 {
			t.Fatalf("List after Abort = %v", got)
		}
	})

	t.Run("a second commit replaces the file", func(t *testing.T) {
		st := open(t)
		for _, body := range []string{"first version, longer", "second"} {
			up, err := st.Create(ctx, tmp)
			if err != nil {
				t.Fatal(err)
			}
			write(t, up, []byte(body))
			if err := up.Commit(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
		if got := read(t, st, name); string(got) != "second" {
			t.Fatalf("read %q after the replay", got)
		}
		if got := list(t, st, ""); len(got) != 1 {
			t.Fatalf("List = %v: the replay made a copy", got)
		}
	})

	t.Run("large file", func(t *testing.T) {
		st := open(t)
		up, err := st.Create(ctx, tmp)
		if err != nil {
			t.Fatal(err)
		}
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
		var want []byte
		for i := 0; i < 12; i++ {
			chunk[0] = byte(i)
			write(t, up, chunk)
			want = append(want, chunk...)
		}
		if err := up.Commit(ctx, name); err != nil {
			t.Fatal(err)
		}
		if got := read(t, st, name); !bytes.Equal(got, want) {
			t.Fatalf("read %d bytes, wrote %d, or not the same", len(got), len(want))
		}
	})

	t.Run("list by folder", func(t *testing.T) {
		st := open(t)
		names := []string{"iris/a/0/d/1-1.avro", "iris/a/1/d/2-2.avro", "iris/b/0/d/3-3.avro", "iris2/a/0/d/4-4.avro"}
		for _, n := range names {
			commit(t, st, n, "x")
		}
		if got := list(t, st, "iris/"); !slices.Equal(got, names[:3]) {
			t.Fatalf("List(iris/) = %v", got)
		}
		if got := list(t, st, "iris/a/"); !slices.Equal(got, names[:2]) {
			t.Fatalf("List(iris/a/) = %v", got)
		}
		if got := list(t, st, "nothing/"); len(got) != 0 {
			t.Fatalf("List(nothing/) = %v", got)
		}
		if got := list(t, st, ""); !slices.Equal(got, names) {
			t.Fatalf("List() = %v", got)
		}
	})

	t.Run("open and remove", func(t *testing.T) {
		st := open(t)
		if _, err := st.Open(ctx, name); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Open of a missing file: %v, want fs.ErrNotExist", err)
		}
		if err := st.Remove(ctx, name); err != nil {
			t.Fatalf("Remove of a missing file: %v", err)
		}
		commit(t, st, name, "x")
		if err := st.Remove(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Open(ctx, name); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Open after Remove: %v", err)
		}
		if st.String() == "" {
			t.Fatal("String is empty")
		}
	})
}

func write(t *testing.T, w io.Writer, ps ...[]byte) {
	t.Helper()
	for _, p := range ps {
		if n, err := w.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
}

func commit(t *testing.T, st archive.Store, name, body string) {
	t.Helper()
	ctx := context.Background()
	i := strings.LastIndex(name, "/")
	up, err := st.Create(ctx, name[:i+1]+".x.tmp")
	if err != nil {
		t.Fatal(err)
	}
	write(t, up, []byte(body))
	if err := up.Commit(ctx, name); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, st archive.Store, name string) []byte {
	t.Helper()
	rc, err := st.Open(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func list(t *testing.T, st archive.Store, prefix string) []string {
	t.Helper()
	names, err := st.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// finals lists the names that are not temporary.
func finals(t *testing.T, st archive.Store, prefix string) []string {
	var out []string
	for _, n := range list(t, st, prefix) {
		if !strings.HasSuffix(n, ".tmp") {
			out = append(out, n)
		}
	}
	return out
}
