package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
)

// Run a durable registry on a loopback port, register a schema through the
// pipeline's registry.Client, be refused an incompatible change, then restart
// on the same directory and find the same id.
func Example() {
	dir, err := os.MkdirTemp("", "registry-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	start := func() (client registry.Client, stop func()) {
		srv, err := embedded.New(embedded.Config{Dir: dir}) // BACKWARD by default
		if err != nil {
			log.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, ln) }()
		client, err = registry.New(registry.Config{URL: "http://" + ln.Addr().String()})
		if err != nil {
			log.Fatal(err)
		}
		return client, func() {
			client.Close()
			cancel()
			if err := <-done; err != nil {
				log.Fatal(err)
			}
			srv.Close()
		}
	}

	ctx := context.Background()
	v1 := `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}`
	v2 := `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"email","type":"string"}]}`

	client, stop := start()
	id, err := client.Register(ctx, "orders-value", v1)
	fmt.Println("registered id", id, err)
	_, err = client.Register(ctx, "orders-value", v2)
	fmt.Println("incompatible:", errors.Is(err, registry.ErrIncompatible))
	stop()

	client, stop = start()
	defer stop()
	id, _, version, err := client.Latest(ctx, "orders-value")
	fmt.Println("after restart: id", id, "version", version, err)

	// Output:
	// registered id 1 <nil>
	// incompatible: true
	// after restart: id 1 version 1 <nil>
}
