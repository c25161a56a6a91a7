package embedded

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/hamba/avro/v2"
)

const (
	schemaTypeAvro = "AVRO"

	modeReadWrite        = "READWRITE"
	modeReadOnly         = "READONLY"
	modeReadOnlyOverride = "READONLY_OVERRIDE"
	modeImport           = "IMPORT"
)

// methods dispatches on the request method and answers 405 in the
// registry's JSON error format otherwise.
type methods map[string]http.HandlerFunc

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := m[r.Method]; ok {
		h(w, r)
		return
	}
	allow := make([]string, 0, len(m))
	for k := range m {
		allow = append(allow, k)
	}
	sort.Strings(allow)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, newErr(http.StatusMethodNotAllowed, http.StatusMethodNotAllowed, "HTTP 405 Method Not Allowed"))
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/{$}", methods{"GET": func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, struct{}{}) }})
	mux.Handle("/schemas", methods{"GET": s.handleListSchemas})
	mux.Handle("/schemas/types", methods{"GET": func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, []string{schemaTypeAvro})
	}})
	mux.Handle("/schemas/ids/{id}", methods{"GET": s.handleSchemaByID})
	mux.Handle("/schemas/ids/{id}/schema", methods{"GET": s.handleRawSchemaByID})
	mux.Handle("/schemas/ids/{id}/subjects", methods{"GET": s.handleSubjectsByID})
	mux.Handle("/schemas/ids/{id}/versions", methods{"GET": s.handleVersionsByID})
	mux.Handle("/subjects", methods{"GET": s.handleListSubjects})
	mux.Handle("/subjects/{subject}", methods{"POST": s.handleLookup, "DELETE": s.handleDeleteSubject})
	mux.Handle("/subjects/{subject}/versions", methods{"GET": s.handleListVersions, "POST": s.handleRegister})
	mux.Handle("/subjects/{subject}/versions/{version}", methods{"GET": s.handleGetVersion, "DELETE": s.handleDeleteVersion})
	mux.Handle("/subjects/{subject}/versions/{version}/schema", methods{"GET": s.handleGetVersionSchema})
	mux.Handle("/subjects/{subject}/versions/{version}/referencedby", methods{"GET": s.handleReferencedBy})
	mux.Handle("/compatibility/subjects/{subject}/versions", methods{"POST": s.handleCompatibility})
	mux.Handle("/compatibility/subjects/{subject}/versions/{version}", methods{"POST": s.handleCompatibility})
	mux.Handle("/config", methods{"GET": s.handleGetConfig, "PUT": s.handlePutConfig, "DELETE": s.handleDeleteConfig})
	mux.Handle("/config/{subject}", methods{"GET": s.handleGetConfig, "PUT": s.handlePutConfig, "DELETE": s.handleDeleteConfig})
	mux.Handle("/mode", methods{"GET": s.handleGetMode, "PUT": s.handlePutMode, "DELETE": s.handleDeleteMode})
	mux.Handle("/mode/{subject}", methods{"GET": s.handleGetMode, "PUT": s.handlePutMode, "DELETE": s.handleDeleteMode})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, newErr(http.StatusNotFound, http.StatusNotFound, "HTTP 404 Not Found"))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.RLock()
		closed := s.closed
		s.mu.RUnlock()
		if closed {
			writeError(w, errClosed)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

/* ---------- request helpers ---------- */

func flag(r *http.Request, name string) bool {
	return strings.EqualFold(r.URL.Query().Get(name), "true")
}

// parseVersion accepts a version number in [1, 2^31-1], "latest" or -1.
func parseVersion(raw string) (version int, latest bool, err error) {
	if strings.EqualFold(raw, "latest") || raw == "-1" {
		return 0, true, nil
	}
	v, perr := strconv.Atoi(raw)
	if perr != nil || v < 1 || v > math.MaxInt32 {
		return 0, false, errInvalidVersion(raw)
	}
	return v, false, nil
}

func validateSubjectName(subject string) error {
	if strings.TrimSpace(subject) == "" || strings.IndexFunc(subject, unicode.IsControl) >= 0 {
		return newErr(http.StatusUnprocessableEntity, codeInvalidSubject, "Invalid subject %q", subject)
	}
	return nil
}

func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return newErr(http.StatusUnprocessableEntity, codeSchemaTooLarge, "Request body is larger than %d bytes", tooBig.Limit)
		}
		return newErr(http.StatusBadRequest, http.StatusBadRequest, "Cannot read request body: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return newErr(http.StatusUnprocessableEntity, http.StatusUnprocessableEntity, "Request body is empty")
	}
	if err := json.Unmarshal(data, v); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return newErr(http.StatusBadRequest, http.StatusBadRequest, "Malformed JSON in request body: %v", err)
		}
		return newErr(http.StatusUnprocessableEntity, http.StatusUnprocessableEntity, "Unprocessable request body: %v", err)
	}
	return nil
}

