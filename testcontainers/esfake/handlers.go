package esfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

func (s *Server) handleTemplate(w http.ResponseWriter, r *http.Request, name string, body []byte) {
	switch r.Method {
	case "GET", "HEAD":
		s.handleGetTemplates(w, r, name)
	case "DELETE":
		s.mu.Lock()
		_, ok := s.templates[name]
		delete(s.templates, name)
		s.mu.Unlock()
		if !ok {
			s.writeError(w, r, http.StatusNotFound, newErr("resource_not_found_exception", "index_template matching [%s] not found", name))
			return
		}
		s.ack(w, r)
	default:
		m, e := decodeObject(body)
		if e != nil {
			s.writeError(w, r, http.StatusBadRequest, e)
			return
		}
		s.mu.Lock()
		e = s.putIndexTemplate(name, m, r.URL.Query().Get("create") == "true")
		s.mu.Unlock()
		if e != nil {
			s.writeError(w, r, http.StatusBadRequest, e)
			return
		}
		s.ack(w, r)
	}
}

func (s *Server) handleGetTemplates(w http.ResponseWriter, r *http.Request, pattern string) {
	s.mu.Lock()
	var list []map[string]any
	for _, t := range sortedTemplates(s.templates) {
		if matchAny(pattern, t.name) {
			list = append(list, map[string]any{"name": t.name, "index_template": t.toJSON()})
		}
	}
	s.mu.Unlock()
	if len(list) == 0 && !strings.Contains(pattern, "*") {
		s.writeError(w, r, http.StatusNotFound, newErr("resource_not_found_exception", "index template matching [%s] not found", pattern))
		return
	}
	if list == nil {
		list = []map[string]any{}
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"index_templates": list})
}

func matchAny(patterns, name string) bool {
	for _, p := range strings.Split(patterns, ",") {
		if globMatch(p, name) {
			return true
		}
	}
	return false
}

func (s *Server) handleComponent(w http.ResponseWriter, r *http.Request, name string, body []byte) {
	switch r.Method {
	case "GET", "HEAD":
		s.handleGetComponents(w, r, name)
	case "DELETE":
		s.mu.Lock()
		_, ok := s.components[name]
		var users []string
		for _, t := range sortedTemplates(s.templates) {
			for _, c := range t.composedOf {
				if c == name {
					users = append(users, t.name)
				}
			}
		}
		if ok && len(users) == 0 {
			delete(s.components, name)
		}
		s.mu.Unlock()
		switch {
		case !ok:
			s.writeError(w, r, http.StatusNotFound, newErr("resource_not_found_exception", "%s", name))
		case len(users) > 0:
			s.writeError(w, r, http.StatusBadRequest, newErr("illegal_argument_exception",
				"component templates [%s] cannot be removed as they are still in use by index templates [%s]", name, strings.Join(users, ", ")))
		default:
			s.ack(w, r)
		}
	default:
		m, e := decodeObject(body)
		if e != nil {
			s.writeError(w, r, http.StatusBadRequest, e)
			return
		}
		s.mu.Lock()
		e = s.putComponentTemplate(name, m)
		s.mu.Unlock()
		if e != nil {
			s.writeError(w, r, http.StatusBadRequest, e)
			return
		}
		s.ack(w, r)
	}
}

