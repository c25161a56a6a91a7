// Command rdv is the operator CLI: it runs the pipeline for development
// (rdv dev), provisions topics and schemas, and reads the archive.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/connectors/archive"
	"github.com/rendezvous-ml/rendezvous/ops/dev"
	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/contract"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

const usage = `rdv: the Rendezvous operator CLI

  rdv dev                      run the whole pipeline on this machine (embedded broker and registry by default)
  rdv provision                create an objective's topics and register its schemas on a cluster
  rdv schemas check            compare the working tree's schemas with the registry; non-zero exit if incompatible
  rdv schemas register         register the working tree's schemas
  rdv schemas diff             show field by field what changed against the registry
  rdv models list|promote|retire|activate|set
                               the live model registry: list model versions, promote a challenger, retire a model
  rdv compare <objective> -champion A -challenger B [-since 2h] [-html FILE]
                               compare two models on the same requests: agreement, latency, errors, drift
  rdv replay <objective> <model> -model FILE -since 2h
                               warm a new model version up on history, with a progress bar, then go live
  rdv archive ls               list archive files with their offset ranges and counts
  rdv archive cat [-id ID]     print archived records as JSON lines
  rdv archive verify           check the archive against the topics: no gap, no overlap, counts

Run 'rdv <command> -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "dev":
		err = runDev(os.Args[2:])
	case "provision":
		err = runProvision(os.Args[2:])
	case "schemas":
		if len(os.Args) < 3 {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		err = runSchemas(os.Args[2], os.Args[3:])
	case "models":
		err = runModels(os.Args[2:])
	case "replay":
		err = runReplay(os.Args[2:])
	case "compare":
		err = runCompare(os.Args[2:])
	case "archive":
		if len(os.Args) < 3 {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		err = runArchive(os.Args[2], os.Args[3:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "rdv: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rdv:", err)
		os.Exit(1)
	}
}

func runDev(args []string) error {
	cfg := dev.Defaults()
	exe, _ := os.Executable()
	cfg.Bin = filepath.Dir(exe)
	fs := flag.NewFlagSet("rdv dev", flag.ExitOnError)
	fs.StringVar(&cfg.Dir, "dir", cfg.Dir, "data, logs, pids and archive")
	fs.StringVar(&cfg.Bin, "bin", cfg.Bin, "directory of the stage binaries")
	fs.StringVar(&cfg.Objective, "objective", cfg.Objective, "objective to run")
	brokers := fs.String("brokers", config.Env("RDV_BROKERS", ""), "real Kafka brokers; empty starts the embedded broker (env RDV_BROKERS)")
	fs.StringVar(&cfg.KafkaAddr, "kafka-addr", cfg.KafkaAddr, "embedded broker address")
	fs.StringVar(&cfg.RegistryURL, "registry", config.Env("RDV_REGISTRY_URL", ""), "real Schema Registry URL; empty starts the embedded registry (env RDV_REGISTRY_URL)")
	fs.StringVar(&cfg.RegistryAddr, "registry-addr", cfg.RegistryAddr, "embedded registry address")
	fs.StringVar(&cfg.FrontendAddr, "frontend-addr", cfg.FrontendAddr, "predict API address")
	fs.IntVar(&cfg.HTTPPortBase, "http-port-base", cfg.HTTPPortBase, "first port of the stages' health and metrics servers")
	partitions := fs.Int("partitions", int(cfg.Partitions), "partitions of the objective's topics")
	fs.DurationVar(&cfg.SLA, "sla", cfg.SLA, "answer deadline")
	budget := fs.Duration("champion-budget", cfg.Models[0].Budget, "how long the rendezvous waits for the champion before the canary may answer")
	fs.StringVar(&cfg.DefaultResult, "default-result", cfg.DefaultResult, "answer when no model answers within the SLA")
	fs.DurationVar(&cfg.ArchiveRotate, "archive-rotate", cfg.ArchiveRotate, "how often the log connector finishes an archive file")
	fs.IntVar(&cfg.StageProcs, "stage-procs", cfg.StageProcs, "GOMAXPROCS of every stage unless GOMAXPROCS is set (0: every CPU); 1 halves the latency on a 2-core machine (README, Performance)")
	fs.DurationVar(&cfg.RestartDelay, "restart-delay", cfg.RestartDelay, "first wait before a stage that died is started again (doubles up to 10s)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "", "serve rdv dev's own /healthz, /metrics and Go profiler (the embedded broker and registry) here; empty: off")
	fs.StringVar(&cfg.ESURL, "es-url", config.Env("RDV_ES_URL", ""), "Elasticsearch URL; empty leaves the Elasticsearch connector off (env RDV_ES_URL)")
	_ = fs.Parse(args)
	cfg.Brokers = config.SplitList(*brokers)
	cfg.Partitions = int32(*partitions)
	for i := range cfg.Models {
		if cfg.Models[i].Role == "champion" {
			cfg.Models[i].Budget = *budget
		}
	}
	log := (config.Common{LogLevel: "info", Objective: cfg.Objective}).Logger("rdv-dev")
	var err error
	stage.Main("rdv dev", func(ctx context.Context) error {
		err = dev.Run(ctx, cfg, log)
		return err
	})
	return nil
}

func runProvision(args []string) error {
	var c config.Common
	fs := flag.NewFlagSet("rdv provision", flag.ExitOnError)
	c.Register(fs)
	partitions := fs.Int("partitions", 4, "partitions of the objective's topics")
	_ = fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The stages' own connection settings: SASL, TLS and the registry's
	// credentials apply here too.
	kafka, err := c.Kafka.ClientOpts()
	if err != nil {
		return err
	}
	reg := registry.Config{URL: c.RegistryURL, Username: c.RegistryUser, Password: c.RegistryPass}
	if err := dev.Provision(ctx, kafka, reg, c.Objective, int32(*partitions)); err != nil {
		return err
	}
	fmt.Printf("objective %s provisioned: topics rdv.%s.* and their schemas\n", c.Objective, c.Objective)
	return nil
}

func runArchive(sub string, args []string) error {
	var c config.Common
	fs := flag.NewFlagSet("rdv archive "+sub, flag.ExitOnError)
	c.Register(fs)
	dir := fs.String("dir", config.Env("RDV_ARCHIVE_DIR", "var/archive"), "archive root directory (env RDV_ARCHIVE_DIR)")
	id := fs.String("id", "", "cat: only records whose key (request id) is this")
	topic := fs.String("topic", "", "cat, ls: only this topic")
	_ = fs.Parse(args)
	files, err := archive.Scan(*dir, c.Objective, false)
	if err != nil {
		return err
	}
	switch sub {
	case "ls":
		fmt.Printf("%-28s %4s %12s %12s %8s  %s\n", "TOPIC", "PART", "FIRST", "LAST", "RECORDS", "FILE")
		for _, f := range files {
			if *topic != "" && f.Topic != *topic {
				continue
			}
			n := 0
			if err := archive.Each(f.Path, func(map[string]any) error { n++; return nil }); err != nil {
				return err
			}
			fmt.Printf("%-28s %4d %12d %12d %8d  %s\n", f.Topic, f.Partition, f.First, f.Last, n, f.Path)
		}
		return nil
	case "cat":
		enc := json.NewEncoder(os.Stdout)
		for _, f := range files {
			if *topic != "" && f.Topic != *topic {
				continue
			}
			err := archive.Each(f.Path, func(rec map[string]any) error {
				if k, _ := rec["key"].([]byte); *id != "" && string(k) != *id {
					return nil
				}
				if k, ok := rec["key"].([]byte); ok {
					rec["key"] = string(k)
				}
				return enc.Encode(rec)
			})
			if err != nil {
				return err
			}
		}
		return nil
	case "verify":
		opts, err := c.Kafka.ClientOpts()
		if err != nil {
			return err
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		reps, err := archive.Verify(ctx, cl, *dir, c.Objective)
		if err != nil {
			return err
		}
		bad := 0
		fmt.Printf("%-28s %4s %6s %10s %10s %8s %8s %8s  %s\n", "TOPIC", "PART", "FILES", "ARCHIVED", "IN TOPIC", "MISSING", "EXTRA", "DUPES", "STATUS")
		for _, r := range reps {
			status := "ok"
			if !r.OK() {
				status = "FAIL"
				bad++
				if len(r.Overlaps) > 0 {
					status += " " + strings.Join(r.Overlaps, "; ")
				}
			}
			fmt.Printf("%-28s %4d %6d %10d %10d %8d %8d %8d  %s\n", r.Topic, r.Partition, r.Files, r.Archived, r.InTopic, len(r.Missing), len(r.Extra), r.Dupes, status)
		}
		if bad > 0 {
			return fmt.Errorf("archive verify: %d partition(s) with gaps, overlaps or duplicates", bad)
		}
		fmt.Printf("archive verify: %d partition(s), no gap, no overlap, no duplicate\n", len(reps))
		return nil
	}
	return fmt.Errorf("unknown archive command %q: ls, cat or verify", sub)
}

func runSchemas(sub string, args []string) error {
	var c config.Common
	fs := flag.NewFlagSet("rdv schemas "+sub, flag.ExitOnError)
	c.Register(fs)
	dir := fs.String("dir", "schemas", "the schemas to check or register (common/ and <objective>/)")
	_ = fs.Parse(args)
	set, err := schemas.FromDir(*dir, c.Objective)
	if err != nil {
		return fmt.Errorf("schemas in %s: %w", *dir, err)
	}
	rc, err := registry.New(registry.Config{URL: c.RegistryURL, Username: c.RegistryUser, Password: c.RegistryPass})
	if err != nil {
		return err
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	switch sub {
	case "check":
		findings, err := contract.Check(ctx, rc, set)
		if err != nil {
			return err
		}
		bad := 0
		fmt.Printf("%-32s %-7s %s\n", "SUBJECT", "LATEST", "VERDICT")
		for _, f := range findings {
			latest := "-"
			if f.Latest > 0 {
				latest = fmt.Sprintf("v%d", f.Latest)
			}
			verdict := "compatible, new subject"
			switch {
			case !f.Compatible:
				verdict = "INCOMPATIBLE"
				bad++
			case f.Unchanged:
				verdict = "unchanged"
			case f.Latest > 0:
				verdict = "compatible, changed"
			}
			fmt.Printf("%-32s %-7s %s\n", f.Subject.Subject, latest, verdict)
			for _, m := range f.Messages {
				fmt.Printf("    %s\n", m)
			}
		}
		if bad > 0 {
			return fmt.Errorf("schemas check: %d subject(s) would be rejected by the registry", bad)
		}
		fmt.Printf("schemas check: %d subjects compatible\n", len(findings))
		return nil
	case "register":
		ids, err := contract.Register(ctx, rc, set)
		for _, s := range contract.Subjects(c.Objective) {
			if id, ok := ids[s.Subject]; ok {
				fmt.Printf("%-32s id %d\n", s.Subject, id)
			}
		}
		return err
	case "diff":
		changed := 0
		for _, s := range contract.Subjects(c.Objective) {
			_, latest, version, err := rc.Latest(ctx, s.Subject)
			if errors.Is(err, registry.ErrNotFound) {
				fmt.Printf("%s: not registered yet\n", s.Subject)
				continue
			}
			if err != nil {
				return err
			}
			changes, err := contract.Diff(latest, set.Text[s.Kind])
			if err != nil {
				return err
			}
			if len(changes) == 0 {
				continue
			}
			changed++
			fmt.Printf("%s (registry v%d -> %s):\n", s.Subject, version, *dir)
			for _, ch := range changes {
				fmt.Printf("    %s\n", ch)
			}
		}
		if changed == 0 {
			fmt.Println("no field differs from the registry's latest versions")
		}
		return nil
	}
	return fmt.Errorf("unknown schemas command %q: check, register or diff", sub)
}
