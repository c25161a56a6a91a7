package embedded_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
)

func TestConfigValidate(t *testing.T) {
	_, err := embedded.New(embedded.Config{DefaultCompatibility: "SIDEWAYS"})
	if err == nil || !strings.Contains(err.Error(), "DefaultCompatibility") {
		t.Fatalf("New with a bad level: %v, want an error naming DefaultCompatibility", err)
	}
	_, err = embedded.New(embedded.Config{MaxRequestBytes: -1})
	if err == nil || !strings.Contains(err.Error(), "MaxRequestBytes") {
		t.Fatalf("New with negative MaxRequestBytes: %v", err)
	}
	a := newAPI(t, embedded.Config{DefaultCompatibility: "full_transitive"})
	var cfg struct {
		CompatibilityLevel string `json:"compatibilityLevel"`
	}
	a.ok(http.MethodGet, "/config", nil, &cfg)
	if cfg.CompatibilityLevel != "FULL_TRANSITIVE" {
		t.Fatalf("global level = %q, want FULL_TRANSITIVE", cfg.CompatibilityLevel)
	}
	// DELETE /config returns to the configured default.
	a.ok(http.MethodPut, "/config", map[string]string{"compatibility": "none"}, nil)
	a.ok(http.MethodDelete, "/config", nil, &cfg)
	if cfg.CompatibilityLevel != "NONE" {
		t.Fatalf("DELETE /config returned %q, want the deleted NONE", cfg.CompatibilityLevel)
	}
	a.ok(http.MethodGet, "/config", nil, &cfg)
	if cfg.CompatibilityLevel != "FULL_TRANSITIVE" {
		t.Fatalf("after DELETE /config level = %q, want the default FULL_TRANSITIVE", cfg.CompatibilityLevel)
	}
}

func TestDefaultIsBackward(t *testing.T) {
	a := newAPI(t, embedded.Config{})
	var cfg struct {
		CompatibilityLevel string `json:"compatibilityLevel"`
	}
	a.ok(http.MethodGet, "/config", nil, &cfg)
	if cfg.CompatibilityLevel != "BACKWARD" {
		t.Fatalf("default level %q", cfg.CompatibilityLevel)
	}
}

// The embedded server uses the classic error_code 409 and explains where.
func TestIncompatibleMessages(t *testing.T) {
	a := newAPI(t, embedded.Config{})
	a.register("t-value", record("Order", fID))
	msg := a.fails(http.MethodPost, "/subjects/t-value/versions",
		map[string]string{"schema": record("Order", fIDInt)}, http.StatusConflict, 409)
	for _, want := range []string{`field "id"`, "/id", "int", "string", "version 1", "BACKWARD"} {
		if !strings.Contains(msg, want) {
			t.Errorf("type-change message %q lacks %q", msg, want)
		}
	}
	nested := func(zip string) string {
		return record("Order", fID, `{"name":"address","type":["null",{"type":"record","name":"Address","fields":[`+zip+`]}],"default":null}`)
	}
	a.register("n-value", nested(`{"name":"zip","type":"string"}`))
	msg = a.fails(http.MethodPost, "/subjects/n-value/versions",
		map[string]string{"schema": nested(`{"name":"zip","type":"string"},{"name":"plus4","type":"string"}`)}, http.StatusConflict, 409)
	if !strings.Contains(msg, `field "plus4" (path /address/plus4)`) {
		t.Errorf("nested message %q does not locate address.plus4", msg)
	}
}

func TestEveryResponseIsRegistryJSON(t *testing.T) {
	a := newAPI(t, embedded.Config{})
	a.register("s-value", record("Order", fID))
	for _, c := range []struct {
		method, path string
		status, code int
	}{
		{http.MethodGet, "/", 200, 0},
		{http.MethodGet, "/subjects", 200, 0},
		{http.MethodGet, "/schemas/ids/1/schema", 200, 0},
		{http.MethodGet, "/no/such/route", 404, 404},
		{http.MethodPatch, "/subjects", 405, 405},
		{http.MethodGet, "/schemas/ids/banana", 404, 40403},
	} {
		r := a.call(c.method, c.path, nil)
		if r.status != c.status || r.header.Get("Content-Type") != "application/vnd.schemaregistry.v1+json" {
			t.Errorf("%s %s = %v (Content-Type %q)", c.method, c.path, r, r.header.Get("Content-Type"))
		}
		if c.code != 0 && !strings.Contains(string(r.body), fmt.Sprintf(`"error_code":%d`, c.code)) {
			t.Errorf("%s %s body %s lacks error_code %d", c.method, c.path, r.body, c.code)
		}
	}
	a.fails(http.MethodPost, "/subjects/s-value/versions", `{"schema": `, http.StatusBadRequest, 400)
	a.fails(http.MethodPost, "/subjects/s-value/versions", ``, http.StatusUnprocessableEntity, 422)
	a.fails(http.MethodPost, "/subjects/s-value/versions", map[string]string{"schema": "{}", "schemaType": "PROTOBUF"}, 422, 42201)
	a.fails(http.MethodPost, "/subjects/bad%01name/versions", map[string]string{"schema": record("Order", fID)}, 422, 42208)
}

