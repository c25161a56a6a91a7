package blobstore_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
	"github.com/rendezvous-ml/rendezvous/connectors/archive/blobstore"
	"github.com/rendezvous-ml/rendezvous/connectors/archive/storetest"
)

func TestMemBucketContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) archive.Store {
		st := blobstore.New(memblob.OpenBucket(nil), "mem://", blobstore.Options{SpoolMemory: 1 << 20, SpoolDir: t.TempDir()})
		t.Cleanup(func() { st.Close() })
		return st
	})
}

func TestFileBucketContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) archive.Store {
		dir := t.TempDir()
		b, err := fileblob.OpenBucket(dir, &fileblob.Options{Metadata: fileblob.MetadataDontWrite})
		if err != nil {
			t.Fatal(err)
		}
		st := blobstore.New(b, "file bucket "+dir, blobstore.Options{})
		t.Cleanup(func() { st.Close() })
		return st
	})
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	// file:// is the local directory store, with its fsync guarantees.
	st, err := blobstore.Open(ctx, (&url.URL{Scheme: "file", Path: dir}).String())
	if err != nil {
		t.Fatal(err)
	}
	local, ok := st.(*archive.LocalStore)
	if !ok || local.Root() != dir {
		t.Fatalf("file URL opened %T %v", st, st)
	}

	// mem:// comes from gocloud's URL openers (memblob registers it).
	st, err = blobstore.Open(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.(*blobstore.Store); !ok {
		t.Fatalf("mem URL opened %T", st)
	}
	st.Close()

	// A scheme whose driver is not linked says which ones are.
	_, err = blobstore.Open(ctx, "gs://bucket")
	if err == nil || !strings.Contains(err.Error(), `scheme "gs" is not built into this binary`) || !strings.Contains(err.Error(), "mem") {
		t.Fatalf("gs URL: %v", err)
	}
	// Credentials in a URL never reach a message.
	_, err = blobstore.Open(ctx, "nope://user:secret@host/x")
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %v shows the password", err)
	}
	for _, bad := range []string{"file://host/x", "file://", "::"} {
		if _, err := blobstore.Open(ctx, bad); err == nil {
			t.Errorf("Open(%q) accepted", bad)
		}
	}
}

// A file larger than the memory spool goes through a temporary file that
// is gone from the spool directory, even before the upload ends.
func TestSpoolLeavesNothing(t *testing.T) {
	ctx := context.Background()
	spool := t.TempDir()
	b := memblob.OpenBucket(nil)
	st := blobstore.New(b, "mem://", blobstore.Options{SpoolMemory: 1024, SpoolDir: spool})
	defer st.Close()
	for _, commit := range []bool{true, false} {
		up, err := st.Create(ctx, "x/.1.tmp")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.Write(make([]byte, 10_000)); err != nil {
			t.Fatal(err)
		}
		if left, _ := filepath.Glob(filepath.Join(spool, "*")); len(left) != 0 {
			t.Fatalf("spool files visible while writing: %v", left)
		}
		if commit {
			if err := up.Commit(ctx, "x/1-1.avro"); err != nil {
				t.Fatal(err)
			}
		} else {
			up.Abort()
		}
	}
	if attrs, err := b.Attributes(ctx, "x/1-1.avro"); err != nil || attrs.Size != 10_000 || len(attrs.MD5) == 0 {
		t.Fatalf("uploaded object: %+v, %v", attrs, err)
	}
	entries, _ := os.ReadDir(spool)
	if len(entries) != 0 {
		t.Fatalf("spool dir holds %v", entries)
	}
}

// An upload that fails half way leaves no object, not a partial one.
func TestFailedUploadLeavesNoObject(t *testing.T) {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	st := blobstore.New(b, "mem://", blobstore.Options{})
	defer st.Close()
	up, err := st.Create(ctx, "x/.1.tmp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Write([]byte("complete file")); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := up.Commit(cctx, "x/1-1.avro"); err == nil {
		t.Fatal("commit with a cancelled context succeeded")
	}
	if ok, err := b.Exists(ctx, "x/1-1.avro"); ok || err != nil {
		t.Fatalf("object exists after a failed upload: %v, %v", ok, err)
	}
}
