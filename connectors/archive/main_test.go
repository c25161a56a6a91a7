package archive

import (
	"testing"

	"go.uber.org/goleak"
)

// TestVerify runs a kfake cluster and franz-go clients: all of them must be
// gone when the package's tests end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
