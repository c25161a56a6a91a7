package dev

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rendezvousMetrics serves a models-waited gauge that reads the values in
// turn, then stays at the last.
func rendezvousMetrics(t *testing.T, values ...int) (*Proc, *atomic.Int32) {
	var scrapes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		i := min(int(scrapes.Add(1))-1, len(values)-1)
		fmt.Fprintf(w, "# TYPE rdv_rendezvous_models_waited gauge\nrdv_rendezvous_models_waited{objective=\"iris\"} %d\n", values[i])
	}))
	t.Cleanup(srv.Close)
	return &Proc{Name: "rendezvous", HTTPAddr: strings.TrimPrefix(srv.URL, "http://")}, &scrapes
}

func TestWaitModelsUntilEveryModelIsWaited(t *testing.T) {
	p, scrapes := rendezvousMetrics(t, 0, 1, 2, 3)
	if err := waitModels(context.Background(), []*Proc{{Name: "frontend"}, p}, 3, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := scrapes.Load(); n != 4 {
		t.Fatalf("returned after %d scrapes, want 4 (the first showing 3 models)", n)
	}
}

func TestWaitModelsNamesWhatIsMissing(t *testing.T) {
	p, _ := rendezvousMetrics(t, 1)
	err := waitModels(context.Background(), []*Proc{p}, 3, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "1 of the 3 models") {
		t.Fatalf("err = %v, want it to say 1 of the 3 models", err)
	}
}