// schemaRequest is the body of register, lookup and compatibility requests.
// Other fields Confluent clients send (metadata, ruleSet, id, version) are
// accepted and ignored.
type schemaRequest struct {
	Schema     *string     `json:"schema"`
	SchemaType string      `json:"schemaType"`
	References []reference `json:"references"`
}

// candidate is a validated, parsed schema from a request.
type candidate struct {
	schemaType string
	text       string
	refs       []reference
	parsed     avro.Schema
	key        string
}

// prepareLocked validates and parses a submitted schema. Errors are 42201.
func (s *Server) prepareLocked(req *schemaRequest, refsMayBeDeleted bool) (*candidate, error) {
	if req.Schema == nil || strings.TrimSpace(*req.Schema) == "" {
		return nil, errInvalidSchema("Invalid schema: the schema is empty")
	}
	st := strings.ToUpper(strings.TrimSpace(req.SchemaType))
	switch st {
	case "", schemaTypeAvro:
		st = schemaTypeAvro
	case "JSON", "PROTOBUF":
		return nil, errInvalidSchema("Invalid schema: schema type %s is not supported by this registry (only AVRO)", st)
	default:
		return nil, errInvalidSchema("Invalid schema: unknown schema type %q", req.SchemaType)
	}
	var refs []reference
	for _, ref := range req.References {
		if ref.Name == "" || ref.Subject == "" || ref.Version < 1 {
			return nil, errInvalidSchema("Invalid schema: reference %+v needs a name, a subject and a version >= 1", ref)
		}
		refs = append(refs, ref)
	}
	cache, err := s.referenceCacheLocked(refs, refsMayBeDeleted)
	if err != nil {
		return nil, errInvalidSchema("Invalid schema: %v", err)
	}
	parsed, err := parseAvro(*req.Schema, cache)
	if err != nil {
		return nil, errInvalidSchema("Invalid schema: %v", err)
	}
	key, err := identityKey(st, parsed, refs)
	if err != nil {
		return nil, errInvalidSchema("Invalid schema: %v", err)
	}
	return &candidate{schemaType: st, text: compactJSON(*req.Schema), refs: refs, parsed: parsed, key: key}, nil
}

// versionBody is a subject version as returned by the API.
type versionBody struct {
	Subject    string      `json:"subject"`
	Version    int         `json:"version"`
	ID         int         `json:"id"`
	SchemaType string      `json:"schemaType,omitempty"`
	References []reference `json:"references,omitempty"`
	Schema     string      `json:"schema"`
}

func (s *Server) versionBodyLocked(subject string, v *storedVersion) versionBody {
	sc := s.st.Schemas[v.ID]
	return versionBody{
		Subject:    subject,
		Version:    v.Version,
		ID:         v.ID,
		SchemaType: schemaTypeField(sc.SchemaType),
		References: sc.References,
		Schema:     sc.Schema,
	}
}

// schemaTypeField omits the type for Avro, as Confluent does.
func schemaTypeField(t string) string {
	if t == schemaTypeAvro {
		return ""
	}
	return t
}

// hasSubjectLocked mirrors Confluent's notion of a subject existing: it has
// at least one version (a live one unless includeDeleted).
func (s *Server) hasSubjectLocked(subject string, includeDeleted bool) bool {
	sub, ok := s.st.Subjects[subject]
	if !ok {
		return false
	}
	if includeDeleted {
		return len(sub.Versions) > 0
	}
	return sub.hasActive()
}

