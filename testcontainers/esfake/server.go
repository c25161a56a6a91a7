// Package esfake is an in-process test double for an Elasticsearch 8 node.
//
// It speaks the HTTP/JSON protocol that github.com/elastic/go-elasticsearch/v8
// and its esutil.BulkIndexer use, answers with ES 8 response and error
// shapes (including the X-Elastic-Product header the v8 client checks), and
// validates documents against mappings taken from composable index
// templates, so mapping mistakes fail in tests the way they fail in
// production. Faults (whole-request failures, per-item rejections, outages,
// latency) can be injected, and counters let a test check what was stored.
//
// It is not a search engine: relevance scoring, analyzers beyond a simple
// lower-casing tokenizer, aggregations, aliases, ingest pipelines and
// snapshots are not modelled. Everything is kept in memory.
package esfake

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a fake Elasticsearch 8 node. Its methods are safe for concurrent
// use.
type Server struct {
	cfg config

	mu         sync.Mutex
	indices    map[string]*index
	templates  map[string]*indexTemplate
	components map[string]*componentTemplate
	policies   map[string]*ilmPolicy
	stats      Stats
	errTypes   map[string]int
	arena      docArena

	failAll    []int
	failBulk   []int
	failFunc   func(method, path string) int
	rejectFrac float64
	rejectFn   func(index, id string) int
	rng        *rand.Rand
	latency    func(*http.Request) time.Duration
	downFlag   bool

	requests atomic.Int64
	closed   atomic.Bool
	closeCh  chan struct{}

	netMu   sync.Mutex
	srv     *http.Server
	ln      net.Listener
	addr    string
	useTLS  bool
	tlsConf *tls.Config
	caPEM   []byte
	conns   map[net.Conn]struct{}
	serveWG sync.WaitGroup
	netDown bool
}

type config struct {
	version         string
	clusterName     string
	nodeName        string
	user, pass      string
	apiKey          string
	refreshInterval time.Duration
	maxContent      int64
	seed            int64
	autoCreate      bool
	downMode        DownMode
}

// Option configures a Server.
type Option func(*config)

// WithVersion sets the version the node reports (default "8.19.0"). Versions
// before 8.8 report document errors as mapper_parsing_exception without a
// "[line:col]" prefix, as those releases did.
func WithVersion(v string) Option { return func(c *config) { c.version = v } }

// WithClusterName sets cluster_name in GET / (default "esfake").
func WithClusterName(name string) Option { return func(c *config) { c.clusterName = name } }

// WithBasicAuth requires HTTP basic authentication with these credentials.
func WithBasicAuth(user, password string) Option {
	return func(c *config) { c.user, c.pass = user, password }
}

// WithAPIKey requires "Authorization: ApiKey <key>" with exactly this
// (base64 encoded) key, the form go-elasticsearch sends for Config.APIKey.
// It may be combined with WithBasicAuth: either is then accepted.
func WithAPIKey(key string) Option { return func(c *config) { c.apiKey = key } }

// WithRefreshInterval turns on near-real-time emulation: search and count
// only see documents after a refresh (POST _refresh, ?refresh on writes, or
// lazily once the interval has passed since the previous refresh). The
// default, 0, makes writes visible to search at once. GET _doc is always
// real time, as in ES.
func WithRefreshInterval(d time.Duration) Option { return func(c *config) { c.refreshInterval = d } }

// WithMaxContentLength makes requests with larger bodies fail with 413, like
// http.max_content_length (default 100MB).
func WithMaxContentLength(n int64) Option { return func(c *config) { c.maxContent = n } }

// WithSeed seeds the random source used by RejectItems (default 1), so
// fractional rejections are reproducible.
func WithSeed(seed int64) Option { return func(c *config) { c.seed = seed } }

// WithAutoCreateIndex controls action.auto_create_index (default true).
// When false, writes to a missing index fail with index_not_found_exception.
func WithAutoCreateIndex(on bool) Option { return func(c *config) { c.autoCreate = on } }

// DownMode says how SetDown(true) makes the node unreachable.
type DownMode int

