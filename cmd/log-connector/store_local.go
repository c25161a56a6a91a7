//go:build !objectstore

package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
)

// Without the objectstore build tag the binary carries no cloud SDK (it
// builds in a fraction of the time): -store takes file:// URLs only.
func openStore(_ context.Context, url string) (archive.Store, error) {
	if dir, ok := strings.CutPrefix(url, "file://"); ok {
		return archive.NewLocalStore(dir), nil
	}
	return nil, fmt.Errorf("%q: this log-connector was built without object store drivers; build it with `make build-objectstore` (go build -tags objectstore) for mem:// and s3:// URLs", url)
}
