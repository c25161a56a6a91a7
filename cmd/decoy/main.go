// Command decoy logs every model input exactly once.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/stages/decoy"
)

func main() {
	cfg := decoy.Defaults()
	fs := flag.NewFlagSet("decoy", flag.ExitOnError)
	cfg.Common.Register(fs)
	fs.StringVar(&cfg.Group, "group", cfg.Group, "consumer group (default rdv.<objective>.decoy)")
	_ = fs.Parse(os.Args[1:])
	stage.Main("decoy", func(ctx context.Context) error { return decoy.Run(ctx, cfg) })
}
