package oip_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
	"github.com/rendezvous-ml/rendezvous/stages/model/oip"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	features = []string{"a", "b", "c"}
	classes  = []string{"low", "mid", "high"}
)

// classOf is the fake model: the class of a row is its first feature, mod 3.
func classOf(row []float64) int { return int(row[0]) % 3 }

// fake is an OIP v2 server for one model, "m", whose behaviour each test
// tunes.
type fake struct {
	t        *testing.T
	srv      *httptest.Server
	requests atomic.Int64 // infer requests
	conns    atomic.Int64 // new connections
	mu       sync.Mutex
	shapes   [][]int
	paths    []string
	// infer, when set, answers the n-th infer request (from 1) instead of
	// the model; returning false lets the model answer.
	infer func(w http.ResponseWriter, n int64, rows [][]float64) bool
	// labelType is BYTES (default) or INT64.
	labelType  string
	serverDown atomic.Bool
	modelDown  atomic.Bool
	metadata   string
}

func newFake(t *testing.T) *fake {
	f := &fake{t: t, labelType: "BYTES", metadata: `{"name":"m","versions":["7"],"platform":"sklearn",
		"inputs":[{"name":"input-0","datatype":"FP64","shape":[-1,3]}],
		"outputs":[{"name":"predict","datatype":"BYTES","shape":[-1,1]},{"name":"predict_proba","datatype":"FP64","shape":[-1,3]}]}`}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, _ *http.Request) {
		if f.serverDown.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	ready := func(w http.ResponseWriter, r *http.Request) {
		if f.modelDown.Load() {
			http.Error(w, `{"error":"Model m not ready"}`, http.StatusServiceUnavailable)
		}
	}
	mux.HandleFunc("GET /v2/models/m/ready", ready)
	mux.HandleFunc("GET /v2/models/m/versions/7/ready", ready)
	mux.HandleFunc("GET /v2/models/m", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, f.metadata) })
	mux.HandleFunc("POST /v2/models/m/infer", f.handleInfer)
	mux.HandleFunc("POST /v2/models/m/versions/7/infer", f.handleInfer)
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

type inferReq struct {
	Inputs []struct {
		Name     string    `json:"name"`
		Shape    []int     `json:"shape"`
		Datatype string    `json:"datatype"`
		Data     []float64 `json:"data"`
	} `json:"inputs"`
	Outputs []struct {
		Name string `json:"name"`
	} `json:"outputs"`
}

