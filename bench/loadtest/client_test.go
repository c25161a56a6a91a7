package loadtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAnswerFields(t *testing.T) {
	for _, c := range []struct {
		in, id, reason string
		ok             bool
	}{
		{cannedAnswer, "00000000-0000-4000-8000-000000000000", "champion", true},
		{`{"reason":"fallback","messageId":"a"}`, "a", "fallback", true},
		// Only top-level members count, whatever is nested or quoted.
		{`{"modelInput":{"reason":"x","messageId":"y"},"note":"\"reason\":\"z\"","reason":"default","messageId":"m"}`, "m", "default", true},
		{`{"list":[1,{"reason":"x"},"]"],"reason":"r"}`, "", "r", true},
		{`{"reason":"caf\u00e9","messageId":"a\"b"}`, `a"b`, "café", true},
		{` { } `, "", "", true},
		{`{"error":"x"}`, "", "", true},
		{``, "", "", false},
		{`{"reason":"x"`, "", "", false},
		{`{"reason":"x"} trailing`, "", "", false},
		{`{"reason" "x"}`, "", "", false},
		{`{"reason":}`, "", "", false},
		{`{"a":{"b":1}`, "", "", false},
		{`{"a":"unterminated}`, "", "", false},
		{`["reason","x"]`, "", "", false},
	} {
		id, reason, ok := answerFields([]byte(c.in))
		if ok != c.ok || ok && (string(id) != c.id || string(reason) != c.reason) {
			t.Errorf("%s: got %q %q %v, want %q %q %v", c.in, id, reason, ok, c.id, c.reason, c.ok)
		}
	}
}

func TestParseAnswer(t *testing.T) {
	const body = `{"reason":"champion"}`
	for _, c := range []struct {
		name, in string
		status   int
		body     string
		close    bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n" + body, 200, body, false},
		{"lower-case headers", "HTTP/1.1 503 Service Unavailable\r\ncontent-length:  3\r\nconnection: Close\r\n\r\nabc", 503, "abc", true},
		{"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 200, "", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\n{\"rea\r\n10\r\nson\":\"champion\"}\r\n0\r\nTrailer: 1\r\n\r\n", 200, body, false},
		{"interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 21\r\n\r\n" + body, 200, body, false},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 21\r\n\r\n" + body, 200, body, true},
		{"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 21\r\n\r\n" + body, 200, body, false},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", 204, "", false},
	} {
		// Whole, then a byte at a time: every prefix is only "more".
		for cut := 0; cut < len(c.in); cut++ {
			var a answer
			if got := a.parse([]byte(c.in[:cut]), false); got != parseMore {
				t.Fatalf("%s: the first %d bytes parse as %d", c.name, cut, got)
			}
		}
		var a answer
		if got := a.parse([]byte(c.in), false); got != parseDone {
			t.Fatalf("%s: %d", c.name, got)
		}
		if a.status != c.status || string(a.body) != c.body || a.close != c.close || a.size != len(c.in) {
			t.Errorf("%s: status %d body %q close %v size %d", c.name, a.status, a.body, a.close, a.size)
		}
	}

	// Without a length, the body runs to the end of the connection.
	var a answer
	in := "HTTP/1.1 200 OK\r\n\r\nabc"
	if a.parse([]byte(in), false) != parseMore || a.parse([]byte(in), true) != parseDone || string(a.body) != "abc" || !a.close {
		t.Errorf("body to EOF: %+v", a)
	}
	for _, bad := range []string{
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"garbage\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
	} {
		var a answer
		if got := a.parse([]byte(bad), false); got != parseBad {
			t.Errorf("%q parses as %d", bad, got)
		}
	}
}

func irisTarget(url string) Target {
	return Target{URL: url, Bodies: [][]byte{[]byte(`{"sepalLength":5.1,"sepalWidth":3.5,"petalLength":1.4,"petalWidth":0.2}`)}}
}

