package model

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/fleet"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

// announce heartbeats the runner on the live model registry until ctx
// ends: "warming" until its consumer group has assigned it inputs, then
// "live", and "stopped" on a clean shutdown. The rendezvous stage waits
// only for live runners, so a runner that dies stops being waited for
// after the heartbeat TTL, and one that stops cleanly at once.
func announce(ctx context.Context, env *stage.Env, cfg Config) (*fleet.Announcer, func(), error) {
	if cfg.Heartbeat < 0 {
		return nil, func() {}, nil // announcing is off
	}
	codec, err := fleet.NewCodec(ctx, env.Serde)
	if err != nil {
		return nil, nil, fmt.Errorf("model registry: %w", err)
	}
	cl, err := env.Client()
	if err != nil {
		return nil, nil, err
	}
	a, err := fleet.NewAnnouncer(cl, codec, fleet.Event{
		Objective: cfg.Common.Objective, Name: cfg.Name, Version: cfg.Version, Instance: instanceName(cfg.Common.Instance),
		Role: cfg.Role, Priority: cfg.Priority, Budget: cfg.Budget, Tenant: cfg.Tenant, Status: initialStatus(cfg),
	}, cfg.Heartbeat, env.Log)
	if err != nil {
		cl.Close()
		return nil, nil, err
	}
	actx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(actx); err != nil {
			env.Log.Error("model registry heartbeats stopped", "err", err)
		}
	}()
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for !env.Health.Ready() {
			select {
			case <-actx.Done():
				return
			case <-t.C:
			}
		}
		a.SetStatus(fleet.StatusLive)
	}()
	return a, func() { stop(); <-done; cl.Close() }, nil
}

// instanceName tells replicas of one model version apart in the registry.
func instanceName(configured string) string {
	if configured != "" {
		return configured
	}
	h, _ := os.Hostname()
	return h + "-" + strconv.Itoa(os.Getpid())
}

func initialStatus(cfg Config) string {
	if cfg.Replay.Active() {
		return fleet.StatusReplaying
	}
	return fleet.StatusWarming
}
