package serde_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// The hot path's records as the stages build them: every request is
// encoded once and decoded twice (enricher, rendezvous), every input
// encoded once and decoded four times (three models and the decoy), and so
// on, so these costs repeat many times per predict call.
func hotRecords() map[schemas.Kind]map[string]any {
	features := map[string]any{"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2}
	probs := map[string]any{"setosa": 1.0, "versicolor": 0.0, "virginica": 0.0}
	return map[schemas.Kind]map[string]any{
		schemas.Request: {
			"request_id": "27a927cc-2b82-4119-a0f7-519483654517", "objective": "iris", "key": "",
			"received_us": int64(1763781382335051), "deadline_us": int64(1763781382435051),
			"reply_topic": "rdv.iris.results", "reply_partition": int32(0), "features": features,
		},
		schemas.Input: {
			"request_id": "27a927cc-2b82-4119-a0f7-519483654517", "objective": "iris", "key": "",
			"received_us": int64(1763781382335051), "deadline_us": int64(1763781382435051),
			"enriched_us": int64(1763781382336051), "hour_of_day": int32(3), "day_of_week": int32(6),
			"context": map[string]any{"segment": "default", "region": "local"}, "features": features,
		},
		schemas.Score: {
			"request_id": "27a927cc-2b82-4119-a0f7-519483654517", "objective": "iris", "model": "dt", "version": "1",
			"role": "champion", "result": map[string]any{"string": "setosa"}, "probabilities": probs,
			"error": nil, "compute_us": int64(3), "scored_us": int64(1763781382337051),
		},
		schemas.Result: {
			"request_id": "27a927cc-2b82-4119-a0f7-519483654517", "objective": "iris", "reason": "champion",
			"policy": "priority", "model": "dt", "version": "1", "result": map[string]any{"string": "setosa"},
			"probabilities": probs, "received_us": int64(1763781382335051), "decided_us": int64(1763781382338051),
		},
		schemas.Decision: {
			"request_id": "27a927cc-2b82-4119-a0f7-519483654517", "objective": "iris", "key": "",
			"received_us": int64(1763781382335051), "deadline_us": int64(1763781382435051),
			"decided_us": int64(1763781382338051), "closed_us": int64(1763781382339051),
			"reason": "champion", "policy": "priority", "model": "dt", "version": "1",
			"result": map[string]any{"string": "setosa"}, "features": features,
			"scores":  []any{seenScore("dt", "champion", 2500), seenScore("canary", "canary", 2700), seenScore("challenger", "shadow", 2900)},
			"missing": []any{},
		},
	}
}

func seenScore(model, role string, arrived int64) map[string]any {
	return map[string]any{
		"model": model, "version": "1", "role": role, "result": map[string]any{"string": "setosa"}, "error": nil,
		"compute_us": int64(4), "arrived_us": arrived, "late": false, "duplicates": int32(0),
	}
}

// hotKinds are the records of the answer's path, and the decision the log
// readers (Elasticsearch connector, rdv compare) decode.
var hotKinds = []schemas.Kind{schemas.Request, schemas.Input, schemas.Score, schemas.Result, schemas.Decision}

func BenchmarkEncode(b *testing.B) {
	set, err := schemas.For("iris")
	if err != nil {
		b.Fatal(err)
	}
	recs := hotRecords()
	for _, k := range hotKinds {
		b.Run(string(k), func(b *testing.B) {
			enc, err := serde.New(newMemRegistry()).Encoder(context.Background(), string(k)+"-value", set.Text[k])
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 0, 256)
			b.ReportAllocs()
			for b.Loop() {
				if buf, err = enc.Encode(buf[:0], recs[k]); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// A stage decodes records written by another process: the writer schema
// comes from the registry, which stores it compacted, and the reader schema
// is the stage's own, as embedded (indented). The schemas are the same.
func BenchmarkDecode(b *testing.B) {
	set, err := schemas.For("iris")
	if err != nil {
		b.Fatal(err)
	}
	recs := hotRecords()
	ctx := context.Background()
	for _, k := range hotKinds {
		b.Run(string(k), func(b *testing.B) {
			reg := newMemRegistry()
			var compact bytes.Buffer
			if err := json.Compact(&compact, []byte(set.Text[k])); err != nil {
				b.Fatal(err)
			}
			enc, err := serde.New(reg).Encoder(ctx, string(k)+"-value", compact.String())
			if err != nil {
				b.Fatal(err)
			}
			data, err := enc.Encode(nil, recs[k])
			if err != nil {
				b.Fatal(err)
			}
			s := serde.New(reg) // the reading process: knows the writer by id only
			reader, err := serde.Parse(set.Text[k])
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Decode(ctx, data, reader); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A writer one version ahead (a field added with a default): every record
// is resolved to the reader's schema.
func BenchmarkDecodeResolve(b *testing.B) {
	set, err := schemas.For("iris")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	s := serde.New(newMemRegistry())
	text := set.Text[schemas.Score]
	newer := text[:len(text)-len("]\n}\n")] + `,{"name":"extra","type":"string","default":""}]}`
	if text[len(text)-4:] != "]\n}\n" {
		b.Skipf("score schema does not end as expected: %q", text[len(text)-4:])
	}
	enc, err := s.Encoder(ctx, "scores-value", newer)
	if err != nil {
		b.Fatal(err)
	}
	rec := hotRecords()[schemas.Score]
	rec["extra"] = "x"
	data, err := enc.Encode(nil, rec)
	if err != nil {
		b.Fatal(err)
	}
	reader, err := serde.Parse(text)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Decode(ctx, data, reader); err != nil {
			b.Fatal(err)
		}
	}
}