const (
	// DownAuto refuses connections when the server owns its listener
	// (Start/StartTLS) and answers 503 otherwise (Handler).
	DownAuto DownMode = iota
	// DownRefuse closes the listener and every open connection.
	DownRefuse
	// Down503 keeps accepting connections and answers every request with a
	// 503 cluster_block_exception.
	Down503
)

// WithDownMode chooses what SetDown(true) does (default DownAuto).
func WithDownMode(m DownMode) Option { return func(c *config) { c.downMode = m } }

// Stats are counters a test can read with Server.Stats.
type Stats struct {
	Requests         int64 // HTTP requests received
	BulkCalls        int64 // _bulk requests received, including failed ones
	BulkItems        int64 // bulk items processed (not counting injected whole-request failures)
	ItemErrors       int64 // bulk items answered with an error, of any cause
	RejectedItems    int64 // items rejected by RejectItems / RejectItemsFunc
	InjectedFailures int64 // requests failed by FailNext / FailNextBulk / FailFunc / Down503
	DocsIndexed      int64 // successful index/create/update writes
	DocsDeleted      int64 // successful deletes
}

// New returns a Server with no indices. Call Start or StartTLS to listen on
// loopback, or serve Handler() yourself (e.g. with httptest).
func New(opts ...Option) *Server {
	c := config{version: "8.19.0", clusterName: "esfake", nodeName: "esfake-0", seed: 1,
		maxContent: 100 << 20, autoCreate: true}
	for _, o := range opts {
		o(&c)
	}
	return &Server{
		cfg:        c,
		indices:    map[string]*index{},
		templates:  map[string]*indexTemplate{},
		components: map[string]*componentTemplate{},
		policies:   map[string]*ilmPolicy{},
		errTypes:   map[string]int{},
		rng:        rand.New(rand.NewSource(c.seed)),
		closeCh:    make(chan struct{}),
		conns:      map[net.Conn]struct{}{},
	}
}

// Handler returns the HTTP handler, for use with httptest.NewServer or a
// server of your own.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Start listens on addr, which must be a loopback address ("" means
// 127.0.0.1 on a free port), and returns the base URL, e.g.
// "http://127.0.0.1:41234".
func (s *Server) Start(addr string) (string, error) {
	return s.start(addr, false)
}

// StartTLS is Start with HTTPS, using a freshly generated self-signed
// certificate for 127.0.0.1, ::1 and localhost. CACertPEM returns it.
func (s *Server) StartTLS(addr string) (string, error) {
	return s.start(addr, true)
}

// CACertPEM returns the PEM certificate clients should trust after
// StartTLS, or nil.
func (s *Server) CACertPEM() []byte {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	return append([]byte(nil), s.caPEM...)
}

func (s *Server) start(addr string, useTLS bool) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("esfake: bad address %q: %w", addr, err)
	}
	if !isLoopback(host) {
		return "", fmt.Errorf("esfake: refusing to listen on non-loopback address %q", addr)
	}
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if s.closed.Load() {
		return "", errors.New("esfake: server is closed")
	}
	if s.srv != nil {
		return "", errors.New("esfake: already started")
	}
	if useTLS {
		conf, pem, err := selfSignedTLS()
		if err != nil {
			return "", fmt.Errorf("esfake: generating certificate: %w", err)
		}
		s.tlsConf, s.caPEM = conf, pem
	}
	s.useTLS = useTLS
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         s.trackConn,
		ErrorLog:          log.New(io.Discard, "", 0), // TLS handshake noise from tests

	}
	if err := s.listenLocked(addr); err != nil {
		s.srv = nil
		return "", err
	}
	s.addr = s.ln.Addr().String()
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	return scheme + "://" + s.addr, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) listenLocked(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("esfake: listen: %w", err)
	}
	if s.useTLS {
		ln = tls.NewListener(ln, s.tlsConf)
	}
	s.ln = ln
	srv := s.srv
	s.serveWG.Add(1)
	go func() {
		defer s.serveWG.Done()
		_ = srv.Serve(ln)
	}()
	return nil
}

