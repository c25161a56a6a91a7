// Command es-connector indexes an objective's decisions and decoy log into
// Elasticsearch for Kibana.
package main

import (
	"context"
	"flag"
	"os"
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
	_ = fs.Parse(os.Args[1:])
	cfg.ES.URLs = urls
	stage.Main("es-connector", func(ctx context.Context) error { return elastic.Run(ctx, cfg) })
}
