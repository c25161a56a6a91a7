package embedded_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
)

// dump captures everything observable about a registry's state.
func dump(t *testing.T, a *api, subjects ...string) string {
	t.Helper()
	var b strings.Builder
	get := func(path string) {
		r := a.call(http.MethodGet, path, nil)
		fmt.Fprintf(&b, "%s -> %d %s", path, r.status, r.body)
	}
	get("/schemas?deleted=true")
	get("/subjects?deleted=true")
	get("/subjects")
	get("/config")
	get("/mode")
	for _, s := range subjects {
		get("/subjects/" + s + "/versions?deleted=true")
		get("/config/" + s)
		get("/mode/" + s)
	}
	for id := 1; id <= 8; id++ {
		get(fmt.Sprintf("/schemas/ids/%d", id))
	}
	return b.String()
}

// populate makes one of every kind of state change.
func populate(t *testing.T, a *api) {
	t.Helper()
	a.ok(http.MethodPut, "/config", map[string]string{"compatibility": "FULL"}, nil)
	a.ok(http.MethodPut, "/config/orders-value", map[string]string{"compatibility": "BACKWARD_TRANSITIVE"}, nil)
	a.register("orders-value", record("Order", fID))                       // id 1, v1
	a.register("orders-value", record("Order", fID, fEmailDef))            // id 2, v2
	a.register("orders-value", record("Order", fID, fEmailDef, fNoteDef))  // id 3, v3
	a.register("mirror-value", record("Order", fID))                       // id 1 shared
	a.ok(http.MethodDelete, "/subjects/orders-value/versions/2", nil, nil) // soft
	a.register("gone-value", record("Gone", fID))                          // id 4
	a.ok(http.MethodDelete, "/subjects/gone-value", nil, nil)
	a.ok(http.MethodDelete, "/subjects/gone-value?permanent=true", nil, nil) // hard
	a.register("soft-value", record("Soft", fID))                            // id 5
	a.ok(http.MethodDelete, "/subjects/soft-value", nil, nil)
	a.ok(http.MethodPut, "/mode/mirror-value", map[string]string{"mode": "READONLY"}, nil)
	a.ok(http.MethodPut, "/config/empty-value", map[string]string{"compatibility": "NONE"}, nil)
}

var dumpSubjects = []string{"orders-value", "mirror-value", "gone-value", "soft-value", "empty-value"}

func TestRestartPreservesEverything(t *testing.T) {
	for _, every := range []int{-1, 1, 3, 1000} {
		t.Run(fmt.Sprintf("SnapshotEvery=%d", every), func(t *testing.T) {
			dir := t.TempDir()
			cfg := embedded.Config{Dir: dir, SnapshotEvery: every}

			a := newAPI(t, cfg)
			populate(t, a)
			before := dump(t, a, dumpSubjects...)
			if err := a.srv.Close(); err != nil {
				t.Fatal(err)
			}

			for restart := 1; restart <= 2; restart++ {
				b := newAPI(t, cfg)
				if after := dump(t, b, dumpSubjects...); after != before {
					t.Fatalf("restart %d changed the state:\nbefore %s\nafter  %s", restart, before, after)
				}
				b.srv.Close()
			}

			// Ids keep counting from where they were: the hard-deleted id 4
			// and the soft-deleted 5 are not handed out again.
			c := newAPI(t, cfg)
			if id := c.register("new-value", record("New", fID)); id != 6 {
				t.Fatalf("first id after restart = %d, want 6", id)
			}
			// Versions continue after soft-deleted ones.
			var out struct {
				Version int `json:"version"`
			}
			c.ok(http.MethodPost, "/subjects/soft-value/versions", map[string]string{"schema": record("Soft", fID, fEmailDef)}, &out)
			if out.Version != 2 {
				t.Fatalf("version after restart = %d, want 2", out.Version)
			}
			// And the restored subject config still governs registration.
			c.fails(http.MethodPost, "/subjects/orders-value/versions",
				map[string]string{"schema": record("Order", fID, fEmailDef, fNoteDef, `{"name":"x","type":"int"}`)}, 409, 409)
			c.srv.Close()
		})
	}
}