// Against an answer like the frontend's, every call is answered once, on
// reused connections, with its own message id.
func TestGeneratorCannedFrontend(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(cannedHandler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	g := NewGenerator(100)
	defer g.Close()
	s := g.Run(context.Background(), irisTarget(srv.URL+"/predict"), 500, 600*time.Millisecond)
	if s.Planned != 300 || s.Sent != 300 || s.Answered() != 300 || s.Reasons["champion"] != 300 || len(s.Failures) != 0 || s.ConnErrors != 0 {
		t.Fatalf("planned %d sent %d answered %d reasons %v failures %v conn errors %d", s.Planned, s.Sent, s.Answered(), s.Reasons, s.Failures, s.ConnErrors)
	}
	seen := map[string]bool{}
	for _, id := range s.IDs {
		if len(id) != 36 || seen[id] {
			t.Fatalf("id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
	if n := conns.Load(); n > 20 {
		t.Errorf("%d connections for 300 calls: keep-alive does not work", n)
	}
	if s.Window < 590*time.Millisecond || s.Window > 2*time.Second {
		t.Errorf("window %v", s.Window)
	}
	// The same connections serve the next run.
	before := conns.Load()
	if s := g.Run(context.Background(), irisTarget(srv.URL+"/predict"), 200, 100*time.Millisecond); s.Answered() != 20 {
		t.Fatalf("second run: %d answered, failures %v", s.Answered(), s.Failures)
	}
	if conns.Load() != before {
		t.Errorf("the second run dialled %d connections", conns.Load()-before)
	}
}

// Latencies end when the answer arrived, not when the loop, asleep until
// the next call is due, got round to reading it.
func TestGeneratorLatencyIsTheAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		_, _ = w.Write([]byte(`{"messageId":"m","reason":"champion"}`))
	}))
	defer srv.Close()
	g := NewGenerator(10)
	defer g.Close()
	// Calls 100 ms apart: the loop sleeps 20 ms (pollEvery) between
	// looks, long past each answer.
	s := g.Run(context.Background(), irisTarget(srv.URL), 10, time.Second)
	if s.Answered() != 10 {
		t.Fatalf("%d answered, failures %v", s.Answered(), s.Failures)
	}
	if lo, mid := Percentile(s.Latencies, 1), Percentile(s.Latencies, 50); lo < 2*time.Millisecond || mid > 12*time.Millisecond {
		t.Fatalf("latencies from %v, median %v: want about 2ms", lo, mid)
	}
}

// Connections the server closes, with Connection: close or while idle
// between runs, are replaced without losing a call.
func TestGeneratorReconnects(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			w.Header().Set("Connection", "close")
		}
		_, _ = w.Write([]byte(`{"messageId":"m","reason":"champion"}`))
	}))
	defer srv.Close()
	g := NewGenerator(100)
	defer g.Close()
	tg := irisTarget(srv.URL)
	for run := range 3 {
		s := g.Run(context.Background(), tg, 300, 200*time.Millisecond)
		if s.Answered() != 60 || len(s.Failures) != 0 {
			t.Fatalf("run %d: %d of 60 answered, failures %v", run, s.Answered(), s.Failures)
		}
		srv.CloseClientConnections()
		time.Sleep(20 * time.Millisecond)
	}
}

// A server that fails every connection fails every call, each by its
// kind, and the run still ends on time.
func TestGeneratorConnectionErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read the request, then hang up without an answer.
			_, _ = c.Read(make([]byte, 4096))
			_ = c.Close()
		}
	}()
	g := NewGenerator(100)
	defer g.Close()
	begin := time.Now()
	s := g.Run(context.Background(), irisTarget("http://"+ln.Addr().String()), 200, 200*time.Millisecond)
	if s.Answered() != 0 || s.Sent != 40 || s.Failures["transport: closed"]+s.Failures["transport: reset"] != 40 || s.ConnErrors != 40 {
		t.Fatalf("answered %d sent %d failures %v conn errors %d", s.Answered(), s.Sent, s.Failures, s.ConnErrors)
	}
	ln.Close()
	// Nobody listens any more: connections are refused.
	s = g.Run(context.Background(), irisTarget("http://"+ln.Addr().String()), 200, 100*time.Millisecond)
	if s.Failures["transport: connect"] != 20 {
		t.Fatalf("failures %v", s.Failures)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Fatalf("took %v", took)
	}
}

