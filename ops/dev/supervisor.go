package dev

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Proc is one supervised stage process.
type Proc struct {
	Name     string   // also the log and pid file name
	Args     []string // Args[0] is the binary
	Env      []string // added to the inherited environment
	HTTPAddr string   // its /readyz
	Display  string   // what the table shows it serves

	mu       sync.Mutex
	cmd      *exec.Cmd
	restarts int
	done     chan struct{}
}

// Pid is the running process's pid, or 0.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Restarts is how many times the process was started again.
func (p *Proc) Restarts() int { p.mu.Lock(); defer p.mu.Unlock(); return p.restarts }

// supervise keeps p running until ctx ends: a process that exits is started
// again after a backoff that grows from first to 10s, and resets once a
// process has stayed up for 30s.
func (p *Proc) supervise(ctx context.Context, dir string, first time.Duration, log *slog.Logger) {
	defer close(p.done)
	backoff := first
	for {
		started := time.Now()
		err := p.runOnce(ctx, dir)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 30*time.Second {
			backoff = first
		}
		log.Warn("stage exited; restarting", "stage", p.Name, "err", err, "in", backoff, "log", filepath.Join(dir, "log", p.Name+".log"))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = max(backoff, min(2*backoff, 10*time.Second))
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
	}
}

func (p *Proc) runOnce(ctx context.Context, dir string) error {
	logf, err := os.OpenFile(filepath.Join(dir, "log", p.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(p.Args[0], p.Args[1:]...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a Ctrl-C at the terminal reaches rdv dev
	// only, and rdv dev stops the stages in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Args[0], err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	_ = os.WriteFile(filepath.Join(dir, "run", p.Name+".addr"), []byte(p.HTTPAddr+"\n"), 0o644)
	pidFile := filepath.Join(dir, "run", p.Name+".pid")
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err = <-waitErr:
	case <-ctx.Done():
		err = <-waitErr // stop() signals it; wait for the exit
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	if cur, rerr := os.ReadFile(pidFile); rerr == nil && string(cur) == strconv.Itoa(cmd.Process.Pid)+"\n" {
		_ = os.Remove(pidFile)
	}
	return err
}

// stop sends SIGTERM and waits up to grace, then SIGKILL.
func (p *Proc) stop(grace time.Duration) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		p.mu.Lock()
		if p.cmd != nil && p.cmd.Process != nil {
			_ = p.cmd.Process.Kill()
		}
		p.mu.Unlock()
		<-p.done
	}
}
