package esfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// bulkOp is one parsed action of a bulk request (or a single-document API
// call).
type bulkOp struct {
	action        string // index, create, update, delete
	index         string
	id            string
	source        []byte
	line          int
	ifSeqNo       *int64
	ifPrimaryTerm *int64
	version       *int64
	versionType   string
	pipeline      string
	requireAlias  bool
}

// itemResult is one entry of a bulk response, also used as the body of the
// single-document write APIs. Field order follows ES.
type itemResult struct {
	Index       string      `json:"_index"`
	ID          string      `json:"_id"`
	Version     int64       `json:"_version,omitempty"`
	Result      string      `json:"result,omitempty"`
	Shards      *shardsInfo `json:"_shards,omitempty"`
	SeqNo       *int64      `json:"_seq_no,omitempty"`
	PrimaryTerm *int64      `json:"_primary_term,omitempty"`
	Status      int         `json:"status"`
	Error       *esError    `json:"error,omitempty"`
}

type shardsInfo struct {
	Total      int `json:"total"`
	Successful int `json:"successful"`
	Failed     int `json:"failed"`
}

var knownMetaFields = map[string]bool{
	"_index": true, "_id": true, "routing": true, "version": true, "version_type": true,
	"if_seq_no": true, "if_primary_term": true, "pipeline": true, "require_alias": true,
	"dynamic_templates": true, "op_type": true, "retry_on_conflict": true, "_source": true,
	"require_data_stream": true, "list_executed_pipelines": true,
}

// parseBulk splits an NDJSON bulk body into operations. Errors are
// whole-request failures (HTTP 400), as in ES.
func parseBulk(body []byte, defIndex string) ([]bulkOp, *esError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, actionValidation("no requests added")
	}
	if body[len(body)-1] != '\n' {
		return nil, newErr("illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
	}
	lines := bytes.Split(body[:len(body)-1], []byte("\n"))
	var ops []bulkOp
	var problems []string
	for i := 0; i < len(lines); i++ {
		line := bytes.TrimSpace(lines[i])
		if len(line) == 0 {
			continue
		}
		lineNo := i + 1
		var action map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		tok, err := dec.Token()
		if err != nil || tok != json.Delim('{') {
			return nil, newErr("illegal_argument_exception",
				"Malformed action/metadata line [%d], expected START_OBJECT or END_OBJECT but found [%s]", lineNo, tokenKind(line))
		}
		if err := json.Unmarshal(line, &action); err != nil {
			return nil, newErr("illegal_argument_exception", "Malformed action/metadata line [%d], expected START_OBJECT but found [%s]", lineNo, tokenKind(line))
		}
		if len(action) != 1 {
			return nil, newErr("illegal_argument_exception",
				"Malformed action/metadata line [%d], expected a simple value for field [_index] but found [START_OBJECT]", lineNo)
		}
		var op bulkOp
		var metaRaw json.RawMessage
		for k, v := range action {
			op.action, metaRaw = k, v
		}
		switch op.action {
		case "index", "create", "update", "delete":
		default:
			return nil, newErr("illegal_argument_exception",
				"Malformed action/metadata line [%d], expected field [create], [delete], [index] or [update] but found [%s]", lineNo, op.action)
		}
		var meta map[string]any
		d2 := json.NewDecoder(bytes.NewReader(metaRaw))
		d2.UseNumber()
		if err := d2.Decode(&meta); err != nil || meta == nil {
			return nil, newErr("illegal_argument_exception",
				"Malformed action/metadata line [%d], expected START_OBJECT but found [%s]", lineNo, tokenKind(metaRaw))
		}
		for _, k := range sortedKeys(meta) {
			if !knownMetaFields[k] {
				return nil, newErr("illegal_argument_exception", "Action/metadata line [%d] contains an unknown parameter [%s]", lineNo, k)
			}
		}
		op.line = lineNo
		op.index = defIndex
		if v, ok := meta["_index"].(string); ok {
			op.index = v
		}
		if v, ok := meta["_id"]; ok && v != nil {
			op.id = fmt.Sprint(v)
		}
		if v, ok := meta["op_type"].(string); ok && op.action == "index" {
			if v == "create" {
				op.action = "create"
			} else if v != "index" {
				return nil, newErr("illegal_argument_exception", "opType must be 'create' or 'index', found: [%s]", v)
			}
		}
		if v, ok := meta["if_seq_no"].(json.Number); ok {
			n, _ := v.Int64()
			op.ifSeqNo = &n
		}
		if v, ok := meta["if_primary_term"].(json.Number); ok {
			n, _ := v.Int64()
			op.ifPrimaryTerm = &n
		}
		if v, ok := meta["version"].(json.Number); ok {
			n, _ := v.Int64()
			op.version = &n
		}
		if v, ok := meta["version_type"].(string); ok {
			op.versionType = v
		}
		if v, ok := meta["pipeline"].(string); ok {
			op.pipeline = v
		}
		if v, ok := meta["require_alias"].(bool); ok {
			op.requireAlias = v
		}
		if op.index == "" {
			problems = append(problems, "index is missing")
		}
		if len(op.id) > 512 {
			problems = append(problems, fmt.Sprintf("id [%s] is too long, must be no longer than 512 bytes but was: %d", op.id, len(op.id)))
		}
		if op.action != "delete" {
			i++
			if i >= len(lines) {
				return nil, newErr("illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
			}
			op.source = append([]byte(nil), bytes.TrimSpace(lines[i])...)
		}
		ops = append(ops, op)
	}
	if len(problems) > 0 {
		return nil, actionValidation(problems...)
	}
	if len(ops) == 0 {
		return nil, actionValidation("no requests added")
	}
	return ops, nil
}

func tokenKind(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "null"
	}
	switch b[0] {
	case '[':
		return "START_ARRAY"
	case '"':
		return "VALUE_STRING"
	case 't', 'f':
		return "VALUE_BOOLEAN"
	case 'n':
		return "VALUE_NULL"
	case '{':
		return "START_OBJECT"
	}
	return "VALUE_NUMBER"
}