func (s *Server) handleGetComponents(w http.ResponseWriter, r *http.Request, pattern string) {
	s.mu.Lock()
	var names []string
	for n := range s.components {
		if matchAny(pattern, n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	list := []map[string]any{}
	for _, n := range names {
		list = append(list, map[string]any{"name": n, "component_template": s.components[n].raw})
	}
	s.mu.Unlock()
	if len(names) == 0 && !strings.Contains(pattern, "*") {
		s.writeError(w, r, http.StatusNotFound, newErr("resource_not_found_exception", "component template matching [%s] not found", pattern))
		return
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"component_templates": list})
}

func (s *Server) handleILM(w http.ResponseWriter, r *http.Request, name string, body []byte) {
	switch r.Method {
	case "PUT":
		if name == "" {
			s.writeRaw(w, r, http.StatusMethodNotAllowed, map[string]any{
				"error": "Incorrect HTTP method for uri [/_ilm/policy] and method [PUT], allowed: [GET]", "status": 405})
			return
		}
		m, e := decodeObject(body)
		if e == nil {
			s.mu.Lock()
			e = s.putILMPolicy(name, m)
			s.mu.Unlock()
		}
		if e != nil {
			s.writeError(w, r, http.StatusBadRequest, e)
			return
		}
		s.ack(w, r)
	case "DELETE":
		s.mu.Lock()
		_, ok := s.policies[name]
		delete(s.policies, name)
		s.mu.Unlock()
		if !ok {
			s.writeError(w, r, http.StatusNotFound, newErr("resource_not_found_exception", "Lifecycle policy not found: %s", name))
			return
		}
		s.ack(w, r)
	default:
		s.mu.Lock()
		out := map[string]any{}
		for n, p := range s.policies {
			if name != "" && !matchAny(name, n) {
				continue
			}
			inUse := []string{}
			for _, ix := range s.indices {
				if v, _ := ix.settings["lifecycle.name"].(string); v == n {
					inUse = append(inUse, ix.name)
				}
			}
			sort.Strings(inUse)
			var tpls []string
			for _, t := range sortedTemplates(s.templates) {
				if v, _ := t.tmpl.settings["lifecycle.name"].(string); v == n {
					tpls = append(tpls, t.name)
				}
			}
			out[n] = map[string]any{
				"version":       p.version,
				"modified_date": p.modified.Format("2006-01-02T15:04:05.000Z"),
				"policy":        p.policy,
				"in_use_by":     map[string]any{"indices": inUse, "data_streams": []string{}, "composable_templates": nonNil(tpls)},
			}
		}
		s.mu.Unlock()
		if name != "" && len(out) == 0 {
			s.writeError(w, r, http.StatusNotFound, newErr("resource_not_found_exception", "Lifecycle policy not found: %s", name))
			return
		}
		s.writeJSON(w, r, http.StatusOK, out)
	}
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func (s *Server) handleCatIndices(w http.ResponseWriter, r *http.Request, pattern string) {
	q := r.URL.Query()
	s.mu.Lock()
	list, e := s.resolve(pattern, false, true)
	var rows []map[string]any
	for _, ix := range list {
		health := "green"
		if ix.replicas() > 0 {
			health = "yellow"
		}
		size := 0
		for _, d := range ix.docs {
			size += len(d.source)
		}
		count := len(ix.searchable(s))
		rows = append(rows, map[string]any{
			"health": health, "status": "open", "index": ix.name, "uuid": ix.uuid,
			"pri": strconv.Itoa(ix.shards()), "rep": strconv.Itoa(ix.replicas()),
			"docs.count": strconv.Itoa(count), "docs.deleted": "0",
			"store.size": humanBytes(size), "pri.store.size": humanBytes(size), "dataset.size": humanBytes(size),
		})
	}
	s.mu.Unlock()
	if e != nil {
		s.writeError(w, r, http.StatusNotFound, e)
		return
	}
	cols := []string{"health", "status", "index", "uuid", "pri", "rep", "docs.count", "docs.deleted", "store.size", "pri.store.size", "dataset.size"}
	if h := q.Get("h"); h != "" {
		cols = strings.Split(h, ",")
	}
	if sortKey := q.Get("s"); sortKey != "" {
		key, desc := strings.CutSuffix(sortKey, ":desc")
		key = strings.TrimSuffix(key, ":asc")
		sort.SliceStable(rows, func(i, j int) bool {
			a, b := fmt.Sprint(rows[i][key]), fmt.Sprint(rows[j][key])
			if ai, err1 := strconv.Atoi(a); err1 == nil {
				if bi, err2 := strconv.Atoi(b); err2 == nil {
					if desc {
						return ai > bi
					}
					return ai < bi
				}
			}
			if desc {
				return a > b
			}
			return a < b
		})
	}
	if q.Get("format") == "json" {
		out := make([]map[string]any, 0, len(rows))
		for _, row := range rows {
			o := map[string]any{}
			for _, c := range cols {
				o[c] = row[c]
			}
			out = append(out, o)
		}
		s.writeJSON(w, r, http.StatusOK, out)
		return
	}
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 1, ' ', 0)
	if _, ok := q["v"]; ok {
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	for _, row := range rows {
		vals := make([]string, len(cols))
		for i, c := range cols {
			vals[i] = fmt.Sprint(row[c])
		}
		fmt.Fprintln(tw, strings.Join(vals, "\t"))
	}
	_ = tw.Flush()
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(sb.String()))
	}
}