func TestRequestSizeLimit(t *testing.T) {
	a := newAPI(t, embedded.Config{MaxRequestBytes: 64})
	a.fails(http.MethodPost, "/subjects/big-value/versions",
		map[string]string{"schema": record("Order", fID, fEmailDef, fNoteDef)}, 422, 42209)
}

func TestHardDeletedIDIsGone(t *testing.T) {
	a := newAPI(t, embedded.Config{})
	id := a.register("h-value", record("Order", fID))
	shared := a.register("h-value", record("Order", fID, fEmailDef))
	a.register("keep-value", record("Order", fID, fEmailDef))
	a.ok(http.MethodDelete, "/subjects/h-value", nil, nil)
	a.ok(http.MethodGet, fmt.Sprintf("/schemas/ids/%d", id), nil, nil) // soft-deleted: still served
	a.ok(http.MethodDelete, "/subjects/h-value?permanent=true", nil, nil)
	a.fails(http.MethodGet, fmt.Sprintf("/schemas/ids/%d", id), nil, 404, 40403)
	a.ok(http.MethodGet, fmt.Sprintf("/schemas/ids/%d", shared), nil, nil) // still used by keep-value
	// Like Confluent, the schema comes back under a new id; ids are never reused.
	if again := a.register("other-value", record("Order", fID)); again != shared+1 {
		t.Fatalf("re-registered a hard-deleted schema as id %d, want the new id %d", again, shared+1)
	}
	if again := a.register("other-value", record("Order", fID, fEmailDef)); again != shared {
		t.Fatalf("a schema still in use got id %d, want %d", again, shared)
	}
}

func TestReadOnlyMode(t *testing.T) {
	a := newAPI(t, embedded.Config{})
	a.register("ro-value", record("Order", fID))
	var mode struct {
		Mode string `json:"mode"`
	}
	a.ok(http.MethodGet, "/mode", nil, &mode)
	if mode.Mode != "READWRITE" {
		t.Fatalf("global mode %q", mode.Mode)
	}
	a.fails(http.MethodGet, "/mode/ro-value", nil, 404, 40409)
	a.ok(http.MethodPut, "/mode/ro-value", map[string]string{"mode": "READONLY"}, &mode)
	a.fails(http.MethodPost, "/subjects/ro-value/versions", map[string]string{"schema": record("Order", fID, fEmailDef)}, 422, 42205)
	a.fails(http.MethodDelete, "/subjects/ro-value", nil, 422, 42205)
	a.register("rw-value", record("Order", fID)) // other subjects unaffected
	a.fails(http.MethodPut, "/mode", map[string]string{"mode": "IMPORT"}, 422, 42204)
	a.ok(http.MethodDelete, "/mode/ro-value", nil, &mode)
	if mode.Mode != "READONLY" {
		t.Fatalf("DELETE /mode/ro-value returned %q", mode.Mode)
	}
	a.register("ro-value", record("Order", fID, fEmailDef))
}

func TestSchemaReferences(t *testing.T) {
	a := newAPI(t, embedded.Config{})
	address := `{"type":"record","name":"Address","namespace":"test","fields":[{"name":"zip","type":"string"}]}`
	addrID := a.register("address-value", address)
	order := `{"type":"record","name":"Order","namespace":"test","fields":[{"name":"ship_to","type":"test.Address"}]}`
	ref := map[string]any{"name": "test.Address", "subject": "address-value", "version": 1}

	// Without the reference the type is unknown.
	a.fails(http.MethodPost, "/subjects/order-value/versions", map[string]any{"schema": order}, 422, 42201)
	orderID := a.register("order-value", order, ref)
	if orderID == addrID {
		t.Fatal("referencing schema reused the referenced id")
	}
	var v struct {
		References []map[string]any `json:"references"`
	}
	a.ok(http.MethodGet, "/subjects/order-value/versions/1", nil, &v)
	if len(v.References) != 1 || v.References[0]["subject"] != "address-value" {
		t.Fatalf("references = %v", v.References)
	}
	var by []int
	a.ok(http.MethodGet, "/subjects/address-value/versions/1/referencedby", nil, &by)
	if !slices.Equal(by, []int{orderID}) {
		t.Fatalf("referencedby = %v, want [%d]", by, orderID)
	}
	a.fails(http.MethodDelete, "/subjects/address-value/versions/1", nil, 422, 42206)
	a.fails(http.MethodDelete, "/subjects/address-value", nil, 422, 42206)

	// Compatibility resolves the referenced types too.
	order2 := `{"type":"record","name":"Order","namespace":"test","fields":[{"name":"ship_to","type":"test.Address"},{"name":"n","type":"int"}]}`
	a.fails(http.MethodPost, "/subjects/order-value/versions", map[string]any{"schema": order2, "references": []any{ref}}, 409, 409)

	// Once the referrer is gone for good, the referenced version can go.
	a.ok(http.MethodDelete, "/subjects/order-value", nil, nil)
	a.fails(http.MethodDelete, "/subjects/address-value/versions/1?permanent=true", nil, 404, 40407)
	a.ok(http.MethodDelete, "/subjects/address-value/versions/1", nil, nil)
	a.fails(http.MethodDelete, "/subjects/address-value/versions/1?permanent=true", nil, 422, 42206)
	a.ok(http.MethodDelete, "/subjects/order-value?permanent=true", nil, nil)
	a.ok(http.MethodDelete, "/subjects/address-value/versions/1?permanent=true", nil, nil)
}

