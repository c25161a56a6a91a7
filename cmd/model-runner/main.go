// Command model-runner scores every input of an objective with one model
// version.
package main

import (
	"context"
	"flag"
	"os"
	"strconv"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/stages/model"
)

func main() {
	cfg := model.Defaults()
	fs := flag.NewFlagSet("model-runner", flag.ExitOnError)
	cfg.Common.Register(fs)
	fs.StringVar(&cfg.Kind, "kind", config.Env("RDV_MODEL_KIND", cfg.Kind), "where the model runs: file (the -model file) or http (a model server speaking the Open Inference Protocol) (env RDV_MODEL_KIND)")
	fs.StringVar(&cfg.ModelPath, "model", config.Env("RDV_MODEL", ""), "model file (JSON, rdv-model/v1), for kind file (env RDV_MODEL)")
	fs.StringVar(&cfg.OIP.URL, "url", config.Env("RDV_MODEL_URL", ""), "kind http: the model server's base URL, e.g. http://127.0.0.1:8080 (env RDV_MODEL_URL)")
	fs.StringVar(&cfg.OIP.Model, "remote-model", cfg.OIP.Model, "kind http: the model's name on the server")
	fs.StringVar(&cfg.OIP.Version, "remote-version", cfg.OIP.Version, "kind http: the model's version on the server (default: the server's choice)")
	config.ListVar(fs, &cfg.OIP.Features, "features", "kind http: comma-separated feature names, in the order of the input tensor's columns")
	config.ListVar(fs, &cfg.OIP.Classes, "classes", "kind http: comma-separated classes, in class-index order (needed for an integer label output or -proba-output)")
	fs.StringVar(&cfg.OIP.LabelOutput, "label-output", cfg.OIP.LabelOutput, "kind http: the output holding the label (BYTES) or class index")
	fs.StringVar(&cfg.OIP.ProbaOutput, "proba-output", cfg.OIP.ProbaOutput, "kind http: the output holding the class probabilities, e.g. predict_proba (default: none)")
	fs.DurationVar(&cfg.OIP.Timeout, "remote-timeout", cfg.OIP.Timeout, "kind http: timeout of one call to the model server (retries only within the request's deadline)")
	fs.StringVar(&cfg.Name, "name", config.Env("RDV_MODEL_NAME", ""), "model name (default: the file's)")
	fs.StringVar(&cfg.Version, "version", config.Env("RDV_MODEL_VERSION", ""), "model version (default: the file's)")
	fs.StringVar(&cfg.Role, "role", config.Env("RDV_MODEL_ROLE", cfg.Role), "champion, canary, challenger or shadow")
	fs.StringVar(&cfg.Group, "group", cfg.Group, "consumer group (default rdv.<objective>.model.<name>.<version>)")
	fs.BoolVar(&cfg.FromStart, "from-start", cfg.FromStart, "a new consumer group starts at the oldest input rather than the newest (score history; use with -max-staleness 0)")
	fs.DurationVar(&cfg.MaxStaleness, "max-staleness", cfg.MaxStaleness, "skip inputs whose deadline passed longer ago than this (0 scores all)")
	fs.Func("priority", "announce this priority in the model registry (lower answers first; default: the rendezvous stage's declared order)", func(v string) error {
		n, err := strconv.Atoi(v)
		cfg.Priority = &n
		return err
	})
	fs.Func("budget", "announce this wait budget in the model registry, e.g. 50ms (default: the rendezvous stage's declared budget)", func(v string) error {
		d, err := time.ParseDuration(v)
		cfg.Budget = &d
		return err
	})
	fs.Func("tenant", "announce the model as this tenant's own (it answers only requests whose key is the tenant)", func(v string) error {
		cfg.Tenant = &v
		return nil
	})
	cfg.Replay.Register(fs)
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", cfg.Heartbeat, "interval of the heartbeats on the model registry rdv.models (negative: do not announce)")
	_ = fs.Parse(os.Args[1:])
	stage.Main("model-runner", func(ctx context.Context) error { return model.Run(ctx, cfg) })
}