func humanBytes(n int) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fgb", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fmb", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fkb", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%db", n)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	status := "green"
	shards, unassigned := 0, 0
	for _, ix := range s.indices {
		shards += ix.shards()
		unassigned += ix.shards() * ix.replicas()
	}
	if unassigned > 0 {
		status = "yellow"
	}
	n := len(s.indices)
	s.mu.Unlock()
	s.writeJSON(w, r, http.StatusOK, map[string]any{
		"cluster_name": s.cfg.clusterName, "status": status, "timed_out": false,
		"number_of_nodes": 1, "number_of_data_nodes": 1,
		"active_primary_shards": shards, "active_shards": shards, "relocating_shards": 0,
		"initializing_shards": 0, "unassigned_shards": unassigned, "unassigned_primary_shards": 0,
		"delayed_unassigned_shards": 0, "number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0,
		"task_max_waiting_in_queue_millis": 0,
		"active_shards_percent_as_number":  percent(shards, shards+unassigned), "indices_count": n,
	})
}

func percent(a, b int) float64 {
	if b == 0 {
		return 100
	}
	return float64(a) * 100 / float64(b)
}

func (s *Server) handleRefresh(w http.ResponseWriter, r *http.Request, target string) {
	q := r.URL.Query()
	s.mu.Lock()
	list, e := s.resolve(target, q.Get("ignore_unavailable") == "true", true)
	total := 0
	for _, ix := range list {
		ix.refresh()
		total += ix.shards() * (1 + ix.replicas())
	}
	successful := 0
	for _, ix := range list {
		successful += ix.shards()
	}
	s.mu.Unlock()
	if e != nil {
		s.writeError(w, r, http.StatusNotFound, e)
		return
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{
		"_shards": map[string]any{"total": total, "successful": successful, "failed": 0},
	})
}

