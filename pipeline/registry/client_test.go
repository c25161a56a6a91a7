package registry_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	v1 = `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}`
	v2 = `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"email","type":"string","default":""}]}`
	v3 = `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"email","type":"string"},{"name":"n","type":"int"}]}`
)

// fixture is an embedded registry behind an httptest server whose handler
// can be wrapped, with a count of requests per path.
type fixture struct {
	url   string
	mu    sync.Mutex
	count map[string]int
}

func newFixture(t *testing.T, wrap func(http.Handler) http.Handler) *fixture {
	t.Helper()
	srv, err := embedded.New(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{count: map[string]int{}}
	var h http.Handler = srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.count[r.Method+" "+r.URL.Path]++
		f.mu.Unlock()
		h.ServeHTTP(w, r)
	})
	hs := httptest.NewServer(counted)
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	f.url = hs.URL
	return f
}

func (f *fixture) requests(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[key]
}

func newClient(t *testing.T, cfg registry.Config) registry.Client {
	t.Helper()
	c, err := registry.New(cfg)
	if err != nil {
		t.Fatalf("registry.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   registry.Config
		field string // "" = valid
	}{
		{"ok", registry.Config{URL: "http://localhost:8081/"}, ""},
		{"ok with auth", registry.Config{URL: "https://sr.example.com", Username: "u", Password: "p"}, ""},
		{"ok with auth in URL", registry.Config{URL: "https://u:p@sr.example.com"}, ""},
		{"missing URL", registry.Config{}, "Config.URL"},
		{"relative URL", registry.Config{URL: "localhost:8081"}, "Config.URL"},
		{"ftp URL", registry.Config{URL: "ftp://host"}, "Config.URL"},
		{"query in URL", registry.Config{URL: "http://host?x=1"}, "Config.URL"},
		{"user without password", registry.Config{URL: "http://host", Username: "u"}, "Config.Password"},
		{"password without user", registry.Config{URL: "http://host", Password: "p"}, "Config.Username"},
		{"user without password in URL", registry.Config{URL: "http://u@host"}, "Config.URL"},
		{"credentials twice", registry.Config{URL: "http://a:b@host", Username: "u", Password: "p"}, "Config.Username"},
		{"negative timeout", registry.Config{URL: "http://host", Timeout: -time.Second}, "Config.Timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := registry.New(tc.cfg)
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("New error %v, want one naming %s", err, tc.field)
			}
			if err != nil && strings.Contains(err.Error(), ":b@") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
	var cfg registry.Config
	cfg.Defaults()
	if cfg.Timeout != registry.DefaultTimeout {
		t.Fatalf("default Timeout = %v", cfg.Timeout)
	}
	cfg.URL = "http://host"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate after Defaults: %v", err)
	}
}

// The hot path: one HTTP request per id, however many calls and callers.
func TestSchemaByIDIsCachedAndCoalesced(t *testing.T) {
	release := make(chan struct{})
	var gated atomic.Bool
	gated.Store(true)
	entered := make(chan struct{}, 1)
	f := newFixture(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/schemas/ids/") && gated.Load() {
				select {
				case entered <- struct{}{}:
				default:
				}
				<-release
			}
			h.ServeHTTP(w, r)
		})
	})
	admin := newClient(t, registry.Config{URL: f.url})
	gated.Store(false)
	id, err := admin.Register(context.Background(), "orders-value", v1)
	if err != nil {
		t.Fatal(err)
	}
	gated.Store(true)

	c := newClient(t, registry.Config{URL: f.url})
	key := "GET /schemas/ids/1"
	before := f.requests(key)
	var wg sync.WaitGroup
	results := make([]string, 32)
	errs := make([]error, 32)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = c.SchemaByID(context.Background(), id) })
	}
	<-entered
	time.Sleep(20 * time.Millisecond) // let the other callers pile up behind the first
	close(release)
	wg.Wait()
	for i := range results {
		if errs[i] != nil || !strings.Contains(results[i], `"Order"`) {
			t.Fatalf("caller %d: %q, %v", i, results[i], errs[i])
		}
	}
	for range 100 {
		if _, err := c.SchemaByID(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.requests(key) - before; n != 1 {
		t.Fatalf("%d HTTP requests for one id, want 1", n)
	}
}

func TestRegisterIsCachedLatestIsNot(t *testing.T) {
	f := newFixture(t, nil)
	c := newClient(t, registry.Config{URL: f.url})
	ctx := context.Background()
	id, err := c.Register(ctx, "orders-value", v1)
	if err != nil {
		t.Fatal(err)
	}
	posts := f.requests("POST /subjects/orders-value/versions")
	for range 10 {
		if again, err := c.Register(ctx, "orders-value", v1); err != nil || again != id {
			t.Fatalf("Register again = %d, %v", again, err)
		}
	}
	if n := f.requests("POST /subjects/orders-value/versions"); n != posts {
		t.Fatalf("cached Register made %d more requests", n-posts)
	}
	// Register fetched the schema back, so SchemaByID needs no request.
	gets := f.requests("GET /schemas/ids/1")
	if s, err := c.SchemaByID(ctx, id); err != nil || s == "" {
		t.Fatalf("SchemaByID: %q %v", s, err)
	}
	if f.requests("GET /schemas/ids/1") != gets {
		t.Fatal("SchemaByID after Register hit the registry")
	}

	if _, _, version, err := c.Latest(ctx, "orders-value"); err != nil || version != 1 {
		t.Fatalf("Latest = %d, %v", version, err)
	}
	id2, err := c.Register(ctx, "orders-value", v2)
	if err != nil {
		t.Fatal(err)
	}
	if gotID, _, version, err := c.Latest(ctx, "orders-value"); err != nil || version != 2 || gotID != id2 {
		t.Fatalf("Latest after v2 = id %d version %d, %v", gotID, version, err)
	}
	if gotID, version, err := c.Lookup(ctx, "orders-value", v1); err != nil || gotID != id || version != 1 {
		t.Fatalf("Lookup v1 = %d/%d, %v", gotID, version, err)
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t, nil)
	c := newClient(t, registry.Config{URL: f.url})
	ctx := context.Background()
	if _, err := c.Register(ctx, "orders-value", v1); err != nil {
		t.Fatal(err)
	}

	_, err := c.Register(ctx, "orders-value", v3)
	if !errors.Is(err, registry.ErrIncompatible) || errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("incompatible Register: %v", err)
	}
	var re *registry.Error
	if !errors.As(err, &re) || re.Code != 409 || re.Op != "register" || re.Subject != "orders-value" ||
		!strings.Contains(re.Message, `"email"`) {
		t.Fatalf("incompatible Register error = %#v", re)
	}
	if !strings.Contains(err.Error(), `subject "orders-value"`) || !strings.Contains(err.Error(), "email") {
		t.Fatalf("error text %q", err)
	}

	ok, msgs, err := c.CheckCompatible(ctx, "orders-value", v3)
	if err != nil || ok || len(msgs) == 0 || !strings.Contains(msgs[0], "email") {
		t.Fatalf("CheckCompatible = %v %q %v", ok, msgs, err)
	}
	if ok, msgs, err := c.CheckCompatible(ctx, "orders-value", v2); err != nil || !ok || len(msgs) != 0 {
		t.Fatalf("CheckCompatible(compatible) = %v %q %v", ok, msgs, err)
	}

	if _, err := c.Register(ctx, "orders-value", `{"type":"record"}`); !errors.Is(err, registry.ErrInvalidSchema) {
		t.Fatalf("invalid schema: %v", err)
	}
	if _, err := c.SchemaByID(ctx, 999); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	} else if !strings.Contains(err.Error(), "id 999") {
		t.Fatalf("error text %q does not name the id", err)
	}
	if _, _, _, err := c.Latest(ctx, "nope-value"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown subject: %v", err)
	}
	if _, _, err := c.Lookup(ctx, "orders-value", v3); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unregistered schema: %v", err)
	}
	// Failed lookups are not cached: once registered, the id resolves.
	if _, err := c.SchemaByID(ctx, 2); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("id 2 before registering: %v", err)
	}
	if _, err := c.Register(ctx, "orders-value", v2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SchemaByID(ctx, 2); err != nil {
		t.Fatalf("id 2 after registering: %v", err)
	}
}

