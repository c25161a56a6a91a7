package loadtest

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
)

// Config is one benchmark run.
type Config struct {
	Root string // repository root
	Bin  string // built binaries (make build)
	Out  string // where latest.json and latest.svg go
	Work string // rdv dev's directory; empty makes a temporary one
	Keep bool   // keep Work afterwards

	Brokers     []string // real Kafka; empty runs the embedded broker
	RegistryURL string   // real registry; empty runs the embedded one
	// ESFake starts the Elasticsearch test server: Self re-executed with
	// ESFakeFlag. ESURL, when set, is a real Elasticsearch instead.
	Self, ESFakeFlag string
	ESURL            string

	Partitions int
	SLA        time.Duration

	// Rates are the fixed steps. SustainRate is held for SustainFor; the
	// other steps last StepFor. After the fixed steps, the rate keeps
	// rising by SaturationFactor while each step passes, up to MaxRate.
	Rates            []float64
	SustainRate      float64
	SustainFor       time.Duration
	StepFor          time.Duration
	SaturationFactor float64
	MaxRate          float64
	DirectFor        time.Duration
	Warmup           time.Duration
	MaxInFlight      int

	// ProfileDir, when set, receives CPU profiles of every stage taken
	// during the sustained step.
	ProfileDir string
	ProfileFor time.Duration

	// StageProcs is each stage's GOMAXPROCS (rdv dev -stage-procs): one
	// per stage suits a dozen processes on two cores (README, Performance).
	StageProcs int
	// StageEnv is added to the environment of the pipeline's processes
	// (GOMAXPROCS=1, GOGC=400... to try a setting without a rebuild).
	StageEnv []string
	// PipelineCPUs pins the pipeline's processes (taskset list); the
	// generator keeps the CPUs it was started on. Pin then moves single
	// stages, by pid-file name, once they run: "decoy=1,log-connector=1".
	PipelineCPUs string
	Pin          map[string]string

	// NoPipeline and NoDirect skip a mode (while tuning one side).
	NoPipeline, NoDirect bool

	Log io.Writer
}

// Defaults is `make bench`.
func Defaults() Config {
	return Config{
		Out:              "bench/results",
		Partitions:       4,
		SLA:              100 * time.Millisecond,
		Rates:            []float64{500, 1000, 2000, 4000},
		SustainRate:      2000,
		StageProcs:       1,
		SustainFor:       60 * time.Second,
		StepFor:          15 * time.Second,
		SaturationFactor: 1.25,
		MaxRate:          30000,
		DirectFor:        10 * time.Second,
		Warmup:           5 * time.Second,
		MaxInFlight:      8000,
		ProfileFor:       20 * time.Second,
		Log:              os.Stdout,
	}
}

// Targets of issue 9, on the embedded broker.
const (
	TargetRate     = 2000
	TargetFor      = 60 * time.Second
	TargetP50Ms    = 5
	TargetP99Ms    = 25
	SaturationRate = 5000
	SaturationP99  = 100
)

