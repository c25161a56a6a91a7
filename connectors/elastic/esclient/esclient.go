// Package esclient is the narrow seam the Elasticsearch connector uses to
// write documents: one _bulk call at a time, index template installation,
// and a liveness check, over github.com/elastic/go-elasticsearch/v8.
//
// Errors are split in two levels. Bulk returns an error only when the whole
// request failed (nothing can be assumed about which documents were
// applied); per-document outcomes come back as ItemResult values whose
// Status a caller classifies with Retryable and Permanent. Whole-request
// errors wrap ErrUnavailable when the cluster could not be reached or
// answered 5xx, and are *RequestError when it answered with an HTTP error.
package esclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/rendezvous-ml/rendezvous/pipeline/jsonenc"
)

// Doc is one document to index. An empty ID lets Elasticsearch generate
// one; a non-empty ID makes the write idempotent (a second write of the
// same ID overwrites the first and increments its version).
type Doc struct {
	Index string
	ID    string
	Body  []byte // a JSON object; newlines are removed before sending
	// Compact says Body is one line of JSON already, as encoding/json
	// writes it. Bulk then sends it as it is, checking only that it is an
	// object on one line (so that it cannot break the request's framing),
	// instead of parsing and compacting it: Elasticsearch refuses a body
	// that is not valid JSON after all as an item of its own.
	Compact bool
}

// ItemResult is the outcome of one document of a Bulk call.
type ItemResult struct {
	Doc     Doc    // the document as given; ID is filled in when Elasticsearch generated it
	Status  int    // HTTP status of the item: 2xx means stored
	Result  string // "created", "updated", ... for stored documents
	ErrType string // Elasticsearch exception type, e.g. "document_parsing_exception"
	Reason  string // Elasticsearch reason, e.g. "[1:15] failed to parse field [ts] of type [date] ..."
	Cause   string // "type: reason" of the underlying cause, when Elasticsearch gave one
}

// OK reports whether the document was stored.
func (r ItemResult) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Retryable reports whether sending the same document again may succeed.
func (r ItemResult) Retryable() bool { return Retryable(r.Status) }

// Permanent reports whether the document will fail again unchanged.
func (r ItemResult) Permanent() bool { return Permanent(r.Status) }

// Indexer writes documents to Elasticsearch.
type Indexer interface {
	// Bulk sends docs in one _bulk request and returns one result per doc,
	// in order. The error is non-nil only when the request as a whole
	// failed; the results are then nil.
	Bulk(ctx context.Context, docs []Doc) ([]ItemResult, error)
	// EnsureTemplate installs (or replaces) the composable index template
	// name with the given JSON body.
	EnsureTemplate(ctx context.Context, name string, body []byte) error
	// Ping checks that the cluster answers and is Elasticsearch 8 or later.
	Ping(ctx context.Context) error
}

// ErrUnavailable is wrapped by whole-request errors caused by the cluster
// being unreachable (connection refused or reset, timeout) or answering
// with a 5xx status.
var ErrUnavailable = errors.New("elasticsearch unavailable")

// ErrNotElasticsearch is wrapped when the server does not identify itself as
// Elasticsearch (missing X-Elastic-Product header) or is older than 8.0.
var ErrNotElasticsearch = errors.New("server is not Elasticsearch 8")

// Status codes of items that esclient refuses before sending.
const (
	// ErrTypeInvalidDoc is the ErrType of an item esclient did not send
	// because its Index was empty or its Body was not a JSON object.
	ErrTypeInvalidDoc = "esclient_invalid_document"
)

// Retryable reports whether a status (of an item or a whole request) is
// worth retrying: 429 (rejected under load) and 5xx.
func Retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// Permanent reports whether a status is a client error that will repeat if
// the same document is sent again: 4xx other than 429, e.g. 400 mapping
// and parse errors, or 409 for a create whose id already exists.
func Permanent(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusTooManyRequests
}

// RequestError is a whole-request failure answered by the cluster with an
// HTTP error status.
type RequestError struct {
	Op      string // "bulk", "put index template", "ping"
	Status  int
	ErrType string // e.g. "es_rejected_execution_exception"; empty if the body was not an ES error
	Reason  string
}

func (e *RequestError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "esclient: %s: status %d", e.Op, e.Status)
	if e.ErrType != "" {
		sb.WriteString(": " + e.ErrType)
	}
	if e.Reason != "" {
		sb.WriteString(": " + e.Reason)
	}
	return sb.String()
}

// Is makes errors.Is(err, ErrUnavailable) true for 5xx answers.
func (e *RequestError) Is(target error) bool {
	return target == ErrUnavailable && e.Status >= 500
}

