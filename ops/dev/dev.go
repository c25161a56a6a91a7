// Package dev runs the whole pipeline on one machine: an embedded
// Kafka-protocol broker and an embedded Schema Registry (or real ones), the
// objective's topics and schemas, and every stage as its own supervised
// process. It is what `rdv dev` and `make run` start.
package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/contract"
	"github.com/rendezvous-ml/rendezvous/pipeline/promtext"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry/embedded"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// Model is one model runner to start.
type Model struct {
	Name, Role, File string
	Budget           time.Duration
}

// Config is what `rdv dev` runs.
type Config struct {
	// Dir holds the broker's and registry's data, logs, pids and the archive.
	Dir string
	// Bin is where the stage binaries are.
	Bin       string
	Objective string
	// Brokers, when set, is a real cluster: no embedded broker starts.
	Brokers []string
	// KafkaAddr is the embedded broker's address.
	KafkaAddr string
	// RegistryURL, when set, is a real registry: no embedded one starts.
	RegistryURL string
	// RegistryAddr is the embedded registry's address.
	RegistryAddr string
	FrontendAddr string
	// HTTPPortBase numbers the stages' health and metrics ports.
	HTTPPortBase int
	Partitions   int32
	SLA          time.Duration
	Models       []Model
	// DefaultResult is the answer when no model answers in time.
	DefaultResult string
	// ESURL, when set, runs the Elasticsearch connector against it.
	ESURL string
	// ArchiveRotate is how often the log connector finishes a file.
	ArchiveRotate time.Duration
	// RestartDelay is the first wait before a stage that died is started
	// again; it doubles up to 10s while the stage keeps dying.
	RestartDelay time.Duration
	// StageProcs is each stage's GOMAXPROCS, unless GOMAXPROCS is set in
	// rdv dev's environment; 0 (the default) leaves Go's: every CPU. On a
	// small machine running the whole pipeline, 1 halves the latency at
	// 1,000 to 2,000 calls/s: a goroutine woken by the network then runs
	// on the thread that was woken, instead of waking a second thread on
	// the other CPU (README, Performance). The stages that restore state
	// in parallel (the rendezvous on a takeover) lose that parallelism,
	// which is why it is not the default.
	StageProcs int
	// HTTPAddr, when set, serves rdv dev's own /healthz, /metrics and the
	// Go profiler: the embedded broker and registry run in this process,
	// and on a small machine the broker is the largest user of CPU.
	HTTPAddr string
	// Ready is called once every stage is ready, with the table printed.
	Ready func()
	Out   io.Writer
}

// Defaults returns the settings of `make run`.
func Defaults() Config {
	return Config{
		Dir:           "var",
		Objective:     "iris",
		KafkaAddr:     "127.0.0.1:9092",
		RegistryAddr:  "127.0.0.1:8081",
		FrontendAddr:  "127.0.0.1:8000",
		HTTPPortBase:  9100,
		Partitions:    4,
		SLA:           100 * time.Millisecond,
		DefaultResult: "unknown",
		RestartDelay:  250 * time.Millisecond,
		ArchiveRotate: 5 * time.Second,
		Models: []Model{
			{Name: "dt", Role: "champion", File: "models/iris/dt.json", Budget: 50 * time.Millisecond},
			{Name: "canary", Role: "canary", File: "models/iris/canary.json"},
			{Name: "challenger", Role: "shadow", File: "models/iris/challenger.json"},
		},
		Out: os.Stdout,
	}
}

