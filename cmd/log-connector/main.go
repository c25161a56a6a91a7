// Command log-connector archives an objective's log topics to Avro object
// container files, exactly once, in a local directory (-dir) or an object
// store (-store).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

func main() {
	cfg := archive.Defaults()
	fs := flag.NewFlagSet("log-connector", flag.ExitOnError)
	cfg.Common.Register(fs)
	fs.StringVar(&cfg.Dir, "dir", config.Env("RDV_ARCHIVE_DIR", cfg.Dir), "archive root directory, when -store is not given (env RDV_ARCHIVE_DIR)")
	storeURL := fs.String("store", config.Env("RDV_ARCHIVE_STORE", ""), "archive store URL instead of -dir: file:///path, mem://, s3://bucket?region=R[&endpoint=URL&use_path_style=true][&prefix=P] (env RDV_ARCHIVE_STORE)")
	config.ListVar(fs, &cfg.Topics, "topics", "topics to archive, comma-separated (default: every log topic of the objective)")
	fs.Int64Var(&cfg.RotateBytes, "rotate-bytes", cfg.RotateBytes, "finish a file at this size")
	fs.DurationVar(&cfg.RotateInterval, "rotate-interval", config.EnvDuration("RDV_ARCHIVE_ROTATE", cfg.RotateInterval), "finish a file this long after its first record (env RDV_ARCHIVE_ROTATE)")
	fs.DurationVar(&cfg.RetryDelay, "retry-delay", cfg.RetryDelay, "wait this long after a failed write (disk full, store unreachable) before trying again")
	_ = fs.Parse(os.Args[1:])
	stage.Main("log-connector", func(ctx context.Context) error {
		if *storeURL != "" {
			st, err := openStore(ctx, *storeURL)
			if err != nil {
				return fmt.Errorf("-store: %w", err)
			}
			defer st.Close()
			cfg.Storage = st
		}
		return archive.Run(ctx, cfg)
	})
}
