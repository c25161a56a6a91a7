package elastic

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

func micros(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339Nano) }

func ms(us int64) float64 { return float64(us) / 1000 }

// optStr is a nullable string as a JSON value: nil (null) when absent, so
// that Kibana does not show an empty-string bucket.
func optStr(m map[string]any, k string) any {
	if s, ok := serde.OptStr(m, k); ok {
		return s
	}
	return nil
}

// DecisionDoc is the score-log document of a decision: one per request,
// with the answer, every score and the timings Kibana plots.
//
// scores is mapped nested (each score's fields stay together), and Kibana
// visualizations cannot aggregate nested fields. So the per-score facts the
// dashboards need are also summarised at the top level: scores_count,
// late_count, failed_count, late_models and failed_models.
func DecisionDoc(d map[string]any) ([]byte, error) {
	received := serde.Long(d, "received_us")
	missing := []string{}
	if l, ok := d["missing"].([]any); ok {
		for _, v := range l {
			if s, ok := v.(string); ok {
				missing = append(missing, s)
			}
		}
	}
	doc := map[string]any{
		"@timestamp":    micros(received),
		"request_id":    serde.Str(d, "request_id"),
		"objective":     serde.Str(d, "objective"),
		"key":           serde.Str(d, "key"),
		"reason":        serde.Str(d, "reason"),
		"policy":        serde.Str(d, "policy"),
		"model":         serde.Str(d, "model"),
		"version":       serde.Str(d, "version"),
		"result":        optStr(d, "result"),
		"latency_ms":    ms(serde.Long(d, "decided_us") - received),
		"sla_ms":        ms(serde.Long(d, "deadline_us") - received),
		"decided_at":    micros(serde.Long(d, "decided_us")),
		"closed_at":     micros(serde.Long(d, "closed_us")),
		"features":      serde.Doubles(d, "features"),
		"missing":       missing,
		"missing_count": len(missing),
	}
	scores, _ := d["scores"].([]any)
	out := make([]map[string]any, 0, len(scores))
	lateModels, failedModels := []string{}, []string{}
	for _, s := range scores {
		m, ok := s.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("score of %s is %T", doc["request_id"], s)
		}
		_, failed := serde.OptStr(m, "error")
		isLate, _ := m["late"].(bool)
		model := serde.Str(m, "model")
		if isLate {
			lateModels = append(lateModels, model)
		}
		if failed {
			failedModels = append(failedModels, model)
		}
		out = append(out, map[string]any{
			"model":      model,
			"version":    serde.Str(m, "version"),
			"role":       serde.Str(m, "role"),
			"result":     optStr(m, "result"),
			"error":      optStr(m, "error"),
			"failed":     failed,
			"compute_ms": ms(serde.Long(m, "compute_us")),
			"arrived_ms": ms(serde.Long(m, "arrived_us")),
			"late":       isLate,
			"duplicates": serde.Int(m, "duplicates"),
		})
	}
	doc["scores"] = out
	doc["scores_count"] = len(out)
	doc["late_count"] = len(lateModels)
	doc["failed_count"] = len(failedModels)
	doc["late_models"] = lateModels
	doc["failed_models"] = failedModels
	return json.Marshal(doc)
}

// DecoyDoc is the decoy-log document of a model input: the features as the
// models saw them, with the server-side context.
func DecoyDoc(in map[string]any) ([]byte, error) {
	doc := map[string]any{
		"@timestamp":  micros(serde.Long(in, "received_us")),
		"request_id":  serde.Str(in, "request_id"),
		"objective":   serde.Str(in, "objective"),
		"key":         serde.Str(in, "key"),
		"enriched_at": micros(serde.Long(in, "enriched_us")),
		"sla_ms":      ms(serde.Long(in, "deadline_us") - serde.Long(in, "received_us")),
		"hour_of_day": serde.Int(in, "hour_of_day"),
		"day_of_week": serde.Int(in, "day_of_week"),
		"context":     stringMap(in["context"]),
		"features":    featureValues(serde.Rec(in, "features")),
	}
	return json.Marshal(doc)
}

func stringMap(v any) map[string]string {
	out := map[string]string{}
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			if s, ok := x.(string); ok {
				out[k] = s
			}
		}
	}
	return out
}

// featureValues copies the features record with JSON-friendly values:
// numbers stay numbers, strings and booleans stay as they are.
func featureValues(rec map[string]any) map[string]any {
	out := make(map[string]any, len(rec))
	for k, v := range rec {
		switch x := v.(type) {
		case float64, int32, int64, string, bool:
			out[k] = x
		case float32:
			out[k] = float64(x)
		case int:
			out[k] = int64(x)
		case []byte:
			out[k] = string(x)
		}
	}
	return out
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