/* ---------- /schemas ---------- */

func (s *Server) schemaIDParam(r *http.Request) (int, error) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id < 1 {
		return 0, newErr(http.StatusNotFound, codeSchemaNotFound, "Schema %s not found", r.PathValue("id"))
	}
	return id, nil
}

type subjectVersion struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// usesLocked lists the subject versions that use schema id.
func (s *Server) usesLocked(id int, includeDeleted bool) []subjectVersion {
	var out []subjectVersion
	for name, sub := range s.st.Subjects {
		for _, v := range sub.Versions {
			if v.ID == id && (includeDeleted || !v.Deleted) {
				out = append(out, subjectVersion{name, v.Version})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Subject != out[j].Subject {
			return out[i].Subject < out[j].Subject
		}
		return out[i].Version < out[j].Version
	})
	return out
}

// schemaByIDLocked returns the schema with id. An id whose versions were all
// hard-deleted is not found, as with Confluent.
func (s *Server) schemaByIDLocked(id int) (*storedSchema, error) {
	sc, ok := s.st.Schemas[id]
	if !ok {
		return nil, errSchemaIDNotFound(id)
	}
	return sc, nil
}

func (s *Server) handleSchemaByID(w http.ResponseWriter, r *http.Request) {
	id, err := s.schemaIDParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	sc, err := s.schemaByIDLocked(id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		SchemaType string      `json:"schemaType,omitempty"`
		References []reference `json:"references,omitempty"`
		Schema     string      `json:"schema"`
	}{schemaTypeField(sc.SchemaType), sc.References, sc.Schema})
}

func writeRawSchema(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, text)
}