// IsRetryable reports whether a whole-request error from an Indexer is
// worth retrying: ErrUnavailable, or a 429 answer. A cancelled or expired
// caller context is not retryable.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	var re *RequestError
	return errors.As(err, &re) && Retryable(re.Status)
}

type client struct {
	cfg Config
	es  *elasticsearch.Client
	tr  *http.Transport
}

// New returns an Indexer for cfg after applying Defaults and Validate. It
// does not contact the cluster; call Ping for that. The returned value also
// implements io.Closer, which releases idle connections.
func New(cfg Config) (Indexer, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CACert != "" {
		pemBytes, err := cfg.caPEM()
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pemBytes)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses:    append([]string(nil), cfg.URLs...),
		Username:     cfg.Username,
		Password:     cfg.Password,
		APIKey:       cfg.APIKey,
		Transport:    tr,
		DisableRetry: true, // one call is one request; callers own retries
	})
	if err != nil {
		return nil, fmt.Errorf("esclient: creating client: %w", err)
	}
	return &client{cfg: cfg, es: es, tr: tr}, nil
}

// Close releases idle connections.
func (c *client) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

func (c *client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.cfg.Timeout > 0 {
		return context.WithTimeout(ctx, c.cfg.Timeout)
	}
	return context.WithCancel(ctx)
}

type bulkItem struct {
	ID     string `json:"_id"`
	Result string `json:"result"`
	Status int    `json:"status"`
	Error  *struct {
		Type     string `json:"type"`
		Reason   string `json:"reason"`
		CausedBy *struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"caused_by"`
	} `json:"error"`
}

func (c *client) Bulk(ctx context.Context, docs []Doc) ([]ItemResult, error) {
	results := make([]ItemResult, len(docs))
	body, sent := BulkBody("index", docs, results)
	if len(sent) == 0 {
		return results, nil
	}
	cctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res, err := esapi.BulkRequest{Body: bytes.NewReader(body)}.Do(cctx, c.es)
	if err != nil {
		return nil, transportError(ctx, "bulk", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		return nil, responseError("bulk", res)
	}
	var parsed BulkResponse
	if err := json.NewDecoder(res.Body).Decode(&parsed); err != nil {
		return nil, transportError(ctx, "bulk", fmt.Errorf("reading response: %w", err))
	}
	if err := parsed.Apply(results, sent); err != nil {
		return nil, fmt.Errorf("esclient: bulk: %w", err)
	}
	return results, nil
}

// BulkBody is the NDJSON body of a _bulk request: for each document an
// action line (action is "index" or "create") and the document's source.
// A document with no index or a body that is not a JSON object is left
// out, and its result says so (ErrTypeInvalidDoc); sent lists the
// positions of the documents written. results must be as long as docs.
func BulkBody(action string, docs []Doc, results []ItemResult) (body []byte, sent []int) {
	size := 0
	for _, d := range docs {
		size += len(`{"":{"_index":"","_id":""}}`+"\n\n") + len(action) + len(d.Index) + len(d.ID) + len(d.Body)
	}
	body = make([]byte, 0, size)
	sent = make([]int, 0, len(docs))
	for i, d := range docs {
		results[i].Doc = d
		if d.Index == "" {
			results[i].Status, results[i].ErrType, results[i].Reason = http.StatusBadRequest, ErrTypeInvalidDoc, "esclient: document has no index"
			continue
		}
		start := len(body)
		body = append(body, `{"`...)
		body = append(body, action...)
		body = append(body, `":{"_index":`...)
		body = jsonenc.AppendString(body, d.Index)
		if d.ID != "" {
			body = append(body, `,"_id":`...)
			body = jsonenc.AppendString(body, d.ID)
		}
		body = append(body, "}}\n"...)
		src := len(body)
		var err error
		if d.Compact {
			if b := d.Body; len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' || bytes.IndexByte(b, '\n') >= 0 {
				err = errors.New("marked compact but not an object on one line")
			}
			body = append(body, d.Body...)
		} else {
			buf := bytes.NewBuffer(body)
			err = json.Compact(buf, d.Body)
			body = buf.Bytes()
		}
		if err != nil || len(body) == src || body[src] != '{' {
			reason := "esclient: document body is not a JSON object"
			if err != nil {
				reason += ": " + err.Error()
			}
			results[i].Status, results[i].ErrType, results[i].Reason = http.StatusBadRequest, ErrTypeInvalidDoc, reason
			body = body[:start]
			continue
		}
		body = append(body, '\n')
		sent = append(sent, i)
	}
	return body, sent
}

