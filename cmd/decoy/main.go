// Command decoy logs every model input exactly once, and watches the
// inputs and the canary's predictions for drift.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/stages/decoy"
)

func main() {
	cfg := decoy.Defaults()
	fs := flag.NewFlagSet("decoy", flag.ExitOnError)
	cfg.Common.Register(fs)
	fs.StringVar(&cfg.Group, "group", cfg.Group, "consumer group (default rdv.<objective>.decoy)")
	driftOn := fs.Bool("drift", config.Env("RDV_DRIFT", "true") != "false", "run the drift monitor: PSI of the inputs' features and the canary's predictions (env RDV_DRIFT=false turns it off)")
	cfg.Drift.Register(fs, "drift-")
	_ = fs.Parse(os.Args[1:])
	cfg.DriftOff = !*driftOn
	stage.Main("decoy", func(ctx context.Context) error { return decoy.Run(ctx, cfg) })
}
