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

// DecisionDoc is the score-log document of a decision: one per request,
// with the answer, every score and the timings Kibana plots.
func DecisionDoc(d map[string]any) ([]byte, error) {
	received := serde.Long(d, "received_us")
	result, _ := serde.OptStr(d, "result")
	doc := map[string]any{
		"@timestamp":   micros(received),
		"request_id":   serde.Str(d, "request_id"),
		"objective":    serde.Str(d, "objective"),
		"key":          serde.Str(d, "key"),
		"reason":       serde.Str(d, "reason"),
		"policy":       serde.Str(d, "policy"),
		"model":        serde.Str(d, "model"),
		"version":      serde.Str(d, "version"),
		"result":       result,
		"latency_ms":   ms(serde.Long(d, "decided_us") - received),
		"sla_ms":       ms(serde.Long(d, "deadline_us") - received),
		"decided_at":   micros(serde.Long(d, "decided_us")),
		"closed_at":    micros(serde.Long(d, "closed_us")),
		"features":     serde.Doubles(d, "features"),
		"missing":      d["missing"],
		"scores_count": 0,
	}
	scores, _ := d["scores"].([]any)
	out := make([]map[string]any, 0, len(scores))
	late := 0
	for _, s := range scores {
		m, ok := s.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("score of %s is %T", doc["request_id"], s)
		}
		r, _ := serde.OptStr(m, "result")
		e, failed := serde.OptStr(m, "error")
		isLate, _ := m["late"].(bool)
		if isLate {
			late++
		}
		out = append(out, map[string]any{
			"model":      serde.Str(m, "model"),
			"version":    serde.Str(m, "version"),
			"role":       serde.Str(m, "role"),
			"result":     r,
			"error":      e,
			"failed":     failed,
			"compute_ms": ms(serde.Long(m, "compute_us")),
			"arrived_ms": ms(serde.Long(m, "arrived_us")),
			"late":       isLate,
			"duplicates": serde.Int(m, "duplicates"),
		})
	}
	doc["scores"] = out
	doc["scores_count"] = len(out)
	doc["late_count"] = late
	return json.Marshal(doc)
}

// DecoyDoc is the decoy-log document of a model input.
func DecoyDoc(in map[string]any) ([]byte, error) {
	doc := map[string]any{
		"@timestamp":  micros(serde.Long(in, "received_us")),
		"request_id":  serde.Str(in, "request_id"),
		"objective":   serde.Str(in, "objective"),
		"key":         serde.Str(in, "key"),
		"enriched_at": micros(serde.Long(in, "enriched_us")),
		"hour_of_day": serde.Int(in, "hour_of_day"),
		"day_of_week": serde.Int(in, "day_of_week"),
		"context":     in["context"],
		"features":    serde.Doubles(in, "features"),
	}
	return json.Marshal(doc)
}

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

func template(prefix string, props map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{
		"index_patterns": []string{prefix + "*"},
		"priority":       200,
		"template": map[string]any{
			"settings": map[string]any{"number_of_shards": 1},
			"mappings": map[string]any{"dynamic": true, "properties": props},
		},
		"_meta": map[string]any{"managed_by": "rendezvous es-connector"},
	})
	return b
}

var (
	keyword = map[string]any{"type": "keyword"}
	date    = map[string]any{"type": "date"}
	float   = map[string]any{"type": "float"}
)

// ScoreTemplate is the composable index template of the score log.
func ScoreTemplate(prefix string, fields []schemas.Field) []byte {
	return template(prefix, map[string]any{
		"@timestamp": date, "decided_at": date, "closed_at": date,
		"request_id": keyword, "objective": keyword, "key": keyword,
		"reason": keyword, "policy": keyword, "model": keyword, "version": keyword, "result": keyword,
		"latency_ms": float, "sla_ms": float,
		"scores_count": map[string]any{"type": "integer"}, "late_count": map[string]any{"type": "integer"},
		"missing":  keyword,
		"features": featureProps(fields),
		"scores": map[string]any{"type": "nested", "properties": map[string]any{
			"model": keyword, "version": keyword, "role": keyword, "result": keyword, "error": keyword,
			"failed": map[string]any{"type": "boolean"}, "late": map[string]any{"type": "boolean"},
			"compute_ms": float, "arrived_ms": float, "duplicates": map[string]any{"type": "integer"},
		}},
	})
}

// DecoyTemplate is the composable index template of the decoy log.
func DecoyTemplate(prefix string, fields []schemas.Field) []byte {
	return template(prefix, map[string]any{
		"@timestamp": date, "enriched_at": date,
		"request_id": keyword, "objective": keyword, "key": keyword,
		"hour_of_day": map[string]any{"type": "integer"}, "day_of_week": map[string]any{"type": "integer"},
		"context":  map[string]any{"type": "object", "dynamic": true},
		"features": featureProps(fields),
	})
}
