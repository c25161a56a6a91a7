package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
	"github.com/rendezvous-ml/rendezvous/testcontainers/stack"
)

// copySchemas copies the repository's schemas/ to a new directory and
// applies edit to each of the iris request and input schemas.
func copySchemas(t *testing.T, edit func(text string) string) string {
	t.Helper()
	root, _ := stack.Root()
	dst := t.TempDir()
	for _, rel := range []string{"common/score.avsc", "common/result.avsc", "common/decision.avsc", "common/context.avsc", "iris/request.avsc", "iris/input.avsc"} {
		b, err := os.ReadFile(filepath.Join(root, "schemas", rel))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if strings.HasPrefix(rel, "iris/") {
			text = edit(text)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, rel), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

const lastFeature = `{"name": "petalWidth", "type": "double"}`

// ratioModel is a v2 model that uses only the new field: "high" when
// petalRatio > 0.5, else "low".
const ratioModel = `{"format":"rdv-model/v1","name":"dt-v2","version":"2","kind":"tree",
 "features":["sepalLength","sepalWidth","petalLength","petalWidth","petalRatio"],
 "classes":["low","high"],
 "children_left":[1,-1,-1],"children_right":[2,-1,-1],
 "feature":[4,-2,-2],"threshold":[0.5,-2,-2],
 "value":[[0.5,0.5],[1,0],[0,1]]}`

func waitHTTPReady(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready after 60s", addr)
}

// TestSchemaEvolution evolves the iris request with a new feature while
// the pipeline runs: v1 and v2 producers and consumers side by side,
// history replayed into a v2 model, and incompatible changes refused.
func TestSchemaEvolution(t *testing.T) {
	s := stack.Start(t, stack.Options{RestartDelay: time.Minute})
	rows := irisRows(t)
	accepted := map[string]int{}

	// v1 history.
	var v1IDs []string
	for _, r := range rows[:30] {
		a, err := s.Predict("/predict", r.body)
		if err != nil || a.Status != 200 {
			t.Fatalf("v1 call: %v %+v", err, a)
		}
		v1IDs = append(v1IDs, a.MessageID)
		accepted[a.MessageID] = 1
	}

	// v2: a new feature with a default.
	v2 := copySchemas(t, func(text string) string {
		return strings.Replace(text, lastFeature, lastFeature+`,
        {"name": "petalRatio", "type": "double", "default": 0.0}`, 1)
	})
	out, err := s.RunCLI("schemas", "check", "-dir", v2)
	t.Logf("rdv schemas check (v2):\n%s", out)
	if err != nil || !strings.Contains(out, "rdv.iris.requests-value") || !strings.Contains(out, "compatible, changed") {
		t.Fatalf("v2 should pass the check: %v", err)
	}
	out, err = s.RunCLI("schemas", "diff", "-dir", v2)
	t.Logf("rdv schemas diff (v2):\n%s", out)
	if err != nil || !strings.Contains(out, "+ features.petalRatio double default 0") {
		t.Fatalf("diff should show the new field: %v", err)
	}
	if out, err := s.RunCLI("schemas", "register", "-dir", v2); err != nil {
		t.Fatalf("register v2: %v\n%s", err, out)
	}

	// Consumers first: a v2 enricher replaces the v1 one, and a v2 model
	// that needs the new field scores history from the start.
	s.Kill("enricher")
	waitHTTPReady(t, s.StartStage("enricher-v2", "enricher", "-schemas", v2))
	modelFile := filepath.Join(t.TempDir(), "dt-v2.json")
	if _, err := evaluator.Parse([]byte(ratioModel)); err != nil {
		t.Fatalf("the v2 model file: %v", err)
	}
	if err := os.WriteFile(modelFile, []byte(ratioModel), 0o644); err != nil {
		t.Fatal(err)
	}
	waitHTTPReady(t, s.StartStage("model-dt-v2", "model-runner", "-schemas", v2, "-model", modelFile,
		"-name", "dt-v2", "-role", "shadow", "-from-start", "-max-staleness", "0"))

	// Then a v2 producer: a v2 frontend beside the v1 one, on its own
	// reply partition.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v2Addr := ln.Addr().String()
	ln.Close()
	waitHTTPReady(t, s.StartStage("frontend-v2", "frontend", "-schemas", v2, "-addr", v2Addr, "-reply-partition", "1"))
	v2Front := &stack.Stack{FrontendURL: "http://" + v2Addr}
	var v2IDs []string
	for _, r := range rows[30:60] {
		body := strings.TrimSuffix(r.body, "}") + `,"petalRatio":1.0}`
		a, err := v2Front.Predict("/predict", body)
		if err != nil || a.Status != 200 {
			t.Fatalf("v2 call: %v %+v", err, a)
		}
		// v1 model runners keep scoring v2 requests.
		if a.Reason != "champion" && a.Reason != "fallback" {
			t.Errorf("v2 request answered %s by %s: the v1 models did not score it", a.Reason, a.ModelResult.ModelName)
		}
		v2IDs = append(v2IDs, a.MessageID)
		accepted[a.MessageID] = 1
	}
	// The v1 frontend keeps working beside it.
	for _, r := range rows[60:70] {
		a, err := s.Predict("/predict", r.body)
		if err != nil || a.Status != 200 {
			t.Fatalf("v1 call after the upgrade: %v %+v", err, a)
		}
		v1IDs = append(v1IDs, a.MessageID)
		accepted[a.MessageID] = 1
	}

	// The v2 model scored v1 history with the default and v2 requests with
	// the field.
	ratio := readScores(t, s, "dt-v2", len(v1IDs)+len(v2IDs))
	wrong := 0
	for _, id := range v1IDs {
		if ratio[id] != "low" {
			wrong++
		}
	}
	for _, id := range v2IDs {
		if ratio[id] != "high" {
			wrong++
		}
	}
	t.Logf("dt-v2 scored %d requests: %d v1 (default petalRatio), %d v2; %d wrong", len(ratio), len(v1IDs), len(v2IDs), wrong)
	if wrong > 0 {
		t.Errorf("the v2 model gave %d wrong answers: it did not see the new field or its default", wrong)
	}

	// Nothing lost, nothing dead-lettered.
	decisions := s.CountKeys("rdv.iris.decisions", len(accepted), 30*time.Second)
	assertOnce(t, "decisions log across the evolution", accepted, decisions)
	if dlq := s.CountKeys("rdv.iris.dlq", 0, 5*time.Second); len(dlq) != 0 {
		t.Errorf("%d records were dead-lettered during the evolution", len(dlq))
	}

	// Incompatible changes are refused, naming the field: a type change,
	// and a new field without a default.
	for name, edit := range map[string]func(string) string{
		"sepalLength": func(text string) string {
			return strings.Replace(text, `{"name": "sepalLength", "type": "double"}`, `{"name": "sepalLength", "type": "string"}`, 1)
		},
		"colour": func(text string) string {
			return strings.Replace(text, lastFeature, lastFeature+`, {"name": "colour", "type": "string"}`, 1)
		},
	} {
		v3 := copySchemas(t, edit)
		out, err := s.RunCLI("schemas", "check", "-dir", v3)
		if err == nil || !strings.Contains(out, "INCOMPATIBLE") || !strings.Contains(out, name) {
			t.Errorf("rdv schemas check should refuse a change to %q, naming it; got err %v:\n%s", name, err, out)
		} else {
			t.Logf("rdv schemas check refused the change to %q:\n%s", name, out)
		}
		out, err = s.RunCLI("schemas", "register", "-dir", v3)
		if err == nil || !strings.Contains(out, name) {
			t.Errorf("the registry should refuse a change to %q, naming it; got err %v:\n%s", name, err, out)
		}
	}
}

// readScores reads the scores topic until model has scored want requests,
// and returns its result by request id.
func readScores(t *testing.T, s *stack.Stack, model string, want int) map[string]string {
	t.Helper()
	rc, err := registry.New(registry.Config{URL: s.RegistryURL})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	sd := serde.New(rc)
	cl := s.Client(kgo.ConsumeTopics("rdv.iris.scores"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	out := map[string]string{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s scored %d of %d requests within 60s", model, len(out), want)
		}
		var derr error
		fs.EachRecord(func(r *kgo.Record) {
			rec, err := sd.Decode(ctx, r.Value, nil)
			if err != nil {
				derr = err
				return
			}
			if serde.Str(rec, "model") == model {
				res, _ := serde.OptStr(rec, "result")
				out[serde.Str(rec, "request_id")] = res
			}
		})
		if derr != nil {
			t.Fatal(fmt.Errorf("decode a score: %w", derr))
		}
	}
	return out
}