// Validate names the bad field.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("dir: required"))
	}
	if c.Bin == "" {
		errs = append(errs, errors.New("bin: the directory of the stage binaries is required"))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("partitions: %d must be at least 1", c.Partitions))
	}
	if c.StageProcs < 0 {
		errs = append(errs, fmt.Errorf("stage-procs: %d must not be negative (0 is Go's default)", c.StageProcs))
	}
	if c.SLA <= 0 {
		errs = append(errs, fmt.Errorf("sla: %v must be positive", c.SLA))
	}
	if len(c.Models) == 0 {
		errs = append(errs, errors.New("models: at least one model is required"))
	}
	for _, m := range c.Models {
		if _, err := os.Stat(m.File); err != nil {
			errs = append(errs, fmt.Errorf("models: %s: %w", m.Name, err))
		}
	}
	if _, err := schemas.For(c.Objective); err != nil {
		errs = append(errs, fmt.Errorf("objective: %w", err))
	}
	return errors.Join(errs...)
}

// Run starts everything, waits for ctx to end, and stops it all in order:
// the frontend first (no new calls), then the stages in pipeline order so
// each drains into the next, then the registry and the broker.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("dev config: %w", err)
	}
	for _, sub := range []string{"log", "run", "archive"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, sub), 0o755); err != nil {
			return err
		}
	}
	start := time.Now()
	if cfg.HTTPAddr != "" {
		h := &stage.Health{}
		h.SetReady()
		srvCtx, stopSrv := context.WithCancel(context.Background())
		srvDone := make(chan struct{})
		go func() {
			defer close(srvDone)
			if err := stage.Serve(srvCtx, cfg.HTTPAddr, stage.Mux(h, stage.NewRegistry()), log); err != nil {
				log.Error("rdv dev's own health, metrics and profiler are off", "err", err)
			}
		}()
		defer func() { stopSrv(); <-srvDone }()
	}

	brokers := cfg.Brokers
	if len(brokers) == 0 {
		_, port, err := net.SplitHostPort(cfg.KafkaAddr)
		if err != nil {
			return fmt.Errorf("kafka-addr: %w", err)
		}
		var p int
		fmt.Sscan(port, &p)
		cluster, err := kfake.NewCluster(
			kfake.Ports(p),
			kfake.DataDir(filepath.Join(cfg.Dir, "kafka")),
			kfake.DefaultNumPartitions(int(cfg.Partitions)),
			kfake.GroupMinSessionTimeout(time.Second),
		)
		if err != nil {
			return fmt.Errorf("embedded broker on %s: %w", cfg.KafkaAddr, err)
		}
		defer cluster.Close()
		brokers = cluster.ListenAddrs()
		log.Info("embedded broker up", "addr", brokers, "data", filepath.Join(cfg.Dir, "kafka"))
	}

	regURL := cfg.RegistryURL
	if regURL == "" {
		srv, err := embedded.New(embedded.Config{Dir: filepath.Join(cfg.Dir, "registry")})
		if err != nil {
			return fmt.Errorf("embedded registry: %w", err)
		}
		ln, err := net.Listen("tcp", cfg.RegistryAddr)
		if err != nil {
			srv.Close()
			return fmt.Errorf("embedded registry on %s: %w", cfg.RegistryAddr, err)
		}
		srvCtx, stopSrv := context.WithCancel(context.Background())
		srvDone := make(chan struct{})
		go func() { defer close(srvDone); _ = srv.Serve(srvCtx, ln) }()
		defer func() { stopSrv(); <-srvDone; srv.Close() }()
		regURL = "http://" + ln.Addr().String()
		log.Info("embedded registry up", "url", regURL, "data", filepath.Join(cfg.Dir, "registry"))
	}

	if err := Provision(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, registry.Config{URL: regURL}, cfg.Objective, cfg.Partitions); err != nil {
		return err
	}

	procs := cfg.procs(brokers, regURL)
	supCtx, stopSup := context.WithCancel(context.Background())
	defer stopSup()
	for _, p := range procs {
		p.done = make(chan struct{})
		go p.supervise(supCtx, cfg.Dir, cfg.RestartDelay, log)
	}
	defer func() {
		stopSup()
		for _, p := range procs {
			p.stop(15 * time.Second)
		}
		log.Info("stopped every stage")
	}()

	if err := waitReady(ctx, procs, 90*time.Second); err != nil {
		printTable(cfg.Out, procs, brokers, regURL, cfg)
		return err
	}
	// A stage is ready when it consumes, but the rendezvous only waits for
	// a model once its heartbeat says live: until then it answers by the
	// next model in the chain. "ready" means the champion answers.
	if err := waitModels(ctx, procs, len(cfg.Models), 30*time.Second); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("starting anyway: answers fall back to the next live model until the others are live", "err", err)
	}
	printTable(cfg.Out, procs, brokers, regURL, cfg)
	fmt.Fprintf(cfg.Out, "\nready in %.1fs. Try:\n  curl -s -X POST http://%s/predict -H 'Content-Type: application/json' \\\n    -d '{\"sepalLength\":5.1,\"sepalWidth\":3.5,\"petalLength\":1.4,\"petalWidth\":0.2}'\n\nCtrl-C stops everything.\n",
		time.Since(start).Seconds(), cfg.FrontendAddr)
	if cfg.Ready != nil {
		cfg.Ready()
	}
	<-ctx.Done()
	log.Info("stopping")
	return nil
}

