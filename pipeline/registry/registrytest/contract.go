// Package registrytest is the contract a schema registry must honour to back
// the pipeline, as a reusable test suite: run RunContractTests against the
// embedded registry and, when one is available, a real Confluent Schema
// Registry.
package registrytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
)

// EnvRegistryURL names the environment variable that points the suite at a
// real registry (see RealRegistryURL).
const EnvRegistryURL = "RDV_TEST_REGISTRY_URL"

// ContentType is the media type registry responses must carry.
const ContentType = "application/vnd.schemaregistry.v1+json"

// RunContractTests runs the suite. baseURL is called once per subtest and
// returns the registry's base URL (credentials may be embedded as
// https://user:pass@host); it may start a fresh registry each time and
// register its own cleanup with t.Cleanup.
//
// Against a shared registry the suite only touches subjects named
// "rdv-contract-<random>-…", which it deletes (soft, then hard) afterwards;
// the Config subtest changes the global compatibility level for a moment and
// restores it.
func RunContractTests(t *testing.T, baseURL func(t *testing.T) string) {
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"RegisterFetchLatest", testRegisterFetchLatest},
		{"RegisterIsIdempotent", testRegisterIsIdempotent},
		{"SameSchemaUnderTwoSubjectsSharesID", testSharedID},
		{"LookupUnderSubject", testLookup},
		{"UnknownIDsAndSubjects", testUnknown},
		{"Compatibility", testCompatibility},
		{"IncompatibleRegistrationIs409", testIncompatibleRegistration},
		{"InvalidSchemaIs42201", testInvalidSchema},
		{"CompatibilityEndpoint", testCompatibilityEndpoint},
		{"Config", testConfig},
		{"VersionSoftAndHardDelete", testVersionDeletes},
		{"SubjectSoftAndHardDelete", testSubjectDeletes},
		{"ErrorFormat", testErrorFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newEnv(t, baseURL(t)))
		})
	}
}

// RealRegistryURL returns $RDV_TEST_REGISTRY_URL, or skips t with one line
// saying how to run against a real registry.
func RealRegistryURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv(EnvRegistryURL)
	if u == "" {
		t.Skip("real Schema Registry contract tests skipped: set " + EnvRegistryURL + "=http://host:8081 to run them")
	}
	return u
}

/* ---------- environment ---------- */

type env struct {
	t        *testing.T
	base     string // no trailing slash; may carry user:pass@
	hc       *http.Client
	prefix   string
	ns       string
	subjects []string
	clients  []registry.Client
}

func newEnv(t *testing.T, base string) *env {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tag := strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.FormatUint(rand.Uint64()%1296, 36)
	e := &env{
		t:      t,
		base:   strings.TrimRight(base, "/"),
		hc:     &http.Client{Transport: tr, Timeout: 15 * time.Second},
		prefix: "rdv-contract-" + tag,
		ns:     "rdv.contract.t" + tag,
	}
	t.Cleanup(func() {
		for _, s := range e.subjects {
			p := "/subjects/" + url.PathEscape(s)
			e.raw(http.MethodDelete, p, nil)
			e.raw(http.MethodDelete, p+"?permanent=true", nil)
			e.raw(http.MethodDelete, "/config/"+url.PathEscape(s), nil)
		}
		for _, c := range e.clients {
			c.Close()
		}
		tr.CloseIdleConnections()
	})
	return e
}

// subject returns a fresh subject name, remembered for cleanup.
func (e *env) subject(name string) string {
	s := e.prefix + "-" + name + "-value"
	e.subjects = append(e.subjects, s)
	return s
}

// client returns a new registry.Client (so no cache carries over).
func (e *env) client() registry.Client {
	e.t.Helper()
	c, err := registry.New(registry.Config{URL: e.base, Timeout: 15 * time.Second})
	if err != nil {
		e.t.Fatalf("registry.New: %v", err)
	}
	e.clients = append(e.clients, c)
	return c
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// record builds an Avro record schema named Order in the test's namespace.
func (e *env) record(fields ...string) string {
	return fmt.Sprintf(`{"type":"record","name":"Order","namespace":%q,"fields":[%s]}`, e.ns, strings.Join(fields, ","))
}

type response struct {
	status      int
	contentType string
	body        []byte
}

func (r response) String() string {
	return fmt.Sprintf("HTTP %d (%s) %s", r.status, r.contentType, bytes.TrimSpace(r.body))
}

// raw sends a request; body is marshalled to JSON unless nil.
func (e *env) raw(method, path string, body any) (response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("Accept", ContentType)
	resp, err := e.hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header.Get("Content-Type"), data}, err
}

