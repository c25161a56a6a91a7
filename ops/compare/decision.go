// Package compare compares two model versions on the same requests, from
// the decisions log (every decision carries every model's score, its
// latency and whether it was late) and, for a model that scored history
// instead of live traffic, from the replay-scores topic. It computes the
// agreement, a confusion matrix (classifiers) or error statistics
// (regressors), each model's latency percentiles and error and timeout
// rates, and the drift of the features between two time windows, and
// renders them as a text table or as a self-contained HTML page with SVG
// plots.
//
// Everything but ReadTopic is a pure function of decoded records.
package compare

import (
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
)

// Score is one model's answer to one request.
type Score struct {
	Model   string
	Version string
	Role    string
	// Result is the answer; HasResult is false for a null result.
	Result    string
	HasResult bool
	// Error is set when the model failed.
	Error string
	// ComputeUS is the time spent in the model.
	ComputeUS int64
	// ArrivedUS is when the score reached the rendezvous, after the
	// request was received: the latency the caller's answer saw. -1 for a
	// replayed score, which raced nothing.
	ArrivedUS int64
	// Late: it arrived after the answer was decided.
	Late bool
	// Replay: from the replay-scores topic, not from a decision.
	Replay bool
}

// OK is whether the score is an answer: a result and no error.
func (s Score) OK() bool { return s.HasResult && s.Error == "" }

// Decision is one request as the rendezvous stage logged it.
type Decision struct {
	RequestID  string
	Key        string
	ReceivedUS int64
	// DeadlineUS is when the answer was due (received plus the SLA).
	DeadlineUS int64
	DecidedUS  int64
	// Reason and Model say who answered and why (champion, fallback,
	// default).
	Reason string
	Model  string
	Result string
	// Features are the request's features.
	Features map[string]float64
	Scores   []Score
	// Missing are the expected models that never reported.
	Missing []string
}

// Received is when the request was received.
func (d Decision) Received() time.Time { return time.UnixMicro(d.ReceivedUS) }

// Score returns the decision's score of a model.
func (d Decision) Score(model string) (Score, bool) {
	for _, s := range d.Scores {
		if s.Model == model {
			return s, true
		}
	}
	return Score{}, false
}

// DecisionFromNative converts a decision record decoded with the decision
// schema (schemas/common/decision.avsc).
func DecisionFromNative(rec map[string]any) Decision {
	d := Decision{
		RequestID:  serde.Str(rec, "request_id"),
		Key:        serde.Str(rec, "key"),
		ReceivedUS: serde.Long(rec, "received_us"),
		DeadlineUS: serde.Long(rec, "deadline_us"),
		DecidedUS:  serde.Long(rec, "decided_us"),
		Reason:     serde.Str(rec, "reason"),
		Model:      serde.Str(rec, "model"),
		Features:   serde.Doubles(rec, "features"),
	}
	d.Result, _ = serde.OptStr(rec, "result")
	scores, _ := rec["scores"].([]any)
	for _, s := range scores {
		m, ok := s.(map[string]any)
		if !ok {
			continue
		}
		sc := Score{
			Model:     serde.Str(m, "model"),
			Version:   serde.Str(m, "version"),
			Role:      serde.Str(m, "role"),
			ComputeUS: serde.Long(m, "compute_us"),
			ArrivedUS: serde.Long(m, "arrived_us"),
		}
		sc.Result, sc.HasResult = serde.OptStr(m, "result")
		sc.Error, _ = serde.OptStr(m, "error")
		sc.Late, _ = m["late"].(bool)
		d.Scores = append(d.Scores, sc)
	}
	missing, _ := rec["missing"].([]any)
	for _, m := range missing {
		if s, ok := m.(string); ok {
			d.Missing = append(d.Missing, s)
		}
	}
	return d
}

// ScoreFromNative converts a score record (schemas/common/score.avsc) read
// from the replay-scores topic, and returns its request id.
func ScoreFromNative(rec map[string]any) (string, Score) {
	s := Score{
		Model:     serde.Str(rec, "model"),
		Version:   serde.Str(rec, "version"),
		Role:      serde.Str(rec, "role"),
		ComputeUS: serde.Long(rec, "compute_us"),
		ArrivedUS: -1,
		Replay:    true,
	}
	s.Result, s.HasResult = serde.OptStr(rec, "result")
	s.Error, _ = serde.OptStr(rec, "error")
	return serde.Str(rec, "request_id"), s
}
