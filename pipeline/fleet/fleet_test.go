package fleet_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/rendezvous-ml/rendezvous/pipeline/fleet"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
)

func ptr[T any](v T) *T { return &v }

func hb(name, version, instance, role, status string, at time.Time) fleet.Event {
	return fleet.Event{Kind: fleet.KindHeartbeat, Objective: "iris", Name: name, Version: version,
		Instance: instance, Role: role, Status: status, At: at}
}

func apply(st *fleet.State, es ...fleet.Event) {
	for _, e := range es {
		e := e
		st.Apply(e.Key(), &e)
	}
}

func find(ms []fleet.Model, key string) (fleet.Model, bool) {
	for _, m := range ms {
		if m.Key() == key {
			return m, true
		}
	}
	return fleet.Model{}, false
}

func TestStateFolding(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	ttl := 3 * time.Second
	cases := []struct {
		name   string
		events []fleet.Event
		now    time.Time
		key    string
		status string
		role   string
		waited bool
	}{
		{"fresh live heartbeat", []fleet.Event{hb("dt", "1", "a", "champion", fleet.StatusLive, t0)}, t0.Add(time.Second), "dt@1", fleet.StatusLive, "champion", true},
		{"heartbeat exactly at the ttl is fresh", []fleet.Event{hb("dt", "1", "a", "champion", fleet.StatusLive, t0)}, t0.Add(ttl), "dt@1", fleet.StatusLive, "champion", true},
		{"heartbeat past the ttl is stale", []fleet.Event{hb("dt", "1", "a", "champion", fleet.StatusLive, t0)}, t0.Add(ttl + time.Millisecond), "dt@1", "stale", "champion", false},
		{"stopped is not waited", []fleet.Event{hb("dt", "1", "a", "champion", fleet.StatusStopped, t0)}, t0, "dt@1", fleet.StatusStopped, "champion", false},
		{"replaying is not waited", []fleet.Event{hb("dt", "2", "a", "challenger", fleet.StatusReplaying, t0)}, t0, "dt@2", fleet.StatusReplaying, "challenger", false},
		{"one live instance of two makes the version live", []fleet.Event{
			hb("dt", "1", "a", "champion", fleet.StatusDraining, t0),
			hb("dt", "1", "b", "champion", fleet.StatusLive, t0.Add(-time.Second)),
		}, t0, "dt@1", fleet.StatusLive, "champion", true},
		{"a directive for every version changes the role", []fleet.Event{
			hb("ch", "1", "a", "challenger", fleet.StatusLive, t0),
			{Kind: fleet.KindDirective, Objective: "iris", Name: "ch", Role: "champion", At: t0},
		}, t0, "ch@1", fleet.StatusLive, "champion", true},
		{"an exact version's directive wins over the name's", []fleet.Event{
			hb("ch", "1", "a", "challenger", fleet.StatusLive, t0),
			{Kind: fleet.KindDirective, Objective: "iris", Name: "ch", Version: "1", Role: "canary", At: t0.Add(-time.Hour)},
			{Kind: fleet.KindDirective, Objective: "iris", Name: "ch", Role: "champion", At: t0},
		}, t0, "ch@1", fleet.StatusLive, "canary", true},
		{"retired is never waited, whatever the runner says", []fleet.Event{
			hb("dt", "1", "a", "champion", fleet.StatusLive, t0),
			{Kind: fleet.KindDirective, Objective: "iris", Name: "dt", Status: fleet.StatusRetired, At: t0},
		}, t0, "dt@1", fleet.StatusRetired, "champion", false},
		{"active undoes retired", []fleet.Event{
			hb("dt", "1", "a", "champion", fleet.StatusLive, t0),
			{Kind: fleet.KindDirective, Objective: "iris", Name: "dt", Version: "1", Status: fleet.StatusActive, At: t0},
			{Kind: fleet.KindDirective, Objective: "iris", Name: "dt", Status: fleet.StatusRetired, At: t0},
		}, t0, "dt@1", fleet.StatusLive, "champion", true},
		{"another objective's directive does not apply", []fleet.Event{
			hb("dt", "1", "a", "champion", fleet.StatusLive, t0),
			{Kind: fleet.KindDirective, Objective: "churn", Name: "dt", Status: fleet.StatusRetired, At: t0},
		}, t0, "dt@1", fleet.StatusLive, "champion", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := fleet.NewState()
			apply(st, c.events...)
			m, ok := find(st.Models("iris", c.now, ttl), c.key)
			if !ok {
				t.Fatalf("%s not listed", c.key)
			}
			if m.Status != c.status || m.Role != c.role || m.Waited() != c.waited {
				t.Fatalf("got status %q role %q waited %v, want %q %q %v", m.Status, m.Role, m.Waited(), c.status, c.role, c.waited)
			}
		})
	}
}

