package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Step is one rate held for a while, in one mode.
type Step struct {
	Mode        string  `json:"mode"` // rendezvous or direct
	TargetRPS   float64 `json:"target_rps"`
	AchievedRPS float64 `json:"achieved_rps"`
	// DecidedRPS leaves out the calls the frontend answered itself when no
	// decision came in time (reason expired): the pipeline's own rate.
	DecidedRPS float64 `json:"decided_rps"`
	DurationS  float64 `json:"duration_s"`
	Sent       int     `json:"sent"`
	Answered   int     `json:"answered"`

	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`

	// ComputeMeanMs is the champion's mean model time over the step (its
	// rdv_model_compute_seconds, or the direct frontend's). The overheads
	// are the end-to-end percentiles minus it: what serving costs.
	ComputeMeanMs float64 `json:"model_compute_mean_ms"`
	OverheadP50Ms float64 `json:"overhead_p50_ms"`
	OverheadP99Ms float64 `json:"overhead_p99_ms"`

	AnswersByReason map[string]int `json:"answers_by_reason"`
	// Failures are calls without a 200, by status or kind of error
	// ("transport: reset", "transport: timeout"...: see Sample.Failures).
	Failures map[string]int `json:"failures,omitempty"`
	// ConnErrors are the generator's connections that failed under a call
	// and were replaced (Sample.ConnErrors).
	ConnErrors int `json:"conn_errors,omitempty"`
	// Overflow calls were never sent: the in-flight cap was reached.
	Overflow int `json:"overflow,omitempty"`
	// DecisionsMissing counts answered calls with no decision in the
	// decisions log (read_committed) once it stopped growing for 5s (45s at most).
	DecisionsChecked bool `json:"decisions_checked"`
	DecisionsMissing int  `json:"decisions_missing"`
	// Lost is every call that was due and is not both answered and, in
	// rendezvous mode, decided: it must be 0.
	Lost int `json:"lost"`

	// DispatchLagP99Ms is how late the generator itself sent calls: its own
	// error, which the latencies include.
	DispatchLagP99Ms float64 `json:"dispatch_lag_p99_ms"`
	MaxInFlight      int     `json:"max_in_flight"`
	// CircuitOpenS is how long some model's circuit breaker was open or
	// half-open during the step (sampled every 0.5 s): answers then go to
	// the next model in order, as fallbacks.
	CircuitOpenS float64              `json:"circuit_open_s"`
	Processes    map[string]ProcUsage `json:"processes"`
	CPUTotalS    float64              `json:"cpu_total_s"`
	// OtherCPUCores is what the rest of the machine used meanwhile, in
	// cores: on a shared machine, the load the figures were measured under.
	OtherCPUCores float64 `json:"other_cpu_cores"`
	Restarts      int     `json:"stage_restarts"`
	// Pass: nothing lost, no default, fallback or shed answer, p99 under
	// the saturation bound and the rate achieved within 5%.
	Pass bool   `json:"pass"`
	Why  string `json:"why,omitempty"`
}

func newStep(mode string, s *Sample, d time.Duration, usage map[string]ProcUsage) Step {
	r := Step{
		Mode: mode, TargetRPS: s.Rate, DurationS: d.Seconds(), Sent: s.Sent, Answered: s.Answered(),
		AnswersByReason: s.Reasons, Failures: s.Failures, ConnErrors: s.ConnErrors, Overflow: s.Overflow,
		MaxInFlight: s.MaxInFlight, Processes: usage,
	}
	if s.Window > 0 {
		r.AchievedRPS = round(float64(s.Answered())/s.Window.Seconds(), 1)
		r.DecidedRPS = round(float64(s.Answered()-s.Reasons["expired"])/s.Window.Seconds(), 1)
	}
	l := s.Latencies
	r.P50Ms, r.P90Ms, r.P99Ms = ms3(Percentile(l, 50)), ms3(Percentile(l, 90)), ms3(Percentile(l, 99))
	r.P999Ms, r.MaxMs = ms3(Percentile(l, 99.9)), ms3(Percentile(l, 100))
	if len(l) > 0 {
		var sum time.Duration
		for _, x := range l {
			sum += x
		}
		r.MeanMs = ms3(sum / time.Duration(len(l)))
	}
	r.DispatchLagP99Ms = ms3(Percentile(s.DispatchLag, 99))
	for _, u := range usage {
		r.CPUTotalS += u.CPUSec
	}
	r.CPUTotalS = round(r.CPUTotalS, 2)
	if len(r.Failures) == 0 {
		r.Failures = nil
	}
	return r
}

func (r *Step) setOverhead() {
	r.ComputeMeanMs = round(r.ComputeMeanMs, 4)
	r.OverheadP50Ms = round(r.P50Ms-r.ComputeMeanMs, 3)
	r.OverheadP99Ms = round(r.P99Ms-r.ComputeMeanMs, 3)
}

// finish counts what was lost and judges the step.
func (r *Step) finish() {
	r.Lost = (r.Sent - r.Answered) + r.Overflow + r.DecisionsMissing
	var why []string
	if r.Lost > 0 {
		why = append(why, fmt.Sprintf("%d lost", r.Lost))
	}
	for reason, n := range r.AnswersByReason {
		if reason != "champion" {
			why = append(why, fmt.Sprintf("%d %s", n, reason))
		}
	}
	if r.P99Ms >= SaturationP99 {
		why = append(why, fmt.Sprintf("p99 %.1f ms >= %d ms", r.P99Ms, SaturationP99))
	}
	if r.AchievedRPS < 0.95*r.TargetRPS {
		why = append(why, fmt.Sprintf("achieved %.0f of %.0f req/s", r.AchievedRPS, r.TargetRPS))
	}
	if r.Restarts > 0 {
		why = append(why, fmt.Sprintf("%d stage restarts", r.Restarts))
	}
	sort.Strings(why)
	r.Pass = len(why) == 0
	r.Why = strings.Join(why, ", ")
}

func (r *Step) progress() string {
	verdict := "ok"
	if !r.Pass {
		verdict = "NOT OK: " + r.Why
	}
	circuit := ""
	if r.CircuitOpenS > 0 {
		circuit = fmt.Sprintf(", a circuit open %.1f s", r.CircuitOpenS)
	}
	return fmt.Sprintf("%-10s %6.0f req/s: achieved %7.1f, p50 %6.2f ms, p99 %7.2f ms, p99.9 %7.2f ms, max %7.2f ms, %s%s, lost %d, CPU %.2f cores (others %.2f); %s",
		r.Mode, r.TargetRPS, r.AchievedRPS, r.P50Ms, r.P99Ms, r.P999Ms, r.MaxMs, reasons(r.AnswersByReason), circuit, r.Lost, r.CPUTotalS/r.DurationS, r.OtherCPUCores, verdict)
}

func reasons(m map[string]int) string {
	if len(m) == 0 {
		return "no answers"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// Report is bench/results/latest.json.
type Report struct {
	Started       time.Time `json:"started"`
	DurationS     float64   `json:"duration_s"`
	Machine       Machine   `json:"machine"`
	Broker        string    `json:"broker"`
	Elasticsearch string    `json:"elasticsearch"`
	SLAms         float64   `json:"sla_ms"`
	Partitions    int       `json:"partitions"`
	Restarts      int       `json:"stage_restarts"`
	Steps         []Step    `json:"steps"`
	Summary       Summary   `json:"summary"`
}

// Summary is the run in a few numbers.
type Summary struct {
	// SaturationRPS is the highest rate achieved by a passing rendezvous
	// step (p99 under 100 ms, nothing lost, only champion answers).
	SaturationRPS float64 `json:"saturation_rps"`
	// MaxDecidedRPS is the most the pipeline decided in any step, passing
	// or not: its throughput ceiling, whatever the latency.
	MaxDecidedRPS float64 `json:"max_decided_rps"`
	// Ratios compare the pipeline with the direct baseline, rate by rate.
	Ratios  []Ratio   `json:"overhead_vs_direct"`
	Targets []Verdict `json:"targets"`
}

// Ratio is the rendezvous pipeline against the direct baseline at one rate.
type Ratio struct {
	TargetRPS    float64 `json:"target_rps"`
	P50Ratio     float64 `json:"p50_ratio"`
	P99Ratio     float64 `json:"p99_ratio"`
	ExtraP50Ms   float64 `json:"extra_p50_ms"`
	ExtraP99Ms   float64 `json:"extra_p99_ms"`
	CPURatio     float64 `json:"cpu_ratio"`
	CPUPerCallUS float64 `json:"cpu_per_call_us"` // rendezvous, all processes
}

// Verdict is one target and whether the run met it.
type Verdict struct {
	Target string `json:"target"`
	Met    bool   `json:"met"`
	Actual string `json:"actual"`
}

func (r *Report) summarize() {
	r.Machine.LoadAfter = loadavg()
	direct := map[float64]Step{}
	for _, s := range r.Steps {
		if s.Mode == "direct" {
			direct[s.TargetRPS] = s
		}
	}
	var sustained *Step
	for i, s := range r.Steps {
		if s.Mode != "rendezvous" {
			continue
		}
		if s.Pass && s.AchievedRPS > r.Summary.SaturationRPS {
			r.Summary.SaturationRPS = s.AchievedRPS
		}
		r.Summary.MaxDecidedRPS = max(r.Summary.MaxDecidedRPS, s.DecidedRPS)
		if s.TargetRPS == TargetRate && s.DurationS >= TargetFor.Seconds() {
			sustained = &r.Steps[i]
		}
		if d, ok := direct[s.TargetRPS]; ok && d.P50Ms > 0 && d.P99Ms > 0 && d.CPUTotalS > 0 {
			r.Summary.Ratios = append(r.Summary.Ratios, Ratio{
				TargetRPS:    s.TargetRPS,
				P50Ratio:     round(s.P50Ms/d.P50Ms, 1),
				P99Ratio:     round(s.P99Ms/d.P99Ms, 1),
				ExtraP50Ms:   round(s.P50Ms-d.P50Ms, 2),
				ExtraP99Ms:   round(s.P99Ms-d.P99Ms, 2),
				CPURatio:     round((s.CPUTotalS/s.DurationS)/(d.CPUTotalS/d.DurationS), 1),
				CPUPerCallUS: round(s.CPUTotalS/float64(max(1, s.Answered))*1e6, 0),
			})
		}
	}
	v := Verdict{Target: fmt.Sprintf("%d req/s for %v: p50 <= %d ms, p99 <= %d ms, only champion answers, nothing lost",
		TargetRate, TargetFor, TargetP50Ms, TargetP99Ms)}
	if sustained == nil {
		v.Actual = "not run"
	} else {
		s := sustained
		v.Met = s.P50Ms <= TargetP50Ms && s.P99Ms <= TargetP99Ms && s.Lost == 0 &&
			s.AnswersByReason["champion"] == s.Answered && s.AchievedRPS >= 0.95*s.TargetRPS
		v.Actual = fmt.Sprintf("achieved %.0f req/s, p50 %.2f ms, p99 %.2f ms, %s, lost %d", s.AchievedRPS, s.P50Ms, s.P99Ms, reasons(s.AnswersByReason), s.Lost)
	}
	r.Summary.Targets = append(r.Summary.Targets, v, Verdict{
		Target: fmt.Sprintf("saturation >= %d req/s with p99 < %d ms", SaturationRate, SaturationP99),
		Met:    r.Summary.SaturationRPS >= SaturationRate,
		Actual: fmt.Sprintf("%.0f req/s (the most decided in any step: %.0f req/s)", r.Summary.SaturationRPS, r.Summary.MaxDecidedRPS),
	})
}

// Write writes latest.json and latest.svg into dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "latest.svg"), []byte(r.SVG()), 0o644)
}

// Print writes the one-screen summary.
func (r *Report) Print(w io.Writer, dir string) {
	fmt.Fprintf(w, "\nRendezvous pipeline benchmark: %d CPUs, broker %s, SLA %.0f ms, load average %s before, %s after\n",
		r.Machine.CPUs, r.Broker, r.SLAms, r.Machine.LoadBefore, r.Machine.LoadAfter)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\ttarget/s\tachieved/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\toverhead p50\tCPU cores\tothers\tlost\tanswers\t")
	for _, s := range r.Steps {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%.2f\t%.2f\t%.2f\t%d\t%s\t\n",
			s.Mode, s.TargetRPS, s.AchievedRPS, s.P50Ms, s.P90Ms, s.P99Ms, s.P999Ms, s.MaxMs, s.OverheadP50Ms,
			s.CPUTotalS/s.DurationS, s.OtherCPUCores, s.Lost, reasons(s.AnswersByReason))
	}
	tw.Flush()
	if len(r.Summary.Ratios) > 0 {
		fmt.Fprint(w, "\nrendezvous vs direct (same rate): ")
		var parts []string
		for _, q := range r.Summary.Ratios {
			parts = append(parts, fmt.Sprintf("%.0f/s p50 x%.1f (+%.2f ms) p99 x%.1f, CPU x%.0f", q.TargetRPS, q.P50Ratio, q.ExtraP50Ms, q.P99Ratio, q.CPURatio))
		}
		fmt.Fprintln(w, strings.Join(parts, "; "))
	}
	for _, s := range r.Steps {
		if s.Mode == "rendezvous" && s.TargetRPS == TargetRate && s.DurationS >= TargetFor.Seconds() {
			fmt.Fprintf(w, "\nper process at %.0f req/s for %.0f s (CPU seconds, cores, peak RSS):\n", s.TargetRPS, s.DurationS)
			names := make([]string, 0, len(s.Processes))
			for n := range s.Processes {
				names = append(names, n)
			}
			sort.Slice(names, func(i, j int) bool { return s.Processes[names[i]].CPUSec > s.Processes[names[j]].CPUSec })
			var cells []string
			for _, n := range names {
				u := s.Processes[n]
				cells = append(cells, fmt.Sprintf("%-28s %6.1f s %5.2f %6.0f MB", n, u.CPUSec, u.CPUSec/s.DurationS, u.PeakRSSMB))
			}
			for i := 0; i < len(cells); i += 2 {
				if i+1 < len(cells) {
					fmt.Fprintf(w, "  %s   %s\n", cells[i], cells[i+1])
				} else {
					fmt.Fprintf(w, "  %s\n", cells[i])
				}
			}
		}
	}
	fmt.Fprintln(w)
	for _, v := range r.Summary.Targets {
		mark := "MET    "
		if !v.Met {
			mark = "NOT MET"
		}
		fmt.Fprintf(w, "%s %s: %s\n", mark, v.Target, v.Actual)
	}
	if r.Restarts > 0 {
		fmt.Fprintf(w, "WARNING: %d stage restarts during the run\n", r.Restarts)
	}
	fmt.Fprintf(w, "\n%s and %s written (%.0f s)\n", filepath.Join(dir, "latest.json"), filepath.Join(dir, "latest.svg"), r.DurationS)
}

func ms3(d time.Duration) float64 { return round(float64(d)/1e6, 3) }

func round(x float64, digits int) float64 {
	p := 1.0
	for i := 0; i < digits; i++ {
		p *= 10
	}
	if x < 0 {
		return -float64(int64(-x*p+0.5)) / p
	}
	return float64(int64(x*p+0.5)) / p
}