// applyOp executes one write. Caller holds s.mu. Index and id in the result
// are always set; Status is the HTTP status of the item.
func (s *Server) applyOp(op bulkOp, defPipeline string) itemResult {
	res := itemResult{Index: op.index, ID: op.id}
	fail := func(status int, e *esError) itemResult {
		res.Status, res.Error = status, e
		return res
	}
	if op.id == "" && op.action != "delete" && op.action != "update" {
		op.id = randomID()
		res.ID = op.id
	}
	if err := validIndexName(op.index); err != nil {
		return fail(http.StatusBadRequest, err)
	}
	if st := s.rejection(op.index, op.id); st != 0 {
		s.stats.RejectedItems++
		return fail(st, itemError(st, op.index, op.id))
	}
	pipeline := op.pipeline
	if pipeline == "" {
		pipeline = defPipeline
	}
	if pipeline != "" && pipeline != "_none" {
		return fail(http.StatusBadRequest, newErr("illegal_argument_exception", "pipeline with id [%s] does not exist", pipeline))
	}
	if op.requireAlias {
		return fail(http.StatusNotFound, newErr("index_not_found_exception",
			"no such index [%s] and [require_alias] request flag is [true] and [%s] is not an alias", op.index, op.index).
			withMeta("index_uuid", "_na_", "index", op.index))
	}
	ix := s.indices[op.index]
	if ix == nil {
		if op.action == "delete" || !s.cfg.autoCreate {
			return fail(http.StatusNotFound, indexNotFound(op.index))
		}
		if op.action == "update" && !isUpsert(op.source) {
			return fail(http.StatusNotFound, indexNotFound(op.index))
		}
		var err *esError
		ix, err = s.createIndex(op.index, nil)
		if err != nil {
			return fail(http.StatusBadRequest, err)
		}
	}
	if ix.dataStream && op.action != "create" {
		return fail(http.StatusBadRequest, newErr("illegal_argument_exception",
			"only write ops with an op_type of create are allowed in data streams"))
	}
	if op.id == "" {
		return fail(http.StatusBadRequest, actionValidation("id is missing"))
	}
	cur := ix.docs[op.id]
	if e := checkConcurrency(op, ix, cur); e != nil {
		return fail(http.StatusConflict, e)
	}
	switch op.action {
	case "delete":
		return s.applyDelete(ix, op, cur, res)
	case "update":
		merged, result, e, status := s.prepareUpdate(ix, op, cur)
		if e != nil {
			return fail(status, e)
		}
		if result == "noop" {
			res.Version, res.Result, res.Status = cur.version, "noop", http.StatusOK
			seq, term := cur.seqNo, int64(1)
			res.SeqNo, res.PrimaryTerm = &seq, &term
			res.Shards = &shardsInfo{Total: 0, Successful: 0, Failed: 0}
			return res
		}
		op.source = merged
	case "create":
		if cur != nil {
			return fail(http.StatusConflict, newErr("version_conflict_engine_exception",
				"[%s]: version conflict, document already exists (current version [%d])", op.id, cur.version).
				withMeta("index_uuid", ix.uuid, "shard", "0", "index", ix.name))
		}
	}
	return s.applyWrite(ix, op, cur, res)
}

func isUpsert(src []byte) bool {
	var m map[string]any
	_ = json.Unmarshal(src, &m)
	if _, ok := m["upsert"]; ok {
		return true
	}
	b, _ := m["doc_as_upsert"].(bool)
	return b
}

