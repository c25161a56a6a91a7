// Package oip runs a model that lives on a model server speaking the Open
// Inference Protocol, the KServe v2 REST API that MLServer, KServe and
// Triton serve:
//
//	GET  /v2/health/ready                           the server is ready
//	GET  /v2/models/{name}[/versions/{v}]/ready     the model is loaded
//	GET  /v2/models/{name}[/versions/{v}]           its inputs and outputs
//	POST /v2/models/{name}[/versions/{v}]/infer     a prediction
//
// A Client is an evaluator.Model: a feature map becomes one row of an FP64
// input tensor, in the order of Config.Features, and the label output (BYTES,
// or an integer class index into Config.Classes) plus an optional
// probability output become the Prediction. Calls made at the same time
// within Config.BatchWindow share one infer request of shape [k, n], which is
// split back row by row. Every call is bounded by Config.Timeout; a failed
// call is retried only while time remains before the caller's deadline.
package oip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sentinel errors. Every error of a Client wraps one of them (or an
// evaluator input error, or the caller's context error) with the model's
// name and the server's URL.
var (
	// ErrNotReady: the server or the model is not ready, not there (404),
	// or the server cannot be reached.
	ErrNotReady = errors.New("model server not ready")
	// ErrTimeout: no answer within the call timeout, or the caller's
	// deadline passed.
	ErrTimeout = errors.New("model server timeout")
	// ErrBadResponse: the server answered with an error status, or with a
	// body that is not the infer response the client expects.
	ErrBadResponse = errors.New("bad response from model server")
	// ErrMismatch: the model's metadata does not fit the configuration
	// (input name, datatype or width, outputs).
	ErrMismatch = errors.New("model metadata does not match the configuration")
)

// maxBody caps what the client reads of one response.
const maxBody = 16 << 20

// probeTimeout bounds a readiness or metadata call whose context has no
// deadline.
const probeTimeout = 2 * time.Second

// Client calls one model on one server. It is safe for concurrent use.
type Client struct {
	cfg       Config
	hc        *http.Client
	own       *http.Transport // nil when cfg.Transport is used
	modelPath string          // URL + /v2/models/{name}[/versions/{v}]
	inferURL  string

	mu       sync.Mutex
	pending  *batch
	inflight sync.WaitGroup
	learned  string // the version the metadata reported
}

// New checks cfg and builds a client. It makes no call: Check tells whether
// the server and the model are ready.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("oip config: %w", err)
	}
	cfg.Features = slices.Clone(cfg.Features)
	cfg.Classes = slices.Clone(cfg.Classes)
	c := &Client{cfg: cfg}
	rt := cfg.Transport
	if rt == nil {
		c.own = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        cfg.MaxIdleConnsPerHost,
			MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost,
			IdleConnTimeout:     90 * time.Second,
		}
		rt = c.own
	}
	c.hc = &http.Client{Transport: rt}
	c.modelPath = strings.TrimRight(cfg.URL, "/") + "/v2/models/" + url.PathEscape(cfg.Model)
	if cfg.Version != "" {
		c.modelPath += "/versions/" + url.PathEscape(cfg.Version)
	}
	c.inferURL = c.modelPath + "/infer"
	return c, nil
}

// Close waits for the infer requests in flight and closes the idle
// connections of the client's own transport.
func (c *Client) Close() {
	c.inflight.Wait()
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
}

// Name is the model's name on the server.
func (c *Client) Name() string { return c.cfg.Model }

// Version is the configured version or, when none is, the single version
// the model's metadata listed at the last Check; else empty.
func (c *Client) Version() string {
	if c.cfg.Version != "" {
		return c.cfg.Version
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.learned
}

// Features returns the feature names in input column order (a copy).
func (c *Client) Features() []string { return slices.Clone(c.cfg.Features) }

// Config returns the client's configuration.
func (c *Client) Config() Config { return c.cfg }

func (c *Client) wrap(err error) error {
	return fmt.Errorf("oip: model %q at %s: %w", c.cfg.Model, c.cfg.URL, err)
}

// ServerReady calls GET /v2/health/ready.
func (c *Client) ServerReady(ctx context.Context) error {
	return c.probe(ctx, "server", strings.TrimRight(c.cfg.URL, "/")+"/v2/health/ready")
}

// ModelReady calls GET /v2/models/{name}[/versions/{v}]/ready.
func (c *Client) ModelReady(ctx context.Context) error {
	return c.probe(ctx, "model", c.modelPath+"/ready")
}

func (c *Client) probe(ctx context.Context, what, u string) error {
	resp, body, err := c.get(ctx, u)
	if err != nil {
		return c.wrap(fmt.Errorf("%s readiness: %w", what, err))
	}
	if resp.StatusCode != http.StatusOK {
		return c.wrap(fmt.Errorf("%w: %s readiness: GET %s: status %d%s", ErrNotReady, what, u, resp.StatusCode, snippet(body)))
	}
	return nil
}

// TensorMetadata describes one input or output of a model.
type TensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// Metadata is a model's metadata, GET /v2/models/{name}[/versions/{v}].
type Metadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions"`
	Platform string           `json:"platform"`
	Inputs   []TensorMetadata `json:"inputs"`
	Outputs  []TensorMetadata `json:"outputs"`
}