func (s *Server) trackConn(c net.Conn, st http.ConnState) {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	switch st {
	case http.StateNew:
		if s.netDown {
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	}
}

// URL returns the base URL after Start, or "".
func (s *Server) URL() string {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if s.srv == nil {
		return ""
	}
	if s.useTLS {
		return "https://" + s.addr
	}
	return "http://" + s.addr
}

// Close stops the listener, drops open connections, wakes requests waiting
// on injected latency and waits for the serving goroutine to end. It is
// safe to call more than once.
func (s *Server) Close() {
	if s.closed.Swap(true) {
		return
	}
	close(s.closeCh)
	s.netMu.Lock()
	srv := s.srv
	s.netMu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	s.serveWG.Wait()
}

// --- fault injection ------------------------------------------------------

// FailNext makes the next n requests (of any kind) fail with status and the
// body ES sends for it: 429 es_rejected_execution_exception, 503
// cluster_block_exception, 401/403 security_exception, 413, and so on.
// Calls queue up: FailNext(1, 503); FailNext(1, 429) fails one request with
// 503, then one with 429.
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.failAll = append(s.failAll, status)
	}
}

// FailNextBulk is FailNext for _bulk requests only.
func (s *Server) FailNextBulk(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.failBulk = append(s.failBulk, status)
	}
}

// FailFunc installs a hook consulted for every request after the FailNext
// queues: a non-zero status fails the request. nil removes it.
func (s *Server) FailFunc(fn func(method, path string) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failFunc = fn
}

// RejectItems rejects each index/create/update/delete bulk item with
// probability fraction (0 turns it off) with a per-item 429
// es_rejected_execution_exception, leaving the other items applied.
func (s *Server) RejectItems(fraction float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectFrac = fraction
}

// RejectItemsFunc decides per bulk item: a non-zero status rejects the item
// with the matching ES exception (429 es_rejected_execution_exception, 503
// unavailable_shards_exception, 409 version_conflict_engine_exception, ...).
// id is the generated id for items sent without one. nil removes it.
func (s *Server) RejectItemsFunc(fn func(index, id string) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectFn = fn
}

// SetLatency delays every request by d before it is handled (0 turns it
// off). Delays end early when the client gives up or the server closes.
func (s *Server) SetLatency(d time.Duration) {
	if d <= 0 {
		s.SetLatencyFunc(nil)
		return
	}
	s.SetLatencyFunc(func(*http.Request) time.Duration { return d })
}

// SetLatencyFunc delays each request by the duration fn returns for it.
func (s *Server) SetLatencyFunc(fn func(*http.Request) time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = fn
}

// SetDown simulates an outage. With a listener of its own (Start) the node
// refuses connections and drops open ones (unless WithDownMode(Down503));
// otherwise it answers every request with 503. SetDown(false) brings it back
// on the same address with its data intact.
func (s *Server) SetDown(down bool) error {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	mode := s.cfg.downMode
	if mode == DownAuto {
		mode = Down503
		if s.srv != nil {
			mode = DownRefuse
		}
	}
	if mode == Down503 {
		s.mu.Lock()
		s.downFlag = down
		s.mu.Unlock()
		return nil
	}
	if s.srv == nil {
		return errors.New("esfake: DownRefuse needs Start or StartTLS")
	}
	if s.closed.Load() {
		return errors.New("esfake: server is closed")
	}
	if down == s.netDown {
		return nil
	}
	if down {
		s.netDown = true
		_ = s.ln.Close()
		for c := range s.conns {
			_ = c.Close()
			delete(s.conns, c)
		}
		s.netMu.Unlock()
		s.serveWG.Wait()
		s.netMu.Lock()
		return nil
	}
	s.netDown = false
	return s.listenLocked(s.addr)
}

// ResetFaults clears the fault injection settings (queues, hooks, latency, down).
func (s *Server) ResetFaults() {
	s.mu.Lock()
	s.failAll, s.failBulk, s.failFunc = nil, nil, nil
	s.rejectFrac, s.rejectFn, s.latency, s.downFlag = 0, nil, nil, false
	s.mu.Unlock()
	_ = s.SetDown(false)
}

