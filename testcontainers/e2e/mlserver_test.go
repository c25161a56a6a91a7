package e2e

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
	"github.com/rendezvous-ml/rendezvous/stages/model/oip"
	"github.com/rendezvous-ml/rendezvous/testcontainers/stack"
)

// Environment variables of TestMLServer.
const (
	// EnvMLServerURL is the base URL of a running MLServer that serves the
	// iris model of ops/mlserver: the url= line `ops/mlserver/start.sh`
	// prints. Unset, the test is skipped.
	EnvMLServerURL = "RDV_TEST_MLSERVER_URL"
	// EnvMLServerExpected is scikit-learn's predictions for the served model
	// (default <repo>/var/mlserver/expected.json, where setup.sh writes it).
	EnvMLServerExpected = "RDV_TEST_MLSERVER_EXPECTED"
)

// mlserverExpected is what ops/mlserver/train.py writes next to the model.
type mlserverExpected struct {
	Model         string      `json:"model"`
	Version       string      `json:"version"`
	Sklearn       string      `json:"sklearn"`
	Features      []string    `json:"features"`
	Classes       []string    `json:"classes"`
	Predictions   []string    `json:"predictions"`
	Probabilities [][]float64 `json:"probabilities"`
}

// TestMLServer checks the model runner's http kind against a real MLServer:
// the oip client alone on all 150 iris rows, then the whole pipeline with
// the champion served by MLServer.
func TestMLServer(t *testing.T) {
	url := os.Getenv(EnvMLServerURL)
	if url == "" {
		t.Skip(EnvMLServerURL + " is unset: run `ops/mlserver/start.sh` and set it to the url= it prints")
	}
	exp := loadMLServerExpected(t)
	rows := irisRows(t)
	if len(rows) != len(exp.Predictions) || len(rows) != len(exp.Probabilities) {
		t.Fatalf("%d rows in iris.csv, %d predictions in the expected file", len(rows), len(exp.Predictions))
	}
	cfg := oip.Defaults()
	cfg.URL, cfg.Model = url, exp.Model
	cfg.Features, cfg.Classes, cfg.ProbaOutput = exp.Features, exp.Classes, "predict_proba"
	t.Logf("MLServer at %s, model %q v%s (scikit-learn %s)", url, exp.Model, exp.Version, exp.Sklearn)

	t.Run("client", func(t *testing.T) {
		cfg := cfg
		cfg.BatchWindow = 0
		c, err := oip.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Check(ctx); err != nil {
			t.Fatalf("check: %v", err)
		}
		md, _ := c.Metadata(ctx)
		t.Logf("metadata: inputs %+v outputs %+v", md.Inputs, md.Outputs)
		var lat []time.Duration
		for i, r := range rows {
			start := time.Now()
			// A generous deadline: the first call may open the connection.
			p, err := c.PredictBefore(ctx, r.features, time.Now().Add(time.Second))
			lat = append(lat, time.Since(start))
			if err != nil {
				t.Fatalf("row %d: %v", i, err)
			}
			checkMLServer(t, "client", i, p, exp)
		}
		t.Logf("client, one row per call: %d rows, p50 %v, max %v", len(rows), pct(lat, 50), pct(lat, 100))

		// The same rows from 150 concurrent callers, batched.
		cfg.BatchWindow, cfg.Timeout = 5*time.Millisecond, time.Second
		bc, err := oip.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer bc.Close()
		got := make([]evaluator.Prediction, len(rows))
		errs := make([]error, len(rows))
		var wg sync.WaitGroup
		start := time.Now()
		for i, r := range rows {
			wg.Go(func() { got[i], errs[i] = bc.PredictBefore(ctx, r.features, time.Now().Add(2*time.Second)) })
		}
		wg.Wait()
		for i := range rows {
			if errs[i] != nil {
				t.Fatalf("batched row %d: %v", i, errs[i])
			}
			checkMLServer(t, "batched", i, got[i], exp)
		}
		t.Logf("client, batched: %d concurrent rows in %v", len(rows), time.Since(start))
	})

	t.Run("pipeline", func(t *testing.T) {
		// rdv dev runs the file models. Its champion dt is replaced by a
		// runner of kind http under the same name, so the rendezvous stage
		// answers with MLServer's predictions; -version tells them apart.
		// The champion is one HTTP hop further away than the built-in
		// models: give it most of a longer SLA, so a loaded machine does not
		// turn its answers into canary fallbacks.
		s := stack.Start(t, stack.Options{SLA: 500 * time.Millisecond, RestartDelay: time.Minute, Extra: []string{"-champion-budget", "450ms"}})
		s.Kill("model-dt")
		addr := startHTTPRunner(t, s, url, exp)
		if err := s.WaitReady("model-dt (http)", addr, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		// The killed file model is still in the registry until its
		// heartbeat ages out: retire it, as an operator replacing a model
		// version would.
		if out, err := s.RunCLI("models", "retire", "iris", "dt", "-version", "1"); err != nil {
			t.Fatalf("rdv models retire iris dt -version 1: %v\n%s", err, out)
		}
		// Warm-up calls, until MLServer's model answers as the champion:
		// the runner's first produce waits for metadata.
		for deadline := time.Now().Add(30 * time.Second); ; {
			a, err := s.Predict("/predict", rows[0].body)
			if err != nil {
				t.Fatal(err)
			}
			if a.Reason == "champion" && a.ModelResult.ModelVersion == "mlserver" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("warm-up: still answered %s by %s v%s after 30 s", a.Reason, a.ModelResult.ModelName, a.ModelResult.ModelVersion)
			}
		}
		dt := loadModel(t, "dt")
		var lat []time.Duration
		differ := 0
		for i, r := range rows {
			a, err := s.Predict("/predict", r.body)
			if err != nil {
				t.Fatal(err)
			}
			lat = append(lat, a.Took)
			if a.Status != http.StatusOK || a.Reason != "champion" || a.ModelResult.ModelName != "dt" || a.ModelResult.ModelVersion != "mlserver" {
				t.Errorf("row %d: status %d, answer %s by %s v%s (took %v), want the champion dt vmlserver",
					i, a.Status, a.Reason, a.ModelResult.ModelName, a.ModelResult.ModelVersion, a.Took)
				continue
			}
			if a.ModelResult.Result != exp.Predictions[i] {
				t.Errorf("row %d: the pipeline answered %v, scikit-learn says %s", i, a.ModelResult.Result, exp.Predictions[i])
			}
			if p, err := dt.Predict(r.features); err == nil && p.Label != exp.Predictions[i] {
				differ++
			}
		}
		t.Logf("pipeline: %d answers from MLServer, p50 %v, max %v; on %d rows they differ from the file model dt's, as they should",
			len(rows), pct(lat, 50), pct(lat, 100), differ)
	})
}

