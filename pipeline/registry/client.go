// Package registry is the seam between pipeline stages and a
// Confluent-compatible Schema Registry (subjects named "<topic>-value",
// Avro schemas). Stages depend on the narrow Client interface; New returns
// the production implementation, built on github.com/riferrei/srclient.
package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/riferrei/srclient"
)

// Client is what stages need from a schema registry. Implementations are safe
// for concurrent use. Errors wrap the sentinels ErrNotFound, ErrIncompatible
// and ErrInvalidSchema where they apply, and are *Error values.
type Client interface {
	// SchemaByID returns the schema text registered under id. Ids are
	// immutable, so results are cached for the life of the client and
	// concurrent first calls for one id share a single request.
	SchemaByID(ctx context.Context, id int) (string, error)
	// Register registers an Avro schema under subject (a no-op returning the
	// existing id when it is already registered there) and returns its id.
	// Results are cached per (subject, schema text).
	Register(ctx context.Context, subject, schema string) (int, error)
	// Lookup returns the id and version under which schema is registered in
	// subject, without registering it. Not cached.
	Lookup(ctx context.Context, subject, schema string) (id, version int, err error)
	// Latest returns the newest live version of subject. Not cached.
	Latest(ctx context.Context, subject string) (id int, schema string, version int, err error)
	// CheckCompatible reports whether Register would accept schema under the
	// subject's compatibility level (checked against the versions the level
	// selects: the latest, or all for *_TRANSITIVE), with the registry's
	// explanations when it would not. A subject without versions accepts
	// anything.
	CheckCompatible(ctx context.Context, subject, schema string) (ok bool, messages []string, err error)
	// Close releases idle connections.
	Close() error
}

const contentType = "application/vnd.schemaregistry.v1+json"

// New returns a Client for the registry at cfg.URL. It applies cfg.Defaults
// and cfg.Validate and does not contact the registry.
func New(cfg Config) (Client, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, user, pass := cfg.endpoint()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	return &client{
		base:       base,
		user:       user,
		pass:       pass,
		tr:         tr,
		hc:         &http.Client{Transport: tr, Timeout: cfg.Timeout},
		ids:        idCache{schemas: map[int]string{}, inflight: map[int]*fetch{}},
		registered: map[regKey]int{},
	}, nil
}

type regKey struct{ subject, schema string }

type client struct {
	base, user, pass string
	tr               *http.Transport
	hc               *http.Client
	ids              idCache

	regMu      sync.RWMutex
	registered map[regKey]int
}

// api returns a srclient bound to ctx. srclient v0.7.4 has no context
// support, so each call gets its own (cheap) srclient whose pre-request hook
// attaches ctx to the request; all of them share one http.Client. srclient's
// own caches are off: this package caches what may be cached.
func (c *client) api(ctx context.Context) *srclient.SchemaRegistryClient {
	sc := srclient.NewSchemaRegistryClient(c.base,
		srclient.WithClient(c.hc),
		srclient.WithPreReqFn(func(r *http.Request) error {
			*r = *r.WithContext(ctx)
			return nil
		}),
	)
	sc.CachingEnabled(false)
	sc.CodecCreationEnabled(false)
	if c.user != "" {
		sc.SetCredentials(c.user, c.pass)
	}
	return sc
}

func (c *client) fail(op, subject string, id int, err error) error {
	e := &Error{Op: op, Subject: subject, ID: id}
	var se srclient.Error
	if errors.As(err, &se) {
		e.Code, e.Message = se.Code, se.Message
		return e
	}
	e.Err = err
	return e
}

func (c *client) SchemaByID(ctx context.Context, id int) (string, error) {
	return c.ids.get(ctx, id, func(ctx context.Context) (string, error) {
		if err := ctx.Err(); err != nil {
			return "", c.fail("schema by id", "", id, err)
		}
		s, err := c.api(ctx).GetSchema(id)
		if err != nil {
			return "", c.fail("schema by id", "", id, err)
		}
		return s.Schema(), nil
	})
}

func (c *client) Register(ctx context.Context, subject, schema string) (int, error) {
	key := regKey{subject, schema}
	c.regMu.RLock()
	id, ok := c.registered[key]
	c.regMu.RUnlock()
	if ok {
		return id, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, c.fail("register", subject, 0, err)
	}
	// CreateSchema posts the schema and then fetches it back by id.
	s, err := c.api(ctx).CreateSchema(subject, schema, srclient.Avro)
	if err != nil {
		return 0, c.fail("register", subject, 0, err)
	}
	c.ids.put(s.ID(), s.Schema())
	c.regMu.Lock()
	c.registered[key] = s.ID()
	c.regMu.Unlock()
	return s.ID(), nil
}