// BulkResponse is the body of a _bulk answer, for callers that send their
// own bulk requests (create actions, for data streams).
type BulkResponse struct {
	Errors bool        `json:"errors"`
	Items  []bulkEntry `json:"items"`
}

// bulkEntry is an item of a _bulk answer: an object with one key, the
// action's name. Fields rather than a map spare a map per document.
type bulkEntry struct {
	Index  *bulkItem `json:"index"`
	Create *bulkItem `json:"create"`
	Update *bulkItem `json:"update"`
	Delete *bulkItem `json:"delete"`
}

// Apply copies each item's outcome into results: the k-th item answers the
// document at results[sent[k]].
func (b BulkResponse) Apply(results []ItemResult, sent []int) error {
	if len(b.Items) != len(sent) {
		return fmt.Errorf("response has %d items for %d documents", len(b.Items), len(sent))
	}
	for k, entry := range b.Items {
		r := &results[sent[k]]
		for _, it := range []*bulkItem{entry.Index, entry.Create, entry.Update, entry.Delete} {
			if it == nil {
				continue
			}
			r.Status = it.Status
			r.Result = it.Result
			if r.Doc.ID == "" {
				r.Doc.ID = it.ID
			}
			if it.Error != nil {
				r.ErrType, r.Reason = it.Error.Type, it.Error.Reason
				if cb := it.Error.CausedBy; cb != nil {
					r.Cause = cb.Type + ": " + cb.Reason
				}
				if r.Status < 300 { // an error without a status is still an error
					r.Status = http.StatusInternalServerError
				}
			}
		}
	}
	return nil
}

func (c *client) EnsureTemplate(ctx context.Context, name string, body []byte) error {
	if name == "" {
		return errors.New("esclient: put index template: empty template name")
	}
	if !json.Valid(body) {
		return errors.New("esclient: put index template: body is not valid JSON")
	}
	cctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res, err := esapi.IndicesPutIndexTemplateRequest{Name: name, Body: bytes.NewReader(body)}.Do(cctx, c.es)
	if err != nil {
		return transportError(ctx, "put index template", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		return responseError("put index template", res)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	return nil
}

func (c *client) Ping(ctx context.Context) error {
	cctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res, err := esapi.InfoRequest{}.Do(cctx, c.es)
	if err != nil {
		return transportError(ctx, "ping", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		return responseError("ping", res)
	}
	var info struct {
		Version struct {
			Number string `json:"number"`
		} `json:"version"`
	}
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil {
		return fmt.Errorf("esclient: ping: %w: unreadable cluster info: %v", ErrNotElasticsearch, err)
	}
	major, _, _ := strings.Cut(info.Version.Number, ".")
	if n, err := strconv.Atoi(major); err != nil || n < 8 {
		return fmt.Errorf("esclient: ping: %w: version %q", ErrNotElasticsearch, info.Version.Number)
	}
	return nil
}

// transportError wraps a failure to get an HTTP answer. A cancelled or
// expired caller context is reported as such; anything else (refused,
// reset, our own Timeout) wraps ErrUnavailable.
func transportError(parent context.Context, op string, err error) error {
	if perr := parent.Err(); perr != nil {
		return fmt.Errorf("esclient: %s: %w", op, perr)
	}
	if strings.Contains(err.Error(), "not Elasticsearch") {
		return fmt.Errorf("esclient: %s: %w: %v", op, ErrNotElasticsearch, err)
	}
	var unknownAuthority x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var verifyErr *tls.CertificateVerificationError
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostErr) || errors.As(err, &verifyErr) {
		return fmt.Errorf("esclient: %s: TLS: %w", op, err)
	}
	return fmt.Errorf("esclient: %s: %w: %w", op, ErrUnavailable, err)
}

// responseError turns an HTTP error answer into a *RequestError.
func responseError(op string, res *esapi.Response) error {
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	re := &RequestError{Op: op, Status: res.StatusCode}
	var structured struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &structured) == nil && len(structured.Error) > 0 {
		var obj struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		}
		var s string
		switch {
		case json.Unmarshal(structured.Error, &obj) == nil && obj.Type != "":
			re.ErrType, re.Reason = obj.Type, obj.Reason
		case json.Unmarshal(structured.Error, &s) == nil:
			re.Reason = s
		}
	} else if len(body) > 0 {
		re.Reason = strings.TrimSpace(string(body))
		if len(re.Reason) > 200 {
			re.Reason = re.Reason[:200] + "..."
		}
	}
	return re
}
