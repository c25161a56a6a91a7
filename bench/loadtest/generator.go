// Package loadtest measures the whole pipeline under an open-loop load:
// requests are sent at a constant arrival rate whatever the answers do, and
// each latency is measured from the moment the request was due, so a stall
// shows up in the tail instead of slowing the sender down (the coordinated
// omission a closed-loop client hides). It starts the pipeline as `rdv dev`
// does, steps the rate up to saturation, runs a direct baseline (the
// frontend with the model in process), and writes a JSON report, an SVG plot
// and a summary. bench/pipeline is its command.
package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Target is what the generator calls: POST URL with one of Bodies, in turn.
type Target struct {
	URL    string
	Bodies [][]byte
}

// Sample is what one run of the generator saw.
type Sample struct {
	Rate     float64
	Planned  int           // requests the schedule called for
	Sent     int           // requests sent (Planned minus Overflow)
	Overflow int           // not sent: the in-flight cap was reached
	Window   time.Duration // first due time to the last answer
	// Latencies of the answered calls (HTTP 200), from due time to the end
	// of the body, sorted.
	Latencies []time.Duration
	// DispatchLag is how late the generator sent each request, sorted: the
	// generator's own error, included in Latencies.
	DispatchLag []time.Duration
	Reasons     map[string]int // answered calls by reason
	Failures    map[string]int // unanswered calls by HTTP status or "transport"
	IDs         []string       // message ids of the answered calls
	MaxInFlight int
}

// Answered is the number of calls answered with 200.
func (s *Sample) Answered() int { return len(s.Latencies) }

// Generator sends open-loop load over one tuned HTTP client.
type Generator struct {
	client      *http.Client
	maxInFlight int
}

// NewGenerator returns a generator that keeps at most maxInFlight calls
// open. The transport keeps that many idle keep-alive connections, so a
// steady rate reuses connections instead of dialling.
func NewGenerator(maxInFlight int) *Generator {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        maxInFlight,
		MaxIdleConnsPerHost: maxInFlight,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &Generator{
		// Longer than any answer the frontend may give (SLA plus its 2s
		// grace), so a timeout here means the frontend itself is stuck.
		client:      &http.Client{Transport: tr, Timeout: 10 * time.Second},
		maxInFlight: maxInFlight,
	}
}

// Close drops the idle connections.
func (g *Generator) Close() { g.client.CloseIdleConnections() }

type outcome struct {
	latency time.Duration
	lag     time.Duration
	reason  string
	id      string
	failure string
}

// Run sends rate calls per second for d and waits for every answer.
func (g *Generator) Run(ctx context.Context, t Target, rate float64, d time.Duration) *Sample {
	n := int(rate * d.Seconds())
	s := &Sample{Rate: rate, Planned: n, Reasons: map[string]int{}, Failures: map[string]int{}}
	results := make([]outcome, n)
	sent := make([]bool, n)
	var wg sync.WaitGroup
	var inFlight, maxInFlight atomic.Int64
	var lastDone atomic.Int64

	// The dispatcher owns an OS thread and sleeps with nanosleep: the Go
	// runtime's timers wake about 1 ms late on Linux, which would add up to
	// a millisecond of the generator's own delay to every latency.
	start := time.Now().Add(20 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for i := 0; i < n; i++ {
			due := start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
			if wait := time.Until(due); wait > 0 {
				ts := syscall.NsecToTimespec(int64(wait))
				_ = syscall.Nanosleep(&ts, nil)
			}
			if ctx.Err() != nil {
				return
			}
			if inFlight.Load() >= int64(g.maxInFlight) {
				continue // counted as overflow: the system is far behind
			}
			cur := inFlight.Add(1)
			if cur > maxInFlight.Load() {
				maxInFlight.Store(cur)
			}
			sent[i] = true
			wg.Add(1)
			go func(i int, due time.Time) {
				defer wg.Done()
				results[i] = g.call(ctx, t.URL, t.Bodies[i%len(t.Bodies)], due)
				inFlight.Add(-1)
				now := time.Now().UnixNano()
				for {
					prev := lastDone.Load()
					if now <= prev || lastDone.CompareAndSwap(prev, now) {
						break
					}
				}
			}(i, due)
		}
	}()
	<-done
	wg.Wait()

	s.MaxInFlight = int(maxInFlight.Load())
	if end := lastDone.Load(); end > 0 {
		s.Window = time.Unix(0, end).Sub(start)
	}
	for i, r := range results {
		if !sent[i] {
			s.Overflow++
			continue
		}
		s.Sent++
		s.DispatchLag = append(s.DispatchLag, r.lag)
		if r.failure != "" {
			s.Failures[r.failure]++
			continue
		}
		s.Latencies = append(s.Latencies, r.latency)
		s.Reasons[r.reason]++
		s.IDs = append(s.IDs, r.id)
	}
	slices.Sort(s.Latencies)
	slices.Sort(s.DispatchLag)
	return s
}

// answerBody is the part of a predict answer the generator reads.
type answerBody struct {
	MessageID string `json:"messageId"`
	Reason    string `json:"reason"`
}

func (g *Generator) call(ctx context.Context, url string, body []byte, due time.Time) outcome {
	o := outcome{lag: time.Since(due)}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		o.failure = "transport"
		return o
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		o.failure = "transport"
		return o
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	o.latency = time.Since(due)
	if err != nil {
		o.failure = "transport"
		return o
	}
	if resp.StatusCode != http.StatusOK {
		o.failure = strconv.Itoa(resp.StatusCode)
		return o
	}
	var a answerBody
	if err := json.Unmarshal(raw, &a); err != nil {
		o.failure = "bad body"
		return o
	}
	o.reason, o.id = a.Reason, a.MessageID
	return o
}

// Percentile is the q-th percentile (0 < q <= 100) of sorted durations, by
// the nearest-rank method.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q/100*float64(len(sorted))+0.999999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}