func (s *Server) handleGetMapping(w http.ResponseWriter, r *http.Request, target string) {
	s.mu.Lock()
	list, e := s.resolve(target, false, true)
	out := map[string]any{}
	for _, ix := range list {
		out[ix.name] = map[string]any{"mappings": ix.mapping.toJSON(true)}
	}
	s.mu.Unlock()
	if e != nil {
		s.writeError(w, r, http.StatusNotFound, e)
		return
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

func (s *Server) handleCreateIndex(w http.ResponseWriter, r *http.Request, name string, body []byte) {
	var ib *indexBody
	if len(strings.TrimSpace(string(body))) > 0 {
		m, e := decodeObject(body)
		if e != nil {
			s.writeError(w, r, http.StatusBadRequest, e)
			return
		}
		ib = &indexBody{settings: map[string]any{}}
		for k, v := range m {
			switch k {
			case "settings":
				ib.settings = flattenSettings(v)
			case "mappings":
				ib.mappings = v
			case "aliases":
				ib.aliases, _ = v.(map[string]any)
			default:
				s.writeError(w, r, http.StatusBadRequest, newErr("parse_exception", "unknown key [%s] for create index", k))
				return
			}
		}
	}
	s.mu.Lock()
	_, e := s.createIndex(name, ib)
	s.mu.Unlock()
	if e != nil {
		st := http.StatusBadRequest
		s.writeError(w, r, st, e)
		return
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"acknowledged": true, "shards_acknowledged": true, "index": name})
}

func (s *Server) handleDeleteIndex(w http.ResponseWriter, r *http.Request, target string) {
	if strings.Contains(target, "*") || target == "_all" {
		s.writeError(w, r, http.StatusBadRequest, newErr("illegal_argument_exception",
			"Wildcard expressions or all indices are not allowed"))
		return
	}
	q := r.URL.Query()
	s.mu.Lock()
	list, e := s.resolve(target, q.Get("ignore_unavailable") == "true", true)
	if e == nil {
		for _, ix := range list {
			delete(s.indices, ix.name)
		}
	}
	s.mu.Unlock()
	if e != nil {
		s.writeError(w, r, http.StatusNotFound, e)
		return
	}
	s.ack(w, r)
}

func (s *Server) handleGetIndex(w http.ResponseWriter, r *http.Request, target string) {
	s.mu.Lock()
	list, e := s.resolve(target, false, true)
	out := map[string]any{}
	for _, ix := range list {
		aliases := ix.aliases
		if aliases == nil {
			aliases = map[string]any{}
		}
		out[ix.name] = map[string]any{
			"aliases":  aliases,
			"mappings": ix.mapping.toJSON(true),
			"settings": nestSettings(ix.settings),
		}
	}
	s.mu.Unlock()
	if e != nil {
		s.writeError(w, r, http.StatusNotFound, e)
		return
	}
	if r.Method == http.MethodHead && len(out) == 0 {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

func (s *Server) handleGetDoc(w http.ResponseWriter, r *http.Request, indexName, id string) {
	s.mu.Lock()
	ix := s.indices[indexName]
	var d *doc
	if ix != nil {
		d = ix.docs[id]
	}
	s.mu.Unlock()
	if ix == nil {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		s.writeError(w, r, http.StatusNotFound, indexNotFound(indexName))
		return
	}
	if d == nil {
		s.writeJSON(w, r, http.StatusNotFound, map[string]any{"_index": indexName, "_id": id, "found": false})
		return
	}
	out := orderedDoc{Index: indexName, ID: id, Version: d.version, SeqNo: d.seqNo, PrimaryTerm: 1, Found: true}
	if src := r.URL.Query().Get("_source"); src != "false" {
		out.Source = json.RawMessage(d.source)
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

type orderedDoc struct {
	Index       string          `json:"_index"`
	ID          string          `json:"_id"`
	Version     int64           `json:"_version"`
	SeqNo       int64           `json:"_seq_no"`
	PrimaryTerm int64           `json:"_primary_term"`
	Found       bool            `json:"found"`
	Source      json.RawMessage `json:"_source,omitempty"`
}

// handleDocWrite serves the single-document index/create APIs.
func (s *Server) handleDocWrite(w http.ResponseWriter, r *http.Request, indexName, id string, create bool, body []byte) {
	q := r.URL.Query()
	op := bulkOp{action: "index", index: indexName, id: id, source: body}
	if create {
		op.action = "create"
	}
	if v := q.Get("if_seq_no"); v != "" {
		n, _ := strconv.ParseInt(v, 10, 64)
		op.ifSeqNo = &n
	}
	if v := q.Get("if_primary_term"); v != "" {
		n, _ := strconv.ParseInt(v, 10, 64)
		op.ifPrimaryTerm = &n
	}
	if v := q.Get("version"); v != "" {
		n, _ := strconv.ParseInt(v, 10, 64)
		op.version = &n
		op.versionType = q.Get("version_type")
	}
	s.singleOp(w, r, op)
}

func (s *Server) handleDocDelete(w http.ResponseWriter, r *http.Request, indexName, id string) {
	s.singleOp(w, r, bulkOp{action: "delete", index: indexName, id: id})
}

func (s *Server) singleOp(w http.ResponseWriter, r *http.Request, op bulkOp) {
	q := r.URL.Query()
	s.mu.Lock()
	res := s.applyOp(op, q.Get("pipeline"))
	if ix := s.indices[res.Index]; ix != nil && refreshRequested(q) {
		ix.refresh()
	}
	s.mu.Unlock()
	if res.Error != nil {
		s.writeError(w, r, res.Status, res.Error)
		return
	}
	status := res.Status
	res.Status = 0
	s.writeJSON(w, r, status, singleResult{res})
}

// singleResult drops "status" from an item, as the single-document APIs do.
type singleResult struct{ itemResult }

func (sr singleResult) MarshalJSON() ([]byte, error) {
	type noStatus struct {
		Index       string      `json:"_index"`
		ID          string      `json:"_id"`
		Version     int64       `json:"_version"`
		Result      string      `json:"result"`
		Shards      *shardsInfo `json:"_shards,omitempty"`
		SeqNo       *int64      `json:"_seq_no,omitempty"`
		PrimaryTerm *int64      `json:"_primary_term,omitempty"`
	}
	it := sr.itemResult
	out := noStatus{Index: it.Index, ID: it.ID, Version: it.Version, Result: it.Result}
	if it.written {
		shards, seq, term := it.Shards, it.SeqNo, int64(1)
		out.Shards, out.SeqNo, out.PrimaryTerm = &shards, &seq, &term
	}
	return json.Marshal(out)
}