// --- counters ----------------------------------------------------------------

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Requests = s.requests.Load()
	return st
}

// ItemErrorTypes returns how many bulk items failed with each ES exception
// type (e.g. "document_parsing_exception": 2).
func (s *Server) ItemErrorTypes() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.errTypes))
	for k, v := range s.errTypes {
		out[k] = v
	}
	return out
}

// Document is a stored document, as returned by Docs.
type Document struct {
	Index   string
	ID      string
	Version int64
	SeqNo   int64
	Source  []byte
}

// Indices returns the names of existing indices, sorted.
func (s *Server) Indices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.indices))
	for n := range s.indices {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// DocCount returns the number of live documents in indices matching the
// pattern ("score-log*", "a,b", "*"), ignoring refresh state.
func (s *Server) DocCount(pattern string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ix := range s.matchIndices(pattern) {
		n += len(ix.docs)
	}
	return n
}

// DocCounts maps each existing index to its number of live documents.
func (s *Server) DocCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.indices))
	for n, ix := range s.indices {
		out[n] = len(ix.docs)
	}
	return out
}

// Docs returns the live documents of indices matching pattern, ordered by
// index then id.
func (s *Server) Docs(pattern string) []Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Document
	for _, ix := range s.matchIndices(pattern) {
		for _, d := range ix.docs {
			out = append(out, Document{Index: ix.name, ID: d.id, Version: d.version, SeqNo: d.seqNo,
				Source: append([]byte(nil), d.source...)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Index != out[j].Index {
			return out[i].Index < out[j].Index
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Doc returns one live document.
func (s *Server) Doc(index, id string) (Document, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ix := s.indices[index]
	if ix == nil {
		return Document{}, false
	}
	d := ix.docs[id]
	if d == nil {
		return Document{}, false
	}
	return Document{Index: index, ID: id, Version: d.version, SeqNo: d.seqNo, Source: append([]byte(nil), d.source...)}, true
}

// IDCounts maps each document id in indices matching pattern to the number
// of indices holding a live document with that id. A value above 1 means
// the same id was written to several indices (e.g. daily indices).
func (s *Server) IDCounts(pattern string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, ix := range s.matchIndices(pattern) {
		for id := range ix.docs {
			out[id]++
		}
	}
	return out
}

// VerifyIDs checks that indices matching pattern hold exactly one document
// for each id in want and no other documents. The error lists missing,
// duplicated and unexpected ids (at most 10 of each).
func (s *Server) VerifyIDs(pattern string, want []string) error {
	got := s.IDCounts(pattern)
	wantSet := make(map[string]bool, len(want))
	var missing, dup, extra []string
	for _, id := range want {
		if wantSet[id] {
			continue
		}
		wantSet[id] = true
		switch n := got[id]; {
		case n == 0:
			missing = append(missing, id)
		case n > 1:
			dup = append(dup, fmt.Sprintf("%s(x%d)", id, n))
		}
	}
	for id := range got {
		if !wantSet[id] {
			extra = append(extra, id)
		}
	}
	if len(missing)+len(dup)+len(extra) == 0 {
		return nil
	}
	sort.Strings(missing)
	sort.Strings(dup)
	sort.Strings(extra)
	cut := func(l []string) string {
		if len(l) > 10 {
			return strings.Join(l[:10], ",") + fmt.Sprintf(",... (%d in all)", len(l))
		}
		return strings.Join(l, ",")
	}
	return fmt.Errorf("esfake: %s: %d missing [%s], %d duplicated [%s], %d unexpected [%s]",
		pattern, len(missing), cut(missing), len(dup), cut(dup), len(extra), cut(extra))
}

// matchIndices resolves a comma-separated list of names and * patterns
// without errors (unknown names are skipped). Caller holds s.mu.
func (s *Server) matchIndices(pattern string) []*index {
	res, _ := s.resolve(pattern, true, true)
	return res
}
