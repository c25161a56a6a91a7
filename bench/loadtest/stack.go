package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rendezvous-ml/rendezvous/ops/dev"
)

// StackConfig says how to start the pipeline.
type StackConfig struct {
	Root string // repository root: rdv dev finds the model files under it
	Bin  string // the stage binaries
	Dir  string // rdv dev's data, logs, pids
	// Brokers and RegistryURL, when set, are real infrastructure; empty
	// starts the embedded broker and registry, as `rdv dev` does.
	Brokers     []string
	RegistryURL string
	ESURL       string
	Partitions  int
	SLA         time.Duration
	// Env is added to the environment of rdv dev and every stage.
	Env []string
	// CPUs, when set, pins rdv dev and every stage to these CPUs (a
	// taskset list such as "0" or "0-1").
	CPUs string
	// StageProcs is rdv dev's -stage-procs: each stage's GOMAXPROCS.
	StageProcs int
}

// Stack is a running `rdv dev`.
type Stack struct {
	Dir         string
	FrontendURL string
	Brokers     []string
	Objective   string
	DevAddr     string // rdv dev's own health, metrics and profiler
	proc        *dev.Process
}

// StartStack runs `rdv dev` with every stage as its own process and waits
// until all are ready.
func StartStack(ctx context.Context, c StackConfig) (*Stack, error) {
	base, err := dev.FreePorts(16)
	if err != nil {
		return nil, err
	}
	s := &Stack{Dir: c.Dir, Objective: "iris", FrontendURL: fmt.Sprintf("http://127.0.0.1:%d", base+2)}
	args := []string{"dev",
		"-dir", c.Dir,
		"-bin", c.Bin,
		"-kafka-addr", fmt.Sprintf("127.0.0.1:%d", base),
		"-registry-addr", fmt.Sprintf("127.0.0.1:%d", base+1),
		"-frontend-addr", strings.TrimPrefix(s.FrontendURL, "http://"),
		"-http-port-base", strconv.Itoa(base + 3),
		"-sla", c.SLA.String(),
		"-partitions", strconv.Itoa(c.Partitions),
		"-es-url", c.ESURL,
		"-stage-procs", strconv.Itoa(c.StageProcs),
		"-http-addr", fmt.Sprintf("127.0.0.1:%d", base+15),
	}
	s.DevAddr = fmt.Sprintf("127.0.0.1:%d", base+15)
	if len(c.Brokers) > 0 {
		if err := dev.Reset(ctx, c.Brokers, s.Objective); err != nil {
			return nil, err
		}
		s.Brokers = c.Brokers
		args = append(args, "-brokers", strings.Join(c.Brokers, ","))
	} else {
		s.Brokers = []string{fmt.Sprintf("127.0.0.1:%d", base)}
	}
	if c.RegistryURL != "" {
		args = append(args, "-registry", c.RegistryURL)
	}
	cmd := exec.Command(filepath.Join(c.Bin, "rdv"), args...)
	if c.CPUs != "" {
		// taskset sets the affinity before exec, so every thread of rdv dev
		// and every stage it starts inherits it.
		cmd = exec.Command("taskset", append([]string{"-c", c.CPUs, filepath.Join(c.Bin, "rdv")}, args...)...)
	}
	cmd.Dir = c.Root
	// The stages inherit the environment: settings meant for the operator's
	// own runs must not leak into the benchmark's.
	cmd.Env = append(cleanEnv(), c.Env...)
	if s.proc, err = dev.Launch(cmd); err != nil {
		return nil, err
	}
	select {
	case <-s.proc.Ready:
		return s, nil
	case <-s.proc.Exited:
		return nil, fmt.Errorf("rdv dev exited before it was ready:\n%s", s.Output())
	case <-time.After(180 * time.Second):
		s.Stop()
		return nil, fmt.Errorf("rdv dev not ready after 180s (stage logs in %s):\n%s", filepath.Join(c.Dir, "log"), s.Output())
	case <-ctx.Done():
		s.Stop()
		return nil, ctx.Err()
	}
}

func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RDV_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// Output is what rdv dev printed.
func (s *Stack) Output() string { return s.proc.Output() }

// Procs are the processes to meter: every stage from its pid file, and rdv
// dev itself, which hosts the embedded broker and registry.
func (s *Stack) Procs() ([]Proc, error) {
	ps, err := pidFiles(filepath.Join(s.Dir, "run"))
	if err != nil {
		return nil, err
	}
	return append([]Proc{{Name: "rdv-dev (broker, registry)", Pid: s.proc.Cmd.Process.Pid}}, ps...), nil
}

// Addr is a stage's health and metrics address.
func (s *Stack) Addr(stage string) (string, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "run", stage+".addr"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Restarts counts the "stage exited; restarting" lines: a stage that
// crashed under load invalidates the figures.
func (s *Stack) Restarts() int { return strings.Count(s.Output(), "stage exited; restarting") }

// Stop stops rdv dev as Ctrl-C would and waits for it.
func (s *Stack) Stop() { s.proc.Stop(60 * time.Second) }

// Child is a helper process the benchmark started itself: the direct
// frontend or the Elasticsearch test server.
type Child struct {
	Name   string
	URL    string // what it serves
	Health string // its health and metrics address, if any
	cmd    *exec.Cmd
	exited chan struct{}
}

// Pid is the child's pid.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Stop sends SIGTERM and waits, then SIGKILL after 15s.
func (c *Child) Stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// StartDirect runs the frontend binary in direct mode: the champion's model
// file evaluated in process, no Kafka.
func StartDirect(ctx context.Context, bin, model, logPath, cpus string) (*Child, error) {
	base, err := dev.FreePorts(2)
	if err != nil {
		return nil, err
	}
	addr, health := fmt.Sprintf("127.0.0.1:%d", base), fmt.Sprintf("127.0.0.1:%d", base+1)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, "frontend"), "-addr", addr, "-http", health, "-direct-model", model)
	if cpus != "" {
		cmd = exec.Command("taskset", "-c", cpus, filepath.Join(bin, "frontend"), "-addr", addr, "-http", health, "-direct-model", model)
	}
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start the direct frontend: %w", err)
	}
	c := &Child{Name: "frontend (direct)", URL: "http://" + addr, Health: health, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(c.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + health + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c, nil
			}
		}
		select {
		case <-c.exited:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("the direct frontend exited:\n%s", b)
		case <-ctx.Done():
			c.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("the direct frontend is not ready after 30s (log %s)", logPath)
		}
	}
}

// StartESFake runs the Elasticsearch test server in a child process (this
// same binary, re-executed with serveFlag), so that its CPU and memory are
// its own in the report and do not disturb the generator.
func StartESFake(ctx context.Context, self, serveFlag, logPath string) (*Child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, serveFlag)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the Elasticsearch test server: %w", err)
	}
	c := &Child{Name: "esfake", cmd: cmd, exited: make(chan struct{})}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "url="); ok {
				urlc <- u
			}
		}
	}()
	go func() { _ = cmd.Wait(); logf.Close(); close(c.exited) }()
	select {
	case c.URL = <-urlc:
		return c, nil
	case <-c.exited:
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("the Elasticsearch test server exited:\n%s", b)
	case <-time.After(30 * time.Second):
		c.Stop()
		return nil, errors.New("the Elasticsearch test server did not start within 30s")
	case <-ctx.Done():
		c.Stop()
		return nil, ctx.Err()
	}
}