func TestTornJournalTailIsDropped(t *testing.T) {
	dir := t.TempDir()
	cfg := embedded.Config{Dir: dir, SnapshotEvery: -1}
	a := newAPI(t, cfg)
	a.register("a-value", record("A", fID))
	a.srv.Close()

	// Restart folds the journal into the snapshot; write more, then tear the
	// journal's last record as a crash mid-write would.
	b := newAPI(t, cfg)
	b.register("a-value", record("A", fID, fEmailDef))
	before := dump(t, b, "a-value")
	b.srv.Close()
	journal := filepath.Join(dir, "journal.log")
	data, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	torn := append(data, []byte(`1234abcd {"seq":3,"op":"regis`)...)
	if err := os.WriteFile(journal, torn, 0o644); err != nil {
		t.Fatal(err)
	}

	c := newAPI(t, cfg)
	if after := dump(t, c, "a-value"); after != before {
		t.Fatalf("torn tail changed the state:\nbefore %s\nafter  %s", before, after)
	}
	c.register("a-value", record("A", fID, fEmailDef, fNoteDef))
	c.srv.Close()
	d := newAPI(t, cfg)
	var versions []int
	d.ok(http.MethodGet, "/subjects/a-value/versions", nil, &versions)
	if len(versions) != 3 {
		t.Fatalf("versions after recovery = %v", versions)
	}
}

func TestCorruptJournalIsAnError(t *testing.T) {
	dir := t.TempDir()
	cfg := embedded.Config{Dir: dir, SnapshotEvery: -1}
	a := newAPI(t, cfg)
	a.srv.Close() // snapshot-less start; journal empty
	b := newAPI(t, cfg)
	b.register("a-value", record("A", fID))
	b.register("b-value", record("B", fID))
	b.srv.Close()

	journal := filepath.Join(dir, "journal.log")
	data, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) < 2 {
		t.Fatalf("journal has %d lines", len(lines))
	}
	lines[0] = strings.Replace(lines[0], `"op":"register"`, `"op":"registeR"`, 1) // flip a byte in the first record
	if err := os.WriteFile(journal, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = embedded.New(cfg)
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("New on a corrupt journal: %v, want an error about line 1", err)
	}
}

// A crash after the snapshot is renamed into place but before the journal is
// emptied leaves events that the snapshot already holds; replay skips them.
func TestJournalOverlappingSnapshotIsSkipped(t *testing.T) {
	dir := t.TempDir()
	cfg := embedded.Config{Dir: dir, SnapshotEvery: -1}
	a := newAPI(t, cfg)
	populate(t, a)
	before := dump(t, a, dumpSubjects...)
	a.srv.Close()
	journal := filepath.Join(dir, "journal.log")
	saved, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}

	b := newAPI(t, cfg) // folds the journal into the snapshot and empties it
	b.srv.Close()
	if fi, err := os.Stat(journal); err != nil || fi.Size() != 0 {
		t.Fatalf("journal after startup compaction: %v %v", fi.Size(), err)
	}
	if err := os.WriteFile(journal, saved, 0o644); err != nil {
		t.Fatal(err)
	}
	// A half-written snapshot from another interrupted compaction is ignored.
	if err := os.WriteFile(filepath.Join(dir, "snapshot.json.tmp"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newAPI(t, cfg)
	if after := dump(t, c, dumpSubjects...); after != before {
		t.Fatalf("replaying an overlapping journal changed the state:\nbefore %s\nafter  %s", before, after)
	}
}

func TestSnapshotIsChecksummed(t *testing.T) {
	dir := t.TempDir()
	cfg := embedded.Config{Dir: dir}
	a := newAPI(t, cfg)
	a.register("a-value", record("A", fID))
	a.srv.Close()
	b := newAPI(t, cfg) // writes the snapshot
	b.srv.Close()

	snap := filepath.Join(dir, "snapshot.json")
	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	var probe map[string]any
	if err := json.Unmarshal(data[9:], &probe); err != nil {
		t.Fatalf("snapshot payload is not JSON: %v", err)
	}
	corrupted := strings.Replace(string(data), `"a-value"`, `"b-value"`, 1)
	if err := os.WriteFile(snap, []byte(corrupted), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.New(cfg); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("New with a corrupt snapshot: %v, want a checksum error", err)
	}
}
