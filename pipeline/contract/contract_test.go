package contract_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/contract"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/model"
)

func newRegistry(t *testing.T) (registry.Client, string) {
	t.Helper()
	srv, err := embedded.New(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	rc, err := registry.New(registry.Config{URL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc, hs.URL
}

// An input schema this build cannot read (sepalLength became a string,
// allowed by compatibility NONE) makes RequireReadable, and so a model
// runner at start, refuse with the field named.
func TestRequireReadableRefuses(t *testing.T) {
	rc, url := newRegistry(t)
	ctx := context.Background()
	set, err := schemas.For("iris")
	if err != nil {
		t.Fatal(err)
	}
	if err := contract.RequireReadable(ctx, rc, "rdv.iris.inputs", set.Text[schemas.Input]); err != nil {
		t.Fatalf("an empty subject must be readable: %v", err)
	}
	if _, err := contract.Register(ctx, rc, set); err != nil {
		t.Fatal(err)
	}
	if err := contract.RequireReadable(ctx, rc, "rdv.iris.inputs", set.Text[schemas.Input]); err != nil {
		t.Fatalf("the same schema must be readable: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPut, url+"/config/rdv.iris.inputs-value", strings.NewReader(`{"compatibility":"NONE"}`))
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("set compatibility NONE: %v %v", err, resp)
	}
	resp.Body.Close()
	broken := strings.Replace(set.Text[schemas.Input], `{"name": "sepalLength", "type": "double"}`, `{"name": "sepalLength", "type": "string"}`, 1)
	if broken == set.Text[schemas.Input] {
		t.Fatal("the test's edit did not apply")
	}
	if _, err := rc.Register(ctx, "rdv.iris.inputs-value", broken); err != nil {
		t.Fatal(err)
	}
	err = contract.RequireReadable(ctx, rc, "rdv.iris.inputs", set.Text[schemas.Input])
	if !errors.Is(err, contract.ErrUnreadable) || !strings.Contains(err.Error(), "sepalLength") {
		t.Fatalf("want ErrUnreadable naming sepalLength, got %v", err)
	}

	cfg := model.Defaults()
	cfg.Common.RegistryURL = url
	cfg.Common.Kafka.Brokers = []string{"127.0.0.1:1"} // never reached
	cfg.ModelPath = "../../models/iris/dt.json"
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = model.Run(rctx, cfg)
	if !errors.Is(err, contract.ErrUnreadable) || !strings.Contains(err.Error(), "sepalLength") {
		t.Fatalf("the model runner should refuse to start naming sepalLength, got %v", err)
	}
	t.Logf("model runner refused to start: %v", err)
}
