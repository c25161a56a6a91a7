// Command log-connector archives an objective's log topics to Avro object
// container files, exactly once.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

func main() {
	cfg := archive.Defaults()
	fs := flag.NewFlagSet("log-connector", flag.ExitOnError)
	cfg.Common.Register(fs)
	fs.StringVar(&cfg.Dir, "dir", config.Env("RDV_ARCHIVE_DIR", cfg.Dir), "archive root directory (env RDV_ARCHIVE_DIR)")
	config.ListVar(fs, &cfg.Topics, "topics", "topics to archive, comma-separated (default: every log topic of the objective)")
	fs.Int64Var(&cfg.RotateBytes, "rotate-bytes", cfg.RotateBytes, "finish a file at this size")
	fs.DurationVar(&cfg.RotateInterval, "rotate-interval", config.EnvDuration("RDV_ARCHIVE_ROTATE", cfg.RotateInterval), "finish a file this long after its first record (env RDV_ARCHIVE_ROTATE)")
	_ = fs.Parse(os.Args[1:])
	stage.Main("log-connector", func(ctx context.Context) error { return archive.Run(ctx, cfg) })
}