// Metadata fetches the model's metadata.
func (c *Client) Metadata(ctx context.Context) (Metadata, error) {
	resp, body, err := c.get(ctx, c.modelPath)
	if err != nil {
		return Metadata{}, c.wrap(fmt.Errorf("metadata: %w", err))
	}
	if resp.StatusCode != http.StatusOK {
		return Metadata{}, c.wrap(fmt.Errorf("metadata: %w", statusErr(resp.StatusCode, body)))
	}
	var md Metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return Metadata{}, c.wrap(fmt.Errorf("%w: metadata: %w", ErrBadResponse, err))
	}
	return md, nil
}

// Check tells whether the model can serve: the server is ready, the model
// is ready, and its metadata fits the configuration (see CheckMetadata).
func (c *Client) Check(ctx context.Context) error {
	if err := c.ServerReady(ctx); err != nil {
		return err
	}
	if err := c.ModelReady(ctx); err != nil {
		return err
	}
	md, err := c.Metadata(ctx)
	if err != nil {
		return err
	}
	if err := c.CheckMetadata(md); err != nil {
		return err
	}
	if len(md.Versions) == 1 {
		c.mu.Lock()
		c.learned = md.Versions[0]
		c.mu.Unlock()
	}
	return nil
}

// CheckMetadata checks what the metadata declares against the
// configuration. A server may declare no inputs or outputs (MLServer does
// not unless its model settings list them); what is declared must fit:
// the input is FP64 with len(Features) columns, the label output is BYTES
// or an integer (then with Classes), the probability output is a float of
// len(Classes) columns.
func (c *Client) CheckMetadata(md Metadata) error {
	mismatch := func(format string, args ...any) error {
		return c.wrap(fmt.Errorf("%w: %s", ErrMismatch, fmt.Sprintf(format, args...)))
	}
	if md.Name != "" && md.Name != c.cfg.Model {
		return mismatch("the metadata names model %q", md.Name)
	}
	if len(md.Inputs) > 0 {
		in, ok := find(md.Inputs, c.cfg.InputName)
		if !ok {
			return mismatch("no input %q (inputs: %s)", c.cfg.InputName, names(md.Inputs))
		}
		if in.Datatype != "FP64" {
			return mismatch("input %q is %s, the client sends FP64", in.Name, in.Datatype)
		}
		if n := len(in.Shape); n > 0 && in.Shape[n-1] != -1 && in.Shape[n-1] != int64(len(c.cfg.Features)) {
			return mismatch("input %q has shape %v, the client sends %d features per row", in.Name, in.Shape, len(c.cfg.Features))
		}
	}
	if len(md.Outputs) > 0 {
		out, ok := find(md.Outputs, c.cfg.LabelOutput)
		if !ok {
			return mismatch("no output %q (outputs: %s)", c.cfg.LabelOutput, names(md.Outputs))
		}
		switch {
		case out.Datatype == "BYTES":
		case isInt(out.Datatype) || isFloat(out.Datatype):
			if len(c.cfg.Classes) == 0 {
				return mismatch("label output %q is a %s class index: the classes are needed to name it", out.Name, out.Datatype)
			}
		default:
			return mismatch("label output %q is %s, want BYTES or an integer class index", out.Name, out.Datatype)
		}
		if c.cfg.ProbaOutput != "" {
			p, ok := find(md.Outputs, c.cfg.ProbaOutput)
			if !ok {
				return mismatch("no output %q (outputs: %s)", c.cfg.ProbaOutput, names(md.Outputs))
			}
			if !isFloat(p.Datatype) {
				return mismatch("probability output %q is %s, want FP32 or FP64", p.Name, p.Datatype)
			}
			if n := len(p.Shape); n > 0 && p.Shape[n-1] != -1 && p.Shape[n-1] != int64(len(c.cfg.Classes)) {
				return mismatch("probability output %q has shape %v, want %d columns, one per class", p.Name, p.Shape, len(c.cfg.Classes))
			}
		}
	}
	return nil
}

func find(ts []TensorMetadata, name string) (TensorMetadata, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return TensorMetadata{}, false
}

func names(ts []TensorMetadata) string {
	var out []string
	for _, t := range ts {
		out = append(out, fmt.Sprintf("%s %s%v", t.Name, t.Datatype, t.Shape))
	}
	return strings.Join(out, ", ")
}

// get runs a GET bounded by ctx, or by probeTimeout when ctx has no
// deadline, and reads the body.
func (c *Client) get(ctx context.Context, u string) (*http.Response, []byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probeTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	return c.do(req)
}

// do sends req and reads the whole body, so the connection goes back to
// the pool. Transport errors come back wrapped in ErrTimeout or
// ErrNotReady.
func (c *Client) do(req *http.Request) (*http.Response, []byte, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, transportErr(req.Context(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, nil, transportErr(req.Context(), err)
	}
	if len(body) > maxBody {
		return nil, nil, fmt.Errorf("%w: the response is over %d bytes", ErrBadResponse, maxBody)
	}
	return resp, body, nil
}

func transportErr(ctx context.Context, err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrNotReady, err)
}

// statusErr classifies an error status: 404 (no such model or version)
// and 503 are not ready, anything else is a bad response.
func statusErr(code int, body []byte) error {
	if code == http.StatusNotFound || code == http.StatusServiceUnavailable {
		return fmt.Errorf("%w: status %d%s", ErrNotReady, code, snippet(body))
	}
	return fmt.Errorf("%w: status %d%s", ErrBadResponse, code, snippet(body))
}

// snippet is the start of an error body, for messages.
func snippet(body []byte) string {
	s := strings.TrimSpace(string(body))
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return ": " + s
}
