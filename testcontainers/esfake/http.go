package esfake

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

const compatJSON = "application/vnd.elasticsearch+json;compatible-with=8"

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	isBulk := strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/_bulk")

	s.mu.Lock()
	if isBulk {
		s.stats.BulkCalls++
	}
	down := s.downFlag
	latency := s.latency
	s.mu.Unlock()

	if s.closed.Load() || down {
		s.countInjected()
		_, _ = io.Copy(io.Discard, r.Body)
		s.writeError(w, r, http.StatusServiceUnavailable, injectedError(http.StatusServiceUnavailable, r.URL.Path))
		return
	}
	if latency != nil {
		if d := latency(r); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			case <-s.closeCh:
				t.Stop()
				return
			}
		}
	}
	if st := s.nextFailure(r, isBulk); st != 0 {
		_, _ = io.Copy(io.Discard, r.Body)
		if st == http.StatusUnauthorized {
			setAuthenticate(w)
		}
		s.writeError(w, r, st, injectedError(st, r.URL.Path))
		return
	}
	if e := s.authenticate(r); e != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		setAuthenticate(w)
		s.writeError(w, r, http.StatusUnauthorized, e)
		return
	}
	body, status, e := s.readBody(r)
	if e != nil || status != 0 {
		if status == http.StatusRequestEntityTooLarge {
			w.WriteHeader(status) // ES answers 413 with an empty body
			return
		}
		s.writeError(w, r, status, e)
		return
	}
	if len(body) > 0 {
		if msg := checkContentType(r.Header.Get("Content-Type")); msg != "" {
			s.writeRaw(w, r, http.StatusNotAcceptable, map[string]any{"error": msg, "status": http.StatusNotAcceptable})
			return
		}
	}
	s.route(w, r, body)
}

func (s *Server) countInjected() {
	s.mu.Lock()
	s.stats.InjectedFailures++
	s.mu.Unlock()
}

func (s *Server) nextFailure(r *http.Request, isBulk bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := 0
	switch {
	case len(s.failAll) > 0:
		st, s.failAll = s.failAll[0], s.failAll[1:]
	case isBulk && len(s.failBulk) > 0:
		st, s.failBulk = s.failBulk[0], s.failBulk[1:]
	case s.failFunc != nil:
		st = s.failFunc(r.Method, r.URL.Path)
	}
	if st != 0 {
		s.stats.InjectedFailures++
	}
	return st
}

func setAuthenticate(w http.ResponseWriter) {
	w.Header().Add("WWW-Authenticate", `Basic realm="security", charset="UTF-8"`)
	w.Header().Add("WWW-Authenticate", `ApiKey`)
}

func (s *Server) authenticate(r *http.Request) *esError {
	if s.cfg.user == "" && s.cfg.apiKey == "" {
		return nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return newErr("security_exception", "missing authentication credentials for REST request [%s]", r.URL.RequestURI())
	}
	scheme, cred, _ := strings.Cut(h, " ")
	if s.cfg.apiKey != "" && strings.EqualFold(scheme, "ApiKey") {
		if strings.TrimSpace(cred) == s.cfg.apiKey {
			return nil
		}
		return newErr("security_exception", "unable to authenticate with provided credentials and anonymous access is not allowed for this request")
	}
	if s.cfg.user != "" {
		if u, p, ok := r.BasicAuth(); ok {
			if u == s.cfg.user && p == s.cfg.pass {
				return nil
			}
			return newErr("security_exception", "unable to authenticate user [%s] for REST request [%s]", u, r.URL.RequestURI())
		}
	}
	return newErr("security_exception", "unable to authenticate with provided credentials and anonymous access is not allowed for this request")
}

func (s *Server) readBody(r *http.Request) ([]byte, int, *esError) {
	var rd io.Reader = r.Body
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, http.StatusBadRequest, newErr("parse_exception", "failed to decompress request body: %v", err)
		}
		defer gz.Close()
		rd = gz
	}
	var body []byte
	var err error
	if n := r.ContentLength; n > 0 && n <= s.cfg.maxContent && rd == r.Body {
		// The size is known: one allocation instead of ReadAll's doublings.
		body = make([]byte, 0, n+1)
		body, err = readAllInto(body, io.LimitReader(rd, s.cfg.maxContent+1))
	} else {
		body, err = io.ReadAll(io.LimitReader(rd, s.cfg.maxContent+1))
	}
	if err != nil {
		return nil, http.StatusBadRequest, newErr("parse_exception", "failed to read request body: %v", err)
	}
	if int64(len(body)) > s.cfg.maxContent {
		_, _ = io.Copy(io.Discard, r.Body)
		return nil, http.StatusRequestEntityTooLarge, nil
	}
	return body, 0, nil
}

