// Package elastictest builds sample decisions and model inputs as the
// Elasticsearch connector receives them: native values of an objective's
// own Avro schemas, encoded and decoded once, so every optional field is
// present in the shape the decoder gives it.
package elastictest

import (
	"fmt"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// When is the time of the samples: received at When, answered 12.5 ms
// later.
var When = time.Date(2026, 11, 22, 3, 16, 22, 335051000, time.UTC)

// Features returns a value for every feature of the objective's request:
// 1.5, 2.5, ... in schema order (strings "v1", ..., booleans true).
func Features(objective string) (map[string]any, error) {
	set, err := schemas.For(objective)
	if err != nil {
		return nil, err
	}
	fields, err := set.Features()
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for i, f := range fields {
		switch f.Type {
		case "double":
			out[f.Name] = float64(i) + 1.5
		case "float":
			out[f.Name] = float32(i) + 1.5
		case "int":
			out[f.Name] = int32(i + 1)
		case "long":
			out[f.Name] = int64(i + 1)
		case "string":
			out[f.Name] = fmt.Sprintf("v%d", i+1)
		case "boolean":
			out[f.Name] = true
		default:
			return nil, fmt.Errorf("feature %s: type %s has no sample", f.Name, f.Type)
		}
	}
	return out, nil
}

// Decision returns a decision with three scores: the champion answered in
// time, a canary that failed, a shadow that was late, and one model that
// never reported.
func Decision(objective string) (map[string]any, error) {
	feats, err := Features(objective)
	if err != nil {
		return nil, err
	}
	doubles := serde.DoubleMap(serde.AsDoubles(feats))
	rx := When.UnixMicro()
	native := map[string]any{
		"request_id":  "27a927cc-2b82-4119-a0f7-519483654517",
		"objective":   objective,
		"key":         "tenant-1",
		"received_us": rx,
		"deadline_us": rx + 100_000,
		"decided_us":  rx + 12_500,
		"closed_us":   rx + 1_100_000,
		"reason":      "champion",
		"policy":      "priority",
		"model":       "dt",
		"version":     "1",
		"result":      serde.Opt("setosa"),
		"features":    doubles,
		"scores": []any{
			map[string]any{"model": "dt", "version": "1", "role": "champion", "result": serde.Opt("setosa"), "error": nil,
				"compute_us": int64(250), "arrived_us": int64(12_400), "late": false, "duplicates": int32(0)},
			map[string]any{"model": "canary", "version": "2", "role": "canary", "result": nil, "error": serde.Opt("model error"),
				"compute_us": int64(900), "arrived_us": int64(13_000), "late": false, "duplicates": int32(1)},
			map[string]any{"model": "challenger", "version": "1", "role": "shadow", "result": serde.Opt("versicolor"), "error": nil,
				"compute_us": int64(80_000), "arrived_us": int64(130_000), "late": true, "duplicates": int32(0)},
		},
		"missing": []any{"ghost"},
	}
	return roundTrip(objective, schemas.Decision, native)
}

// Input returns a model input (a decoy-log record) with a context row.
func Input(objective string) (map[string]any, error) {
	feats, err := Features(objective)
	if err != nil {
		return nil, err
	}
	rx := When.UnixMicro()
	native := map[string]any{
		"request_id":  "27a927cc-2b82-4119-a0f7-519483654517",
		"objective":   objective,
		"key":         "tenant-1",
		"received_us": rx,
		"deadline_us": rx + 100_000,
		"enriched_us": rx + 300,
		"hour_of_day": int32(When.Hour()),
		"day_of_week": int32(When.Weekday()),
		"context":     map[string]any{"segment": "default", "region": "local"},
		"features":    feats,
	}
	return roundTrip(objective, schemas.Input, native)
}

func roundTrip(objective string, k schemas.Kind, native map[string]any) (map[string]any, error) {
	set, err := schemas.For(objective)
	if err != nil {
		return nil, err
	}
	sc, err := serde.Parse(set.Text[k])
	if err != nil {
		return nil, err
	}
	bin, err := sc.Codec.BinaryFromNative(nil, native)
	if err != nil {
		return nil, fmt.Errorf("encode sample %s: %w", k, err)
	}
	back, _, err := sc.Codec.NativeFromBinary(bin)
	if err != nil {
		return nil, fmt.Errorf("decode sample %s: %w", k, err)
	}
	m, ok := back.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("sample %s decoded to %T", k, back)
	}
	return m, nil
}