// Provision creates the objective's topics, registers its schemas and seeds
// the context table's default row. All of it is idempotent.
func Provision(ctx context.Context, kafka []kgo.Opt, reg registry.Config, objective string, partitions int32) error {
	cl, err := kgo.NewClient(kafka...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	layout := topics.DefaultLayout()
	layout.Partitions = partitions
	if err := topics.Ensure(pctx, kadm.NewClient(cl), objective, layout); err != nil {
		return err
	}
	if reg.Timeout == 0 {
		reg.Timeout = 10 * time.Second
	}
	rc, err := registry.New(reg)
	if err != nil {
		return err
	}
	if _, err := RegisterSchemas(pctx, rc, objective); err != nil {
		return err
	}
	return seedContext(pctx, cl, serde.New(rc), objective)
}

// RegisterSchemas registers an objective's built-in schemas under each
// topic's subject.
func RegisterSchemas(ctx context.Context, rc registry.Client, objective string) (map[string]int, error) {
	set, err := schemas.For(objective)
	if err != nil {
		return nil, err
	}
	return contract.Register(ctx, rc, set)
}

func seedContext(ctx context.Context, cl *kgo.Client, sd *serde.Serde, objective string) error {
	ts := topics.For(objective)
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, ts.Context)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", ts.Context, err)
	}
	if lo, ok := ends.Lookup(ts.Context, 0); ok && lo.Offset > 0 {
		return nil
	}
	set, _ := schemas.For(objective)
	enc, err := sd.Encoder(ctx, topics.Subject(ts.Context), set.Text[schemas.Context])
	if err != nil {
		return err
	}
	v, err := enc.Encode(nil, map[string]any{
		"key": "*", "attributes": map[string]any{"segment": "default", "region": "local"}, "updated_us": time.Now().UnixMicro(),
	})
	if err != nil {
		return err
	}
	return cl.ProduceSync(ctx, &kgo.Record{Topic: ts.Context, Key: []byte("*"), Value: v}).FirstErr()
}