func (c *Config) logf(format string, args ...any) {
	fmt.Fprintf(c.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Run runs the benchmark and writes its report.
func Run(ctx context.Context, c Config) (*Report, error) {
	began := time.Now()
	bodies, err := irisBodies(filepath.Join(c.Root, "models", "iris.csv"))
	if err != nil {
		return nil, err
	}
	if c.Work == "" {
		if c.Work, err = os.MkdirTemp("", "rdv-bench-"); err != nil {
			return nil, err
		}
	}
	if !c.Keep {
		defer os.RemoveAll(c.Work)
	}
	if err := os.MkdirAll(filepath.Join(c.Work, "log"), 0o755); err != nil {
		return nil, err
	}
	rep := &Report{
		Started: began.UTC(), Machine: machine(), Broker: "embedded (kfake, in rdv dev)",
		SLAms: ms(c.SLA), Partitions: c.Partitions,
	}
	if len(c.Brokers) > 0 {
		rep.Broker = strings.Join(c.Brokers, ",")
	}
	c.logf("load before the run: %s (2-core machines share the CPU with whatever else runs)", rep.Machine.LoadBefore)

	var rates []float64
	if c.NoPipeline {
		rates = c.Rates
	} else if rates, err = c.runPipeline(ctx, rep, bodies); err != nil {
		return nil, err
	}
	if !c.NoDirect {
		if err := c.runDirect(ctx, rep, bodies, rates); err != nil {
			return nil, err
		}
	}

	rep.summarize()
	rep.DurationS = time.Since(began).Seconds()
	if err := rep.Write(c.Out); err != nil {
		return nil, err
	}
	return rep, nil
}

// runPipeline steps the rate against the whole pipeline and returns the
// rates it ran.
func (c *Config) runPipeline(ctx context.Context, rep *Report, bodies [][]byte) ([]float64, error) {
	var err error
	// Elasticsearch: the test server, unless a real one is named.
	var es *Child
	rep.Elasticsearch = c.ESURL
	if c.ESURL == "" {
		if es, err = StartESFake(ctx, c.Self, c.ESFakeFlag, filepath.Join(c.Work, "log", "esfake.log")); err != nil {
			return nil, err
		}
		defer es.Stop()
		c.ESURL = es.URL
		rep.Elasticsearch = "test server (testcontainers/esfake) " + es.URL
	}

	c.logf("starting the pipeline (rdv dev, every stage a process) in %s", c.Work)
	st, err := StartStack(ctx, StackConfig{Root: c.Root, Bin: c.Bin, Dir: c.Work, Brokers: c.Brokers,
		RegistryURL: c.RegistryURL, ESURL: c.ESURL, Partitions: c.Partitions, SLA: c.SLA, Env: c.StageEnv, CPUs: c.PipelineCPUs, StageProcs: c.StageProcs})
	if err != nil {
		return nil, err
	}
	stopped := false
	stopStack := func() {
		if !stopped {
			stopped = true
			st.Stop()
		}
	}
	defer stopStack()
	procs, err := st.Procs()
	if err != nil {
		return nil, err
	}
	for _, p := range procs {
		if cpus, ok := c.Pin[p.Name]; ok {
			// -a: every thread of the running process.
			if out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(p.Pid)).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("pin %s to CPUs %s: %v: %s", p.Name, cpus, err, out)
			}
		}
	}
	if es != nil {
		procs = append(procs, Proc{Name: "esfake", Pid: es.Pid()})
	}
	procs = append(procs, Proc{Name: "generator", Pid: os.Getpid()})
	c.logf("pipeline ready: %d processes metered", len(procs))

	dec, err := newDecisions(st.Brokers, topics.For(st.Objective).Decisions)
	if err != nil {
		return nil, err
	}
	defer dec.close()
	champAddr, _ := st.Addr("model-dt")
	rdvAddr, _ := st.Addr("rendezvous")

	gen := NewGenerator(c.MaxInFlight)
	defer gen.Close()
	target := Target{URL: st.FrontendURL + "/predict", Bodies: bodies}

	if c.Warmup > 0 {
		c.logf("warm-up: %v at 500 req/s (not reported)", c.Warmup)
		w := gen.Run(ctx, target, 500, c.Warmup)
		if w.Answered() == 0 {
			return nil, fmt.Errorf("warm-up: none of %d calls answered (%v): the pipeline does not work (logs in %s; pass -keep)",
				w.Sent, w.Failures, filepath.Join(c.Work, "log"))
		}
		miss := dec.missing(ctx, w.IDs, 5*time.Second, 45*time.Second)
		c.logf("warm-up: %d of %d answered (%s; failures %v), %d without a decision", w.Answered(), w.Sent, reasons(w.Reasons), w.Failures, miss)
	}

	var rates []float64
	step := func(rate float64, d time.Duration) Step {
		restarts := st.Restarts()
		m := startMeter(procs)
		before, _ := scrape(champAddr, "rdv_model_compute_seconds")
		var profWG sync.WaitGroup
		if c.ProfileDir != "" && rate == c.SustainRate {
			profWG.Add(1)
			go func() { defer profWG.Done(); c.profile(stageAddrs(st)) }()
		}
		stopWatch := make(chan struct{})
		circuit := make(chan float64, 1)
		go func() { circuit <- openCircuits(rdvAddr, stopWatch) }()
		s := gen.Run(ctx, target, rate, d)
		usage := m.stop()
		close(stopWatch)
		after, _ := scrape(champAddr, "rdv_model_compute_seconds")
		profWG.Wait()
		r := newStep("rendezvous", s, d, usage)
		r.CircuitOpenS = <-circuit
		r.OtherCPUCores = round(m.others(usage)/d.Seconds(), 2)
		r.ComputeMeanMs = meanBetween(before, after)
		r.setOverhead()
		r.DecisionsChecked = true
		r.DecisionsMissing = dec.missing(ctx, s.IDs, 5*time.Second, 45*time.Second)
		r.Restarts = st.Restarts() - restarts
		r.finish()
		c.logf("%s", r.progress())
		return r
	}
	for _, rate := range c.Rates {
		d := c.StepFor
		if rate == c.SustainRate {
			d = c.SustainFor
		}
		c.logf("rendezvous: %g req/s for %v ...", rate, d)
		r := step(rate, d)
		rep.Steps = append(rep.Steps, r)
		rates = append(rates, rate)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !r.Pass && rate > c.SustainRate {
			c.logf("rendezvous: %g req/s is past saturation; not stepping higher", rate)
			break
		}
	}
	if last := rep.Steps[len(rep.Steps)-1]; last.Pass && c.SaturationFactor > 1 {
		rate := rates[len(rates)-1]
		for {
			rate = math.Round(rate*c.SaturationFactor/500) * 500
			if rate > c.MaxRate {
				break
			}
			c.logf("rendezvous: %g req/s for %v (looking for saturation) ...", rate, c.StepFor)
			r := step(rate, c.StepFor)
			rep.Steps = append(rep.Steps, r)
			rates = append(rates, rate)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if !r.Pass {
				break
			}
		}
	}
	rep.Restarts = st.Restarts()
	c.logf("stopping the pipeline")
	stopStack()
	if es != nil {
		es.Stop()
	}

	return rates, nil
}

