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
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
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
	// Failures are the unanswered calls by kind: the HTTP status, or
	// "transport: <what>" (connect, closed, reset, timeout, canceled),
	// "bad response", "bad body", or "refused: <why>" for a target the
	// generator will not load.
	Failures map[string]int
	IDs      []string // message ids of the answered calls
	// ConnErrors counts connections that failed under a call (refused,
	// reset, closed early, timed out). Each is replaced by a new one; a
	// keep-alive connection the server had closed while idle is replaced
	// and its call resent, so it is counted here but not as a failure.
	ConnErrors  int
	MaxInFlight int
}

// Answered is the number of calls answered with 200.
func (s *Sample) Answered() int { return len(s.Latencies) }

// Generator sends open-loop load over its own HTTP/1.1 client: a pool of
// keep-alive connections to the loopback target, driven by one goroutine's
// epoll loop that also keeps the schedule (client.go). net/http cost four
// times as much CPU per call, in goroutine hand-offs, thread wake-ups and
// reflection, all of it taken from the pipeline being measured
// (BenchmarkGeneratorCPU).
//
// Runs take turns: they share the connections.
type Generator struct {
	maxInFlight int
	// timeout bounds a call from its sending to the end of its answer.
	// Longer than any answer the frontend may give (SLA plus its 2s
	// grace), so a timeout here means the frontend itself is stuck.
	timeout time.Duration

	mu    sync.Mutex
	ep    int     // epoll instance, -1 until needed
	gen   int32   // tells a connection's epoll events from those of an earlier one on its fd
	dst   string  // what the pooled connections are connected to
	conns []*conn // by file descriptor
	idle  []*conn // keep-alive connections with nothing in flight, LIFO
}

// NewGenerator returns a generator that keeps at most maxInFlight calls
// open, each on its own connection. Connections stay open between runs,
// so a steady rate reuses connections instead of dialling.
func NewGenerator(maxInFlight int) *Generator {
	return &Generator{maxInFlight: max(1, maxInFlight), timeout: 10 * time.Second, ep: -1}
}

// Close closes every connection.
func (g *Generator) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closeAll()
}

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
	if n <= 0 {
		return s
	}
	dst, err := parseTarget(t.URL)
	if err == nil && len(t.Bodies) == 0 {
		err = errors.New("no bodies")
	}
	if err != nil {
		// Nothing is sent, but every call the schedule wanted is counted
		// as failed, so the step cannot pass and the report says why.
		s.Sent = n
		s.Failures["refused: "+err.Error()] = n
		return s
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	r := &run{
		g: g, dst: dst, rate: rate, n: n,
		reqs:     requests(dst, t.Bodies),
		results:  make([]outcome, n),
		sent:     make([]bool, n),
		callConn: make([]*conn, n),
		reasons:  map[string]string{},
		start:    time.Now().Add(20 * time.Millisecond),
		stamped:  true,
	}
	r.loop(ctx)

	s.MaxInFlight = r.maxInFlight
	s.ConnErrors = r.connErrors
	if r.lastDone > 0 {
		s.Window = r.lastDone
	}
	for i, o := range r.results {
		if !r.sent[i] {
			s.Overflow++
			continue
		}
		s.Sent++
		s.DispatchLag = append(s.DispatchLag, o.lag)
		if o.failure != "" {
			s.Failures[o.failure]++
			continue
		}
		s.Latencies = append(s.Latencies, o.latency)
		s.Reasons[o.reason]++
		s.IDs = append(s.IDs, o.id)
	}
	slices.Sort(s.Latencies)
	slices.Sort(s.DispatchLag)
	return s
}

// target is a parsed Target.URL.
type target struct {
	key  string // host:port, to tell whether pooled connections fit
	sa   syscall.Sockaddr
	host string // the Host header
	path string
}

// parseTarget accepts only plain HTTP to a loopback address: the load is
// meant for the pipeline on this machine, never for someone else's server.
func parseTarget(raw string) (*target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("bad url")
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("scheme %q is not http", u.Scheme)
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	if host == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip == nil || !ip.IsLoopback() {
		return nil, errors.New("not a loopback address")
	}
	port := 80
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port <= 0 || port > 65535 {
			return nil, errors.New("bad port")
		}
	}
	var sa syscall.Sockaddr
	if v4 := ip.To4(); v4 != nil {
		sa4 := &syscall.SockaddrInet4{Port: port}
		copy(sa4.Addr[:], v4)
		sa = sa4
	} else {
		sa6 := &syscall.SockaddrInet6{Port: port}
		copy(sa6.Addr[:], ip.To16())
		sa = sa6
	}
	return &target{key: net.JoinHostPort(ip.String(), strconv.Itoa(port)), sa: sa, host: u.Host, path: u.RequestURI()}, nil
}

// requests serializes each body's whole request once: a call then costs
// one write of ready bytes.
func requests(dst *target, bodies [][]byte) [][]byte {
	out := make([][]byte, len(bodies))
	for i, b := range bodies {
		out[i] = fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: rdv-loadtest\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", dst.path, dst.host, len(b), b)
	}
	return out
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
