package esfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// esError is an Elasticsearch exception as it appears on the wire: a type in
// snake_case, a reason, optional metadata (index, shard, resource.id ...) and
// an optional cause.
type esError struct {
	Type     string
	Reason   string
	Meta     map[string]any
	CausedBy *esError
	// header, when set, is echoed inside the error object as ES does for
	// security exceptions.
	Header map[string][]string
}

func newErr(typ, format string, args ...any) *esError {
	return &esError{Type: typ, Reason: fmt.Sprintf(format, args...)}
}

func (e *esError) withCause(c *esError) *esError {
	e.CausedBy = c
	return e
}

func (e *esError) withMeta(kv ...any) *esError {
	if e.Meta == nil {
		e.Meta = map[string]any{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		e.Meta[kv[i].(string)] = kv[i+1]
	}
	return e
}

func (e *esError) Error() string { return e.Type + ": " + e.Reason }

// MarshalJSON writes the exception with a stable key order: type, reason,
// metadata (sorted), header, caused_by.
func (e *esError) MarshalJSON() ([]byte, error) {
	return e.marshal(true)
}

func (e *esError) marshal(withCause bool) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"type":`)
	writeJSON(&b, e.Type)
	b.WriteString(`,"reason":`)
	writeJSON(&b, e.Reason)
	keys := make([]string, 0, len(e.Meta))
	for k := range e.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte(',')
		writeJSON(&b, k)
		b.WriteByte(':')
		writeJSON(&b, e.Meta[k])
	}
	if len(e.Header) > 0 {
		b.WriteString(`,"header":`)
		writeJSON(&b, e.Header)
	}
	if withCause && e.CausedBy != nil {
		b.WriteString(`,"caused_by":`)
		cb, err := e.CausedBy.marshal(true)
		if err != nil {
			return nil, err
		}
		b.Write(cb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeJSON(b *bytes.Buffer, v any) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	// Encoder appends a newline; drop it.
	if n := b.Len(); n > 0 && b.Bytes()[n-1] == '\n' {
		b.Truncate(n - 1)
	}
}

// appendJSONString appends s as a JSON string, exactly as writeJSON would.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f || c == '"' || c == '\\' {
			var buf bytes.Buffer
			writeJSON(&buf, s)
			return append(b, buf.Bytes()...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// rootCauseOnly renders the exception without its cause, the way ES lists
// entries of "root_cause".
type rootCauseOnly struct{ e *esError }

func (r rootCauseOnly) MarshalJSON() ([]byte, error) { return r.e.marshal(false) }

// errorBody is the whole-request error document:
// {"error":{"root_cause":[...],"type":...,"reason":...},"status":N}.
func errorBody(status int, e *esError) []byte {
	var b bytes.Buffer
	b.WriteString(`{"error":{"root_cause":[`)
	rc, _ := rootCauseOnly{e}.MarshalJSON()
	b.Write(rc)
	b.WriteString(`],`)
	full, _ := e.marshal(true)
	b.Write(full[1:]) // splice the rest of the object after "root_cause"
	b.WriteString(`,"status":`)
	fmt.Fprintf(&b, "%d}", status)
	return b.Bytes()
}

// Exceptions used in more than one place.

func indexNotFound(name string) *esError {
	return newErr("index_not_found_exception", "no such index [%s]", name).
		withMeta("resource.type", "index_or_alias", "resource.id", name, "index_uuid", "_na_", "index", name)
}

func actionValidation(problems ...string) *esError {
	var sb strings.Builder
	sb.WriteString("Validation Failed: ")
	for i, p := range problems {
		fmt.Fprintf(&sb, "%d: %s;", i+1, p)
	}
	return newErr("action_request_validation_exception", "%s", sb.String())
}

// injectedError returns the ES-shaped exception a real cluster (or the
// proxy in front of it) answers with for a given whole-request status.
func injectedError(status int, path string) *esError {
	switch status {
	case http.StatusTooManyRequests:
		return newErr("es_rejected_execution_exception",
			"rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=104857600, max_coordinating_and_primary_bytes=107374182]")
	case http.StatusServiceUnavailable:
		return newErr("cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];")
	case http.StatusInternalServerError:
		return newErr("illegal_state_exception", "esfake: injected internal error")
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return newErr("status_exception", "esfake: injected gateway error")
	case http.StatusUnauthorized:
		return newErr("security_exception", "missing authentication credentials for REST request [%s]", path)
	case http.StatusForbidden:
		return newErr("security_exception", "action [indices:data/write/bulk] is unauthorized for user [esfake] with effective roles [] on indices [*], this action is granted by the index privileges [create_doc,create,index,write,all]")
	case http.StatusRequestEntityTooLarge:
		return newErr("content_too_long_exception", "request body is too large")
	default:
		if status >= 500 {
			return newErr("exception", "esfake: injected failure (status %d)", status)
		}
		return newErr("illegal_argument_exception", "esfake: injected failure (status %d)", status)
	}
}

// itemError returns the exception used for a bulk item rejected with the
// given status by RejectItems / RejectItemsFunc.
func itemError(status int, index, id string) *esError {
	switch status {
	case http.StatusTooManyRequests:
		return newErr("es_rejected_execution_exception",
			"rejected execution of primary operation [coordinating_and_primary_bytes=104857600, replica_bytes=0, all_bytes=104857600, primary_operation_bytes=1024, max_coordinating_and_primary_bytes=107374182]")
	case http.StatusServiceUnavailable:
		return newErr("unavailable_shards_exception",
			"[%s][0] primary shard is not active Timeout: [1m], request: [BulkShardRequest [[%s][0]] containing [1] requests]", index, index)
	case http.StatusConflict:
		return newErr("version_conflict_engine_exception",
			"[%s]: version conflict, document already exists (current version [1])", id).
			withMeta("index_uuid", "_na_", "shard", "0", "index", index)
	case http.StatusNotFound:
		return indexNotFound(index)
	case http.StatusBadRequest:
		return newErr("illegal_argument_exception", "esfake: injected item rejection")
	default:
		if status >= 500 {
			return newErr("exception", "esfake: injected item failure (status %d)", status)
		}
		return newErr("illegal_argument_exception", "esfake: injected item failure (status %d)", status)
	}
}
