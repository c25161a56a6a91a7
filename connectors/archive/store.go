package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// Store is where archive files live. Names are slash-separated and relative
// to the store's root:
//
//	<objective>/<topic>/<partition>/<yyyy-mm-dd>/<first>-<last>.avro
//
// Exactly once rests on three properties every Store has:
//   - a file appears under its final name whole or not at all (Commit);
//   - a committed file is durable when Commit returns;
//   - committing a name again replaces the file; it never makes a second one.
//
// The names are deterministic (offsets), so a replay after a crash or an
// outage rewrites the same name instead of adding a duplicate.
//
// NewLocalStore is a directory on a local disk. connectors/archive/blobstore
// is any gocloud.dev/blob bucket (S3 and S3-compatible stores, and the
// in-memory and file buckets used in tests).
type Store interface {
	// Create starts a file. tmp is a name in the final file's folder,
	// ending in ".tmp", that a store staging files in place may use (the
	// local directory does). Nothing appears under a final name before
	// Commit.
	Create(ctx context.Context, tmp string) (Upload, error)
	// List returns every name under prefix, a folder name ending in "/"
	// ("" is the whole store), in no particular order. It includes the
	// temporary names a crashed writer may have left.
	List(ctx context.Context, prefix string) ([]string, error)
	// Open reads a committed file. A missing file's error wraps
	// fs.ErrNotExist.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// Remove deletes a file. Removing a missing file is not an error.
	Remove(ctx context.Context, name string) error
	// Close releases the store.
	Close() error
	// String names the store in logs.
	String() string
}

// Upload is a file being written.
type Upload interface {
	io.Writer
	// Commit makes everything written durable under name, all at once,
	// replacing any file of that name. The upload is over after Commit,
	// whatever Commit returns. An error does not prove that nothing was
	// committed (a timeout may hide a success): the caller checks with Open
	// before it relies on the name being absent.
	Commit(ctx context.Context, name string) error
	// Abort discards the upload. It does nothing after Commit.
	Abort()
}

// LocalStore is an archive in a directory of the local file system. A file
// is written under its temporary name, synced, renamed to its final name,
// and the directory synced; new directories are synced into their parents.
type LocalStore struct {
	root string
	mu   sync.Mutex
	dirs map[string]bool // directories known to exist and be durable
}

// NewLocalStore returns the store rooted at dir. The directory need not
// exist yet.
func NewLocalStore(dir string) *LocalStore {
	return &LocalStore{root: dir, dirs: map[string]bool{}}
}

// Root is the store's directory.
func (s *LocalStore) Root() string { return s.root }

func (s *LocalStore) String() string { return s.root }

// Close does nothing: a directory holds no resources.
func (s *LocalStore) Close() error { return nil }

// Path is the file system path of a name.
func (s *LocalStore) Path(name string) (string, error) {
	name = strings.TrimSuffix(name, "/")
	if name == "" {
		return s.root, nil
	}
	local := filepath.FromSlash(name)
	if !filepath.IsLocal(local) {
		return "", fmt.Errorf("archive name %q leaves the store", name)
	}
	return filepath.Join(s.root, local), nil
}

// Create opens tmp for writing, creating its folders.
func (s *LocalStore) Create(_ context.Context, tmp string) (Upload, error) {
	p, err := s.Path(tmp)
	if err != nil {
		return nil, err
	}
	if err := s.mkdirAll(filepath.Dir(p)); err != nil {
		return nil, fmt.Errorf("archive dir: %w", err)
	}
	f, err := os.Create(p)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	return &localUpload{s: s, f: f, tmp: p}, nil
}

// mkdirAll creates dir and syncs every directory it creates into its
// parent, so a file committed in a new folder survives a crash with its
// folder.
func (s *LocalStore) mkdirAll(dir string) error {
	s.mu.Lock()
	known := s.dirs[dir]
	s.mu.Unlock()
	if known {
		return nil
	}
	var created []string
	for d := dir; ; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			break
		}
		created = append(created, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range created {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.dirs[dir] = true
	s.mu.Unlock()
	return nil
}

func (s *LocalStore) forget(dir string) {
	s.mu.Lock()
	delete(s.dirs, dir)
	s.mu.Unlock()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// List walks the folder prefix names.
func (s *LocalStore) List(_ context.Context, prefix string) ([]string, error) {
	base, err := s.Path(prefix)
	if err != nil {
		return nil, err
	}
	var names []string
	err = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == base {
				return fs.SkipDir
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return names, nil
}

// Open opens a file for reading.
func (s *LocalStore) Open(_ context.Context, name string) (io.ReadCloser, error) {
	p, err := s.Path(name)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}

// Remove deletes a file.
func (s *LocalStore) Remove(_ context.Context, name string) error {
	p, err := s.Path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

type localUpload struct {
	s    *LocalStore
	f    *os.File
	tmp  string
	done bool
}

func (u *localUpload) Write(p []byte) (int, error) { return u.f.Write(p) }

// Commit syncs the file, renames it to name and syncs the directory.
func (u *localUpload) Commit(_ context.Context, name string) error {
	if u.done {
		return errors.New("archive upload already finished")
	}
	u.done = true
	final, err := u.s.Path(name)
	if err != nil {
		u.discard()
		return err
	}
	if err := u.f.Sync(); err != nil {
		u.discard()
		return fmt.Errorf("sync %s: %w", u.tmp, err)
	}
	if err := u.f.Close(); err != nil {
		os.Remove(u.tmp)
		return fmt.Errorf("close %s: %w", u.tmp, err)
	}
	dir := filepath.Dir(final)
	if dir != filepath.Dir(u.tmp) {
		if err := u.s.mkdirAll(dir); err != nil {
			os.Remove(u.tmp)
			return fmt.Errorf("archive dir: %w", err)
		}
	}
	if err := os.Rename(u.tmp, final); err != nil {
		os.Remove(u.tmp)
		u.s.forget(dir) // perhaps deleted under us: check again next time
		return fmt.Errorf("rename to %s: %w", final, err)
	}
	// The rename is durable only once the directory is synced. If that
	// fails, the file may or may not survive a crash: report it, and the
	// caller finds out with Open.
	if err := syncDir(dir); err != nil {
		return err
	}
	return nil
}

func (u *localUpload) discard() {
	u.f.Close()
	os.Remove(u.tmp)
}

func (u *localUpload) Abort() {
	if u.done {
		return
	}
	u.done = true
	u.discard()
}

// joinName joins name elements with slashes.
func joinName(elem ...string) string { return path.Join(elem...) }
