// Command rendezvous races the models' scores against each request's SLA
// and answers by policy.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/stages/rendezvous"
)

func main() {
	cfg := rendezvous.Defaults()
	fs := flag.NewFlagSet("rendezvous", flag.ExitOnError)
	cfg.Common.Register(fs)
	models := fs.String("models", config.Env("RDV_MODELS", "dt:champion:50ms,canary:canary,challenger:shadow"),
		"declared models in priority order, name:role[:budget], comma-separated: the defaults of the versions the registry announces (env RDV_MODELS)")
	fs.StringVar(&cfg.DefaultResult, "default-result", config.Env("RDV_DEFAULT_RESULT", "unknown"), "answer given when no model answers within the SLA (env RDV_DEFAULT_RESULT)")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "how long past its deadline a decided mailbox waits for the frontend's marker of a call it answered itself; keep above the frontend's -fallback")
	fs.DurationVar(&cfg.Grace, "grace", cfg.Grace, "how long after the deadline a mailbox waits for the models that have not reported")
	fs.DurationVar(&cfg.CommitInterval, "commit-interval", cfg.CommitInterval, "how often decisions and offsets are committed")
	fs.IntVar(&cfg.MaxOpen, "max-open", cfg.MaxOpen, "open mailboxes past which new requests are answered with the default at once")
	policyFile := fs.String("policy", config.Env("RDV_POLICY", ""), "policy document (JSON): priority, latest, ab or ensemble, breaker, per-model budgets, tenants and sampling; see the README (env RDV_POLICY)")
	fs.BoolVar(&cfg.LiveModels, "live-models", cfg.LiveModels, "wait for the model versions the registry rdv.models shows live; false: exactly the -models list")
	fs.DurationVar(&cfg.HeartbeatTTL, "heartbeat-ttl", cfg.HeartbeatTTL, "a model runner is no longer waited for this long after its last heartbeat")
	_ = fs.Parse(os.Args[1:])
	ms, err := rendezvous.ParseModels(*models)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rendezvous:", err)
		os.Exit(2)
	}
	cfg.Models = ms
	if *policyFile != "" {
		if cfg.Policy, err = rendezvous.LoadPolicy(*policyFile); err != nil {
			fmt.Fprintln(os.Stderr, "rendezvous:", err)
			os.Exit(2)
		}
	}
	stage.Main("rendezvous", func(ctx context.Context) error { return rendezvous.Run(ctx, cfg) })
}