// readAllInto is io.ReadAll appending to b.
func readAllInto(b []byte, rd io.Reader) ([]byte, error) {
	for {
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow, for a body longer than announced
		}
	}
}

func checkContentType(ct string) string {
	if ct == "" {
		return "Content-Type header [] is not supported"
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Sprintf("Content-Type header [%s] is not supported", ct)
	}
	switch mt {
	case "application/json", "application/x-ndjson", "application/vnd.elasticsearch+json",
		"application/vnd.elasticsearch+x-ndjson":
		return ""
	}
	return fmt.Sprintf("Content-Type header [%s] is not supported", ct)
}

// writeJSON writes v with ES's headers; ?pretty indents.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if _, ok := r.URL.Query()["pretty"]; ok {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		fmt.Fprintf(&buf, `{"error":{"type":"exception","reason":%q},"status":500}`, err.Error())
	}
	out := buf.Bytes()
	if fp := r.URL.Query().Get("filter_path"); fp != "" && status < 300 {
		out = applyFilterPath(out, fp)
	}
	s.writeBytes(w, r, status, out)
}

// writeCompactJSON is writeJSON for a document already encoded compactly,
// as encoding/json would have: it saves encoding/json the work of checking
// it again.
func (s *Server) writeCompactJSON(w http.ResponseWriter, r *http.Request, status int, b []byte) {
	if _, ok := r.URL.Query()["pretty"]; ok {
		s.writeJSON(w, r, status, json.RawMessage(b))
		return
	}
	out := append(b, '\n')
	if fp := r.URL.Query().Get("filter_path"); fp != "" && status < 300 {
		out = applyFilterPath(out, fp)
	}
	s.writeBytes(w, r, status, out)
}

func (s *Server) writeRaw(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, _ := json.Marshal(v)
	s.writeBytes(w, r, status, b)
}

func (s *Server) writeBytes(w http.ResponseWriter, r *http.Request, status int, b []byte) {
	ct := "application/json"
	if strings.Contains(r.Header.Get("Accept"), "compatible-with=8") {
		ct = compatJSON
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, status int, e *esError) {
	body := errorBody(status, e)
	if _, ok := r.URL.Query()["pretty"]; ok {
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") == nil {
			body = buf.Bytes()
		}
	}
	s.writeBytes(w, r, status, body)
}

func (s *Server) ack(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, map[string]any{"acknowledged": true})
}