func checkConcurrency(op bulkOp, ix *index, cur *doc) *esError {
	conflict := func(format string, args ...any) *esError {
		return newErr("version_conflict_engine_exception", format, args...).
			withMeta("index_uuid", ix.uuid, "shard", "0", "index", ix.name)
	}
	if op.ifSeqNo != nil {
		term := int64(1)
		if op.ifPrimaryTerm != nil {
			term = *op.ifPrimaryTerm
		}
		if cur == nil {
			return conflict("[%s]: version conflict, required seqNo [%d], primary term [%d]. but no document was found", op.id, *op.ifSeqNo, term)
		}
		if cur.seqNo != *op.ifSeqNo || term != 1 {
			return conflict("[%s]: version conflict, required seqNo [%d], primary term [%d]. current document has seqNo [%d] and primary term [1]",
				op.id, *op.ifSeqNo, term, cur.seqNo)
		}
	}
	if op.version != nil && (op.versionType == "external" || op.versionType == "external_gt" || op.versionType == "external_gte") {
		var have int64
		if cur != nil {
			have = cur.version
		} else if v, ok := ix.tomb[op.id]; ok {
			have = v
		}
		ok := *op.version > have
		if op.versionType == "external_gte" {
			ok = *op.version >= have
		}
		if (cur != nil || have > 0) && !ok {
			return conflict("[%s]: version conflict, current version [%d] is higher or equal to the one provided [%d]", op.id, have, *op.version)
		}
	}
	return nil
}

func (s *Server) nextVersion(ix *index, op bulkOp, cur *doc) int64 {
	if op.version != nil && strings.HasPrefix(op.versionType, "external") {
		return *op.version
	}
	if cur != nil {
		return cur.version + 1
	}
	if v, ok := ix.tomb[op.id]; ok {
		return v + 1
	}
	return 1
}

func (s *Server) applyDelete(ix *index, op bulkOp, cur *doc, res itemResult) itemResult {
	version := s.nextVersion(ix, op, cur)
	ix.seq++
	seq, term := ix.seq-1, int64(1)
	res.Version, res.SeqNo, res.PrimaryTerm = version, &seq, &term
	res.Shards = &shardsInfo{Total: 1 + ix.replicas(), Successful: 1}
	if cur == nil {
		res.Result, res.Status = "not_found", http.StatusNotFound
		ix.tomb[op.id] = version
		return res
	}
	delete(ix.docs, op.id)
	ix.tomb[op.id] = version
	s.stats.DocsDeleted++
	res.Result, res.Status = "deleted", http.StatusOK
	return res
}

func (s *Server) applyWrite(ix *index, op bulkOp, cur *doc, res itemResult) itemResult {
	root, off, perr := parseJSON(op.source)
	legacy := versionBefore(s.cfg.version, 8, 8)
	if perr != nil {
		msg := "failed to parse"
		if len(bytes.TrimSpace(op.source)) == 0 {
			msg = "failed to parse, document is empty"
		}
		var e *esError
		if legacy {
			e = newErr("mapper_parsing_exception", "%s", msg)
		} else {
			e = newErr("document_parsing_exception", "[%s] %s", location(op.source, off), msg)
		}
		res.Status, res.Error = http.StatusBadRequest, e.withCause(newErr("json_parse_exception", "%s", perr.Error()))
		return res
	}
	p := newDocParser(ix, op.source, op.id, legacy)
	if e := p.parse(root); e != nil {
		res.Status, res.Error = http.StatusBadRequest, e
		return res
	}
	if ix.dataStream && !hasTimestamp(root) {
		res.Status, res.Error = http.StatusBadRequest, p.fail(root.start, "data stream timestamp field [@timestamp] is missing")
		return res
	}
	if e := p.commit(); e != nil {
		res.Status, res.Error = http.StatusBadRequest, e
		return res
	}
	version := s.nextVersion(ix, op, cur)
	ix.seq++
	d := &doc{id: op.id, version: version, seqNo: ix.seq - 1, source: op.source}
	d.value, _ = root.toAny().(map[string]any)
	ix.docs[op.id] = d
	delete(ix.tomb, op.id)
	s.stats.DocsIndexed++
	seq, term := d.seqNo, int64(1)
	res.Version, res.SeqNo, res.PrimaryTerm = version, &seq, &term
	res.Shards = &shardsInfo{Total: 1 + ix.replicas(), Successful: 1}
	if cur == nil {
		res.Result, res.Status = "created", http.StatusCreated
	} else {
		res.Result, res.Status = "updated", http.StatusOK
	}
	return res
}

func hasTimestamp(root *jnode) bool {
	for _, kv := range root.obj {
		if kv.key == "@timestamp" && kv.val.kind != jNull {
			return true
		}
	}
	return false
}

