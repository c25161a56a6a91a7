// Command enricher turns requests into model inputs.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/stages/enricher"
)

func main() {
	cfg := enricher.Defaults()
	fs := flag.NewFlagSet("enricher", flag.ExitOnError)
	cfg.Common.Register(fs)
	fs.StringVar(&cfg.Group, "group", cfg.Group, "consumer group (default rdv.<objective>.enricher)")
	_ = fs.Parse(os.Args[1:])
	stage.Main("enricher", func(ctx context.Context) error { return enricher.Run(ctx, cfg) })
}
