package archive_test

import (
	"testing"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
	"github.com/rendezvous-ml/rendezvous/connectors/archive/storetest"
)

func TestLocalStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) archive.Store { return archive.NewLocalStore(t.TempDir()) })
}
