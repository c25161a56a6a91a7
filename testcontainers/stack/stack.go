// Package stack starts the real pipeline for end-to-end tests: the stage
// binaries built from this checkout, run by `rdv dev` as separate
// processes, against the embedded broker and registry, or against real
// infrastructure named by RDV_TEST_KAFKA_BROKERS and RDV_TEST_REGISTRY_URL.
package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/ops/dev"
)

// Environment variables that point the suites at real infrastructure.
const (
	EnvBrokers  = "RDV_TEST_KAFKA_BROKERS"
	EnvRegistry = "RDV_TEST_REGISTRY_URL"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Root is the repository root (the directory holding go.mod).
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Binaries builds every command of the checkout once per test binary and
// returns their directory.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := Root()
		if err != nil {
			buildErr = err
			return
		}
		binDir, err = os.MkdirTemp("", "rdv-bin-")
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "./cmd/...")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/...: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// Options tune a stack.
type Options struct {
	SLA          time.Duration
	Partitions   int
	RestartDelay time.Duration
	Extra        []string // more rdv dev flags
}

// Stack is a running pipeline.
type Stack struct {
	t            testing.TB
	Dir          string
	Brokers      []string
	RegistryURL  string
	FrontendURL  string
	HTTPPortBase int
	Objective    string
	Real         bool // running on real Kafka
	proc         *dev.Process
}

// Start runs `rdv dev` and waits until every stage is ready. It is stopped
// when the test ends, and its stage logs are printed if the test failed.
func Start(t testing.TB, o Options) *Stack {
	t.Helper()
	bin := Binaries(t)
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	if o.SLA == 0 {
		o.SLA = 100 * time.Millisecond
	}
	if o.Partitions == 0 {
		o.Partitions = 4
	}
	if o.RestartDelay == 0 {
		o.RestartDelay = 250 * time.Millisecond
	}
	base, err := dev.FreePorts(16)
	if err != nil {
		t.Fatal(err)
	}
	s := &Stack{
		t:            t,
		Dir:          t.TempDir(),
		Objective:    "iris",
		FrontendURL:  fmt.Sprintf("http://127.0.0.1:%d", base+2),
		HTTPPortBase: base + 3,
	}
	args := []string{"dev",
		"-dir", s.Dir,
		"-bin", bin,
		"-kafka-addr", fmt.Sprintf("127.0.0.1:%d", base),
		"-registry-addr", fmt.Sprintf("127.0.0.1:%d", base+1),
		"-frontend-addr", strings.TrimPrefix(s.FrontendURL, "http://"),
		"-http-port-base", strconv.Itoa(s.HTTPPortBase),
		"-sla", o.SLA.String(),
		"-partitions", strconv.Itoa(o.Partitions),
		"-restart-delay", o.RestartDelay.String(),
	}
	if b := os.Getenv(EnvBrokers); b != "" {
		s.Real = true
		s.Brokers = strings.Split(b, ",")
		if err := dev.Reset(context.Background(), s.Brokers, s.Objective); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-brokers", b)
	} else {
		s.Brokers = []string{fmt.Sprintf("127.0.0.1:%d", base)}
	}
	if r := os.Getenv(EnvRegistry); r != "" {
		args = append(args, "-registry", r)
		s.RegistryURL = r
	} else {
		s.RegistryURL = fmt.Sprintf("http://127.0.0.1:%d", base+1)
	}
	args = append(args, o.Extra...)
	cmd := exec.Command(filepath.Join(bin, "rdv"), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "RDV_ES_URL=")
	if s.proc, err = dev.Launch(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	select {
	case <-s.proc.Ready:
	case <-s.proc.Exited:
		t.Fatalf("rdv dev exited before ready:\n%s", s.Output())
	case <-time.After(120 * time.Second):
		t.Fatalf("rdv dev not ready after 120s:\n%s", s.Output())
	}
	return s
}

// Output is what rdv dev printed so far.
func (s *Stack) Output() string { return s.proc.Output() }

// Stop stops rdv dev with SIGTERM, as Ctrl-C would, and waits for it; on a
// failed test it prints the stage logs.
func (s *Stack) Stop() {
	s.proc.Stop(60 * time.Second)
	if s.t.Failed() {
		s.t.Logf("rdv dev output:\n%s", s.Output())
		logs, _ := filepath.Glob(filepath.Join(s.Dir, "log", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			// What explains a failure is often early: warnings, errors and
			// the models the rendezvous waited for, from the whole log.
			var notable []string
			for _, line := range lines[:max(0, len(lines)-30)] {
				if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") ||
					strings.Contains(line, "models waited for") || strings.Contains(line, "model status") {
					notable = append(notable, line)
				}
			}
			if len(notable) > 40 {
				notable = append(notable[:20], notable[len(notable)-20:]...)
			}
			if len(notable) > 0 {
				s.t.Logf("--- %s (warnings, errors, models, before the end)\n%s", filepath.Base(l), strings.Join(notable, "\n"))
			}
			if len(lines) > 30 {
				lines = lines[len(lines)-30:]
			}
			s.t.Logf("--- %s (last %d lines)\n%s", filepath.Base(l), len(lines), strings.Join(lines, "\n"))
		}
	}
}

// Pid reads a stage's pid file (frontend, model-dt, ...).
func (s *Stack) Pid(stage string) (int, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "run", stage+".pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Kill sends SIGKILL to a stage and waits until it is gone.
func (s *Stack) Kill(stage string) {
	s.t.Helper()
	pid, err := s.Pid(stage)
	if err != nil {
		s.t.Fatalf("kill %s: %v", stage, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		s.t.Fatalf("kill %s (pid %d): %v", stage, pid, err)
	}
	for i := 0; i < 500; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatalf("%s (pid %d) still alive after SIGKILL", stage, pid)
}

// WaitReady waits until a stage's /readyz answers 200 (after a restart).
func (s *Stack) WaitReady(stage string, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v", stage, timeout)
}

// Answer is a decoded predict response.
type Answer struct {
	Status      int
	MessageID   string `json:"messageId"`
	Reason      string `json:"reason"`
	Error       string `json:"error"`
	LatencyMs   float64
	ModelResult struct {
		ModelName    string `json:"modelName"`
		ModelVersion string `json:"modelVersion"`
		Result       any    `json:"result"`
	} `json:"modelResult"`
	Took time.Duration // measured by the client
}

var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// Predict posts a body to path (e.g. /predict) and decodes the answer.
func (s *Stack) Predict(path string, body string) (Answer, error) {
	start := time.Now()
	resp, err := httpClient.Post(s.FrontendURL+path, "application/json", strings.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	var a Answer
	raw, err := io.ReadAll(resp.Body)
	a.Took = time.Since(start)
	if err != nil {
		return a, err
	}
	a.Status = resp.StatusCode
	if err := json.Unmarshal(raw, &a); err != nil {
		return a, fmt.Errorf("status %d, body %q: %w", resp.StatusCode, raw, err)
	}
	return a, nil
}

// Client returns a Kafka client on the stack's brokers.
func (s *Stack) Client(opts ...kgo.Opt) *kgo.Client {
	s.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.Brokers...)}, opts...)...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(cl.Close)
	return cl
}

// CountKeys reads a topic from the start with read_committed until at
// least want distinct keys are seen and the topic then stays idle for a
// second (so a trailing duplicate is counted too), or timeout passes. It
// returns how many times each key appeared.
func (s *Stack) CountKeys(topic string, want int, timeout time.Duration) map[string]int {
	s.t.Helper()
	cl := s.Client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	counts := map[string]int{}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { counts[string(r.Key)]++; n++ })
		if n == 0 && len(counts) >= want {
			break
		}
	}
	return counts
}

