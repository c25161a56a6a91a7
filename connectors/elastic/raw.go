package elastic

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
	"os"
	"strings"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"
)

// rawClient makes the calls esclient does not: bulk "create" actions (the
// only write a data stream takes) and lifecycle policies. Its errors follow
// esclient's conventions: a whole-request failure wraps
// esclient.ErrUnavailable when the cluster could not be reached or answered
// 5xx, and is an *esclient.RequestError when it answered an HTTP error.
type rawClient struct {
	es  *elasticsearch.Client
	cfg esclient.Config
}

func newRawClient(cfg esclient.Config) (*rawClient, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CACert != "" {
		pemBytes := []byte(cfg.CACert)
		if !strings.Contains(cfg.CACert, "-----BEGIN") {
			b, err := os.ReadFile(cfg.CACert)
			if err != nil {
				return nil, fmt.Errorf("es-ca: %w", err)
			}
			pemBytes = b
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, errors.New("es-ca: no PEM certificate found")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses:    append([]string(nil), cfg.URLs...),
		Username:     cfg.Username,
		Password:     cfg.Password,
		APIKey:       cfg.APIKey,
		Transport:    tr,
		DisableRetry: true,
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	return &rawClient{es: es, cfg: cfg}, nil
}

func (c *rawClient) do(ctx context.Context, op string, req esapi.Request) (*esapi.Response, error) {
	cctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	res, err := req.Do(cctx, c.es)
	if err != nil {
		cancel()
		if perr := ctx.Err(); perr != nil {
			return nil, fmt.Errorf("%s: %w", op, perr)
		}
		return nil, fmt.Errorf("%s: %w: %w", op, esclient.ErrUnavailable, err)
	}
	res.Body = cancelOnClose{res.Body, cancel}
	if res.IsError() {
		defer res.Body.Close()
		return nil, requestError(op, res)
	}
	return res, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error { err := c.ReadCloser.Close(); c.cancel(); return err }

// requestError turns an HTTP error answer into an *esclient.RequestError.
func requestError(op string, res *esapi.Response) error {
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	re := &esclient.RequestError{Op: op, Status: res.StatusCode}
	var e struct {
		Error struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Type != "" {
		re.ErrType, re.Reason = e.Error.Type, e.Error.Reason
	} else {
		re.Reason = strings.TrimSpace(string(body))
		if len(re.Reason) > 200 {
			re.Reason = re.Reason[:200] + "..."
		}
	}
	return re
}

// BulkCreate sends docs as bulk "create" actions and returns one result per
// doc, in order, like esclient.Indexer.Bulk.
func (c *rawClient) BulkCreate(ctx context.Context, docs []esclient.Doc) ([]esclient.ItemResult, error) {
	results := make([]esclient.ItemResult, len(docs))
	body, sent := esclient.BulkBody("create", docs, results)
	if len(sent) == 0 {
		return results, nil
	}
	res, err := c.do(ctx, "bulk", esapi.BulkRequest{Body: bytes.NewReader(body)})
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var parsed esclient.BulkResponse
	if err := json.NewDecoder(res.Body).Decode(&parsed); err != nil {
		return nil, fmt.Errorf("bulk: reading response: %w: %w", esclient.ErrUnavailable, err)
	}
	if err := parsed.Apply(results, sent); err != nil {
		return nil, fmt.Errorf("bulk: %w", err)
	}
	return results, nil
}

// PutILMPolicy installs (or replaces) a lifecycle policy. body is the JSON
// of PUT _ilm/policy/<name>: {"policy": {...}}.
func (c *rawClient) PutILMPolicy(ctx context.Context, name string, body []byte) error {
	res, err := c.do(ctx, "put lifecycle policy", esapi.ILMPutLifecycleRequest{Policy: name, Body: bytes.NewReader(body)})
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return nil
}

// ILMPolicyExists reports whether the lifecycle policy exists.
func (c *rawClient) ILMPolicyExists(ctx context.Context, name string) (bool, error) {
	res, err := c.do(ctx, "get lifecycle policy", esapi.ILMGetLifecycleRequest{Policy: name})
	var re *esclient.RequestError
	if errors.As(err, &re) && re.Status == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return true, nil
}