func (c *client) Lookup(ctx context.Context, subject, schema string) (int, int, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, c.fail("lookup", subject, 0, err)
	}
	s, err := c.api(ctx).LookupSchema(subject, schema, srclient.Avro)
	if err != nil {
		return 0, 0, c.fail("lookup", subject, 0, err)
	}
	c.ids.put(s.ID(), s.Schema())
	return s.ID(), s.Version(), nil
}

func (c *client) Latest(ctx context.Context, subject string) (int, string, int, error) {
	if err := ctx.Err(); err != nil {
		return 0, "", 0, c.fail("latest", subject, 0, err)
	}
	s, err := c.api(ctx).GetLatestSchema(subject)
	if err != nil {
		return 0, "", 0, c.fail("latest", subject, 0, err)
	}
	c.ids.put(s.ID(), s.Schema())
	return s.ID(), s.Schema(), s.Version(), nil
}

// CheckCompatible calls POST /compatibility/subjects/{subject}/versions
// ?verbose=true directly: srclient v0.7.4's IsSchemaCompatible needs a fixed
// version (so it cannot honour *_TRANSITIVE levels) and drops the messages.
// It uses the same http.Client, credentials and timeout.
func (c *client) CheckCompatible(ctx context.Context, subject, schema string) (bool, []string, error) {
	const op = "check compatibility"
	body, err := json.Marshal(struct {
		Schema string `json:"schema"`
	}{schema})
	if err != nil {
		return false, nil, c.fail(op, subject, 0, err)
	}
	u := c.base + "/compatibility/subjects/" + url.PathEscape(subject) + "/versions?verbose=true"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return false, nil, c.fail(op, subject, 0, err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", contentType)
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return false, nil, c.fail(op, subject, 0, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return false, nil, c.fail(op, subject, 0, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb struct {
			Code    int    `json:"error_code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &eb) == nil && eb.Code != 0 {
			return false, nil, &Error{Op: op, Subject: subject, Code: eb.Code, Message: eb.Message}
		}
		return false, nil, c.fail(op, subject, 0, fmt.Errorf("unexpected HTTP status %s", resp.Status))
	}
	var out struct {
		IsCompatible *bool    `json:"is_compatible"`
		Messages     []string `json:"messages"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.IsCompatible == nil {
		return false, nil, c.fail(op, subject, 0, fmt.Errorf("unexpected response body %.200q", data))
	}
	return *out.IsCompatible, out.Messages, nil
}

func (c *client) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

// idCache memoizes id -> schema and collapses concurrent misses for one id
// into one request.
type idCache struct {
	mu       sync.RWMutex
	schemas  map[int]string
	inflight map[int]*fetch
}

type fetch struct {
	done   chan struct{}
	schema string
	err    error
}

func (c *idCache) put(id int, schema string) {
	c.mu.Lock()
	c.schemas[id] = schema
	c.mu.Unlock()
}

func (c *idCache) get(ctx context.Context, id int, load func(context.Context) (string, error)) (string, error) {
	c.mu.RLock()
	s, ok := c.schemas[id]
	c.mu.RUnlock()
	if ok {
		return s, nil
	}
	for {
		c.mu.Lock()
		if s, ok := c.schemas[id]; ok {
			c.mu.Unlock()
			return s, nil
		}
		f, waiting := c.inflight[id]
		if !waiting {
			f = &fetch{done: make(chan struct{})}
			c.inflight[id] = f
		}
		c.mu.Unlock()

		if waiting {
			select {
			case <-f.done:
				if f.err == nil {
					return f.schema, nil
				}
				// The request we waited for gave up because of its caller's
				// context; ours may still be fine, so try again.
				if (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) && ctx.Err() == nil {
					continue
				}
				return "", f.err
			case <-ctx.Done():
				return "", &Error{Op: "schema by id", ID: id, Err: ctx.Err()}
			}
		}

		f.schema, f.err = load(ctx)
		c.mu.Lock()
		delete(c.inflight, id)
		if f.err == nil {
			c.schemas[id] = f.schema
		}
		c.mu.Unlock()
		close(f.done)
		return f.schema, f.err
	}
}