// route dispatches on path segments, mirroring ES's REST handlers.
func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	path := strings.Trim(r.URL.Path, "/")
	var seg []string
	if path != "" {
		seg = strings.Split(path, "/")
	}
	m := r.Method
	allow := func(methods ...string) bool {
		for _, x := range methods {
			if m == x {
				return true
			}
		}
		s.writeRaw(w, r, http.StatusMethodNotAllowed, map[string]any{
			"error":  fmt.Sprintf("Incorrect HTTP method for uri [%s] and method [%s], allowed: [%s]", r.URL.RequestURI(), m, strings.Join(methods, ", ")),
			"status": http.StatusMethodNotAllowed,
		})
		return false
	}
	n := len(seg)
	switch {
	case n == 0:
		if allow("GET", "HEAD") {
			s.handleInfo(w, r)
		}
	case seg[0] == "_bulk" && n == 1:
		if allow("POST", "PUT") {
			s.handleBulk(w, r, body, "")
		}
	case n == 2 && seg[1] == "_bulk":
		if allow("POST", "PUT") {
			s.handleBulk(w, r, body, seg[0])
		}
	case seg[0] == "_index_template":
		if n == 1 {
			if allow("GET") {
				s.handleGetTemplates(w, r, "*")
			}
		} else if n == 2 && allow("GET", "HEAD", "PUT", "POST", "DELETE") {
			s.handleTemplate(w, r, seg[1], body)
		}
	case seg[0] == "_component_template":
		if n == 1 {
			if allow("GET") {
				s.handleGetComponents(w, r, "*")
			}
		} else if n == 2 && allow("GET", "HEAD", "PUT", "POST", "DELETE") {
			s.handleComponent(w, r, seg[1], body)
		}
	case seg[0] == "_ilm" && n >= 2 && seg[1] == "policy":
		name := ""
		if n == 3 {
			name = seg[2]
		}
		if allow("GET", "PUT", "DELETE") {
			s.handleILM(w, r, name, body)
		}
	case seg[0] == "_cat" && n >= 2 && seg[1] == "indices":
		pattern := "*"
		if n == 3 {
			pattern = seg[2]
		}
		if allow("GET") {
			s.handleCatIndices(w, r, pattern)
		}
	case seg[0] == "_cluster" && n >= 2 && seg[1] == "health":
		if allow("GET") {
			s.handleHealth(w, r)
		}
	case seg[0] == "_refresh" && n == 1, n == 2 && seg[1] == "_refresh":
		target := "*"
		if n == 2 {
			target = seg[0]
		}
		if allow("GET", "POST") {
			s.handleRefresh(w, r, target)
		}
	case seg[0] == "_count" && n == 1, n == 2 && seg[1] == "_count":
		target := "*"
		if n == 2 {
			target = seg[0]
		}
		if allow("GET", "POST") {
			s.handleCount(w, r, target, body)
		}
	case seg[0] == "_search" && n == 1, n == 2 && seg[1] == "_search":
		target := "*"
		if n == 2 {
			target = seg[0]
		}
		if allow("GET", "POST") {
			s.handleSearch(w, r, target, body)
		}
	case seg[0] == "_mapping" && n == 1, n == 2 && seg[1] == "_mapping":
		target := "*"
		if n == 2 {
			target = seg[0]
		}
		if allow("GET") {
			s.handleGetMapping(w, r, target)
		}
	case n == 2 && (seg[1] == "_doc" || seg[1] == "_create"):
		if allow("POST") {
			s.handleDocWrite(w, r, seg[0], "", seg[1] == "_create", body)
		}
	case n == 3 && seg[1] == "_doc":
		switch m {
		case "GET", "HEAD":
			s.handleGetDoc(w, r, seg[0], seg[2])
		case "PUT", "POST":
			s.handleDocWrite(w, r, seg[0], seg[2], r.URL.Query().Get("op_type") == "create", body)
		case "DELETE":
			s.handleDocDelete(w, r, seg[0], seg[2])
		default:
			allow("GET", "HEAD", "PUT", "POST", "DELETE")
		}
	case n == 3 && seg[1] == "_create":
		if allow("PUT", "POST") {
			s.handleDocWrite(w, r, seg[0], seg[2], true, body)
		}
	case n == 1 && !strings.HasPrefix(seg[0], "_"):
		switch m {
		case "PUT":
			s.handleCreateIndex(w, r, seg[0], body)
		case "DELETE":
			s.handleDeleteIndex(w, r, seg[0])
		case "GET", "HEAD":
			s.handleGetIndex(w, r, seg[0])
		default:
			allow("GET", "HEAD", "PUT", "DELETE")
		}
	default:
		s.writeRaw(w, r, http.StatusBadRequest, map[string]any{
			"error":  fmt.Sprintf("no handler found for uri [%s] and method [%s]", r.URL.RequestURI(), m),
			"status": http.StatusBadRequest,
		})
	}
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	sum := sha256.Sum256([]byte(s.cfg.clusterName))
	s.writeJSON(w, r, http.StatusOK, map[string]any{
		"name":         s.cfg.nodeName,
		"cluster_name": s.cfg.clusterName,
		"cluster_uuid": base64.RawURLEncoding.EncodeToString(sum[:16]),
		"version": map[string]any{
			"number":                              s.cfg.version,
			"build_flavor":                        "default",
			"build_type":                          "docker",
			"build_hash":                          hex.EncodeToString(sum[:20]),
			"build_date":                          "2025-01-01T00:00:00.000000000Z",
			"build_snapshot":                      false,
			"lucene_version":                      "9.12.0",
			"minimum_wire_compatibility_version":  "7.17.0",
			"minimum_index_compatibility_version": "7.0.0",
		},
		"tagline": "You Know, for Search",
	})
}
