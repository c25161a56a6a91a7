// Package blobstore keeps the archive in an object store through
// gocloud.dev/blob: S3 and S3-compatible stores (MinIO, Ceph, R2, GCS's
// interoperability endpoint) with s3://, and any other bucket whose driver
// the binary imports. Tests use the mem:// and file:// buckets.
//
// Object stores have no rename, and their uploads are atomic: an object
// appears whole when its upload completes, or not at all. So a file is
// spooled (in memory, then in an unlinked temporary file past a size) and
// uploaded once, under its final name, when it is complete. No temporary
// object is ever made, and a retried upload of the same offsets overwrites
// the same name instead of adding a copy. The upload carries the file's
// MD5, which the store checks.
package blobstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/url"
	"os"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
)

// Options tune a Store.
type Options struct {
	// SpoolMemory is how many bytes of a file are held in memory before
	// the rest goes to a temporary file; 8 MiB when zero.
	SpoolMemory int
	// SpoolDir holds the temporary files; os.TempDir() when empty.
	SpoolDir string
}

// Store is an archive in a blob bucket.
type Store struct {
	b    *blob.Bucket
	desc string
	opts Options
}

var _ archive.Store = (*Store)(nil)

// New returns a Store over bucket; desc names it in logs. Closing the
// Store closes the bucket.
func New(bucket *blob.Bucket, desc string, opts Options) *Store {
	if opts.SpoolMemory <= 0 {
		opts.SpoolMemory = 8 << 20
	}
	return &Store{b: bucket, desc: desc, opts: opts}
}

// Open opens the archive at a URL. file:///path is the local directory
// /path, with the guarantees of archive.NewLocalStore (fsync, rename).
// Any other scheme goes to gocloud.dev/blob's URL openers, which the binary
// registers by importing driver packages: mem:// (memblob) and s3://bucket
// (s3blob; ?region=, ?endpoint= and ?use_path_style=true for
// S3-compatible stores, ?prefix= to share a bucket). The log connector
// imports memblob and s3blob.
func Open(ctx context.Context, rawURL string) (archive.Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store URL %q: %w", rawURL, err)
	}
	if u.Scheme == "file" {
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("store URL %q: a file URL names a local path: file:///path", rawURL)
		}
		if u.Path == "" {
			return nil, fmt.Errorf("store URL %q: no path", rawURL)
		}
		return archive.NewLocalStore(u.Path), nil
	}
	if !blob.DefaultURLMux().ValidBucketScheme(u.Scheme) {
		return nil, fmt.Errorf("store URL %s: scheme %q is not built into this binary (built in: %s)",
			redact(u), u.Scheme, strings.Join(append([]string{"file"}, blob.DefaultURLMux().BucketSchemes()...), ", "))
	}
	b, err := blob.OpenBucket(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", redact(u), err)
	}
	return New(b, redact(u), Options{}), nil
}

// redact drops credentials from a URL for logs.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

func (s *Store) String() string { return s.desc }

// Close closes the bucket.
func (s *Store) Close() error { return s.b.Close() }

// Create starts a spooled upload; tmp is not used.
func (s *Store) Create(_ context.Context, _ string) (archive.Upload, error) {
	return &upload{s: s, h: md5.New()}, nil
}

// List lists the keys under prefix.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	it := s.b.List(&blob.ListOptions{Prefix: prefix})
	var names []string
	for {
		o, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list %s/%s: %w", s.desc, prefix, err)
		}
		if !o.IsDir {
			names = append(names, o.Key)
		}
	}
}

// Open reads an object.
func (s *Store) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	r, err := s.b.NewReader(ctx, name, nil)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, fmt.Errorf("%s: %w: %w", name, fs.ErrNotExist, err)
		}
		return nil, err
	}
	return r, nil
}

// Remove deletes an object.
func (s *Store) Remove(ctx context.Context, name string) error {
	err := s.b.Delete(ctx, name)
	if err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return err
	}
	return nil
}

// upload spools a file until Commit uploads it.
type upload struct {
	s    *Store
	h    hash.Hash
	mem  []byte
	f    *os.File
	name string // the spool file's name when it could not be unlinked at once
	size int64
	err  error
	done bool
}

func (u *upload) Write(p []byte) (int, error) {
	if u.err != nil {
		return 0, u.err
	}
	if u.done {
		return 0, errors.New("blobstore: write after the upload finished")
	}
	u.h.Write(p)
	u.size += int64(len(p))
	if u.f == nil && len(u.mem)+len(p) <= u.s.opts.SpoolMemory {
		u.mem = append(u.mem, p...)
		return len(p), nil
	}
	if u.f == nil {
		if u.err = u.spill(); u.err != nil {
			return 0, u.err
		}
	}
	n, err := u.f.Write(p)
	if err != nil {
		u.err = fmt.Errorf("spool: %w", err)
	}
	return n, u.err
}

// spill moves the spooled bytes to a temporary file, unlinked at once
// where the system allows it, so a crash leaves nothing behind.
func (u *upload) spill() error {
	f, err := os.CreateTemp(u.s.opts.SpoolDir, "rdv-archive-*.spool")
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		u.name = f.Name()
	}
	u.f = f
	if _, err := f.Write(u.mem); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	u.mem = nil
	return nil
}

// Commit uploads the file under name in one go; the object appears only
// when the whole upload has succeeded and its MD5 matched.
func (u *upload) Commit(ctx context.Context, name string) error {
	if u.done {
		return errors.New("blobstore: upload already finished")
	}
	defer u.Abort()
	if u.err != nil {
		return u.err
	}
	var src io.Reader = bytes.NewReader(u.mem)
	if u.f != nil {
		if _, err := u.f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		src = io.LimitReader(u.f, u.size)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := u.s.b.NewWriter(wctx, name, &blob.WriterOptions{
		ContentType: "avro/binary",
		ContentMD5:  u.h.Sum(nil),
	})
	if err != nil {
		return fmt.Errorf("upload %s: %w", name, err)
	}
	if _, err := io.Copy(w, src); err != nil {
		cancel() // aborts the upload: Close does not commit it
		_ = w.Close()
		return fmt.Errorf("upload %s: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("upload %s: %w", name, err)
	}
	return nil
}

// Abort drops the spool.
func (u *upload) Abort() {
	if u.done {
		return
	}
	u.done = true
	u.mem = nil
	if u.f != nil {
		u.f.Close()
		if u.name != "" {
			os.Remove(u.name)
		}
		u.f = nil
	}
}
