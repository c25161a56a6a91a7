package esfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
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
// single-document write APIs.
type itemResult struct {
	Index   string
	ID      string
	Version int64
	Result  string
	// written is true when the operation reached the shard: _shards,
	// _seq_no and _primary_term (always 1) are then reported.
	written bool
	Shards  shardsInfo
	SeqNo   int64
	Status  int
	Error   *esError
}

// appendJSON writes the item as ES does, fields in ES's order, empty
// optional fields left out.
func (it *itemResult) appendJSON(b []byte) []byte {
	b = append(b, `{"_index":`...)
	b = appendJSONString(b, it.Index)
	b = append(b, `,"_id":`...)
	b = appendJSONString(b, it.ID)
	if it.Version != 0 {
		b = append(b, `,"_version":`...)
		b = strconv.AppendInt(b, it.Version, 10)
	}
	if it.Result != "" {
		b = append(b, `,"result":`...)
		b = appendJSONString(b, it.Result)
	}
	if it.written {
		b = append(b, `,"_shards":{"total":`...)
		b = strconv.AppendInt(b, int64(it.Shards.Total), 10)
		b = append(b, `,"successful":`...)
		b = strconv.AppendInt(b, int64(it.Shards.Successful), 10)
		b = append(b, `,"failed":`...)
		b = strconv.AppendInt(b, int64(it.Shards.Failed), 10)
		b = append(b, `},"_seq_no":`...)
		b = strconv.AppendInt(b, it.SeqNo, 10)
		b = append(b, `,"_primary_term":1`...)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(it.Status), 10)
	if it.Error != nil {
		b = append(b, `,"error":`...)
		e, _ := it.Error.MarshalJSON()
		var buf bytes.Buffer
		_ = json.Compact(&buf, e) // what encoding/json does with a Marshaler's output
		b = append(b, buf.Bytes()...)
	}
	return append(b, '}')
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
// whole-request failures (HTTP 400), as in ES. Sources are slices of body.
func parseBulk(body []byte, defIndex string) ([]bulkOp, *esError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, actionValidation("no requests added")
	}
	if body[len(body)-1] != '\n' {
		return nil, newErr("illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
	}
	lines := bytes.Split(body[:len(body)-1], []byte("\n"))
	ops := make([]bulkOp, 0, (len(lines)+1)/2)
	names := map[string]string{} // index names repeat from line to line
	var problems []string
	for i := 0; i < len(lines); i++ {
		line := bytes.TrimSpace(lines[i])
		if len(line) == 0 {
			continue
		}
		lineNo := i + 1
		op, ok := parsePlainAction(line, defIndex, names)
		if !ok {
			var e *esError
			if op, e = parseAction(line, lineNo, defIndex); e != nil {
				return nil, e
			}
		}
		op.line = lineNo
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
			op.source = bytes.TrimSpace(lines[i])
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

// parsePlainAction reads the action lines clients nearly always send,
// {"index":{"_index":"i","_id":"x"}} written compactly with plain ASCII
// strings, without encoding/json. ok is false for anything else, which
// parseAction then reads (and reports on).
func parsePlainAction(line []byte, defIndex string, names map[string]string) (op bulkOp, ok bool) {
	rest, ok := cutPrefix(line, `{"`)
	if !ok {
		return op, false
	}
	var action []byte
	if action, rest, ok = plainString(rest); !ok {
		return op, false
	}
	switch string(action) {
	case "index":
		op.action = "index"
	case "create":
		op.action = "create"
	case "update":
		op.action = "update"
	case "delete":
		op.action = "delete"
	default:
		return op, false
	}
	if rest, ok = cutPrefix(rest, `:{`); !ok {
		return op, false
	}
	op.index = defIndex
	var haveIndex, haveID bool
	for n := 0; len(rest) > 0 && rest[0] != '}'; n++ {
		if n > 0 {
			if rest, ok = cutPrefix(rest, `,`); !ok {
				return op, false
			}
		}
		var key, val []byte
		if rest, ok = cutPrefix(rest, `"`); !ok {
			return op, false
		}
		if key, rest, ok = plainString(rest); !ok {
			return op, false
		}
		if rest, ok = cutPrefix(rest, `:"`); !ok {
			return op, false
		}
		if val, rest, ok = plainString(rest); !ok {
			return op, false
		}
		switch {
		case string(key) == "_index" && !haveIndex:
			name, seen := names[string(val)]
			if !seen {
				name = string(val)
				names[name] = name
			}
			op.index, haveIndex = name, true
		case string(key) == "_id" && !haveID:
			op.id, haveID = string(val), true
		default:
			return op, false
		}
	}
	return op, string(rest) == "}}"
}

func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return nil, false
	}
	return b[len(prefix):], true
}

// plainString reads the rest of a string whose opening quote has been
// consumed, accepting only printable ASCII without escapes.
func plainString(b []byte) (s, rest []byte, ok bool) {
	for i, c := range b {
		if c == '"' {
			return b[:i], b[i+1:], true
		}
		if c < ' ' || c >= 0x7f || c == '\\' {
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// parseAction reads any action line with encoding/json and reports the
// errors ES reports for it.
func parseAction(line []byte, lineNo int, defIndex string) (bulkOp, *esError) {
	var op bulkOp
	var action map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return op, newErr("illegal_argument_exception",
			"Malformed action/metadata line [%d], expected START_OBJECT or END_OBJECT but found [%s]", lineNo, tokenKind(line))
	}
	if err := json.Unmarshal(line, &action); err != nil {
		return op, newErr("illegal_argument_exception", "Malformed action/metadata line [%d], expected START_OBJECT but found [%s]", lineNo, tokenKind(line))
	}
	if len(action) != 1 {
		return op, newErr("illegal_argument_exception",
			"Malformed action/metadata line [%d], expected a simple value for field [_index] but found [START_OBJECT]", lineNo)
	}
	var metaRaw json.RawMessage
	for k, v := range action {
		op.action, metaRaw = k, v
	}
	switch op.action {
	case "index", "create", "update", "delete":
	default:
		return op, newErr("illegal_argument_exception",
			"Malformed action/metadata line [%d], expected field [create], [delete], [index] or [update] but found [%s]", lineNo, op.action)
	}
	var meta map[string]any
	d2 := json.NewDecoder(bytes.NewReader(metaRaw))
	d2.UseNumber()
	if err := d2.Decode(&meta); err != nil || meta == nil {
		return op, newErr("illegal_argument_exception",
			"Malformed action/metadata line [%d], expected START_OBJECT but found [%s]", lineNo, tokenKind(metaRaw))
	}
	for _, k := range sortedKeys(meta) {
		if !knownMetaFields[k] {
			return op, newErr("illegal_argument_exception", "Action/metadata line [%d] contains an unknown parameter [%s]", lineNo, k)
		}
	}
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
			return op, newErr("illegal_argument_exception", "opType must be 'create' or 'index', found: [%s]", v)
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
	return op, nil
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
			res.written, res.SeqNo, res.Shards = true, cur.seqNo, shardsInfo{Total: 0, Successful: 0, Failed: 0}
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
	res.Version, res.written, res.SeqNo = version, true, ix.seq-1
	res.Shards = shardsInfo{Total: ix.copies, Successful: 1}
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
	if ok, hasTS := scanDocument(ix, op.source); !ok || ix.dataStream && !hasTS {
		if e := s.checkDocument(ix, op); e != nil {
			res.Status, res.Error = http.StatusBadRequest, e
			return res
		}
	}
	version := s.nextVersion(ix, op, cur)
	ix.seq++
	d := s.arena.newDoc()
	*d = doc{id: op.id, version: version, seqNo: ix.seq - 1, source: s.arena.copySource(op.source)}
	ix.docs[op.id] = d
	delete(ix.tomb, op.id)
	s.stats.DocsIndexed++
	res.Version, res.written, res.SeqNo = version, true, d.seqNo
	res.Shards = shardsInfo{Total: ix.copies, Successful: 1}
	if cur == nil {
		res.Result, res.Status = "created", http.StatusCreated
	} else {
		res.Result, res.Status = "updated", http.StatusOK
	}
	return res
}

// checkDocument runs the full document parser: it reports what is wrong
// with the document, or applies the fields it adds to the mapping.
func (s *Server) checkDocument(ix *index, op bulkOp) *esError {
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
		return e.withCause(newErr("json_parse_exception", "%s", perr.Error()))
	}
	p := newDocParser(ix, op.source, op.id, legacy)
	if e := p.parse(root); e != nil {
		return e
	}
	if ix.dataStream && !hasTimestamp(root) {
		return p.fail(root.start, "data stream timestamp field [@timestamp] is missing")
	}
	return p.commit()
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
	pipeline := q.Get("pipeline")
	// The answer is written by hand as the items are applied: encoding/json
	// walking a map per item by reflection cost more than storing them.
	out := make([]byte, 0, 64+len(ops)*256)
	out = append(out, `{"took":`...)
	itemsAt := len(out)
	s.mu.Lock()
	hasErr := false
	var touched []*index
	var lastIx *index
	for i, op := range ops {
		res := s.applyOp(op, pipeline)
		s.stats.BulkItems++
		if res.Error != nil { // a delete of a missing document (404 not_found) is not an error
			hasErr = true
			s.stats.ItemErrors++
			s.errTypes[res.Error.Type]++
		}
		if ix := s.indices[res.Index]; ix != nil && ix != lastIx {
			lastIx = ix
			if !slices.Contains(touched, ix) {
				touched = append(touched, ix)
			}
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"`...)
		out = append(out, op.action...)
		out = append(out, `":`...)
		out = res.appendJSON(out)
		out = append(out, '}')
	}
	if refreshRequested(q) {
		for _, ix := range touched {
			ix.refresh()
		}
	}
	s.mu.Unlock()
	took := time.Since(start).Milliseconds()
	head := strconv.AppendInt(nil, took, 10)
	head = append(head, `,"errors":`...)
	head = strconv.AppendBool(head, hasErr)
	head = append(head, `,"items":[`...)
	out = append(out, "]}"...)
	out = slices.Insert(out, itemsAt, head...)
	s.writeCompactJSON(w, r, http.StatusOK, out)
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
