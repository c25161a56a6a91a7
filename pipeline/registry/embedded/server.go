// Package embedded is a Confluent-compatible Schema Registry that runs inside
// the process: Avro schemas only, real compatibility checking (hamba/avro's
// implementation of the Avro specification's schema resolution), and, when
// given a directory, durable state that survives restarts with the same ids.
//
// It speaks the subset of the Schema Registry REST API that Confluent's
// serializers (Java and Python) and github.com/riferrei/srclient use; see
// Server.Handler for the routes. Semantics follow Confluent's registry:
// identical schemas share one id across subjects; registering a schema that
// is already a live version of the subject returns it unchanged; soft
// deletes hide versions but keep their ids resolvable; hard deletes require
// a soft delete first (40405/40407), and an id whose versions are all hard
// deleted is gone; compatibility is checked against live versions only.
//
// # Durability
//
// With Config.Dir set, every state change is an event appended to a journal
// file and fsynced before the request is answered, so an acknowledged
// change survives a crash. At start the server loads the latest snapshot,
// replays the journal onto it (dropping a torn last record, refusing to start
// on damage elsewhere), writes a new snapshot (temporary file, fsync, rename,
// directory fsync) and empties the journal; it does the same while running
// every Config.SnapshotEvery events. Ids, versions, soft-delete flags,
// compatibility levels and modes come back exactly, and the id counter never
// goes backwards. An flock on Dir/LOCK keeps a second server out.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
)

// Config configures a Server.
type Config struct {
	// Dir is the persistence directory. Empty means memory only: all state
	// is lost on Close.
	Dir string
	// DefaultCompatibility is the global compatibility level in effect until
	// PUT /config overrides it (and again after DELETE /config). One of
	// NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL,
	// FULL_TRANSITIVE; case-insensitive. Default BACKWARD.
	DefaultCompatibility string
	// SnapshotEvery is the number of journal records after which the state
	// is written to a snapshot and the journal emptied. The journal is also
	// folded into a snapshot at every start. Zero means 1000; negative
	// means only at start.
	SnapshotEvery int
	// MaxRequestBytes bounds request bodies; larger schemas are refused
	// with error 42209. Zero means 8 MiB.
	MaxRequestBytes int64
	// Logger receives persistence failures. Nil discards.
	Logger *slog.Logger
}

