package frontend

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
)

// PolicyDirect is the policy named in answers of DirectModel mode, so that
// nobody mistakes them for the pipeline's.
const PolicyDirect = "direct"

// runDirect serves the predict API with the model evaluated in process. The
// HTTP handling, validation and response are the pipeline mode's, so the
// difference between the two modes is the pipeline.
func runDirect(ctx context.Context, cfg Config, env *stage.Env) error {
	m, err := evaluator.Load(cfg.DirectModel)
	if err != nil {
		return fmt.Errorf("direct-model: %w", err)
	}
	return env.Run(ctx, func(ctx context.Context) error {
		s, err := baseServer(cfg, env)
		if err != nil {
			return err
		}
		s.direct = m
		s.directCompute = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rdv_frontend_direct_compute_seconds", Help: "Time the in-process model spends on one call (direct mode).", Buckets: stage.LatencyBuckets,
		})
		env.Reg.MustRegister(s.directCompute)
		env.Health.SetReady()
		env.Log.Info("serving predict API with the model in process (direct mode: no pipeline)",
			"addr", cfg.Addr, "model", m.Name(), "version", m.Version(), "path", cfg.DirectModel)
		return stage.Serve(ctx, cfg.Addr, s.Handler(), env.Log)
	})
}

// predictDirect answers a validated call with the in-process model, as the
// champion would have.
func (s *Server) predictDirect(w http.ResponseWriter, objName, id string, features map[string]any, start time.Time) {
	x := serde.AsDoubles(features)
	t := time.Now()
	p, err := s.direct.Predict(x)
	s.directCompute.Observe(time.Since(t).Seconds())
	if err != nil {
		// The pipeline would answer with the fallback or the default; here
		// there is nothing else to ask, so the caller learns why.
		s.fail(w, objName, http.StatusUnprocessableEntity, "model: "+err.Error(), id)
		return
	}
	probs := make(map[string]any, len(p.Probabilities))
	for k, v := range p.Probabilities {
		probs[k] = v
	}
	rec := map[string]any{
		"model":         s.direct.Name(),
		"version":       s.direct.Version(),
		"reason":        "champion",
		"policy":        PolicyDirect,
		"result":        map[string]any{"string": p.Label},
		"probabilities": probs,
	}
	s.answerOK(w, objName, id, features, rec, start)
}
