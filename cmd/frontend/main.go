// Command frontend serves the predict API and puts each call on the
// objective's requests topic.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/rendezvous-ml/rendezvous/frontend"
	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

func main() {
	cfg := frontend.Defaults()
	fs := flag.NewFlagSet("frontend", flag.ExitOnError)
	cfg.Common.Register(fs)
	cfg.Addr = config.Env("RDV_FRONTEND_ADDR", cfg.Addr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "address of the predict API (env RDV_FRONTEND_ADDR)")
	config.ListVar(fs, &cfg.Objectives, "objectives", "objectives served, comma-separated; the first is POST /predict's (default: -objective)")
	fs.DurationVar(&cfg.SLA, "sla", config.EnvDuration("RDV_SLA", cfg.SLA), "answer deadline of each request (env RDV_SLA)")
	fs.DurationVar(&cfg.Grace, "grace", cfg.Grace, "without -default-result: how long past the SLA a call waits before a 504 when the rendezvous stage is silent")
	fs.StringVar(&cfg.DefaultResult, "default-result", config.Env("RDV_DEFAULT_RESULT", "unknown"), "answered by the frontend itself (reason expired) when no decision arrived -fallback after the SLA; empty: wait -grace, then 504 (env RDV_DEFAULT_RESULT)")
	fs.DurationVar(&cfg.Fallback, "fallback", cfg.Fallback, "how long past the SLA the frontend answers -default-result itself (keep it above the rendezvous stage's -expire)")
	replyPartition := fs.Int("reply-partition", config.EnvInt("RDV_REPLY_PARTITION", 0), "this instance's own partition of the results topic (env RDV_REPLY_PARTITION)")
	fs.Int64Var(&cfg.MaxBody, "max-body", cfg.MaxBody, "largest accepted request body, bytes")
	fs.StringVar(&cfg.DirectModel, "direct-model", config.Env("RDV_DIRECT_MODEL", ""), "benchmark baseline: evaluate this model file in process and answer without the pipeline (env RDV_DIRECT_MODEL)")
	objectivesSet := false
	_ = fs.Parse(os.Args[1:])
	fs.Visit(func(f *flag.Flag) { objectivesSet = objectivesSet || f.Name == "objectives" })
	if !objectivesSet {
		cfg.Objectives = []string{cfg.Common.Objective}
	}
	cfg.ReplyPartition = int32(*replyPartition)
	stage.Main("frontend", func(ctx context.Context) error { return frontend.Run(ctx, cfg) })
}