func TestContextAndTimeout(t *testing.T) {
	f := newFixture(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "slow") || r.URL.Path == "/schemas/ids/42" {
				// The server notices a client going away only once the body
				// has been read.
				io.Copy(io.Discard, r.Body)
				select {
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	c := newClient(t, registry.Config{URL: f.url})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Register(ctx, "orders-value", v1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Register with a cancelled context: %v", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.SchemaByID(ctx, 42)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SchemaByID past its deadline: %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("the context deadline was not honoured")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, _, _, err := c.Latest(ctx2, "slow-value"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Latest past its deadline: %v", err)
	}
	ctx3, cancel3 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel3()
	if _, _, err := c.CheckCompatible(ctx3, "slow-value", v1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CheckCompatible past its deadline: %v", err)
	}

	// Config.Timeout bounds each request on its own.
	short := newClient(t, registry.Config{URL: f.url, Timeout: 50 * time.Millisecond})
	_, err = short.SchemaByID(context.Background(), 42)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("SchemaByID beyond Config.Timeout: %v", err)
	}
}

func TestBasicAuth(t *testing.T) {
	f := newFixture(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "svc" || p != "s3cret" {
				w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(`{"error_code":40101,"message":"Unauthorized"}`))
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	ctx := context.Background()
	withFields := newClient(t, registry.Config{URL: f.url, Username: "svc", Password: "s3cret"})
	if _, err := withFields.Register(ctx, "orders-value", v1); err != nil {
		t.Fatalf("Register with credentials: %v", err)
	}
	if ok, _, err := withFields.CheckCompatible(ctx, "orders-value", v2); err != nil || !ok {
		t.Fatalf("CheckCompatible with credentials: %v %v", ok, err)
	}
	inURL := newClient(t, registry.Config{URL: strings.Replace(f.url, "http://", "http://svc:s3cret@", 1)})
	if _, err := inURL.SchemaByID(ctx, 1); err != nil {
		t.Fatalf("SchemaByID with credentials in the URL: %v", err)
	}
	anonymous := newClient(t, registry.Config{URL: f.url})
	_, err := anonymous.SchemaByID(ctx, 1)
	var re *registry.Error
	if !errors.As(err, &re) || re.Code != 40101 || errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("SchemaByID without credentials: %v", err)
	}
}
