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
		"expected models in priority order, name:role[:budget], comma-separated (env RDV_MODELS)")
	fs.StringVar(&cfg.DefaultResult, "default-result", config.Env("RDV_DEFAULT_RESULT", "unknown"), "answer given when no model answers within the SLA (env RDV_DEFAULT_RESULT)")
	fs.DurationVar(&cfg.Grace, "grace", cfg.Grace, "how long after the deadline a mailbox waits for the models that have not reported")
	fs.DurationVar(&cfg.CommitInterval, "commit-interval", cfg.CommitInterval, "how often decisions and offsets are committed")
	fs.IntVar(&cfg.MaxOpen, "max-open", cfg.MaxOpen, "open mailboxes past which new requests are answered with the default at once")
	_ = fs.Parse(os.Args[1:])
	ms, err := rendezvous.ParseModels(*models)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rendezvous:", err)
		os.Exit(2)
	}
	cfg.Models = ms
	stage.Main("rendezvous", func(ctx context.Context) error { return rendezvous.Run(ctx, cfg) })
}