// Concurrent registrations get distinct, dense ids and per-subject versions.
func TestConcurrentRegistration(t *testing.T) {
	a := newAPI(t, embedded.Config{Dir: t.TempDir(), SnapshotEvery: 7, DefaultCompatibility: "NONE"})
	const n = 40
	ids := make([]int, n)
	replies := make([]reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			replies[i] = a.call(http.MethodPost, fmt.Sprintf("/subjects/c%d-value/versions", i%4),
				map[string]string{"schema": record(fmt.Sprintf("R%d", i), fID)})
		})
	}
	wg.Wait()
	for i, r := range replies {
		var out struct {
			ID int `json:"id"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil {
			t.Fatalf("registration %d: %v", i, r)
		}
		ids[i] = out.ID
	}
	slices.Sort(ids)
	for i, id := range ids {
		if id != i+1 {
			t.Fatalf("ids = %v, want 1..%d", ids, n)
		}
	}
	for s := range 4 {
		var versions []int
		a.ok(http.MethodGet, fmt.Sprintf("/subjects/c%d-value/versions", s), nil, &versions)
		if !slices.Equal(versions, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
			t.Fatalf("c%d versions = %v", s, versions)
		}
	}
}

func TestCloseAndLocking(t *testing.T) {
	dir := t.TempDir()
	srv, err := embedded.New(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.New(embedded.Config{Dir: dir}); err == nil {
		t.Fatal("a second server opened a locked directory")
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	a := &api{t: t, srv: srv}
	a.fails(http.MethodGet, "/subjects", nil, 500, 50001)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(context.Background(), ln); err == nil {
		t.Fatal("Serve after Close succeeded")
	}
	// The directory is free again.
	srv2, err := embedded.New(embedded.Config{Dir: dir})
	if err != nil {
		t.Fatalf("reopen after Close: %v", err)
	}
	srv2.Close()
}

// Close stops a running Serve loop.
func TestCloseStopsServe(t *testing.T) {
	srv, err := embedded.New(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		close(ready)
		done <- srv.Serve(context.Background(), ln)
	}()
	<-ready
	// Wait until the server answers, so Close races nothing.
	for {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
	}
	http.DefaultClient.CloseIdleConnections()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve returned %v after Close", err)
	}
}

// Whatever a client sends, the answer is a registry error, never a crash.
func TestOddSchemas(t *testing.T) {
	a := newAPI(t, embedded.Config{})
	a.register("odd-value", record("Order", fID))
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	for _, s := range []string{
		`[]`, `{}`, `null`, `"null"`, `[[]]`, `42`, `{"type":{"type":{"type":"int"}}}`,
		`{"type":"fixed","name":"F","size":-1}`, `{"type":"enum","name":"E","symbols":[]}`,
		`{"type":"enum","name":"E","symbols":["A","A"]}`, `{"type":"array"}`, `{"type":"map"}`,
		`{"type":"record","name":"R","fields":[{"name":"r","type":"R"}]}`,
		`{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}`,
		`{"type":"record","name":"1bad","fields":[]}`, `["int","int"]`, `[["int"]]`,
		`{"type":"int","logicalType":"date"}`, `{"type":"bytes","logicalType":"decimal","precision":-1}`,
		deep,
	} {
		for _, path := range []string{"/subjects/odd-value/versions", "/subjects/odd-value", "/compatibility/subjects/odd-value/versions?verbose=true"} {
			r := a.call(http.MethodPost, path, map[string]string{"schema": s})
			if r.status >= 500 {
				t.Errorf("POST %s %.60s: %v", path, s, r)
			}
		}
	}
}
