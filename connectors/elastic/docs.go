package elastic

import (
	"encoding/json"
	"fmt"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

func ms(us int64) float64 { return float64(us) / 1000 }

// DecisionDoc is the score-log document of a decision: one per request,
// with the answer, every score and the timings Kibana plots.
//
// scores is mapped nested (each score's fields stay together), and Kibana
// visualizations cannot aggregate nested fields. So the per-score facts the
// dashboards need are also summarised at the top level: scores_count,
// late_count, failed_count, late_models and failed_models.
func DecisionDoc(d map[string]any) ([]byte, error) {
	w := jsonw{b: make([]byte, 0, 1024)}
	if err := w.decision(d); err != nil {
		return nil, err
	}
	return w.b, nil
}

// DecoyDoc is the decoy-log document of a model input: the features as the
// models saw them, with the server-side context.
func DecoyDoc(in map[string]any) ([]byte, error) {
	w := jsonw{b: make([]byte, 0, 512)}
	if err := w.decoy(in); err != nil {
		return nil, err
	}
	return w.b, nil
}

func scoreFailed(m map[string]any) bool { _, failed := serde.OptStr(m, "error"); return failed }

func scoreLate(m map[string]any) bool { late, _ := m["late"].(bool); return late }

// decision appends DecisionDoc's document. Its keys are written in sorted
// order, as encoding/json wrote the map the document used to be. On error
// w.b is left as it was.
func (w *jsonw) decision(d map[string]any) error {
	scores, _ := d["scores"].([]any)
	// The counts and model lists precede the scores in key order: the
	// scores are read once to check and count them, then again to write.
	nLate, nFailed := 0, 0
	for _, s := range scores {
		m, ok := s.(map[string]any)
		if !ok {
			return fmt.Errorf("score of %s is %T", serde.Str(d, "request_id"), s)
		}
		if scoreLate(m) {
			nLate++
		}
		if scoreFailed(m) {
			nFailed++
		}
	}
	missing, _ := d["missing"].([]any)
	nMissing := 0
	for _, v := range missing {
		if _, ok := v.(string); ok {
			nMissing++
		}
	}
	received, decided := serde.Long(d, "received_us"), serde.Long(d, "decided_us")

	start := len(w.b)
	w.b = append(w.b, '{')
	w.key("@timestamp").time(received)
	w.key("closed_at").time(serde.Long(d, "closed_us"))
	w.key("decided_at").time(decided)
	w.key("failed_count").int(int64(nFailed))
	w.key("failed_models").models(scores, scoreFailed)
	w.key("features").open('{')
	for _, e := range w.sorted(serde.Rec(d, "features")) {
		// What serde.Doubles keeps: numbers, as float64.
		switch x := e.v.(type) {
		case float64:
			w.key(e.k).float(x)
		case float32:
			w.key(e.k).float(float64(x))
		case int32:
			w.key(e.k).float(float64(x))
		case int64:
			w.key(e.k).float(float64(x))
		}
	}
	w.close('}')
	w.key("key").str(serde.Str(d, "key"))
	w.key("late_count").int(int64(nLate))
	w.key("late_models").models(scores, scoreLate)
	w.key("latency_ms").float(ms(decided - received))
	w.key("missing").open('[')
	for _, v := range missing {
		if s, ok := v.(string); ok {
			w.str(s)
		}
	}
	w.close(']')
	w.key("missing_count").int(int64(nMissing))
	w.key("model").str(serde.Str(d, "model"))
	w.key("objective").str(serde.Str(d, "objective"))
	w.key("policy").str(serde.Str(d, "policy"))
	w.key("reason").str(serde.Str(d, "reason"))
	w.key("request_id").str(serde.Str(d, "request_id"))
	w.key("result").optStr(d, "result")
	w.key("scores").open('[')
	for _, s := range scores {
		m := s.(map[string]any)
		w.open('{')
		w.key("arrived_ms").float(ms(serde.Long(m, "arrived_us")))
		w.key("compute_ms").float(ms(serde.Long(m, "compute_us")))
		w.key("duplicates").int(int64(serde.Int(m, "duplicates")))
		w.key("error").optStr(m, "error")
		w.key("failed").bool(scoreFailed(m))
		w.key("late").bool(scoreLate(m))
		w.key("model").str(serde.Str(m, "model"))
		w.key("result").optStr(m, "result")
		w.key("role").str(serde.Str(m, "role"))
		w.key("version").str(serde.Str(m, "version"))
		w.close('}')
	}
	w.close(']')
	w.key("scores_count").int(int64(len(scores)))
	w.key("sla_ms").float(ms(serde.Long(d, "deadline_us") - received))
	w.key("version").str(serde.Str(d, "version"))
	w.close('}')
	return w.done(start)
}

// decoy appends DecoyDoc's document, keys in sorted order. On error w.b is
// left as it was.
func (w *jsonw) decoy(in map[string]any) error {
	received := serde.Long(in, "received_us")
	start := len(w.b)
	w.b = append(w.b, '{')
	w.key("@timestamp").time(received)
	w.key("context").open('{')
	if m, ok := in["context"].(map[string]any); ok {
		for _, e := range w.sorted(m) {
			if s, ok := e.v.(string); ok {
				w.key(e.k).str(s)
			}
		}
	}
	w.close('}')
	w.key("day_of_week").int(int64(serde.Int(in, "day_of_week")))
	w.key("enriched_at").time(serde.Long(in, "enriched_us"))
	w.key("features").open('{')
	// Numbers stay numbers, strings and booleans stay as they are; other
	// values (an absent optional field) are left out.
	for _, e := range w.sorted(serde.Rec(in, "features")) {
		switch x := e.v.(type) {
		case float64:
			w.key(e.k).float(x)
		case float32:
			w.key(e.k).float(float64(x))
		case int32:
			w.key(e.k).int(int64(x))
		case int64:
			w.key(e.k).int(x)
		case int:
			w.key(e.k).int(int64(x))
		case string:
			w.key(e.k).str(x)
		case bool:
			w.key(e.k).bool(x)
		case []byte:
			w.key(e.k).str(string(x))
		}
	}
	w.close('}')
	w.key("hour_of_day").int(int64(serde.Int(in, "hour_of_day")))
	w.key("key").str(serde.Str(in, "key"))
	w.key("objective").str(serde.Str(in, "objective"))
	w.key("request_id").str(serde.Str(in, "request_id"))
	w.key("sla_ms").float(ms(serde.Long(in, "deadline_us") - received))
	w.close('}')
	return w.done(start)
}

// optStr writes a ["null","string"] union: null when absent, so that
// Kibana does not show an empty-string bucket.
func (w *jsonw) optStr(m map[string]any, k string) {
	if s, ok := serde.OptStr(m, k); ok {
		w.str(s)
	} else {
		w.null()
	}
}

// models writes the names of the scores' models that match.
func (w *jsonw) models(scores []any, match func(map[string]any) bool) {
	w.open('[')
	for _, s := range scores {
		if m := s.(map[string]any); match(m) {
			w.str(serde.Str(m, "model"))
		}
	}
	w.close(']')
}

// done ends a document begun at start: on error it is taken back out.
func (w *jsonw) done(start int) error {
	err := w.err
	if err != nil {
		w.b, w.err = w.b[:start], nil
	}
	return err
}

// TemplateOptions say how the index templates are built.
type TemplateOptions struct {
	// DataStreams makes the template create data streams
	// (<prefix>-<objective>) instead of plain indices.
	DataStreams bool
	// ILMPolicy, when set, is the index.lifecycle.name of every index the
	// template creates.
	ILMPolicy string
}

// TemplatePriority is the priority of the connector's index templates. A
// template of higher priority matching the same names replaces them.
const TemplatePriority = 200

// IndexPattern is the index pattern of a prefix's template: dated indices
// <prefix>-yyyy.mm.dd and data streams <prefix>-<objective> both match it.
func IndexPattern(prefix string) string { return prefix + "-*" }

func featureProps(fields []schemas.Field) map[string]any {
	props := map[string]any{}
	for _, f := range fields {
		t := "double"
		switch f.Type {
		case "int", "long":
			t = "long"
		case "string":
			t = "keyword"
		case "boolean":
			t = "boolean"
		}
		props[f.Name] = map[string]any{"type": t}
	}
	return map[string]any{"properties": props}
}

func template(prefix string, o TemplateOptions, mappings map[string]any) []byte {
	settings := map[string]any{"index.number_of_shards": 1}
	if o.ILMPolicy != "" {
		settings["index.lifecycle.name"] = o.ILMPolicy
	}
	body := map[string]any{
		"index_patterns": []string{IndexPattern(prefix)},
		"priority":       TemplatePriority,
		"template": map[string]any{
			"settings": settings,
			"mappings": mappings,
		},
		"_meta": map[string]any{"managed_by": "rendezvous es-connector"},
	}
	if o.DataStreams {
		body["data_stream"] = map[string]any{}
	}
	b, err := json.Marshal(body)
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	return b
}

var (
	keyword = map[string]any{"type": "keyword"}
	date    = map[string]any{"type": "date"}
	float   = map[string]any{"type": "float"}
	integer = map[string]any{"type": "integer"}
	boolean = map[string]any{"type": "boolean"}
)

// ScoreTemplate is the composable index template of the score log.
func ScoreTemplate(prefix string, fields []schemas.Field, o TemplateOptions) []byte {
	return template(prefix, o, map[string]any{
		"dynamic": true,
		"properties": map[string]any{
			"@timestamp": date, "decided_at": date, "closed_at": date,
			"request_id": keyword, "objective": keyword, "key": keyword,
			"reason": keyword, "policy": keyword, "model": keyword, "version": keyword, "result": keyword,
			"latency_ms": float, "sla_ms": float,
			"scores_count": integer, "late_count": integer, "failed_count": integer, "missing_count": integer,
			"late_models": keyword, "failed_models": keyword, "missing": keyword,
			"features": featureProps(fields),
			"scores": map[string]any{"type": "nested", "properties": map[string]any{
				"model": keyword, "version": keyword, "role": keyword, "result": keyword, "error": keyword,
				"failed": boolean, "late": boolean,
				"compute_ms": float, "arrived_ms": float, "duplicates": integer,
			}},
		},
	})
}

// DecoyTemplate is the composable index template of the decoy log.
func DecoyTemplate(prefix string, fields []schemas.Field, o TemplateOptions) []byte {
	return template(prefix, o, map[string]any{
		"dynamic": true,
		// context is a map of strings whose keys are not known in advance.
		"dynamic_templates": []any{
			map[string]any{"context_as_keyword": map[string]any{
				"path_match": "context.*", "mapping": keyword,
			}},
		},
		"properties": map[string]any{
			"@timestamp": date, "enriched_at": date,
			"request_id": keyword, "objective": keyword, "key": keyword,
			"sla_ms":      float,
			"hour_of_day": integer, "day_of_week": integer,
			"context":  map[string]any{"type": "object", "dynamic": true},
			"features": featureProps(fields),
		},
	})
}