// prepareUpdate computes the new source of an update action: a partial
// "doc" merged into the current source, with doc_as_upsert / upsert.
func (s *Server) prepareUpdate(ix *index, op bulkOp, cur *doc) ([]byte, string, *esError, int) {
	var body map[string]json.RawMessage
	if err := json.Unmarshal(op.source, &body); err != nil {
		return nil, "", newErr("x_content_parse_exception", "[1:1] [UpdateRequest] failed to parse: %s", err.Error()), http.StatusBadRequest
	}
	for k := range body {
		switch k {
		case "doc", "upsert", "doc_as_upsert", "detect_noop", "_source", "scripted_upsert":
		case "script":
			return nil, "", newErr("illegal_argument_exception", "esfake: scripted updates are not supported"), http.StatusBadRequest
		default:
			return nil, "", newErr("x_content_parse_exception", "[1:2] [UpdateRequest] unknown field [%s]", k), http.StatusBadRequest
		}
	}
	var partial map[string]any
	if raw, ok := body["doc"]; ok {
		if err := json.Unmarshal(raw, &partial); err != nil || partial == nil {
			return nil, "", newErr("x_content_parse_exception", "[1:8] [UpdateRequest] failed to parse field [doc]"), http.StatusBadRequest
		}
	} else if _, ok := body["upsert"]; !ok {
		return nil, "", actionValidation("script or doc is missing"), http.StatusBadRequest
	}
	var asUpsert bool
	if raw, ok := body["doc_as_upsert"]; ok {
		_ = json.Unmarshal(raw, &asUpsert)
	}
	detectNoop := true
	if raw, ok := body["detect_noop"]; ok {
		_ = json.Unmarshal(raw, &detectNoop)
	}
	if cur == nil {
		switch {
		case body["upsert"] != nil:
			return []byte(body["upsert"]), "created", nil, 0
		case asUpsert:
			b, _ := json.Marshal(partial)
			return b, "created", nil, 0
		default:
			return nil, "", newErr("document_missing_exception", "[%s]: document missing", op.id).
				withMeta("index_uuid", ix.uuid, "shard", "0", "index", ix.name), http.StatusNotFound
		}
	}
	var existing map[string]any
	_ = json.Unmarshal(cur.source, &existing)
	merged := deepMerge(existing, partial)
	var before map[string]any
	_ = json.Unmarshal(cur.source, &before)
	if detectNoop && reflect.DeepEqual(before, merged) {
		return nil, "noop", nil, 0
	}
	b, _ := json.Marshal(merged)
	return b, "updated", nil, 0
}

func deepMerge(dst, src map[string]any) map[string]any {
	if dst == nil {
		dst = map[string]any{}
	}
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = deepMerge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

// rejection decides whether fault injection rejects an item. Caller holds s.mu.
func (s *Server) rejection(index, id string) int {
	if s.rejectFn != nil {
		if st := s.rejectFn(index, id); st != 0 {
			return st
		}
	}
	if s.rejectFrac > 0 && s.rng.Float64() < s.rejectFrac {
		return http.StatusTooManyRequests
	}
	return 0
}

// handleBulk serves POST/PUT /_bulk and /{index}/_bulk.
func (s *Server) handleBulk(w http.ResponseWriter, r *http.Request, body []byte, defIndex string) {
	start := time.Now()
	ops, perr := parseBulk(body, defIndex)
	if perr != nil {
		s.writeError(w, r, http.StatusBadRequest, perr)
		return
	}
	q := r.URL.Query()
	s.mu.Lock()
	items := make([]map[string]itemResult, 0, len(ops))
	hasErr := false
	touched := map[*index]bool{}
	for _, op := range ops {
		res := s.applyOp(op, q.Get("pipeline"))
		s.stats.BulkItems++
		if res.Error != nil { // a delete of a missing document (404 not_found) is not an error
			hasErr = true
			s.stats.ItemErrors++
			s.errTypes[res.Error.Type]++
		}
		if ix := s.indices[res.Index]; ix != nil {
			touched[ix] = true
		}
		items = append(items, map[string]itemResult{op.action: res})
	}
	if refreshRequested(q) {
		for ix := range touched {
			ix.refresh()
		}
	}
	s.mu.Unlock()
	took := time.Since(start).Milliseconds()
	resp := struct {
		Took   int64                   `json:"took"`
		Errors bool                    `json:"errors"`
		Items  []map[string]itemResult `json:"items"`
	}{took, hasErr, items}
	s.writeJSON(w, r, http.StatusOK, resp)
}

func refreshRequested(q map[string][]string) bool {
	v, ok := q["refresh"]
	if !ok {
		return false
	}
	return len(v) == 0 || v[0] == "" || v[0] == "true" || v[0] == "wait_for"
}

func versionBefore(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, _ := strconv.Atoi(parts[0])
	mi, _ := strconv.Atoi(parts[1])
	return ma < major || ma == major && mi < minor
}
