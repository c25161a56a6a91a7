package dev

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
)

// ReadyLine starts the line rdv dev prints once every stage is ready.
const ReadyLine = "ready in "

// Process is a running `rdv dev` started by a test or a benchmark: its
// output is kept, and watched for ReadyLine.
type Process struct {
	Cmd    *exec.Cmd
	Ready  <-chan struct{} // closed at the ready line
	Exited <-chan struct{} // closed once it has exited
	mu     sync.Mutex
	out    bytes.Buffer
}

// Launch starts cmd in a process group of its own (so Stop can reach the
// stages it runs) and keeps what it prints.
func Launch(cmd *exec.Cmd) (*Process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	ready, exited := make(chan struct{}), make(chan struct{})
	p := &Process{Cmd: cmd, Ready: ready, Exited: exited}
	go func() {
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			p.mu.Unlock()
			if strings.HasPrefix(line, ReadyLine) {
				once.Do(func() { close(ready) })
			}
		}
	}()
	go func() { _ = cmd.Wait(); pw.Close(); close(exited) }()
	return p, nil
}

// Output is what the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Stop sends SIGTERM, as Ctrl-C would, and waits; after grace it kills the
// whole process group.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.Exited:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited:
	case <-time.After(grace):
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.Exited
	}
}

// Reset deletes an objective's topics (the model registry's too: a
// directive would outlive the run) and its consumer groups on a real
// cluster, so a run starts from nothing as it does on the embedded broker.
func Reset(ctx context.Context, brokers []string, objective string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("kafka client for %v: %w", brokers, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ts := topics.For(objective)
	all := append(ts.Logs(), ts.Context, ts.DLQ, ts.ReplayScores, topics.Models)
	if _, err := adm.DeleteTopics(ctx, all...); err != nil {
		return fmt.Errorf("delete the %s topics on %v: %w", objective, brokers, err)
	}
	if err := deleteGroups(ctx, adm, "rdv."+objective+"."); err != nil {
		return err
	}
	// Deletion is asynchronous on a real broker: wait until they are gone.
	for ctx.Err() == nil {
		// A topic that is gone comes back with UNKNOWN_TOPIC_OR_PARTITION,
		// still listed under its name.
		md, err := adm.ListTopics(ctx, all...)
		if err == nil && !anyExists(md) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the %s topics on %v were not deleted within a minute", objective, brokers)
}

func anyExists(md kadm.TopicDetails) bool {
	for _, d := range md {
		if d.Err == nil {
			return true
		}
	}
	return false
}

// deleteGroups deletes the consumer groups named with prefix. A stage
// started with -instance is a static member: it does not leave its group
// when it stops, so the group would stay non-empty, keep its committed
// offsets, and hand the next run's member the last run's assignment. Such
// members are removed first.
func deleteGroups(ctx context.Context, adm *kadm.Client, prefix string) error {
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("list groups: %w", err)
	}
	var mine []string
	for _, g := range listed.Groups() {
		if strings.HasPrefix(g, prefix) {
			mine = append(mine, g)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	described, err := adm.DescribeGroups(ctx, mine...)
	if err != nil {
		return fmt.Errorf("describe groups %v: %w", mine, err)
	}
	for _, g := range described.Sorted() {
		var static []string
		for _, m := range g.Members {
			if m.InstanceID != nil {
				static = append(static, *m.InstanceID)
			}
		}
		if len(static) == 0 {
			continue
		}
		left, err := adm.LeaveGroup(ctx, kadm.LeaveGroup(g.Group).InstanceIDs(static...).Reason("rdv reset"))
		if err == nil {
			err = left.Error()
		}
		if err != nil && !errors.Is(err, kerr.UnknownMemberID) {
			return fmt.Errorf("remove static members %v from group %s: %w", static, g.Group, err)
		}
	}
	deleted, err := adm.DeleteGroups(ctx, mine...)
	if err != nil {
		return fmt.Errorf("delete groups %v: %w", mine, err)
	}
	for _, r := range deleted.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.GroupIDNotFound) {
			return fmt.Errorf("delete group %s: %w", r.Group, r.Err)
		}
	}
	return nil
}