// Defaults fills in zero fields.
func (c *Config) Defaults() {
	if c.DefaultCompatibility == "" {
		c.DefaultCompatibility = LevelBackward
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = 1000
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = 8 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if _, ok := normalizeLevel(c.DefaultCompatibility); !ok {
		return fmt.Errorf("embedded: Config.DefaultCompatibility %q is not a compatibility level", c.DefaultCompatibility)
	}
	if c.MaxRequestBytes < 0 {
		return fmt.Errorf("embedded: Config.MaxRequestBytes must not be negative, got %d", c.MaxRequestBytes)
	}
	return nil
}

// Server is an embedded schema registry. Its methods are safe for concurrent
// use.
type Server struct {
	cfg          Config
	defaultLevel string
	handler      http.Handler

	mu     sync.RWMutex
	st     *state
	store  *store // nil when memory only
	closed bool

	parsed sync.Map // schema id -> avro.Schema, filled lazily

	srvMu   sync.Mutex
	servers map[*http.Server]struct{}
}

// New builds a Server. With cfg.Dir set it locks the directory, loads the
// snapshot, replays the journal and folds it into a new snapshot.
func New(cfg Config) (*Server, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	level, _ := normalizeLevel(cfg.DefaultCompatibility)
	s := &Server{
		cfg:          cfg,
		defaultLevel: level,
		st:           newState(),
		servers:      make(map[*http.Server]struct{}),
	}
	if cfg.Dir != "" {
		store, st, err := openStore(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("embedded: %w", err)
		}
		if store.records > 0 {
			if err := store.writeSnapshot(st); err != nil {
				store.close()
				return nil, fmt.Errorf("embedded: %w", err)
			}
		}
		s.store, s.st = store, st
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the REST API handler. Routes:
//
//	GET    /
//	GET    /schemas                              ?subjectPrefix= &deleted= &latestOnly=
//	GET    /schemas/types
//	GET    /schemas/ids/{id}                     ?subject= (accepted, not used to filter)
//	GET    /schemas/ids/{id}/schema
//	GET    /schemas/ids/{id}/subjects            ?deleted=
//	GET    /schemas/ids/{id}/versions            ?deleted=
//	GET    /subjects                             ?subjectPrefix= &deleted= &deletedOnly=
//	POST   /subjects/{subject}                   ?deleted=        look a schema up
//	DELETE /subjects/{subject}                   ?permanent=
//	GET    /subjects/{subject}/versions          ?deleted= &deletedOnly=
//	POST   /subjects/{subject}/versions                           register
//	GET    /subjects/{subject}/versions/{v}      ?deleted=        v = n | latest | -1
//	GET    /subjects/{subject}/versions/{v}/schema
//	GET    /subjects/{subject}/versions/{v}/referencedby
//	DELETE /subjects/{subject}/versions/{v}      ?permanent=
//	POST   /compatibility/subjects/{subject}/versions       ?verbose=
//	POST   /compatibility/subjects/{subject}/versions/{v}   ?verbose=
//	GET|PUT|DELETE /config, /config/{subject}    ?defaultToGlobal=
//	GET|PUT|DELETE /mode,   /mode/{subject}      ?defaultToGlobal=
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves the API on ln until ctx is done (then shuts down gracefully,
// waiting up to 5s for requests in flight) or Close is called. It returns nil
// in both cases, and closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
	}
	s.srvMu.Lock()
	if s.servers == nil {
		s.srvMu.Unlock()
		ln.Close()
		return errors.New("embedded: server is closed")
	}
	s.servers[hs] = struct{}{}
	s.srvMu.Unlock()
	defer func() {
		s.srvMu.Lock()
		delete(s.servers, hs)
		s.srvMu.Unlock()
	}()

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("embedded: serve: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err := hs.Shutdown(sctx)
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		if err != nil {
			hs.Close()
			return fmt.Errorf("embedded: shutdown: %w", err)
		}
		return nil
	}
}

// ListenAndServe listens on addr (for example "127.0.0.1:8081") and calls
// Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Close stops any Serve loops, makes the handler answer 500, and releases
// the persistence directory. It is safe to call more than once.
func (s *Server) Close() error {
	s.srvMu.Lock()
	servers := s.servers
	s.servers = nil
	s.srvMu.Unlock()
	for hs := range servers {
		hs.Close()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.store != nil {
		if err := s.store.close(); err != nil {
			return fmt.Errorf("embedded: close: %w", err)
		}
	}
	return nil
}

var errClosed = newErr(http.StatusInternalServerError, codeStoreError, "the registry is closed")

// commitLocked persists ev (when durable) and applies it. The caller holds
// s.mu for writing and has validated ev against the current state.
func (s *Server) commitLocked(ev *event) error {
	if s.closed {
		return errClosed
	}
	ev.Seq = s.st.Seq + 1
	if s.store != nil {
		if err := s.store.append(ev); err != nil {
			s.cfg.Logger.Error("embedded registry: cannot persist change", "op", ev.Op, "subject", ev.Subject, "err", err)
			return errStore(err)
		}
	}
	if err := s.st.apply(ev); err != nil {
		// Validation should make this impossible; if it happens the journal
		// holds an event the state rejected, so stop accepting writes.
		if s.store != nil {
			s.store.broken = fmt.Errorf("state rejected a persisted event: %w", err)
		}
		s.cfg.Logger.Error("embedded registry: inconsistent event", "op", ev.Op, "err", err)
		return errStore(err)
	}
	if ev.Permanent {
		// A hard delete can free a subject version that parsed schemas
		// resolved references through.
		s.parsed.Clear()
	}
	if s.store != nil && s.cfg.SnapshotEvery > 0 && s.store.records >= s.cfg.SnapshotEvery {
		if err := s.store.writeSnapshot(s.st); err != nil {
			// The change itself is durable in the journal; only compaction failed.
			s.cfg.Logger.Warn("embedded registry: snapshot failed", "err", err)
		}
	}
	return nil
}

// effectiveLevelLocked is the compatibility level that applies to subject.
func (s *Server) effectiveLevelLocked(subject string) string {
	if sub, ok := s.st.Subjects[subject]; ok && sub.Compat != "" {
		return sub.Compat
	}
	return s.globalLevelLocked()
}

func (s *Server) globalLevelLocked() string {
	if s.st.GlobalCompat != "" {
		return s.st.GlobalCompat
	}
	return s.defaultLevel
}

func (s *Server) globalModeLocked() string {
	if s.st.GlobalMode != "" {
		return s.st.GlobalMode
	}
	return modeReadWrite
}

func (s *Server) effectiveModeLocked(subject string) string {
	if sub, ok := s.st.Subjects[subject]; ok && sub.Mode != "" {
		return sub.Mode
	}
	return s.globalModeLocked()
}

func (s *Server) writableLocked(subject string) error {
	switch s.effectiveModeLocked(subject) {
	case modeReadOnly, modeReadOnlyOverride:
		return errReadOnly(subject)
	}
	return nil
}

// parsedLocked returns the parsed form of a stored schema. The caller holds
// s.mu (read or write) so that referenced versions can be resolved.
func (s *Server) parsedLocked(id int) (avro.Schema, error) {
	if v, ok := s.parsed.Load(id); ok {
		return v.(avro.Schema), nil
	}
	sc, ok := s.st.Schemas[id]
	if !ok {
		return nil, fmt.Errorf("schema id %d not found", id)
	}
	cache, err := s.referenceCacheLocked(sc.References, true)
	if err != nil {
		return nil, err
	}
	parsed, err := parseAvro(sc.Schema, cache)
	if err != nil {
		return nil, fmt.Errorf("stored schema %d no longer parses: %w", id, err)
	}
	s.parsed.Store(id, parsed)
	return parsed, nil
}

// referenceCacheLocked parses the schemas named by refs (and, depth first,
// their own references) into one cache, so that a schema using their types
// can be parsed with it. With includeDeleted unset, references must name
// live versions.
func (s *Server) referenceCacheLocked(refs []reference, includeDeleted bool) (*avro.SchemaCache, error) {
	cache := &avro.SchemaCache{}
	visiting := map[reference]bool{}
	done := map[reference]bool{}
	var visit func(refs []reference, depth int) error
	visit = func(refs []reference, depth int) error {
		if depth > 32 {
			return errors.New("schema references nest too deeply")
		}
		for _, ref := range refs {
			key := reference{Subject: ref.Subject, Version: ref.Version}
			if done[key] {
				continue
			}
			if visiting[key] {
				return fmt.Errorf("schema references form a cycle through %s version %d", ref.Subject, ref.Version)
			}
			sub, ok := s.st.Subjects[ref.Subject]
			if !ok {
				return fmt.Errorf("reference %q: subject %q not found", ref.Name, ref.Subject)
			}
			v, ok := sub.version(ref.Version)
			if !ok || (v.Deleted && !includeDeleted) {
				return fmt.Errorf("reference %q: version %d of subject %q not found", ref.Name, ref.Version, ref.Subject)
			}
			sc := s.st.Schemas[v.ID]
			visiting[key] = true
			if err := visit(sc.References, depth+1); err != nil {
				return err
			}
			if _, err := parseAvro(sc.Schema, cache); err != nil {
				return fmt.Errorf("reference %q: %w", ref.Name, err)
			}
			visiting[key] = false
			done[key] = true
		}
		return nil
	}
	if err := visit(refs, 0); err != nil {
		return nil, err
	}
	return cache, nil
}
