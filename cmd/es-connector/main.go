// Command es-connector indexes an objective's decisions and decoy log into
// Elasticsearch for Kibana.
package main

import (
	"context"
	"flag"
	"os"
	"strconv"
	"time"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic"
	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

func main() {
	cfg := elastic.Defaults()
	fs := flag.NewFlagSet("es-connector", flag.ExitOnError)
	cfg.Common.Register(fs)
	urls := config.SplitList(config.Env("RDV_ES_URL", ""))
	config.ListVar(fs, &urls, "es", "Elasticsearch URLs, comma-separated (env RDV_ES_URL)")
	fs.StringVar(&cfg.ES.Username, "es-user", config.Env("RDV_ES_USER", ""), "Elasticsearch user (env RDV_ES_USER)")
	fs.StringVar(&cfg.ES.Password, "es-password", config.Env("RDV_ES_PASSWORD", ""), "Elasticsearch password (env RDV_ES_PASSWORD)")
	fs.StringVar(&cfg.ES.APIKey, "es-api-key", config.Env("RDV_ES_API_KEY", ""), "Elasticsearch API key (env RDV_ES_API_KEY)")
	fs.StringVar(&cfg.ES.CACert, "es-ca", config.Env("RDV_ES_CA", ""), "PEM CA for Elasticsearch over https (env RDV_ES_CA)")
	fs.DurationVar(&cfg.ES.Timeout, "es-timeout", 30*time.Second, "timeout of one Elasticsearch call")
	fs.StringVar(&cfg.ScoreIndex, "score-index", cfg.ScoreIndex, "index prefix of decisions")
	fs.StringVar(&cfg.DecoyIndex, "decoy-index", cfg.DecoyIndex, "index prefix of the decoy log")
	fs.IntVar(&cfg.MaxBatch, "max-batch", cfg.MaxBatch, "documents per bulk call at most")
	fs.BoolVar(&cfg.DataStreams, "data-streams", envBool("RDV_ES_DATA_STREAMS"),
		"index into data streams <prefix>-<objective> with create actions instead of dated indices <prefix>-yyyy.mm.dd (env RDV_ES_DATA_STREAMS)")
	fs.StringVar(&cfg.ILMPolicy, "ilm-policy", config.Env("RDV_ES_ILM_POLICY", ""),
		"lifecycle policy the index templates set as index.lifecycle.name (env RDV_ES_ILM_POLICY)")
	fs.StringVar(&cfg.ILMPolicyFile, "ilm-policy-file", config.Env("RDV_ES_ILM_POLICY_FILE", ""),
		"JSON file of the lifecycle policy to install as -ilm-policy at start, e.g. ops/elastic/ilm-policy.json (env RDV_ES_ILM_POLICY_FILE)")
	_ = fs.Parse(os.Args[1:])
	cfg.ES.URLs = urls
	stage.Main("es-connector", func(ctx context.Context) error { return elastic.Run(ctx, cfg) })
}

// envBool reads a boolean environment variable; unset or unparsable is false.
func envBool(name string) bool {
	v, err := strconv.ParseBool(config.Env(name, "false"))
	return err == nil && v
}
