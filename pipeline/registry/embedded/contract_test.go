package embedded_test

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/registrytest"
)

// The shared contract, against a fresh in-memory server per subtest.
func TestContractInMemory(t *testing.T) {
	registrytest.RunContractTests(t, func(t *testing.T) string {
		srv, err := embedded.New(embedded.Config{})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(func() {
			hs.Close()
			srv.Close()
		})
		return hs.URL
	})
}

// The shared contract, against a durable server on a real loopback
// listener driven by Serve.
func TestContractDurableLoopback(t *testing.T) {
	registrytest.RunContractTests(t, func(t *testing.T) string {
		srv, err := embedded.New(embedded.Config{Dir: t.TempDir(), SnapshotEvery: 5})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, ln) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if err := srv.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return "http://" + ln.Addr().String()
	})
}