func TestTombstoneRemoves(t *testing.T) {
	st := fleet.NewState()
	e := hb("dt", "1", "a", "champion", fleet.StatusLive, time.Now())
	apply(st, e)
	st.Apply(e.Key(), nil)
	if ms := st.Models("", time.Now(), time.Second); len(ms) != 0 {
		t.Fatalf("after a tombstone: %v", ms)
	}
}

func TestValidateNamesField(t *testing.T) {
	cases := map[string]fleet.Event{
		"version":  {Kind: fleet.KindHeartbeat, Objective: "iris", Name: "dt", Status: fleet.StatusLive},
		"status":   {Kind: fleet.KindHeartbeat, Objective: "iris", Name: "dt", Version: "1", Status: "up"},
		"name":     {Kind: fleet.KindDirective, Objective: "iris", Name: "dt@1"},
		"role":     {Kind: fleet.KindDirective, Objective: "iris", Name: "dt", Role: "king"},
		"priority": {Kind: fleet.KindDirective, Objective: "iris", Name: "dt", Priority: ptr(-1)},
		"kind":     {Kind: "x", Objective: "iris", Name: "dt"},
	}
	for field, e := range cases {
		err := e.Validate()
		if err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("%s: got %v", field, err)
		}
	}
}

// A runner's announcer and a directive reach a watcher over a real
// Kafka-protocol broker, through the registry's Avro schema.
func TestAnnounceAndWatch(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics.Models))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, err := embedded.New(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer func() { hs.Close(); srv.Close() }()
	rc, err := registry.New(registry.Config{URL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	codec, err := fleet.NewCodec(ctx, serde.New(rc))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))

	pub, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// Already there before the watcher starts: read before Ready.
	if err := fleet.Publish(ctx, pub, codec, fleet.Event{Kind: fleet.KindDirective, Objective: "iris", Name: "ch",
		Role: "champion", Priority: ptr(0), Budget: ptr(40 * time.Millisecond), At: time.Now(), By: "test"}); err != nil {
		t.Fatal(err)
	}

	wcl, err := kgo.NewClient(append(fleet.ConsumeOpts(), kgo.SeedBrokers(c.ListenAddrs()...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer wcl.Close()
	w := fleet.NewWatcher(wcl, codec, log)
	wctx, wstop := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	select {
	case <-w.Ready():
	case <-ctx.Done():
		t.Fatal("watcher never ready")
	}

	a, err := fleet.NewAnnouncer(pub, codec, fleet.Event{Objective: "iris", Name: "ch", Version: "1", Instance: "ch-0",
		Role: "challenger", Tenant: ptr("acme")}, 50*time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}
	actx, astop := context.WithCancel(ctx)
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	a.SetProgress(fleet.Progress{Done: 10, Left: 30, Rate: 10})
	a.SetStatus(fleet.StatusLive)

	waitFor := func(what string, ok func(fleet.Model) bool) fleet.Model {
		t.Helper()
		for {
			if m, found := find(w.Models("iris", time.Now(), time.Second), "ch@1"); found && ok(m) {
				return m
			}
			select {
			case <-w.Changed():
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				t.Fatalf("never saw %s: %+v", what, w.Models("iris", time.Now(), time.Second))
			}
		}
	}
	m := waitFor("live", func(m fleet.Model) bool { return m.Waited() })
	if m.Role != "champion" || !m.Directed || m.Budget == nil || *m.Budget != 40*time.Millisecond || m.Tenant != "acme" {
		t.Fatalf("directive not folded in: %+v", m)
	}
	if len(m.Instances) != 1 || m.Instances[0] != "ch-0" {
		t.Fatalf("instances %v", m.Instances)
	}
	astop()
	if err := <-adone; err != nil {
		t.Fatal(err)
	}
	waitFor("stopped", func(m fleet.Model) bool { return m.Status == fleet.StatusStopped && !m.Waited() })
	wstop()
	if err := <-wdone; err != nil {
		t.Fatal(err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