func (s *Server) handleRawSchemaByID(w http.ResponseWriter, r *http.Request) {
	id, err := s.schemaIDParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	sc, err := s.schemaByIDLocked(id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeRawSchema(w, sc.Schema)
}

func (s *Server) handleSubjectsByID(w http.ResponseWriter, r *http.Request) {
	id, err := s.schemaIDParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, err := s.schemaByIDLocked(id); err != nil {
		writeError(w, err)
		return
	}
	out := []string{}
	for _, u := range s.usesLocked(id, flag(r, "deleted")) {
		if len(out) == 0 || out[len(out)-1] != u.Subject {
			out = append(out, u.Subject)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleVersionsByID(w http.ResponseWriter, r *http.Request) {
	id, err := s.schemaIDParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, err := s.schemaByIDLocked(id); err != nil {
		writeError(w, err)
		return
	}
	out := s.usesLocked(id, flag(r, "deleted"))
	if out == nil {
		out = []subjectVersion{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) sortedSubjectsLocked() []*subjectState {
	subs := make([]*subjectState, 0, len(s.st.Subjects))
	for _, sub := range s.st.Subjects {
		subs = append(subs, sub)
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i].Name < subs[j].Name })
	return subs
}

func (s *Server) handleListSchemas(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("subjectPrefix")
	deleted, latestOnly := flag(r, "deleted"), flag(r, "latestOnly")
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []versionBody{}
	for _, sub := range s.sortedSubjectsLocked() {
		if !strings.HasPrefix(sub.Name, prefix) {
			continue
		}
		if latestOnly {
			if v, ok := sub.latest(deleted); ok {
				out = append(out, s.versionBodyLocked(sub.Name, v))
			}
			continue
		}
		for i := range sub.Versions {
			if deleted || !sub.Versions[i].Deleted {
				out = append(out, s.versionBodyLocked(sub.Name, &sub.Versions[i]))
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

/* ---------- /subjects ---------- */

func (s *Server) handleListSubjects(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("subjectPrefix")
	deleted, deletedOnly := flag(r, "deleted"), flag(r, "deletedOnly")
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []string{}
	for _, sub := range s.sortedSubjectsLocked() {
		if len(sub.Versions) == 0 || !strings.HasPrefix(sub.Name, prefix) {
			continue
		}
		active := sub.hasActive()
		switch {
		case deletedOnly && active:
		case !deletedOnly && !deleted && !active:
		default:
			out = append(out, sub.Name)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleListVersions(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	deleted, deletedOnly := flag(r, "deleted"), flag(r, "deletedOnly")
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.hasSubjectLocked(subject, deleted || deletedOnly) {
		writeError(w, errSubjectNotFound(subject))
		return
	}
	out := []int{}
	for _, v := range s.st.Subjects[subject].Versions {
		switch {
		case deletedOnly && !v.Deleted:
		case !deletedOnly && !deleted && v.Deleted:
		default:
			out = append(out, v.Version)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// lookupVersionLocked resolves a version path parameter for reading.
func (s *Server) lookupVersionLocked(subject, raw string, includeDeleted bool) (*storedVersion, error) {
	n, latest, err := parseVersion(raw)
	if err != nil {
		return nil, err
	}
	var v *storedVersion
	ok := false
	if sub, exists := s.st.Subjects[subject]; exists {
		if latest {
			v, ok = sub.latest(includeDeleted)
		} else if v, ok = sub.version(n); ok && v.Deleted && !includeDeleted {
			ok = false
		}
	}
	if !ok {
		if !s.hasSubjectLocked(subject, includeDeleted) {
			return nil, errSubjectNotFound(subject)
		}
		return nil, errVersionNotFound(subject, n)
	}
	return v, nil
}

func (s *Server) handleGetVersion(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, err := s.lookupVersionLocked(subject, r.PathValue("version"), flag(r, "deleted"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.versionBodyLocked(subject, v))
}

func (s *Server) handleGetVersionSchema(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, err := s.lookupVersionLocked(subject, r.PathValue("version"), flag(r, "deleted"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeRawSchema(w, s.st.Schemas[v.ID].Schema)
}

// referrersLocked returns the ids of the versions whose schema references
// subject/version, optionally leaving out versions of one subject.
func (s *Server) referrersLocked(subject string, version int, includeDeleted bool, skipSubject string) []int {
	var ids []int
	for name, sub := range s.st.Subjects {
		if name == skipSubject {
			continue
		}
		for _, v := range sub.Versions {
			if v.Deleted && !includeDeleted {
				continue
			}
			for _, ref := range s.st.Schemas[v.ID].References {
				if ref.Subject == subject && ref.Version == version {
					ids = append(ids, v.ID)
					break
				}
			}
		}
	}
	sort.Ints(ids)
	return slices.Compact(ids)
}

func (s *Server) handleReferencedBy(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	deleted := flag(r, "deleted")
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, err := s.lookupVersionLocked(subject, r.PathValue("version"), deleted)
	if err != nil {
		writeError(w, err)
		return
	}
	ids := s.referrersLocked(subject, v.Version, deleted, "")
	if ids == nil {
		ids = []int{}
	}
	writeJSON(w, http.StatusOK, ids)
}

func (s *Server) handleLookup(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	deleted := flag(r, "deleted")
	var req schemaRequest
	if err := s.readJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.hasSubjectLocked(subject, deleted) {
		writeError(w, errSubjectNotFound(subject))
		return
	}
	cand, err := s.prepareLocked(&req, true)
	if err != nil {
		writeError(w, err)
		return
	}
	sub := s.st.Subjects[subject]
	for i := len(sub.Versions) - 1; i >= 0; i-- {
		v := &sub.Versions[i]
		if (deleted || !v.Deleted) && s.st.Schemas[v.ID].Key == cand.key {
			writeJSON(w, http.StatusOK, s.versionBodyLocked(subject, v))
			return
		}
	}
	writeError(w, errSchemaNotFound())
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	if err := validateSubjectName(subject); err != nil {
		writeError(w, err)
		return
	}
	var req schemaRequest
	if err := s.readJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	body, err := s.register(subject, &req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

type registerBody struct {
	ID         int         `json:"id"`
	Version    int         `json:"version"`
	SchemaType string      `json:"schemaType,omitempty"`
	References []reference `json:"references,omitempty"`
	Schema     string      `json:"schema"`
}

func (s *Server) register(subject string, req *schemaRequest) (*registerBody, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if err := s.writableLocked(subject); err != nil {
		return nil, err
	}
	cand, err := s.prepareLocked(req, false)
	if err != nil {
		return nil, err
	}
	reply := func(id, version int) *registerBody {
		sc := s.st.Schemas[id]
		return &registerBody{ID: id, Version: version, SchemaType: schemaTypeField(sc.SchemaType), References: sc.References, Schema: sc.Schema}
	}

	sub := s.st.Subjects[subject]
	var previous []previousSchema
	if sub != nil {
		// The same schema as a live version: nothing to do.
		for _, v := range sub.Versions {
			if !v.Deleted && s.st.Schemas[v.ID].Key == cand.key {
				return reply(v.ID, v.Version), nil
			}
		}
		for _, v := range sub.Versions {
			if v.Deleted {
				continue
			}
			parsed, err := s.parsedLocked(v.ID)
			if err != nil {
				return nil, errStore(err)
			}
			previous = append(previous, previousSchema{version: v.Version, schema: parsed})
		}
	}
	level := s.effectiveLevelLocked(subject)
	if msgs := checkCompatibility(level, cand.parsed, previous); len(msgs) > 0 {
		return nil, newErr(http.StatusConflict, codeIncompatibleSchema,
			"Schema being registered is incompatible with an earlier schema for subject %q (compatibility level %s): %s",
			subject, level, strings.Join(msgs, "; "))
	}

	ev := &event{Op: opRegister, Subject: subject}
	if id, ok := s.st.byKey[cand.key]; ok {
		ev.ID = id
	} else {
		ev.ID = s.st.NextID
		ev.Schema = &storedSchema{ID: ev.ID, SchemaType: cand.schemaType, Schema: cand.text, References: cand.refs, Key: cand.key}
	}
	ev.Version = 1
	if sub != nil {
		ev.Version = sub.maxVersion() + 1
		// A soft-deleted earlier version with the same id is superseded by
		// the new one (Confluent tombstones it), unless something refers to it.
		for _, v := range sub.Versions {
			if v.Deleted && v.ID == ev.ID && len(s.referrersLocked(subject, v.Version, true, "")) == 0 {
				ev.Drop = append(ev.Drop, v.Version)
			}
		}
	}
	if err := s.commitLocked(ev); err != nil {
		return nil, err
	}
	return reply(ev.ID, ev.Version), nil
}

func (s *Server) handleDeleteSubject(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	permanent := flag(r, "permanent")
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.st.Subjects[subject]
	if !ok || len(sub.Versions) == 0 {
		writeError(w, errSubjectNotFound(subject))
		return
	}
	active := sub.hasActive()
	if permanent && active {
		writeError(w, newErr(http.StatusNotFound, codeSubjectNotSoftDeleted,
			"Subject '%s' was not deleted first before being permanently deleted", subject))
		return
	}
	if !permanent && !active {
		writeError(w, newErr(http.StatusNotFound, codeSubjectSoftDeleted,
			"Subject '%s' was soft deleted. Set permanent=true to delete permanently", subject))
		return
	}
	if err := s.writableLocked(subject); err != nil {
		writeError(w, err)
		return
	}
	versions := []int{}
	for _, v := range sub.Versions {
		if permanent || !v.Deleted {
			if ids := s.referrersLocked(subject, v.Version, permanent, subject); len(ids) > 0 {
				writeError(w, newErr(http.StatusUnprocessableEntity, codeReferenceExists,
					"Subject '%s' version %d is referenced by schema ids %v", subject, v.Version, ids))
				return
			}
			versions = append(versions, v.Version)
		}
	}
	if err := s.commitLocked(&event{Op: opDeleteSubject, Subject: subject, Permanent: permanent}); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, versions)
}

func (s *Server) handleDeleteVersion(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	permanent := flag(r, "permanent")
	n, latest, err := parseVersion(r.PathValue("version"))
	if err != nil {
		writeError(w, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.st.Subjects[subject]
	if !ok || len(sub.Versions) == 0 {
		writeError(w, errSubjectNotFound(subject))
		return
	}
	var v *storedVersion
	if latest {
		v, ok = sub.latest(permanent)
	} else {
		v, ok = sub.version(n)
	}
	if !ok {
		writeError(w, errVersionNotFound(subject, n))
		return
	}
	if !permanent && v.Deleted {
		writeError(w, newErr(http.StatusNotFound, codeVersionSoftDeleted,
			"Subject '%s' Version %d was soft deleted. Set permanent=true to delete permanently", subject, v.Version))
		return
	}
	if permanent && !v.Deleted {
		writeError(w, newErr(http.StatusNotFound, codeVersionNotSoftDeleted,
			"Subject '%s' Version %d was not deleted first before being permanently deleted", subject, v.Version))
		return
	}
	if ids := s.referrersLocked(subject, v.Version, permanent, ""); len(ids) > 0 {
		writeError(w, newErr(http.StatusUnprocessableEntity, codeReferenceExists,
			"Subject '%s' version %d is referenced by schema ids %v", subject, v.Version, ids))
		return
	}
	if err := s.writableLocked(subject); err != nil {
		writeError(w, err)
		return
	}
	version := v.Version
	if err := s.commitLocked(&event{Op: opDeleteVersion, Subject: subject, Version: version, Permanent: permanent}); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, version)
}

/* ---------- /compatibility ---------- */

func (s *Server) handleCompatibility(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	verbose := flag(r, "verbose")
	rawVersion, oneVersion := r.PathValue("version"), r.PathValue("version") != ""
	var (
		n      int
		latest bool
	)
	if oneVersion {
		var err error
		if n, latest, err = parseVersion(rawVersion); err != nil {
			writeError(w, err)
			return
		}
	}
	var req schemaRequest
	if err := s.readJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	sub := s.st.Subjects[subject]
	var versions []storedVersion
	switch {
	case !oneVersion: // all live versions; the level decides which matter
		if sub != nil {
			for _, v := range sub.Versions {
				if !v.Deleted {
					versions = append(versions, v)
				}
			}
		}
	case latest: // no live version: trivially compatible
		if sub != nil {
			if v, ok := sub.latest(false); ok {
				versions = append(versions, *v)
			}
		}
	default:
		var v *storedVersion
		ok := false
		if sub != nil {
			v, ok = sub.version(n)
		}
		if !ok || v.Deleted {
			writeError(w, errVersionNotFound(subject, n))
			return
		}
		versions = append(versions, *v)
	}

	// respond writes {"is_compatible":...}, plus "messages" (always an
	// array) when verbose output was asked for.
	respond := func(msgs []string) {
		if !verbose {
			writeJSON(w, http.StatusOK, struct {
				IsCompatible bool `json:"is_compatible"`
			}{len(msgs) == 0})
			return
		}
		if msgs == nil {
			msgs = []string{}
		}
		writeJSON(w, http.StatusOK, struct {
			IsCompatible bool     `json:"is_compatible"`
			Messages     []string `json:"messages"`
		}{len(msgs) == 0, msgs})
	}
	cand, err := s.prepareLocked(&req, true)
	if err != nil {
		var ae *apiError
		if verbose && errors.As(err, &ae) && ae.code == codeInvalidSchema {
			respond([]string{ae.msg})
			return
		}
		writeError(w, err)
		return
	}
	previous := make([]previousSchema, 0, len(versions))
	for _, v := range versions {
		parsed, err := s.parsedLocked(v.ID)
		if err != nil {
			writeError(w, errStore(err))
			return
		}
		previous = append(previous, previousSchema{version: v.Version, schema: parsed})
	}
	respond(checkCompatibility(s.effectiveLevelLocked(subject), cand.parsed, previous))
}

/* ---------- /config ---------- */

type configBody struct {
	CompatibilityLevel string `json:"compatibilityLevel"`
}

func (s *Server) handleGetConfig(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	s.mu.RLock()
	defer s.mu.RUnlock()
	if subject == "" {
		writeJSON(w, http.StatusOK, configBody{s.globalLevelLocked()})
		return
	}
	if sub, ok := s.st.Subjects[subject]; ok && sub.Compat != "" {
		writeJSON(w, http.StatusOK, configBody{sub.Compat})
		return
	}
	if flag(r, "defaultToGlobal") {
		writeJSON(w, http.StatusOK, configBody{s.globalLevelLocked()})
		return
	}
	writeError(w, newErr(http.StatusNotFound, codeSubjectCompatNotConfigured,
		"Subject '%s' does not have subject-level compatibility configured", subject))
}

func (s *Server) handlePutConfig(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	if subject != "" {
		if err := validateSubjectName(subject); err != nil {
			writeError(w, err)
			return
		}
	}
	var req struct {
		Compatibility *string `json:"compatibility"`
	}
	if err := s.readJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Compatibility == nil { // nothing to change: echo what is in effect
		writeJSON(w, http.StatusOK, map[string]string{"compatibility": s.effectiveLevelLocked(subject)})
		return
	}
	level, ok := normalizeLevel(*req.Compatibility)
	if !ok {
		writeError(w, newErr(http.StatusUnprocessableEntity, codeInvalidCompatibility,
			"Invalid compatibility level %q. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL and FULL_TRANSITIVE",
			*req.Compatibility))
		return
	}
	if err := s.commitLocked(&event{Op: opSetConfig, Subject: subject, Value: level}); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"compatibility": level})
}

func (s *Server) handleDeleteConfig(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	s.mu.Lock()
	defer s.mu.Unlock()
	var old string
	if subject == "" {
		old = s.globalLevelLocked()
		if s.st.GlobalCompat == "" {
			writeJSON(w, http.StatusOK, configBody{old})
			return
		}
	} else {
		sub, ok := s.st.Subjects[subject]
		if !ok || sub.Compat == "" {
			writeError(w, errSubjectNotFound(subject))
			return
		}
		old = sub.Compat
	}
	if err := s.commitLocked(&event{Op: opSetConfig, Subject: subject}); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, configBody{old})
}

/* ---------- /mode ---------- */

type modeBody struct {
	Mode string `json:"mode"`
}

func (s *Server) handleGetMode(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	s.mu.RLock()
	defer s.mu.RUnlock()
	if subject == "" {
		writeJSON(w, http.StatusOK, modeBody{s.globalModeLocked()})
		return
	}
	if sub, ok := s.st.Subjects[subject]; ok && sub.Mode != "" {
		writeJSON(w, http.StatusOK, modeBody{sub.Mode})
		return
	}
	if flag(r, "defaultToGlobal") {
		writeJSON(w, http.StatusOK, modeBody{s.globalModeLocked()})
		return
	}
	writeError(w, newErr(http.StatusNotFound, codeSubjectModeNotConfigured,
		"Subject '%s' does not have subject-level mode configured", subject))
}

func (s *Server) handlePutMode(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	if subject != "" {
		if err := validateSubjectName(subject); err != nil {
			writeError(w, err)
			return
		}
	}
	var req modeBody
	if err := s.readJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	mode := strings.ToUpper(strings.TrimSpace(req.Mode))
	switch mode {
	case modeReadWrite, modeReadOnly, modeReadOnlyOverride:
	case modeImport:
		writeError(w, newErr(http.StatusUnprocessableEntity, codeInvalidMode, "Mode IMPORT is not supported by this registry"))
		return
	default:
		writeError(w, newErr(http.StatusUnprocessableEntity, codeInvalidMode,
			"Invalid mode %q. Valid values are READWRITE, READONLY and READONLY_OVERRIDE", req.Mode))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.commitLocked(&event{Op: opSetMode, Subject: subject, Value: mode}); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, modeBody{mode})
}

func (s *Server) handleDeleteMode(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	s.mu.Lock()
	defer s.mu.Unlock()
	var old string
	if subject == "" {
		old = s.globalModeLocked()
		if s.st.GlobalMode == "" {
			writeJSON(w, http.StatusOK, modeBody{old})
			return
		}
	} else {
		sub, ok := s.st.Subjects[subject]
		if !ok || sub.Mode == "" {
			writeError(w, errSubjectNotFound(subject))
			return
		}
		old = sub.Mode
	}
	if err := s.commitLocked(&event{Op: opSetMode, Subject: subject}); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, modeBody{old})
}