// Addr is a stage's health and metrics address, as rdv dev recorded it.
func (s *Stack) Addr(stage string) (string, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "run", stage+".addr"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// StartStage runs one more stage process from the built binaries beside
// the stack's own (a second enricher, a new model version...), connected to
// the stack's broker and registry, and returns its health address. It is
// stopped with SIGTERM when the test ends; on failure its log is printed.
func (s *Stack) StartStage(name, binary string, args ...string) string {
	s.t.Helper()
	port, err := dev.FreePorts(1)
	if err != nil {
		s.t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logPath := filepath.Join(s.Dir, "log", name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(Binaries(s.t), binary), args...)
	cmd.Env = append(os.Environ(),
		"RDV_BROKERS="+strings.Join(s.Brokers, ","),
		"RDV_REGISTRY_URL="+s.RegistryURL,
		"RDV_OBJECTIVE="+s.Objective,
		"RDV_HTTP_ADDR="+addr,
		"RDV_INSTANCE="+name,
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	// Pid and address files as rdv dev writes for its own, so Kill, Pid and
	// Addr work on it.
	_ = os.MkdirAll(filepath.Join(s.Dir, "run"), 0o755)
	if err := os.WriteFile(filepath.Join(s.Dir, "run", name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "run", name+".addr"), []byte(addr), 0o644); err != nil {
		s.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	s.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if s.t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) > 30 {
				lines = lines[len(lines)-30:]
			}
			s.t.Logf("--- %s (last %d lines)\n%s", name, len(lines), strings.Join(lines, "\n"))
		}
	})
	return addr
}

// RunCLI runs bin/rdv with args against the stack's registry and brokers
// and returns its combined output and exit error.
func (s *Stack) RunCLI(args ...string) (string, error) {
	s.t.Helper()
	root, err := Root()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(Binaries(s.t), "rdv"), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"RDV_BROKERS="+strings.Join(s.Brokers, ","),
		"RDV_REGISTRY_URL="+s.RegistryURL,
		"RDV_OBJECTIVE="+s.Objective,
		"RDV_ARCHIVE_DIR="+filepath.Join(s.Dir, "archive"),
	)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
