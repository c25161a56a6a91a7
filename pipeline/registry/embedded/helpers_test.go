package embedded_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
)

// api drives a Server's handler in-process.
type api struct {
	t   *testing.T
	srv *embedded.Server
}

func newAPI(t *testing.T, cfg embedded.Config) *api {
	t.Helper()
	srv, err := embedded.New(cfg)
	if err != nil {
		t.Fatalf("embedded.New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return &api{t: t, srv: srv}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body)) }

func (a *api) call(method, path string, body any) reply {
	a.t.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		data, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	rec := httptest.NewRecorder()
	a.srv.Handler().ServeHTTP(rec, req)
	return reply{rec.Code, rec.Header(), rec.Body.Bytes()}
}

// ok asserts 200 and decodes into out.
func (a *api) ok(method, path string, body, out any) {
	a.t.Helper()
	r := a.call(method, path, body)
	if r.status != http.StatusOK {
		a.t.Fatalf("%s %s: want 200, got %v", method, path, r)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			a.t.Fatalf("%s %s: %v in %s", method, path, err, r.body)
		}
	}
}

// fails asserts an error reply and returns its message.
func (a *api) fails(method, path string, body any, status, code int) string {
	a.t.Helper()
	r := a.call(method, path, body)
	var eb struct {
		Code    int    `json:"error_code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(r.body, &eb); err != nil || r.status != status || eb.Code != code {
		a.t.Fatalf("%s %s: want %d/%d, got %v", method, path, status, code, r)
	}
	return eb.Message
}

func (a *api) register(subject, schema string, refs ...map[string]any) int {
	a.t.Helper()
	body := map[string]any{"schema": schema}
	if len(refs) > 0 {
		body["references"] = refs
	}
	var out struct {
		ID int `json:"id"`
	}
	a.ok(http.MethodPost, "/subjects/"+subject+"/versions", body, &out)
	return out.ID
}

func record(name string, fields ...string) string {
	return fmt.Sprintf(`{"type":"record","name":%q,"namespace":"test","fields":[%s]}`, name, strings.Join(fields, ","))
}

const (
	fID       = `{"name":"id","type":"string"}`
	fIDInt    = `{"name":"id","type":"int"}`
	fEmail    = `{"name":"email","type":"string"}`
	fEmailDef = `{"name":"email","type":"string","default":""}`
	fNoteDef  = `{"name":"note","type":["null","string"],"default":null}`
)
