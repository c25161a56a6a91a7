package stage_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test here that starts goroutines (Serve, Loop, kfake clusters and
// franz-go clients) must have stopped them all by the end of the package.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
