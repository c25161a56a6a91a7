// Command pipeline is the end-to-end benchmark: an open-loop load generator
// against the whole pipeline as `rdv dev` runs it (embedded broker and
// registry, every stage a process, the Elasticsearch connector on the test
// server), stepping the rate up to saturation, then the same rates against
// the frontend with the champion in process. It writes
// bench/results/latest.json and latest.svg and prints a summary. Package
// bench/loadtest does the work. It asserts nothing: it reports.
//
//	make build && go run ./bench/pipeline [-sustain 60s] [-step 15s] [-brokers host:9092]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/rendezvous-ml/rendezvous/bench/loadtest"
	"github.com/rendezvous-ml/rendezvous/pipeline/config"
)

// esfakeFlag re-executes this binary as the Elasticsearch test server.
const esfakeFlag = "-serve-esfake"

func main() {
	if len(os.Args) == 2 && os.Args[1] == esfakeFlag {
		if err := loadtest.ServeESFake(); err != nil {
			fmt.Fprintln(os.Stderr, "esfake:", err)
			os.Exit(1)
		}
		return
	}
	c := loadtest.Defaults()
	fs := flag.NewFlagSet("bench/pipeline", flag.ExitOnError)
	fs.StringVar(&c.Root, "root", ".", "repository root")
	fs.StringVar(&c.Bin, "bin", "bin", "stage binaries (make build)")
	fs.StringVar(&c.Out, "out", c.Out, "directory of latest.json and latest.svg")
	fs.StringVar(&c.Work, "dir", "", "rdv dev's directory (default: a temporary one)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the pipeline's directory (logs, data) afterwards")
	brokers := fs.String("brokers", config.Env("RDV_BENCH_BROKERS", ""), "real Kafka brokers instead of the embedded broker; the iris topics there are deleted first (env RDV_BENCH_BROKERS)")
	fs.StringVar(&c.RegistryURL, "registry", config.Env("RDV_BENCH_REGISTRY_URL", ""), "real Schema Registry (env RDV_BENCH_REGISTRY_URL)")
	fs.StringVar(&c.ESURL, "es-url", config.Env("RDV_BENCH_ES_URL", ""), "real Elasticsearch instead of the test server (env RDV_BENCH_ES_URL)")
	rates := fs.String("rates", joinRates(c.Rates), "fixed steps, req/s")
	fs.Float64Var(&c.SustainRate, "sustain-rate", c.SustainRate, "the step held for -sustain")
	fs.DurationVar(&c.SustainFor, "sustain", c.SustainFor, "how long the sustained step lasts")
	fs.DurationVar(&c.StepFor, "step", c.StepFor, "how long every other step lasts")
	fs.DurationVar(&c.DirectFor, "direct", c.DirectFor, "how long each direct baseline step lasts")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "unreported warm-up at 500 req/s")
	fs.Float64Var(&c.SaturationFactor, "factor", c.SaturationFactor, "rate factor between steps after the fixed ones; 1 stops after them")
	fs.Float64Var(&c.MaxRate, "max-rate", c.MaxRate, "highest rate tried")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", c.MaxInFlight, "calls the generator keeps open at most")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "partitions of the objective's topics")
	fs.StringVar(&c.ProfileDir, "profile", "", "directory for CPU profiles of every stage, taken during the sustained step")
	fs.DurationVar(&c.ProfileFor, "profile-for", c.ProfileFor, "length of each CPU profile")
	fs.BoolVar(&c.NoPipeline, "no-pipeline", false, "skip the pipeline: the direct baseline only, at -rates")
	fs.BoolVar(&c.NoDirect, "no-direct", false, "skip the direct baseline")
	fs.IntVar(&c.StageProcs, "stage-procs", c.StageProcs, "GOMAXPROCS of every stage (rdv dev -stage-procs; 0: every CPU)")
	stageEnv := fs.String("stage-env", "", "comma-separated NAME=VALUE added to the environment of the pipeline's processes, e.g. GOGC=200")
	fs.StringVar(&c.PipelineCPUs, "pipeline-cpus", "", "pin the pipeline's processes to these CPUs (taskset list, e.g. 0); start the benchmark itself under taskset to place the generator")
	pin := fs.String("pin", "", "move single stages to CPUs once running, e.g. decoy=1,log-connector=1 (names of the pid files)")
	cpuProfile := fs.String("cpuprofile", "", "write the generator's own CPU profile here")
	_ = fs.Parse(os.Args[1:])
	c.Brokers = config.SplitList(*brokers)
	c.StageEnv = config.SplitList(*stageEnv)
	c.Pin = map[string]string{}
	for _, kv := range config.SplitList(*pin) {
		name, cpus, ok := strings.Cut(kv, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "bench/pipeline: -pin: %q is not name=cpus\n", kv)
			os.Exit(2)
		}
		c.Pin[name] = cpus
	}
	c.Rates = nil
	for _, r := range config.SplitList(*rates) {
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 {
			fmt.Fprintf(os.Stderr, "bench/pipeline: -rates: %q is not a positive number\n", r)
			os.Exit(2)
		}
		c.Rates = append(c.Rates, v)
	}
	if len(c.Rates) == 0 {
		fmt.Fprintln(os.Stderr, "bench/pipeline: -rates: at least one rate is needed")
		os.Exit(2)
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/pipeline:", err)
		os.Exit(1)
	}
	c.Self, c.ESFakeFlag = self, esfakeFlag
	if c.Root, err = filepath.Abs(c.Root); err == nil {
		c.Bin, err = filepath.Abs(c.Bin)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/pipeline:", err)
		os.Exit(1)
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/pipeline: -cpuprofile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadtest.Run(ctx, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/pipeline:", err)
		stop()
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	rep.Print(os.Stdout, c.Out)
}

func joinRates(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.FormatFloat(r, 'f', -1, 64)
	}
	return strings.Join(parts, ",")
}