// A call that gets no answer fails after the timeout: the run ends.
func TestGeneratorTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)
	g := NewGenerator(100)
	g.timeout = 100 * time.Millisecond
	defer g.Close()
	begin := time.Now()
	s := g.Run(context.Background(), irisTarget(srv.URL), 100, 100*time.Millisecond)
	if s.Failures["transport: timeout"] != 10 || s.ConnErrors != 10 {
		t.Fatalf("failures %v conn errors %d", s.Failures, s.ConnErrors)
	}
	if took := time.Since(begin); took > time.Second {
		t.Fatalf("took %v", took)
	}
}

// The in-flight cap holds: calls beyond it are not sent.
func TestGeneratorInFlightCap(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		_, _ = w.Write([]byte(`{"messageId":"m","reason":"champion"}`))
	}))
	defer srv.Close()
	g := NewGenerator(5)
	defer g.Close()
	s := g.Run(context.Background(), irisTarget(srv.URL), 100, 300*time.Millisecond)
	if s.MaxInFlight != 5 || s.Overflow == 0 || s.Sent+s.Overflow != 30 || s.Answered() != s.Sent {
		t.Fatalf("max in flight %d, sent %d, overflow %d, answered %d, failures %v", s.MaxInFlight, s.Sent, s.Overflow, s.Answered(), s.Failures)
	}
}

// Cancelling ends the run at once: calls in flight fail, the rest are not
// sent.
func TestGeneratorCancel(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	g := NewGenerator(100)
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	s := g.Run(ctx, irisTarget(srv.URL), 100, 10*time.Second)
	if took := time.Since(begin); took > time.Second {
		t.Fatalf("took %v", took)
	}
	if s.Sent == 0 || s.Failures["transport: canceled"] != s.Sent || s.Overflow < 900 {
		t.Fatalf("sent %d overflow %d failures %v", s.Sent, s.Overflow, s.Failures)
	}
}

// Load goes to this machine only, over plain HTTP.
func TestGeneratorRefusesOtherTargets(t *testing.T) {
	g := NewGenerator(10)
	defer g.Close()
	for _, url := range []string{"http://192.0.2.1:8080/predict", "http://example.com/predict", "https://127.0.0.1/predict", "http://127.0.0.1:99999/"} {
		s := g.Run(context.Background(), irisTarget(url), 100, 100*time.Millisecond)
		var kinds []string
		for k := range s.Failures {
			kinds = append(kinds, k)
		}
		if s.Sent != 10 || s.Answered() != 0 || len(kinds) != 1 || !strings.HasPrefix(kinds[0], "refused: ") {
			t.Errorf("%s: sent %d failures %v", url, s.Sent, s.Failures)
		}
	}
	for _, url := range []string{"http://localhost:1/", "http://[::1]:1/", "http://127.0.0.2:1/"} {
		if _, err := parseTarget(url); err != nil {
			t.Errorf("%s: %v", url, err)
		}
	}
}

func BenchmarkAnswerParse(b *testing.B) {
	resp := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Sun, 01 Jun 2025 12:00:00 GMT\r\nContent-Length: %d\r\n\r\n%s", len(cannedAnswer), cannedAnswer))
	b.ReportAllocs()
	for b.Loop() {
		var a answer
		if a.parse(resp, false) != parseDone {
			b.Fatal("not parsed")
		}
		if _, _, ok := answerFields(a.body); !ok {
			b.Fatal("bad body")
		}
	}
}
