// Command model-runner scores every input of an objective with one model
// version.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/stages/model"
)

func main() {
	cfg := model.Defaults()
	fs := flag.NewFlagSet("model-runner", flag.ExitOnError)
	cfg.Common.Register(fs)
	fs.StringVar(&cfg.ModelPath, "model", config.Env("RDV_MODEL", ""), "model file (JSON, rdv-model/v1) (env RDV_MODEL)")
	fs.StringVar(&cfg.Name, "name", config.Env("RDV_MODEL_NAME", ""), "model name (default: the file's)")
	fs.StringVar(&cfg.Version, "version", config.Env("RDV_MODEL_VERSION", ""), "model version (default: the file's)")
	fs.StringVar(&cfg.Role, "role", config.Env("RDV_MODEL_ROLE", cfg.Role), "champion, canary, challenger or shadow")
	fs.StringVar(&cfg.Group, "group", cfg.Group, "consumer group (default rdv.<objective>.model.<name>)")
	fs.DurationVar(&cfg.MaxStaleness, "max-staleness", cfg.MaxStaleness, "skip inputs whose deadline passed longer ago than this (0 scores all)")
	_ = fs.Parse(os.Args[1:])
	stage.Main("model-runner", func(ctx context.Context) error { return model.Run(ctx, cfg) })
}