// runDirect runs the baseline at the given rates.
func (c *Config) runDirect(ctx context.Context, rep *Report, bodies [][]byte, rates []float64) error {
	// The baseline: the same frontend binary with the champion in
	// process, at the same rates, with nothing else running.
	c.logf("direct baseline: the frontend with models/iris/dt.json in process, no Kafka")
	dir, err := StartDirect(ctx, c.Bin, filepath.Join(c.Root, "models", "iris", "dt.json"), filepath.Join(c.Work, "log", "frontend-direct.log"), c.PipelineCPUs)
	if err != nil {
		return err
	}
	defer dir.Stop()
	gen := NewGenerator(c.MaxInFlight)
	defer gen.Close()
	dprocs := []Proc{{Name: "frontend (direct)", Pid: dir.Pid()}, {Name: "generator", Pid: os.Getpid()}}
	dtarget := Target{URL: dir.URL + "/predict", Bodies: bodies}
	gen.Run(ctx, dtarget, 500, 2*time.Second) // warm-up
	for _, rate := range rates {
		c.logf("direct: %g req/s for %v ...", rate, c.DirectFor)
		m := startMeter(dprocs)
		before, _ := scrape(dir.Health, "rdv_frontend_direct_compute_seconds")
		var profWG sync.WaitGroup
		if c.ProfileDir != "" && rate == c.SustainRate {
			profWG.Add(1)
			go func() { defer profWG.Done(); c.profile(map[string]string{"frontend-direct": dir.Health}) }()
		}
		s := gen.Run(ctx, dtarget, rate, c.DirectFor)
		usage := m.stop()
		profWG.Wait()
		after, _ := scrape(dir.Health, "rdv_frontend_direct_compute_seconds")
		r := newStep("direct", s, c.DirectFor, usage)
		r.OtherCPUCores = round(m.others(usage)/c.DirectFor.Seconds(), 2)
		r.ComputeMeanMs = meanBetween(before, after)
		r.setOverhead()
		r.finish()
		rep.Steps = append(rep.Steps, r)
		c.logf("%s", r.progress())
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	dir.Stop()

	return nil
}

// profile takes a CPU profile of every stage at once, during a step.
func (c *Config) profile(targets map[string]string) {
	if err := os.MkdirAll(c.ProfileDir, 0o755); err != nil {
		c.logf("profile: %v", err)
		return
	}
	// Let the step settle before profiling it.
	time.Sleep(3 * time.Second)
	var wg sync.WaitGroup
	for name, addr := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(c.ProfileFor.Seconds()))
			hc := http.Client{Timeout: c.ProfileFor + 30*time.Second}
			resp, err := hc.Get(url)
			if err != nil {
				c.logf("profile %s: %v", name, err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(c.ProfileDir, name+".pprof"))
			if err != nil {
				return
			}
			defer f.Close()
			_, _ = io.Copy(f, resp.Body)
		}()
	}
	wg.Wait()
	c.logf("CPU profiles in %s (go tool pprof -top %s/<stage>.pprof)", c.ProfileDir, c.ProfileDir)
}

// stageAddrs are the health addresses of every stage of st.
func stageAddrs(st *Stack) map[string]string {
	out := map[string]string{}
	ps, _ := pidFiles(filepath.Join(st.Dir, "run"))
	for _, p := range ps {
		if addr, err := st.Addr(p.Name); err == nil {
			out[p.Name] = addr
		}
	}
	if st.DevAddr != "" {
		out["rdv-dev"] = st.DevAddr // the embedded broker and registry
	}
	return out
}

// irisBodies turns every row of the iris data into a predict body.
func irisBodies(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("request bodies: %w", err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("request bodies: %s: %w", path, err)
	}
	if len(recs) < 2 || len(recs[0]) < 4 {
		return nil, fmt.Errorf("request bodies: %s has no rows of four features", path)
	}
	header := recs[0][:4]
	var out [][]byte
	for _, r := range recs[1:] {
		parts := make([]string, len(header))
		for i, name := range header {
			if _, err := strconv.ParseFloat(r[i], 64); err != nil {
				return nil, fmt.Errorf("request bodies: %s: %q is not a number", path, r[i])
			}
			parts[i] = strconv.Quote(name) + ":" + r[i]
		}
		out = append(out, []byte("{"+strings.Join(parts, ",")+"}"))
	}
	return out, nil
}

// Machine is what the numbers were measured on.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GoVersion  string `json:"go"`
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
}

func machine() Machine {
	return Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadBefore: loadavg()}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
