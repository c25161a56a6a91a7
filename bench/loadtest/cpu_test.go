package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cannedServerEnv makes the test binary serve canned answers instead of
// running tests: the generator's CPU is then measured alone, in its own
// process, while the server pays for itself in another.
const cannedServerEnv = "RDV_LOADTEST_CANNED_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(cannedServerEnv) == "1" {
		serveCanned()
		return
	}
	os.Exit(m.Run())
}

// cannedAnswer is a frontend answer to an iris call, in the frontend's
// field order and about its size; the message id is patched per call.
const cannedAnswer = `{"timestamp":"2025-06-01T12:00:00.123456789Z","messageId":"00000000-0000-4000-8000-000000000000",` +
	`"objective":"iris","modelInput":{"petalLength":1.4,"petalWidth":0.2,"sepalLength":5.1,"sepalWidth":3.5},` +
	`"modelResult":{"modelName":"dt","modelVersion":"1","result":"setosa","probabilities":{"setosa":1,"versicolor":0,"virginica":0}},` +
	`"reason":"champion","policy":"priority","latencyMs":0.012}` + "\n"

// cannedHandler answers as the frontend does (net/http server,
// Content-Type application/json, the body written at once so that the
// server sets Content-Length), with a fresh message id every call.
func cannedHandler() http.Handler {
	var n atomic.Uint64
	idAt := strings.Index(cannedAnswer, `"messageId":"`) + len(`"messageId":"`)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		b := []byte(cannedAnswer)
		id := strconv.AppendUint(nil, n.Add(1), 16)
		copy(b[idAt+36-len(id):idAt+36], id)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b)
	})
}

func serveCanned() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("addr=" + ln.Addr().String())
	// The parent closes our stdin when it is done (or dies).
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	srv := &http.Server{Handler: cannedHandler(), ReadHeaderTimeout: 5 * time.Second}
	_ = srv.Serve(ln)
}

// startCannedServer runs the canned server in a child process and returns
// its address.
func startCannedServer(tb testing.TB) string {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), cannedServerEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "addr=")
	if err != nil || !ok {
		tb.Fatalf("canned server: %q, %v", line, err)
	}
	return addr
}

// usage is this process's CPU time and context switches so far.
func usage() (time.Duration, int64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw + ru.Nivcsw
}

// BenchmarkGeneratorCPU is the generator's own CPU per call at a fixed
// open-loop rate against a canned frontend in another process: what the
// generator takes from the pipeline it measures. ns/op would only be the
// schedule's spacing, so it is replaced by cpu-µs/call.
//
//	go test -run '^$' -bench GeneratorCPU -benchtime 4000x ./bench/loadtest/
func BenchmarkGeneratorCPU(b *testing.B) {
	for _, rate := range []float64{2000} {
		b.Run(fmt.Sprintf("rate=%g", rate), func(b *testing.B) {
			addr := startCannedServer(b)
			bodies, err := irisBodies(filepath.Join("..", "..", "models", "iris.csv"))
			if err != nil {
				b.Fatal(err)
			}
			g := NewGenerator(8000)
			defer g.Close()
			t := Target{URL: "http://" + addr + "/predict", Bodies: bodies}
			ctx := context.Background()
			// Open the connections and warm the code up first.
			g.Run(ctx, t, rate, 250*time.Millisecond)
			d := time.Duration(float64(b.N)/rate*float64(time.Second)) + time.Nanosecond
			b.ResetTimer()
			cpu0, sw0 := usage()
			s := g.Run(ctx, t, rate, d)
			cpu, sw := usage()
			cpu, sw = cpu-cpu0, sw-sw0
			b.StopTimer()
			if s.Sent == 0 || s.Answered() != s.Sent {
				b.Fatalf("sent %d, answered %d, failures %v", s.Sent, s.Answered(), s.Failures)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(cpu.Microseconds())/float64(s.Sent), "cpu-µs/call")
			b.ReportMetric(float64(sw)/float64(s.Sent), "ctxsw/call")
			b.ReportMetric(float64(Percentile(s.Latencies, 50).Microseconds()), "p50-µs")
			b.ReportMetric(float64(Percentile(s.Latencies, 99).Microseconds()), "p99-µs")
			b.ReportMetric(float64(Percentile(s.DispatchLag, 99).Microseconds()), "lag-p99-µs")
		})
	}
}