func (f *fake) handleInfer(w http.ResponseWriter, r *http.Request) {
	n := f.requests.Add(1)
	var req inferReq
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Inputs) != 1 {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	in := req.Inputs[0]
	if in.Name != "input-0" || in.Datatype != "FP64" || len(in.Shape) != 2 || in.Shape[1] != 3 || len(in.Data) != in.Shape[0]*3 {
		http.Error(w, fmt.Sprintf(`{"error":"bad input %+v"}`, in), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.shapes = append(f.shapes, in.Shape)
	f.paths = append(f.paths, r.URL.Path)
	f.mu.Unlock()
	rows := make([][]float64, in.Shape[0])
	for i := range rows {
		rows[i] = in.Data[i*3 : i*3+3]
	}
	if f.infer != nil && f.infer(w, n, rows) {
		return
	}
	var labels []any
	var proba []float64
	for _, row := range rows {
		c := classOf(row)
		if f.labelType == "INT64" {
			labels = append(labels, c)
		} else {
			labels = append(labels, classes[c])
		}
		p := []float64{0.1, 0.1, 0.1}
		p[c] = 0.8
		proba = append(proba, p...)
	}
	outs := []map[string]any{{"name": "predict", "datatype": f.labelType, "shape": []int{len(rows), 1}, "data": labels}}
	for _, o := range req.Outputs {
		if o.Name == "predict_proba" {
			outs = append(outs, map[string]any{"name": "predict_proba", "datatype": "FP64", "shape": []int{len(rows), 3}, "data": proba})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"model_name": "m", "model_version": "7", "outputs": outs})
}

func (f *fake) config() oip.Config {
	c := oip.Defaults()
	c.URL = f.srv.URL
	c.Model = "m"
	c.Features = features
	c.Classes = classes
	c.ProbaOutput = "predict_proba"
	c.BatchWindow = 0
	return c
}

func newClient(t *testing.T, cfg oip.Config) *oip.Client {
	t.Helper()
	c, err := oip.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func input(i int) map[string]float64 {
	return map[string]float64{"a": float64(i), "b": 0.5, "c": -1.25, "unused": 9}
}

func TestPredict(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f.config())
	for i := range 6 {
		p, err := c.Predict(input(i))
		if err != nil {
			t.Fatal(err)
		}
		want := classes[i%3]
		if p.Label != want {
			t.Errorf("row %d: label %q, want %q", i, p.Label, want)
		}
		if p.Probabilities[want] != 0.8 || len(p.Probabilities) != 3 {
			t.Errorf("row %d: probabilities %v", i, p.Probabilities)
		}
	}
	// One kept-alive connection carried every call.
	if n := f.conns.Load(); n != 1 {
		t.Errorf("%d connections for 6 sequential calls, want 1 (keep-alive)", n)
	}
	if c.Name() != "m" || strings.Join(c.Features(), ",") != "a,b,c" {
		t.Errorf("Name %q Features %v", c.Name(), c.Features())
	}
}

func TestPredictClassIndex(t *testing.T) {
	f := newFake(t)
	f.labelType = "INT64"
	cfg := f.config()
	cfg.ProbaOutput = ""
	c := newClient(t, cfg)
	p, err := c.Predict(input(5))
	if err != nil {
		t.Fatal(err)
	}
	if p.Label != "high" || len(p.Probabilities) != 0 {
		t.Errorf("got %+v, want label high and no probabilities", p)
	}
}

func TestPredictVersionPath(t *testing.T) {
	f := newFake(t)
	cfg := f.config()
	cfg.Version = "7"
	c := newClient(t, cfg)
	if _, err := c.Predict(input(1)); err != nil {
		t.Fatal(err)
	}
	if err := c.ModelReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.paths[0] != "/v2/models/m/versions/7/infer" || c.Version() != "7" {
		t.Errorf("path %q version %q", f.paths[0], c.Version())
	}
}

func TestPredictBadInput(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f.config())
	_, err := c.Predict(map[string]float64{"a": 1, "b": 2})
	if !errors.Is(err, evaluator.ErrMissingFeature) || !strings.Contains(err.Error(), `"c"`) {
		t.Errorf("missing feature: %v", err)
	}
	x := input(1)
	x["b"] = posInf()
	if _, err := c.Predict(x); !errors.Is(err, evaluator.ErrInvalidInput) {
		t.Errorf("infinite feature: %v", err)
	}
	if f.requests.Load() != 0 {
		t.Errorf("%d requests sent for bad inputs", f.requests.Load())
	}
}

func posInf() float64 { var z float64; return 1 / z }

// k concurrent callers within one window share one infer request of shape
// [k, n], and each gets its own row's answer back.
func TestBatching(t *testing.T) {
	f := newFake(t)
	cfg := f.config()
	cfg.BatchWindow = 50 * time.Millisecond
	cfg.Timeout = time.Second
	c := newClient(t, cfg)
	const k = 16
	var wg sync.WaitGroup
	errs := make([]error, k)
	got := make([]evaluator.Prediction, k)
	for i := range k {
		wg.Go(func() { got[i], errs[i] = c.Predict(input(i)) })
	}
	wg.Wait()
	for i := range k {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if got[i].Label != classes[i%3] || got[i].Probabilities[classes[i%3]] != 0.8 {
			t.Errorf("caller %d got %+v, want %s", i, got[i], classes[i%3])
		}
	}
	if n := f.requests.Load(); n != 1 {
		t.Fatalf("%d infer requests for %d concurrent callers, want 1", n, k)
	}
	if s := f.shapes[0]; s[0] != k || s[1] != 3 {
		t.Errorf("batch shape %v, want [%d 3]", s, k)
	}
}

// A full batch goes at once; the rest waits for the window.
func TestBatchingMaxBatch(t *testing.T) {
	f := newFake(t)
	cfg := f.config()
	cfg.BatchWindow = 300 * time.Millisecond
	cfg.MaxBatch = 4
	cfg.Timeout = time.Second
	c := newClient(t, cfg)
	var wg sync.WaitGroup
	var bad atomic.Int64
	start := time.Now()
	var fastest atomic.Int64
	fastest.Store(int64(time.Hour))
	for i := range 10 {
		wg.Go(func() {
			p, err := c.Predict(input(i))
			if err != nil || p.Label != classes[i%3] {
				bad.Add(1)
			}
			if d := int64(time.Since(start)); d < fastest.Load() {
				fastest.Store(d)
			}
		})
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d callers got a wrong answer or an error", bad.Load())
	}
	total := 0
	for _, s := range f.shapes {
		if s[0] > 4 {
			t.Errorf("a batch of %d rows, over MaxBatch 4", s[0])
		}
		total += s[0]
	}
	if len(f.shapes) != 3 || total != 10 {
		t.Errorf("batches %v, want 3 batches (4, 4, 2) of 10 rows", f.shapes)
	}
	if d := time.Duration(fastest.Load()); d > 200*time.Millisecond {
		t.Errorf("the first full batch answered after %v: it waited for the window", d)
	}
}

func TestTimeout(t *testing.T) {
	f := newFake(t)
	release := make(chan struct{})
	f.infer = func(w http.ResponseWriter, _ int64, _ [][]float64) bool {
		<-release
		return false
	}
	defer close(release)
	cfg := f.config()
	cfg.Timeout = 30 * time.Millisecond
	cfg.Retries = 0
	c := newClient(t, cfg)
	start := time.Now()
	_, err := c.Predict(input(1))
	took := time.Since(start)
	if !errors.Is(err, oip.ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	if took > 150*time.Millisecond {
		t.Errorf("timed out after %v, the timeout is 30ms", took)
	}
	for _, want := range []string{`"m"`, f.srv.URL} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// A call that times out is tried again when the deadline leaves time.
func TestRetryAfterTimeoutWithinDeadline(t *testing.T) {
	f := newFake(t)
	release := make(chan struct{})
	defer close(release)
	f.infer = func(w http.ResponseWriter, n int64, _ [][]float64) bool {
		if n == 1 {
			<-release
		}
		return false
	}
	cfg := f.config()
	cfg.Timeout = 20 * time.Millisecond
	c := newClient(t, cfg)
	p, err := c.PredictBefore(context.Background(), input(2), time.Now().Add(200*time.Millisecond))
	if err != nil || p.Label != "high" {
		t.Fatalf("got %+v, %v; want high after a retry", p, err)
	}
	if n := f.requests.Load(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestServerErrorThenSuccess(t *testing.T) {
	f := newFake(t)
	f.infer = func(w http.ResponseWriter, n int64, _ [][]float64) bool {
		if n == 1 {
			http.Error(w, `{"error":"boom"}`, http.StatusInternalServerError)
			return true
		}
		return false
	}
	c := newClient(t, f.config())
	p, err := c.PredictBefore(context.Background(), input(1), time.Now().Add(100*time.Millisecond))
	if err != nil || p.Label != "mid" {
		t.Fatalf("got %+v, %v; want mid after one retry", p, err)
	}
	if n := f.requests.Load(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

// Retries stop at Config.Retries, and never start past the deadline.
func TestRetryBounds(t *testing.T) {
	f := newFake(t)
	f.infer = func(w http.ResponseWriter, _ int64, _ [][]float64) bool {
		time.Sleep(10 * time.Millisecond)
		http.Error(w, `{"error":"overloaded"}`, http.StatusBadGateway)
		return true
	}
	c := newClient(t, f.config())

	_, err := c.PredictBefore(context.Background(), input(1), time.Now().Add(5*time.Second))
	if !errors.Is(err, oip.ErrBadResponse) || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), "attempt 3 of 3") {
		t.Errorf("err %v, want a 502 after 3 attempts", err)
	}
	if n := f.requests.Load(); n != 3 {
		t.Errorf("%d requests with 2 retries, want 3", n)
	}

	// The deadline passes during the first attempt: no retry.
	f.requests.Store(0)
	start := time.Now()
	_, err = c.PredictBefore(context.Background(), input(1), time.Now().Add(5*time.Millisecond))
	if !errors.Is(err, oip.ErrBadResponse) {
		t.Errorf("err %v, want the 502", err)
	}
	if n := f.requests.Load(); n != 1 {
		t.Errorf("%d requests past the deadline, want 1", n)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("took %v", took)
	}

	// A 4xx is never retried.
	f.requests.Store(0)
	f.infer = func(w http.ResponseWriter, _ int64, _ [][]float64) bool {
		http.Error(w, `{"error":"bad shape"}`, http.StatusBadRequest)
		return true
	}
	_, err = c.PredictBefore(context.Background(), input(1), time.Now().Add(5*time.Second))
	if !errors.Is(err, oip.ErrBadResponse) || !strings.Contains(err.Error(), "bad shape") || f.requests.Load() != 1 {
		t.Errorf("err %v after %d requests, want the 400 once", err, f.requests.Load())
	}
}

func TestContextEnds(t *testing.T) {
	f := newFake(t)
	release := make(chan struct{})
	defer close(release)
	f.infer = func(w http.ResponseWriter, _ int64, _ [][]float64) bool { <-release; return false }
	cfg := f.config()
	cfg.Timeout = time.Second
	for _, window := range []time.Duration{0, time.Millisecond} {
		cfg.BatchWindow = window
		c := newClient(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		start := time.Now()
		_, err := c.PredictBefore(ctx, input(1), time.Now().Add(time.Minute))
		cancel()
		if !errors.Is(err, oip.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("window %v: err %v, want ErrTimeout from the context", window, err)
		}
		if took := time.Since(start); took > 200*time.Millisecond {
			t.Errorf("window %v: returned after %v, the context ended at 20ms", window, took)
		}
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := oip.Defaults()
	cfg.URL, cfg.Model, cfg.Features, cfg.BatchWindow = "http://"+addr, "m", features, 0
	c := newClient(t, cfg)
	if _, err := c.Predict(input(1)); !errors.Is(err, oip.ErrNotReady) {
		t.Errorf("predict: %v, want ErrNotReady", err)
	}
	if err := c.Check(context.Background()); !errors.Is(err, oip.ErrNotReady) {
		t.Errorf("check: %v, want ErrNotReady", err)
	}
}

func TestMalformedResponses(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		want       error
		contains   string
	}{
		{"not JSON", `<html>oops</html>`, 200, oip.ErrBadResponse, "not an infer response"},
		{"no label output", `{"outputs":[{"name":"other","datatype":"BYTES","shape":[1],"data":["x"]}]}`, 200, oip.ErrBadResponse, `no output "predict"`},
		{"too few labels", `{"outputs":[{"name":"predict","datatype":"BYTES","shape":[2],"data":["low","mid"]}]}`, 200, oip.ErrBadResponse, "want 1 elements"},
		{"data not an array", `{"outputs":[{"name":"predict","datatype":"BYTES","data":"low"}]}`, 200, oip.ErrBadResponse, "not an array"},
		{"label not a class", `{"outputs":[{"name":"predict","datatype":"BYTES","shape":[1],"data":["huge"]}]}`, 200, oip.ErrBadResponse, `"huge" is not one of the classes`},
		{"label not a string", `{"outputs":[{"name":"predict","datatype":"BYTES","shape":[1],"data":[3]}]}`, 200, oip.ErrBadResponse, "want a string"},
		{"class index out of range", `{"outputs":[{"name":"predict","datatype":"INT64","shape":[1],"data":[3]}]}`, 200, oip.ErrBadResponse, "not a class index"},
		{"unknown datatype", `{"outputs":[{"name":"predict","datatype":"BOOL","shape":[1],"data":[true]}]}`, 200, oip.ErrBadResponse, "want BYTES"},
		{"no probabilities", `{"outputs":[{"name":"predict","datatype":"BYTES","shape":[1],"data":["low"]}]}`, 200, oip.ErrBadResponse, `no output "predict_proba"`},
		{"short probabilities", `{"outputs":[{"name":"predict","datatype":"BYTES","shape":[1],"data":["low"]},{"name":"predict_proba","datatype":"FP64","shape":[1,2],"data":[0.5,0.5]}]}`, 200, oip.ErrBadResponse, "want 3 elements"},
		{"probability not a number", `{"outputs":[{"name":"predict","datatype":"BYTES","shape":[1],"data":["low"]},{"name":"predict_proba","datatype":"FP64","shape":[1,3],"data":[0.5,"x",0.5]}]}`, 200, oip.ErrBadResponse, "not a finite number"},
		{"model not found", `{"error":"Model m not found"}`, 404, oip.ErrNotReady, "Model m not found"},
		{"unprocessable", `{"detail":"nope"}`, 422, oip.ErrBadResponse, "status 422"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.infer = func(w http.ResponseWriter, _ int64, _ [][]float64) bool {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
				return true
			}
			c := newClient(t, f.config())
			_, err := c.PredictBefore(context.Background(), input(0), time.Now().Add(time.Second))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("err %v, want %v containing %q", err, tc.want, tc.contains)
			}
			if n := f.requests.Load(); n != 1 {
				t.Errorf("%d requests: a malformed answer must not be retried", n)
			}
		})
	}
	// Nested data in row-major order is read as flat data.
	f := newFake(t)
	f.infer = func(w http.ResponseWriter, _ int64, _ [][]float64) bool {
		io.WriteString(w, `{"outputs":[{"name":"predict","datatype":"BYTES","shape":[1,1],"data":[["mid"]]},{"name":"predict_proba","datatype":"FP32","shape":[1,3],"data":[[0.25,0.5,0.25]]}]}`)
		return true
	}
	p, err := newClient(t, f.config()).Predict(input(0))
	if err != nil || p.Label != "mid" || p.Probabilities["mid"] != 0.5 {
		t.Errorf("nested data: %+v %v", p, err)
	}
}

func TestCheck(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f.config())
	ctx := context.Background()
	if err := c.Check(ctx); err != nil {
		t.Fatalf("check: %v", err)
	}
	if c.Version() != "7" {
		t.Errorf("version %q, want the metadata's 7", c.Version())
	}
	md, err := c.Metadata(ctx)
	if err != nil || md.Platform != "sklearn" || len(md.Inputs) != 1 || md.Inputs[0].Shape[1] != 3 {
		t.Errorf("metadata %+v %v", md, err)
	}

	f.serverDown.Store(true)
	if err := c.Check(ctx); !errors.Is(err, oip.ErrNotReady) || !strings.Contains(err.Error(), "server readiness") {
		t.Errorf("server down: %v", err)
	}
	f.serverDown.Store(false)
	f.modelDown.Store(true)
	if err := c.Check(ctx); !errors.Is(err, oip.ErrNotReady) || !strings.Contains(err.Error(), "model readiness") {
		t.Errorf("model down: %v", err)
	}
	f.modelDown.Store(false)

	for _, tc := range []struct{ name, metadata, contains string }{
		{"input FP32", `{"name":"m","inputs":[{"name":"input-0","datatype":"FP32","shape":[-1,3]}]}`, "FP32"},
		{"input width", `{"name":"m","inputs":[{"name":"input-0","datatype":"FP64","shape":[-1,4]}]}`, "3 features"},
		{"input name", `{"name":"m","inputs":[{"name":"x","datatype":"FP64","shape":[-1,3]}]}`, `no input "input-0"`},
		{"label output", `{"name":"m","outputs":[{"name":"label","datatype":"BYTES","shape":[-1]}]}`, `no output "predict"`},
		{"label datatype", `{"name":"m","outputs":[{"name":"predict","datatype":"BOOL","shape":[-1]}]}`, "BOOL"},
		{"proba width", `{"name":"m","outputs":[{"name":"predict","datatype":"INT64","shape":[-1]},{"name":"predict_proba","datatype":"FP64","shape":[-1,2]}]}`, "3 columns"},
		{"other model", `{"name":"n"}`, `names model "n"`},
	} {
		f.metadata = tc.metadata
		if err := c.Check(ctx); !errors.Is(err, oip.ErrMismatch) || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("%s: %v, want ErrMismatch naming %q", tc.name, err, tc.contains)
		}
	}
	// A server that declares nothing passes.
	f.metadata = `{"name":"m","versions":[],"platform":"","inputs":[],"outputs":[]}`
	if err := c.Check(ctx); err != nil {
		t.Errorf("empty metadata: %v", err)
	}
	f.metadata = `not json`
	if err := c.Check(ctx); !errors.Is(err, oip.ErrBadResponse) {
		t.Errorf("bad metadata: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := oip.Defaults()
	good.URL, good.Model, good.Features = "http://127.0.0.1:8080", "m", features
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		field string
		edit  func(*oip.Config)
	}{
		{"url:", func(c *oip.Config) { c.URL = "" }},
		{"url:", func(c *oip.Config) { c.URL = "127.0.0.1:8080" }},
		{"url:", func(c *oip.Config) { c.URL = "http://h/?x=1" }},
		{"model:", func(c *oip.Config) { c.Model = "" }},
		{"features:", func(c *oip.Config) { c.Features = nil }},
		{"features:", func(c *oip.Config) { c.Features = []string{"a", "a"} }},
		{"classes:", func(c *oip.Config) { c.Classes = []string{"x", ""} }},
		{"input-name:", func(c *oip.Config) { c.InputName = "" }},
		{"label-output:", func(c *oip.Config) { c.LabelOutput = "" }},
		{"proba-output:", func(c *oip.Config) { c.ProbaOutput = "p" }},
		{"timeout:", func(c *oip.Config) { c.Timeout = 0 }},
		{"retries:", func(c *oip.Config) { c.Retries = -1 }},
		{"batch-window:", func(c *oip.Config) { c.BatchWindow = -time.Millisecond }},
		{"max-batch:", func(c *oip.Config) { c.MaxBatch = 0 }},
	} {
		c := good
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("config %+v: error %v, want one naming %s", c, err, tc.field)
		}
		if _, nerr := oip.New(c); nerr == nil {
			t.Errorf("New accepted a config with a bad %s", tc.field)
		}
	}
	d := oip.Defaults()
	if d.Timeout != 50*time.Millisecond || d.BatchWindow != time.Millisecond || d.MaxBatch != 64 {
		t.Errorf("defaults %+v", d)
	}
}
