package registrytest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry/registrytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestContractRealRegistry runs the contract against the registry named by
// $RDV_TEST_REGISTRY_URL (e.g. a Confluent Schema Registry container), and
// is skipped otherwise.
func TestContractRealRegistry(t *testing.T) {
	base := registrytest.RealRegistryURL(t)
	registrytest.RunContractTests(t, func(*testing.T) string { return base })
}