func checkMLServer(t *testing.T, phase string, i int, p evaluator.Prediction, exp mlserverExpected) {
	t.Helper()
	if p.Label != exp.Predictions[i] {
		t.Errorf("%s: row %d: MLServer says %q, scikit-learn says %q", phase, i, p.Label, exp.Predictions[i])
	}
	for j, c := range exp.Classes {
		if d := math.Abs(p.Probabilities[c] - exp.Probabilities[i][j]); d > 1e-9 {
			t.Errorf("%s: row %d: P(%s) = %v, scikit-learn says %v", phase, i, c, p.Probabilities[c], exp.Probabilities[i][j])
		}
	}
}

func loadMLServerExpected(t *testing.T) mlserverExpected {
	t.Helper()
	path := os.Getenv(EnvMLServerExpected)
	if path == "" {
		root, err := stack.Root()
		if err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(root, "var", "mlserver", "expected.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("scikit-learn's predictions (ops/mlserver/setup.sh writes them; %s names another file): %v", EnvMLServerExpected, err)
	}
	var exp mlserverExpected
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return exp
}

// startHTTPRunner runs a model runner of kind http named dt, the champion,
// on the stack's brokers and registry, in a consumer group of its own. It
// returns its health address; the runner is stopped when the test ends.
func startHTTPRunner(t *testing.T, s *stack.Stack, url string, exp mlserverExpected) string {
	t.Helper()
	return s.StartStage("model-dt-http", "model-runner",
		"-kind", "http", "-url", url, "-remote-model", exp.Model,
		"-features", strings.Join(exp.Features, ","), "-classes", strings.Join(exp.Classes, ","),
		"-proba-output", "predict_proba",
		"-name", "dt", "-version", "mlserver", "-role", "champion",
		"-group", "rdv."+s.Objective+".model.dt-http")
}