func (e *env) do(method, path string, body any) response {
	e.t.Helper()
	r, err := e.raw(method, path, body)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// ok asserts a 200 and decodes the body into out (if non-nil).
func (e *env) ok(method, path string, body, out any) response {
	e.t.Helper()
	r := e.do(method, path, body)
	if r.status != http.StatusOK {
		e.t.Fatalf("%s %s: want HTTP 200, got %v", method, path, r)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, r.body, err)
		}
	}
	return r
}

// fails asserts an error response with the given HTTP status and one of the
// given error codes, in the registry's JSON error format; it returns the
// message.
func (e *env) fails(method, path string, body any, status int, codes ...int) string {
	e.t.Helper()
	r := e.do(method, path, body)
	var eb struct {
		Code    *int   `json:"error_code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(r.body, &eb); err != nil || eb.Code == nil {
		e.t.Fatalf("%s %s: want a JSON error body, got %v", method, path, r)
	}
	if r.status != status || !slices.Contains(codes, *eb.Code) {
		e.t.Fatalf("%s %s: want HTTP %d with error_code in %v, got %v", method, path, status, codes, r)
	}
	if eb.Message == "" {
		e.t.Errorf("%s %s: error without a message: %v", method, path, r)
	}
	return eb.Message
}

func (e *env) register(subject, schema string) int {
	e.t.Helper()
	id, err := e.client().Register(e.ctx(), subject, schema)
	if err != nil {
		e.t.Fatalf("Register(%s): %v", subject, err)
	}
	return id
}

func sp(subject string) string { return url.PathEscape(subject) }

func schemaBody(s string) map[string]any { return map[string]any{"schema": s} }

// sameAvro compares two schema texts after parsing (registries may
// reformat what they store).
func sameAvro(t *testing.T, got, want string) {
	t.Helper()
	canon := func(s string) string {
		p, err := avro.ParseWithCache(s, "", &avro.SchemaCache{})
		if err != nil {
			t.Fatalf("parse %s: %v", s, err)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if canon(got) != canon(want) {
		t.Fatalf("schema differs:\n got %s\nwant %s", got, want)
	}
}

func wantInts(t *testing.T, what string, got, want []int) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// Field snippets used throughout.
const (
	fID         = `{"name":"id","type":"string"}`
	fIDInt      = `{"name":"id","type":"int"}`
	fEmail      = `{"name":"email","type":"string"}`
	fEmailDef   = `{"name":"email","type":"string","default":""}`
	fCountInt   = `{"name":"count","type":"int"}`
	fCountLong  = `{"name":"count","type":"long"}`
	fNoteDef    = `{"name":"note","type":["null","string"],"default":null}`
	maxSchemaID = math.MaxInt32 - 7
)

/* ---------- subtests ---------- */

func testRegisterFetchLatest(t *testing.T, e *env) {
	c := e.client()
	subject := e.subject("fetch")
	schema := e.record(fID)
	id, err := c.Register(e.ctx(), subject, schema)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if id <= 0 {
		t.Fatalf("Register returned id %d", id)
	}
	got, err := e.client().SchemaByID(e.ctx(), id)
	if err != nil {
		t.Fatalf("SchemaByID(%d): %v", id, err)
	}
	sameAvro(t, got, schema)

	lid, lschema, lversion, err := c.Latest(e.ctx(), subject)
	if err != nil {
		t.Fatalf("Latest: %v", err)
	}
	if lid != id || lversion != 1 {
		t.Fatalf("Latest = id %d version %d, want id %d version 1", lid, lversion, id)
	}
	sameAvro(t, lschema, schema)

	var v struct {
		Subject string `json:"subject"`
		Version int    `json:"version"`
		ID      int    `json:"id"`
		Schema  string `json:"schema"`
	}
	e.ok(http.MethodGet, "/subjects/"+sp(subject)+"/versions/1", nil, &v)
	if v.Subject != subject || v.Version != 1 || v.ID != id {
		t.Fatalf("GET version 1 = %+v", v)
	}
	sameAvro(t, v.Schema, schema)

	// A second version gets a new id and version 2.
	schema2 := e.record(fID, fEmailDef)
	id2, err := c.Register(e.ctx(), subject, schema2)
	if err != nil {
		t.Fatalf("Register v2: %v", err)
	}
	if id2 == id {
		t.Fatalf("a different schema got the same id %d", id)
	}
	if lid, _, lversion, err = c.Latest(e.ctx(), subject); err != nil || lid != id2 || lversion != 2 {
		t.Fatalf("Latest after v2 = id %d version %d err %v, want id %d version 2", lid, lversion, err, id2)
	}
	var versions []int
	e.ok(http.MethodGet, "/subjects/"+sp(subject)+"/versions", nil, &versions)
	wantInts(t, "versions", versions, []int{1, 2})

	var subjects []string
	e.ok(http.MethodGet, "/subjects", nil, &subjects)
	if !slices.Contains(subjects, subject) {
		t.Fatalf("GET /subjects = %v, want it to contain %s", subjects, subject)
	}
}

func testRegisterIsIdempotent(t *testing.T, e *env) {
	subject := e.subject("idem")
	schema := e.record(fID, fEmailDef)
	id := e.register(subject, schema)

	// Same schema, different formatting, through a client with no cache.
	reformatted := strings.ReplaceAll(strings.ReplaceAll(schema, ",", ", "), ":", ": ")
	if again := e.register(subject, reformatted); again != id {
		t.Fatalf("re-registering the same schema gave id %d, want %d", again, id)
	}
	// And raw, to see the registry itself answer with the existing id.
	var out struct {
		ID int `json:"id"`
	}
	e.ok(http.MethodPost, "/subjects/"+sp(subject)+"/versions", schemaBody(schema), &out)
	if out.ID != id {
		t.Fatalf("POST versions again: id %d, want %d", out.ID, id)
	}
	var versions []int
	e.ok(http.MethodGet, "/subjects/"+sp(subject)+"/versions", nil, &versions)
	wantInts(t, "versions after re-registering", versions, []int{1})
}

func testSharedID(t *testing.T, e *env) {
	a, b := e.subject("share-a"), e.subject("share-b")
	schema := e.record(fID)
	idA := e.register(a, schema)
	idB := e.register(b, schema)
	if idA != idB {
		t.Fatalf("same schema under two subjects: ids %d and %d, want one id", idA, idB)
	}
	var subjects []string
	e.ok(http.MethodGet, fmt.Sprintf("/schemas/ids/%d/subjects", idA), nil, &subjects)
	if !slices.Contains(subjects, a) || !slices.Contains(subjects, b) {
		t.Fatalf("GET /schemas/ids/%d/subjects = %v, want %s and %s", idA, subjects, a, b)
	}
	var versions []struct {
		Subject string `json:"subject"`
		Version int    `json:"version"`
	}
	e.ok(http.MethodGet, fmt.Sprintf("/schemas/ids/%d/versions", idA), nil, &versions)
	found := 0
	for _, v := range versions {
		if (v.Subject == a || v.Subject == b) && v.Version == 1 {
			found++
		}
	}
	if found != 2 {
		t.Fatalf("GET /schemas/ids/%d/versions = %+v, want %s/1 and %s/1", idA, versions, a, b)
	}
}

func testLookup(t *testing.T, e *env) {
	subject := e.subject("lookup")
	schema := e.record(fID)
	id := e.register(subject, schema)
	e.register(subject, e.record(fID, fEmailDef))

	c := e.client()
	gotID, version, err := c.Lookup(e.ctx(), subject, schema)
	if err != nil || gotID != id || version != 1 {
		t.Fatalf("Lookup = id %d version %d err %v, want id %d version 1", gotID, version, err, id)
	}
	var out struct {
		Subject string `json:"subject"`
		ID      int    `json:"id"`
		Version int    `json:"version"`
		Schema  string `json:"schema"`
	}
	e.ok(http.MethodPost, "/subjects/"+sp(subject), schemaBody(schema), &out)
	if out.Subject != subject || out.ID != id || out.Version != 1 {
		t.Fatalf("POST /subjects/%s = %+v", subject, out)
	}

	unregistered := e.record(fID, fNoteDef)
	if _, _, err := c.Lookup(e.ctx(), subject, unregistered); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Lookup(unregistered schema) error = %v, want ErrNotFound", err)
	}
	e.fails(http.MethodPost, "/subjects/"+sp(subject), schemaBody(unregistered), http.StatusNotFound, 40403)

	missing := e.subject("lookup-missing")
	if _, _, err := c.Lookup(e.ctx(), missing, schema); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Lookup(unknown subject) error = %v, want ErrNotFound", err)
	}
	e.fails(http.MethodPost, "/subjects/"+sp(missing), schemaBody(schema), http.StatusNotFound, 40401)
}

func testUnknown(t *testing.T, e *env) {
	c := e.client()
	if _, err := c.SchemaByID(e.ctx(), maxSchemaID); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("SchemaByID(unknown) error = %v, want ErrNotFound", err)
	}
	var re *registry.Error
	if _, err := c.SchemaByID(e.ctx(), maxSchemaID); !errors.As(err, &re) || re.Code != 40403 {
		t.Fatalf("SchemaByID(unknown) error = %v, want *registry.Error with code 40403", err)
	}
	e.fails(http.MethodGet, fmt.Sprintf("/schemas/ids/%d", maxSchemaID), nil, http.StatusNotFound, 40403)

	missing := e.subject("missing")
	if _, _, _, err := c.Latest(e.ctx(), missing); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Latest(unknown subject) error = %v, want ErrNotFound", err)
	}
	e.fails(http.MethodGet, "/subjects/"+sp(missing)+"/versions", nil, http.StatusNotFound, 40401)
	e.fails(http.MethodGet, "/subjects/"+sp(missing)+"/versions/latest", nil, http.StatusNotFound, 40401)

	subject := e.subject("known")
	e.register(subject, e.record(fID))
	e.fails(http.MethodGet, "/subjects/"+sp(subject)+"/versions/9", nil, http.StatusNotFound, 40402)
}

// compatCase is one row of the compatibility table: with the subject at
// level and history registered in order, is candidate accepted?
type compatCase struct {
	name      string
	level     string
	history   [][]string // field lists
	candidate []string
	wantOK    bool
	mention   string // a substring the explanation must contain
}

var compatCases = []compatCase{
	{"backward/add field with default", "BACKWARD", [][]string{{fID}}, []string{fID, fEmailDef}, true, ""},
	{"backward/add field without default", "BACKWARD", [][]string{{fID}}, []string{fID, fEmail}, false, "email"},
	{"backward/string to int", "BACKWARD", [][]string{{fID}}, []string{fIDInt}, false, ""},
	{"backward/int to long promotion", "BACKWARD", [][]string{{fID, fCountInt}}, []string{fID, fCountLong}, true, ""},
	{"backward/long to int", "BACKWARD", [][]string{{fID, fCountLong}}, []string{fID, fCountInt}, false, ""},
	{"backward/remove field", "BACKWARD", [][]string{{fID, fEmail}}, []string{fID}, true, ""},
	{"forward/add field without default", "FORWARD", [][]string{{fID}}, []string{fID, fEmail}, true, ""},
	{"forward/remove field without default", "FORWARD", [][]string{{fID, fEmail}}, []string{fID}, false, "email"},
	{"forward/int to long", "FORWARD", [][]string{{fID, fCountInt}}, []string{fID, fCountLong}, false, ""},
	{"full/add field with default", "FULL", [][]string{{fID}}, []string{fID, fEmailDef}, true, ""},
	{"full/add field without default", "FULL", [][]string{{fID}}, []string{fID, fEmail}, false, "email"},
	// Transitive levels check every live version, the others only the latest.
	{"backward/only latest", "BACKWARD", [][]string{{fID}, {fID, fEmailDef}}, []string{fID, fEmail}, true, ""},
	{"backward_transitive/all versions", "BACKWARD_TRANSITIVE", [][]string{{fID}, {fID, fEmailDef}}, []string{fID, fEmail}, false, "email"},
	{"forward/only latest", "FORWARD", [][]string{{fID, fEmail}, {fID, fEmailDef}}, []string{fID}, true, ""},
	{"forward_transitive/all versions", "FORWARD_TRANSITIVE", [][]string{{fID, fEmail}, {fID, fEmailDef}}, []string{fID}, false, "email"},
	{"full/only latest", "FULL", [][]string{{fID}, {fID, fEmailDef}}, []string{fID, fEmail}, true, ""},
	{"full_transitive/all versions", "FULL_TRANSITIVE", [][]string{{fID}, {fID, fEmailDef}}, []string{fID, fEmail}, false, "email"},
	{"none/anything goes", "NONE", [][]string{{fID, fEmail}}, []string{fIDInt}, true, ""},
}

func testCompatibility(t *testing.T, e *env) {
	for i, tc := range compatCases {
		t.Run(tc.name, func(t *testing.T) {
			subject := e.subject(fmt.Sprintf("compat%d", i))
			e.ok(http.MethodPut, "/config/"+sp(subject), map[string]string{"compatibility": tc.level}, nil)
			for _, fields := range tc.history {
				e.register(subject, e.record(fields...))
			}
			candidate := e.record(tc.candidate...)
			c := e.client()

			ok, msgs, err := c.CheckCompatible(e.ctx(), subject, candidate)
			if err != nil {
				t.Fatalf("CheckCompatible: %v", err)
			}
			if ok != tc.wantOK {
				t.Fatalf("CheckCompatible = %v (%q), want %v", ok, msgs, tc.wantOK)
			}
			if !ok && len(msgs) == 0 {
				t.Fatalf("CheckCompatible: incompatible without messages")
			}
			if tc.mention != "" && !strings.Contains(strings.Join(msgs, "\n"), tc.mention) {
				t.Fatalf("CheckCompatible messages %q do not mention %q", msgs, tc.mention)
			}

			id, err := c.Register(e.ctx(), subject, candidate)
			switch {
			case tc.wantOK && err != nil:
				t.Fatalf("Register: %v", err)
			case tc.wantOK && id <= 0:
				t.Fatalf("Register returned id %d", id)
			case !tc.wantOK && !errors.Is(err, registry.ErrIncompatible):
				t.Fatalf("Register error = %v, want ErrIncompatible", err)
			case !tc.wantOK && tc.mention != "" && !strings.Contains(err.Error(), tc.mention):
				t.Fatalf("Register error %q does not mention %q", err, tc.mention)
			}
		})
	}

	// A subject with no versions accepts anything.
	ok, _, err := e.client().CheckCompatible(e.ctx(), e.subject("compat-empty"), e.record(fID))
	if err != nil || !ok {
		t.Fatalf("CheckCompatible on an empty subject = %v, %v; want true", ok, err)
	}
}

func testIncompatibleRegistration(t *testing.T, e *env) {
	subject := e.subject("conflict")
	e.ok(http.MethodPut, "/config/"+sp(subject), map[string]string{"compatibility": "BACKWARD"}, nil)
	e.register(subject, e.record(fID))
	// 409 is the classic code; Confluent releases from late 2025 send 40901.
	msg := e.fails(http.MethodPost, "/subjects/"+sp(subject)+"/versions",
		schemaBody(e.record(fID, fEmail)), http.StatusConflict, 409, 40901)
	if !strings.Contains(msg, "email") {
		t.Fatalf("409 message %q does not name the field email", msg)
	}
	var versions []int
	e.ok(http.MethodGet, "/subjects/"+sp(subject)+"/versions", nil, &versions)
	wantInts(t, "versions after a rejected registration", versions, []int{1})
}

func testInvalidSchema(t *testing.T, e *env) {
	subject := e.subject("invalid")
	for _, bad := range []string{
		`{"type":"record","name":"Broken"}`, // no fields
		`{"type":"record","name":"Broken","fields":[{"name":"x","type":"NoSuchType"}]}`,
		`not json at all`,
	} {
		e.fails(http.MethodPost, "/subjects/"+sp(subject)+"/versions", schemaBody(bad), http.StatusUnprocessableEntity, 42201)
		if _, err := e.client().Register(e.ctx(), subject, bad); !errors.Is(err, registry.ErrInvalidSchema) {
			t.Fatalf("Register(%s) error = %v, want ErrInvalidSchema", bad, err)
		}
	}
}

func testCompatibilityEndpoint(t *testing.T, e *env) {
	subject := e.subject("compat-endpoint")
	e.ok(http.MethodPut, "/config/"+sp(subject), map[string]string{"compatibility": "BACKWARD"}, nil)
	e.register(subject, e.record(fID))
	bad, good := schemaBody(e.record(fID, fEmail)), schemaBody(e.record(fID, fEmailDef))

	type result struct {
		IsCompatible *bool     `json:"is_compatible"`
		Messages     *[]string `json:"messages"`
	}
	for _, path := range []string{"/versions/latest", "/versions/1", "/versions"} {
		base := "/compatibility/subjects/" + sp(subject) + path
		var r result
		e.ok(http.MethodPost, base+"?verbose=true", bad, &r)
		if r.IsCompatible == nil || *r.IsCompatible || r.Messages == nil || len(*r.Messages) == 0 {
			t.Fatalf("POST %s?verbose=true (incompatible) = %+v", base, r)
		}
		if !strings.Contains(strings.Join(*r.Messages, "\n"), "email") {
			t.Fatalf("POST %s?verbose=true messages %q do not name email", base, *r.Messages)
		}
		r = result{}
		e.ok(http.MethodPost, base, bad, &r)
		if r.IsCompatible == nil || *r.IsCompatible || r.Messages != nil {
			t.Fatalf("POST %s (incompatible, not verbose) = %+v, want is_compatible false and no messages", base, r)
		}
		r = result{}
		e.ok(http.MethodPost, base, good, &r)
		if r.IsCompatible == nil || !*r.IsCompatible {
			t.Fatalf("POST %s (compatible) = %+v", base, r)
		}
	}
	e.fails(http.MethodPost, "/compatibility/subjects/"+sp(subject)+"/versions/7", good, http.StatusNotFound, 40402)
	e.fails(http.MethodPost, "/compatibility/subjects/"+sp(subject)+"/versions/zero", good, http.StatusUnprocessableEntity, 42202)
}

func testConfig(t *testing.T, e *env) {
	var global struct {
		CompatibilityLevel string `json:"compatibilityLevel"`
	}
	e.ok(http.MethodGet, "/config", nil, &global)
	if global.CompatibilityLevel == "" {
		t.Fatalf("GET /config: no compatibilityLevel")
	}
	other := "FULL"
	if global.CompatibilityLevel == other {
		other = "BACKWARD"
	}
	t.Cleanup(func() {
		e.raw(http.MethodPut, "/config", map[string]string{"compatibility": global.CompatibilityLevel})
	})
	var echo struct {
		Compatibility string `json:"compatibility"`
	}
	e.ok(http.MethodPut, "/config", map[string]string{"compatibility": other}, &echo)
	if echo.Compatibility != other {
		t.Fatalf("PUT /config echoed %q, want %q", echo.Compatibility, other)
	}
	var now struct {
		CompatibilityLevel string `json:"compatibilityLevel"`
	}
	e.ok(http.MethodGet, "/config", nil, &now)
	if now.CompatibilityLevel != other {
		t.Fatalf("GET /config after PUT = %q, want %q", now.CompatibilityLevel, other)
	}
	e.ok(http.MethodPut, "/config", map[string]string{"compatibility": global.CompatibilityLevel}, nil)
	e.fails(http.MethodPut, "/config", map[string]string{"compatibility": "SIDEWAYS"}, http.StatusUnprocessableEntity, 42203)

	subject := e.subject("config")
	path := "/config/" + sp(subject)
	// 40408 on current registries; older ones answered 40401.
	e.fails(http.MethodGet, path, nil, http.StatusNotFound, 40408, 40401)
	var sub struct {
		CompatibilityLevel string `json:"compatibilityLevel"`
	}
	e.ok(http.MethodGet, path+"?defaultToGlobal=true", nil, &sub)
	if sub.CompatibilityLevel != global.CompatibilityLevel {
		t.Fatalf("GET %s?defaultToGlobal=true = %q, want the global %q", path, sub.CompatibilityLevel, global.CompatibilityLevel)
	}
	e.ok(http.MethodPut, path, map[string]string{"compatibility": "FULL_TRANSITIVE"}, &echo)
	if echo.Compatibility != "FULL_TRANSITIVE" {
		t.Fatalf("PUT %s echoed %q", path, echo.Compatibility)
	}
	e.ok(http.MethodGet, path, nil, &sub)
	if sub.CompatibilityLevel != "FULL_TRANSITIVE" {
		t.Fatalf("GET %s = %q, want FULL_TRANSITIVE", path, sub.CompatibilityLevel)
	}
	e.fails(http.MethodPut, path, map[string]string{"compatibility": "SIDEWAYS"}, http.StatusUnprocessableEntity, 42203)

	// The subject level governs registration.
	e.register(subject, e.record(fID))
	if _, err := e.client().Register(e.ctx(), subject, e.record(fID, fEmail)); !errors.Is(err, registry.ErrIncompatible) {
		t.Fatalf("Register under FULL_TRANSITIVE: %v, want ErrIncompatible", err)
	}
	e.ok(http.MethodPut, path, map[string]string{"compatibility": "NONE"}, nil)
	e.register(subject, e.record(fID, fEmail))

	e.ok(http.MethodDelete, path, nil, &sub)
	if sub.CompatibilityLevel != "NONE" {
		t.Fatalf("DELETE %s returned %q, want the deleted level NONE", path, sub.CompatibilityLevel)
	}
	e.fails(http.MethodGet, path, nil, http.StatusNotFound, 40408, 40401)
	e.fails(http.MethodDelete, path, nil, http.StatusNotFound, 40401)
}

func testVersionDeletes(t *testing.T, e *env) {
	subject := e.subject("vdel")
	p := "/subjects/" + sp(subject) + "/versions"
	schemaA, schemaB := e.record(fID), e.record(fID, fEmailDef)
	idA := e.register(subject, schemaA)
	e.register(subject, schemaB)

	e.fails(http.MethodDelete, p+"/1?permanent=true", nil, http.StatusNotFound, 40407)
	var deleted int
	e.ok(http.MethodDelete, p+"/1", nil, &deleted)
	if deleted != 1 {
		t.Fatalf("DELETE %s/1 returned %d", p, deleted)
	}
	e.fails(http.MethodDelete, p+"/1", nil, http.StatusNotFound, 40406)

	var versions []int
	e.ok(http.MethodGet, p, nil, &versions)
	wantInts(t, "live versions", versions, []int{2})
	e.ok(http.MethodGet, p+"?deleted=true", nil, &versions)
	wantInts(t, "versions with deleted", versions, []int{1, 2})
	e.fails(http.MethodGet, p+"/1", nil, http.StatusNotFound, 40402)
	var v struct {
		ID int `json:"id"`
	}
	e.ok(http.MethodGet, p+"/1?deleted=true", nil, &v)
	if v.ID != idA {
		t.Fatalf("GET %s/1?deleted=true id = %d, want %d", p, v.ID, idA)
	}
	// Soft-deleted schemas still resolve by id: consumers need them.
	if got, err := e.client().SchemaByID(e.ctx(), idA); err != nil {
		t.Fatalf("SchemaByID of a soft-deleted version: %v", err)
	} else {
		sameAvro(t, got, schemaA)
	}
	e.fails(http.MethodPost, "/subjects/"+sp(subject), schemaBody(schemaA), http.StatusNotFound, 40403)
	e.ok(http.MethodPost, "/subjects/"+sp(subject)+"?deleted=true", schemaBody(schemaA), &v)
	if v.ID != idA {
		t.Fatalf("lookup with deleted=true id = %d, want %d", v.ID, idA)
	}

	e.ok(http.MethodDelete, p+"/1?permanent=true", nil, &deleted)
	if deleted != 1 {
		t.Fatalf("DELETE %s/1?permanent=true returned %d", p, deleted)
	}
	e.ok(http.MethodGet, p+"?deleted=true", nil, &versions)
	wantInts(t, "versions after hard delete", versions, []int{2})
	e.fails(http.MethodDelete, p+"/1?permanent=true", nil, http.StatusNotFound, 40402)
	e.fails(http.MethodDelete, p+"/7", nil, http.StatusNotFound, 40402)
	e.fails(http.MethodDelete, p+"/seven", nil, http.StatusUnprocessableEntity, 42202)

	// Nothing uses idA any more: it is gone, and registering the schema again
	// yields a new id and the next version number.
	e.fails(http.MethodGet, fmt.Sprintf("/schemas/ids/%d", idA), nil, http.StatusNotFound, 40403)
	if id := e.register(subject, schemaA); id == idA {
		t.Fatalf("re-registering a hard-deleted schema reused id %d", id)
	}
	if _, _, version, err := e.client().Latest(e.ctx(), subject); err != nil || version != 3 {
		t.Fatalf("Latest after re-registering = version %d, %v; want 3", version, err)
	}
}

func testSubjectDeletes(t *testing.T, e *env) {
	subject := e.subject("sdel")
	p := "/subjects/" + sp(subject)
	e.ok(http.MethodPut, "/config/"+sp(subject), map[string]string{"compatibility": "BACKWARD"}, nil)
	id1 := e.register(subject, e.record(fID))
	e.register(subject, e.record(fID, fEmailDef))

	e.fails(http.MethodDelete, p+"?permanent=true", nil, http.StatusNotFound, 40405)
	var versions []int
	e.ok(http.MethodDelete, p, nil, &versions)
	wantInts(t, "soft-deleted versions", versions, []int{1, 2})
	e.fails(http.MethodDelete, p, nil, http.StatusNotFound, 40404)

	var subjects []string
	e.ok(http.MethodGet, "/subjects", nil, &subjects)
	if slices.Contains(subjects, subject) {
		t.Fatalf("GET /subjects still lists soft-deleted %s", subject)
	}
	e.ok(http.MethodGet, "/subjects?deleted=true", nil, &subjects)
	if !slices.Contains(subjects, subject) {
		t.Fatalf("GET /subjects?deleted=true does not list soft-deleted %s", subject)
	}
	if _, _, _, err := e.client().Latest(e.ctx(), subject); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Latest of a soft-deleted subject: %v, want ErrNotFound", err)
	}
	e.fails(http.MethodGet, p+"/versions", nil, http.StatusNotFound, 40401)
	e.ok(http.MethodGet, p+"/versions?deleted=true", nil, &versions)
	wantInts(t, "versions?deleted=true", versions, []int{1, 2})
	if _, err := e.client().SchemaByID(e.ctx(), id1); err != nil {
		t.Fatalf("SchemaByID after soft-deleting the subject: %v", err)
	}

	// Soft-deleted versions no longer constrain compatibility, and version
	// numbers continue after them.
	e.register(subject, e.record(fIDInt))
	e.ok(http.MethodGet, p+"/versions", nil, &versions)
	wantInts(t, "versions after registering into a soft-deleted subject", versions, []int{3})

	e.ok(http.MethodDelete, p, nil, &versions)
	wantInts(t, "second soft delete", versions, []int{3})
	e.ok(http.MethodDelete, p+"?permanent=true", nil, &versions)
	wantInts(t, "hard-deleted versions", versions, []int{1, 2, 3})
	e.ok(http.MethodGet, "/subjects?deleted=true", nil, &subjects)
	if slices.Contains(subjects, subject) {
		t.Fatalf("GET /subjects?deleted=true still lists hard-deleted %s", subject)
	}
	e.fails(http.MethodGet, p+"/versions?deleted=true", nil, http.StatusNotFound, 40401)
	e.fails(http.MethodDelete, p, nil, http.StatusNotFound, 40401)
	e.fails(http.MethodDelete, p+"?permanent=true", nil, http.StatusNotFound, 40401)
	// A hard delete takes the subject's config with it.
	e.fails(http.MethodGet, "/config/"+sp(subject), nil, http.StatusNotFound, 40408, 40401)

	// Versions start again at 1.
	e.register(subject, e.record(fID))
	e.ok(http.MethodGet, p+"/versions", nil, &versions)
	wantInts(t, "versions after re-creating the subject", versions, []int{1})
}

func testErrorFormat(t *testing.T, e *env) {
	missing := e.subject("err-missing")
	r := e.do(http.MethodGet, "/subjects/"+sp(missing)+"/versions", nil)
	if r.status != http.StatusNotFound {
		t.Fatalf("want 404, got %v", r)
	}
	if !strings.HasPrefix(r.contentType, ContentType) {
		t.Fatalf("error Content-Type = %q, want %s", r.contentType, ContentType)
	}
	var eb map[string]any
	if err := json.Unmarshal(r.body, &eb); err != nil {
		t.Fatalf("error body is not JSON: %v", r)
	}
	if code, _ := eb["error_code"].(float64); code != 40401 {
		t.Fatalf("error_code = %v, want 40401 (%v)", eb["error_code"], r)
	}
	if msg, _ := eb["message"].(string); msg == "" {
		t.Fatalf("error without message: %v", r)
	}

	subject := e.subject("err")
	e.register(subject, e.record(fID))
	ok := e.ok(http.MethodGet, "/subjects/"+sp(subject)+"/versions/latest", nil, nil)
	if !strings.HasPrefix(ok.contentType, ContentType) {
		t.Fatalf("Content-Type = %q, want %s", ok.contentType, ContentType)
	}
	e.fails(http.MethodGet, "/subjects/"+sp(subject)+"/versions/notanumber", nil, http.StatusUnprocessableEntity, 42202)
	e.fails(http.MethodGet, "/subjects/"+sp(subject)+"/versions/0", nil, http.StatusUnprocessableEntity, 42202)
}
