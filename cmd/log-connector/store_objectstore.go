//go:build objectstore

package main

import (
	"context"

	// Object store drivers for -store: mem:// and s3:// (S3 and
	// S3-compatible stores). gcsblob and azureblob work the same way but
	// triple the binary and its dependencies; GCS is reachable through its
	// S3-compatible endpoint.
	_ "gocloud.dev/blob/memblob"
	_ "gocloud.dev/blob/s3blob"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
	"github.com/rendezvous-ml/rendezvous/connectors/archive/blobstore"
)

func openStore(ctx context.Context, url string) (archive.Store, error) {
	return blobstore.Open(ctx, url)
}
