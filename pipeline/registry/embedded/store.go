package embedded

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// On-disk layout of Config.Dir:
//
//	LOCK           held (flock) by the running server
//	snapshot.json  the state as of some event seq, replaced atomically
//	journal.log    events after that seq, one per line, fsynced before the
//	               change becomes visible
//
// A journal line is "<crc32c of payload, 8 hex digits> <payload JSON>\n".
// A snapshot file is "<crc32c of payload> <payload JSON>\n" as well.
const (
	lockFile     = "LOCK"
	snapshotFile = "snapshot.json"
	journalFile  = "journal.log"
	tmpSuffix    = ".tmp"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func frame(payload []byte) []byte {
	out := make([]byte, 0, len(payload)+10)
	out = fmt.Appendf(out, "%08x ", crc32.Checksum(payload, crcTable))
	out = append(out, payload...)
	return append(out, '\n')
}

// unframe checks and strips the framing of one line (without its newline).
func unframe(line []byte) ([]byte, error) {
	if len(line) < 10 || line[8] != ' ' {
		return nil, errors.New("malformed record")
	}
	var sum [4]byte
	if _, err := hex.Decode(sum[:], line[:8]); err != nil {
		return nil, errors.New("malformed checksum")
	}
	payload := line[9:]
	want := uint32(sum[0])<<24 | uint32(sum[1])<<16 | uint32(sum[2])<<8 | uint32(sum[3])
	if crc32.Checksum(payload, crcTable) != want {
		return nil, errors.New("checksum mismatch")
	}
	return payload, nil
}

// store persists a state in a directory.
type store struct {
	dir     string
	lock    *os.File
	journal *os.File
	size    int64 // bytes of valid journal
	records int   // events in the journal
	broken  error // set after a failure that leaves the journal's fate unknown
}

// openStore locks dir, loads the snapshot, replays the journal onto it and
// returns the resulting state. A journal whose last line is incomplete or
// fails its checksum (a write cut short by a crash, never acknowledged) is
// truncated to its last good line; damage anywhere else is an error.
func openStore(dir string) (*store, *state, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", dir, err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := lockExclusive(lf); err != nil {
		lf.Close()
		return nil, nil, fmt.Errorf("lock %s (is another registry using it?): %w", dir, err)
	}
	s := &store{dir: dir, lock: lf}
	st, err := s.load()
	if err != nil {
		s.close()
		return nil, nil, err
	}
	return s, st, nil
}

func (s *store) load() (*state, error) {
	_ = os.Remove(filepath.Join(s.dir, snapshotFile+tmpSuffix)) // leftover of an interrupted snapshot

	st := newState()
	raw, err := os.ReadFile(filepath.Join(s.dir, snapshotFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read snapshot: %w", err)
	default:
		payload, err := unframe(bytes.TrimSuffix(raw, []byte("\n")))
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", snapshotFile, err)
		}
		var snap snapshot
		if err := json.Unmarshal(payload, &snap); err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", snapshotFile, err)
		}
		if st, err = stateFromSnapshot(&snap); err != nil {
			return nil, err
		}
	}

	path := filepath.Join(s.dir, journalFile)
	jf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	s.journal = jf
	if err := syncDir(s.dir); err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.dir, err)
	}

	r := bufio.NewReader(jf)
	var offset int64
	for lineNo := 1; ; lineNo++ {
		line, rerr := r.ReadBytes('\n')
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return nil, fmt.Errorf("read journal: %w", rerr)
		}
		if len(line) == 0 {
			break
		}
		complete := rerr == nil
		var ev event
		payload, ferr := unframe(bytes.TrimSuffix(line, []byte("\n")))
		if ferr == nil {
			ferr = json.Unmarshal(payload, &ev)
		}
		if !complete || ferr != nil {
			if _, perr := r.Peek(1); complete && perr == nil {
				// Not the last line: this is corruption, not a torn write.
				if ferr == nil {
					ferr = errors.New("incomplete record")
				}
				return nil, fmt.Errorf("journal %s line %d: %w", journalFile, lineNo, ferr)
			}
			// Torn tail: drop it. It was never acknowledged.
			if err := jf.Truncate(offset); err != nil {
				return nil, fmt.Errorf("truncate torn journal tail: %w", err)
			}
			if err := jf.Sync(); err != nil {
				return nil, fmt.Errorf("sync journal: %w", err)
			}
			break
		}
		offset += int64(len(line))
		s.records++
		if ev.Seq <= st.Seq {
			continue // already in the snapshot
		}
		if err := st.apply(&ev); err != nil {
			return nil, fmt.Errorf("journal %s line %d: %w", journalFile, lineNo, err)
		}
	}
	s.size = offset
	return st, nil
}

// append makes ev durable. On error nothing was appended, unless the error
// is also recorded in s.broken, in which case the outcome is unknown and the
// store refuses further writes until the process restarts.
func (s *store) append(ev *event) error {
	if s.broken != nil {
		return s.broken
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	line := frame(payload)
	if _, err := s.journal.WriteAt(line, s.size); err != nil {
		if terr := s.journal.Truncate(s.size); terr != nil {
			s.broken = fmt.Errorf("journal write failed (%v) and could not be rolled back: %w", err, terr)
		}
		return fmt.Errorf("write journal: %w", err)
	}
	if err := s.journal.Sync(); err != nil {
		// After a failed fsync the kernel may or may not have the data; the
		// only safe course is to stop writing.
		s.broken = fmt.Errorf("journal fsync failed, restart the registry: %w", err)
		return s.broken
	}
	s.size += int64(len(line))
	s.records++
	return nil
}

// writeSnapshot atomically replaces the snapshot with st (temp file, fsync,
// rename, fsync of the directory) and then empties the journal, whose events
// are all in the snapshot. A crash between the two steps is harmless: replay
// skips events the snapshot already holds.
func (s *store) writeSnapshot(st *state) error {
	if s.broken != nil {
		return s.broken
	}
	payload, err := json.Marshal(st.snapshot())
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.dir, snapshotFile+tmpSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	_, err = f.Write(frame(payload))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, snapshotFile))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := s.journal.Truncate(0); err != nil {
		return fmt.Errorf("truncate journal after snapshot: %w", err)
	}
	if err := s.journal.Sync(); err != nil {
		s.broken = fmt.Errorf("journal fsync failed, restart the registry: %w", err)
		return s.broken
	}
	s.size, s.records = 0, 0
	return nil
}

func (s *store) close() error {
	var errs []error
	if s.journal != nil {
		errs = append(errs, s.journal.Close())
		s.journal = nil
	}
	if s.lock != nil {
		errs = append(errs, unlock(s.lock), s.lock.Close())
		s.lock = nil
	}
	return errors.Join(errs...)
}
