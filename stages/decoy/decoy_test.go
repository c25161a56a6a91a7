package decoy

import (
	"strings"
	"testing"
)

// The drift monitor's settings are checked only when it runs.
func TestValidateDrift(t *testing.T) {
	cfg := Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if cfg.DriftOff {
		t.Error("the drift monitor must be on by default")
	}
	cfg.Drift.WindowSize = 0
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "drift window") {
		t.Errorf("window 0 with drift on: %v, want an error naming the drift window", err)
	}
	cfg.DriftOff = true
	if err := cfg.Validate(); err != nil {
		t.Errorf("window 0 with drift off: %v, want no error", err)
	}
}