func (c Config) procs(brokers []string, regURL string) []*Proc {
	port := c.HTTPPortBase
	next := func() string { port++; return fmt.Sprintf("127.0.0.1:%d", port-1) }
	common := []string{
		"RDV_BROKERS=" + strings.Join(brokers, ","),
		"RDV_REGISTRY_URL=" + regURL,
		"RDV_OBJECTIVE=" + c.Objective,
	}
	if _, set := os.LookupEnv("GOMAXPROCS"); !set && c.StageProcs > 0 {
		common = append(common, fmt.Sprintf("GOMAXPROCS=%d", c.StageProcs))
	}
	mk := func(name, bin string, display string, args ...string) *Proc {
		addr := next()
		return &Proc{
			Name: name,
			Args: append([]string{filepath.Join(c.Bin, bin)}, args...),
			// The process name is the replica's name: a restarted process
			// rejoins its groups as the same static member.
			Env:      append(append([]string(nil), common...), "RDV_HTTP_ADDR="+addr, "RDV_INSTANCE="+name),
			HTTPAddr: addr,
			Display:  display,
		}
	}
	var specs []string
	for _, m := range c.Models {
		s := m.Name + ":" + m.Role
		if m.Budget > 0 {
			s += ":" + m.Budget.String()
		}
		specs = append(specs, s)
	}
	procs := []*Proc{
		mk("frontend", "frontend", "http://"+c.FrontendAddr, "-addr", c.FrontendAddr, "-sla", c.SLA.String(), "-default-result", c.DefaultResult),
		mk("enricher", "enricher", "requests -> inputs"),
	}
	for _, m := range c.Models {
		args := []string{"-model", m.File, "-name", m.Name, "-role", m.Role}
		if m.Budget > 0 {
			// Announced, so a promotion can hand the budget to the new champion.
			args = append(args, "-budget", m.Budget.String())
		}
		procs = append(procs, mk("model-"+m.Name, "model-runner", "inputs -> scores ("+m.Role+")", args...))
	}
	procs = append(procs,
		mk("rendezvous", "rendezvous", "requests+scores -> results, decisions", "-models", strings.Join(specs, ","), "-default-result", c.DefaultResult),
		mk("decoy", "decoy", "inputs -> decoy log (exactly once)"),
		mk("log-connector", "log-connector", "logs -> "+filepath.Join(c.Dir, "archive"), "-dir", filepath.Join(c.Dir, "archive"), "-rotate-interval", c.ArchiveRotate.String()),
	)
	if c.ESURL != "" {
		procs = append(procs, mk("es-connector", "es-connector", "decisions, decoy -> "+c.ESURL, "-es", c.ESURL))
	}
	return procs
}

func waitReady(ctx context.Context, procs []*Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	pending := map[string]*Proc{}
	for _, p := range procs {
		pending[p.Name] = p
	}
	for len(pending) > 0 {
		for name, p := range pending {
			resp, err := hc.Get("http://" + p.HTTPAddr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					delete(pending, name)
				}
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var names []string
			for n := range pending {
				names = append(names, n)
			}
			return fmt.Errorf("not ready after %v: %s (see their logs)", timeout, strings.Join(names, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// waitModels waits until the rendezvous waits for n model versions, as its
// rdv_rendezvous_models_waited gauge says.
func waitModels(ctx context.Context, procs []*Proc, n int, timeout time.Duration) error {
	var addr string
	for _, p := range procs {
		if p.Name == "rendezvous" {
			addr = p.HTTPAddr
		}
	}
	if addr == "" || n == 0 {
		return nil
	}
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var waited float64
	for {
		m, err := promtext.Scrape(ctx, hc, addr)
		if err == nil {
			if waited, _ = m.Sum("rdv_rendezvous_models_waited"); waited >= float64(n) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("the rendezvous's models after %v: %w", timeout, err)
			}
			return fmt.Errorf("the rendezvous waits for %v of the %d models after %v (see the model runners' logs)", waited, n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func printTable(out io.Writer, procs []*Proc, brokers []string, regURL string, cfg Config) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tPID\tSERVES\tHEALTH/METRICS\tLOG")
	fmt.Fprintf(tw, "kafka\t%d\t%s\t-\t-\n", os.Getpid(), strings.Join(brokers, ","))
	fmt.Fprintf(tw, "registry\t%d\t%s\t-\t-\n", os.Getpid(), regURL)
	for _, p := range procs {
		fmt.Fprintf(tw, "%s\t%d\t%s\thttp://%s\t%s\n", p.Name, p.Pid(), p.Display, p.HTTPAddr, filepath.Join(cfg.Dir, "log", p.Name+".log"))
	}
	tw.Flush()
	if cfg.ESURL == "" {
		fmt.Fprintln(out, "es-connector: off (no Elasticsearch configured; set RDV_ES_URL or pass -es-url to turn it on)")
	}
}
