package elastic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/elastictest"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
)

// The documents were built as maps and marshalled with encoding/json until
// jsonw replaced that. refDecisionDoc and refDecoyDoc are that code, kept
// here as the reference the written documents must equal.

func refMicros(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339Nano) }

// optStr is a nullable string as a JSON value: nil (null) when absent, so
// that Kibana does not show an empty-string bucket.
func refOptStr(m map[string]any, k string) any {
	if s, ok := serde.OptStr(m, k); ok {
		return s
	}
	return nil
}

// refDecisionDoc is the score-log document of a decision: one per request,
// with the answer, every score and the timings Kibana plots.
//
// scores is mapped nested (each score's fields stay together), and Kibana
// visualizations cannot aggregate nested fields. So the per-score facts the
// dashboards need are also summarised at the top level: scores_count,
// late_count, failed_count, late_models and failed_models.
func refDecisionDoc(d map[string]any) ([]byte, error) {
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
		"@timestamp":    refMicros(received),
		"request_id":    serde.Str(d, "request_id"),
		"objective":     serde.Str(d, "objective"),
		"key":           serde.Str(d, "key"),
		"reason":        serde.Str(d, "reason"),
		"policy":        serde.Str(d, "policy"),
		"model":         serde.Str(d, "model"),
		"version":       serde.Str(d, "version"),
		"result":        refOptStr(d, "result"),
		"latency_ms":    ms(serde.Long(d, "decided_us") - received),
		"sla_ms":        ms(serde.Long(d, "deadline_us") - received),
		"decided_at":    refMicros(serde.Long(d, "decided_us")),
		"closed_at":     refMicros(serde.Long(d, "closed_us")),
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
			"result":     refOptStr(m, "result"),
			"error":      refOptStr(m, "error"),
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

// refDecoyDoc is the decoy-log document of a model input: the features as the
// models saw them, with the server-side context.
func refDecoyDoc(in map[string]any) ([]byte, error) {
	doc := map[string]any{
		"@timestamp":  refMicros(serde.Long(in, "received_us")),
		"request_id":  serde.Str(in, "request_id"),
		"objective":   serde.Str(in, "objective"),
		"key":         serde.Str(in, "key"),
		"enriched_at": refMicros(serde.Long(in, "enriched_us")),
		"sla_ms":      ms(serde.Long(in, "deadline_us") - serde.Long(in, "received_us")),
		"hour_of_day": serde.Int(in, "hour_of_day"),
		"day_of_week": serde.Int(in, "day_of_week"),
		"context":     refStringMap(in["context"]),
		"features":    refFeatureValues(serde.Rec(in, "features")),
	}
	return json.Marshal(doc)
}

func refStringMap(v any) map[string]string {
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
func refFeatureValues(rec map[string]any) map[string]any {
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

// tricky are strings that need escaping or are not valid UTF-8.
var tricky = []string{
	"", "plain", `quote " and backslash \`, "</script> & <b>", "tab\tnew\nline\rret\bbs\fff",
	"\x00\x01\x1f\x7f", "caf\u00e9 \u65e5\u672c \U0001F600", "\u2028line\u2029para", "bad \xff\xfe utf8",
	"cut \xe2\x82", "\xed\xa0\x80 surrogate", "\ufffd already", `{"json":"inside"}`,
}

// numbers are feature values around encoding/json's format switches.
var numbers = []float64{
	0, math.Copysign(0, -1), 1, -1.5, 0.1 + 0.2, 1e-6, 9.99999e-7, 1e-7, 5e-324, 1e20, 1e21, -1e21,
	123456789.123456789, math.MaxFloat64, -math.SmallestNonzeroFloat64, float64(float32(0.1)), 1 << 53, 1e-10,
}

func decisionCases(t *testing.T) map[string]map[string]any {
	t.Helper()
	base := func() map[string]any {
		d, err := elastictest.Decision("iris")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	cases := map[string]map[string]any{"sample": base(), "empty": {}}

	d := base()
	d["result"], d["reason"], d["model"], d["version"] = nil, "default", "default", ""
	d["scores"], d["missing"] = []any{}, []any{}
	cases["default answer"] = d

	d = base()
	for _, k := range []string{"scores", "missing", "features", "result", "key", "closed_us"} {
		delete(d, k)
	}
	cases["absent fields"] = d

	d = base()
	d["request_id"], d["key"], d["model"] = tricky[2], tricky[3], tricky[6]
	d["result"] = map[string]any{"string": tricky[4]}
	d["missing"] = []any{tricky[7], 3, nil, tricky[8], ""}
	feats := map[string]any{}
	for i, s := range tricky {
		feats[s] = numbers[i%len(numbers)]
	}
	d["features"] = feats
	sc := d["scores"].([]any)
	sc[1].(map[string]any)["error"] = map[string]any{"string": tricky[9] + tricky[5]}
	sc[2].(map[string]any)["model"] = tricky[10]
	cases["escapes"] = d

	d = base()
	feats = map[string]any{"i32": int32(-7), "i64": int64(1<<53 + 1), "f32": float32(0.1), "s": "dropped", "b": true, "nil": nil}
	for i, f := range numbers {
		feats[fmt.Sprintf("n%02d", i)] = f
	}
	d["features"] = feats
	d["received_us"], d["decided_us"], d["deadline_us"], d["closed_us"] = int64(-1), int64(-123_456_789_012), int64(0), int64(1)
	cases["numbers and times"] = d

	d = base()
	d["scores"] = []any{map[string]any{}, map[string]any{"late": "yes", "error": map[string]any{}, "duplicates": int64(9)}}
	cases["sparse scores"] = d

	d = base()
	d["features"].(map[string]any)["sepalWidth"] = math.NaN()
	cases["NaN feature"] = d
	d = base()
	d["features"].(map[string]any)["petalWidth"] = math.Inf(-1)
	cases["-Inf feature"] = d
	d = base()
	d["scores"] = append(d["scores"].([]any), "not a record")
	cases["score not a record"] = d
	return cases
}

func decoyCases(t *testing.T) map[string]map[string]any {
	t.Helper()
	base := func() map[string]any {
		in, err := elastictest.Input("iris")
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	cases := map[string]map[string]any{"sample": base(), "empty": {}}

	in := base()
	delete(in, "context")
	delete(in, "features")
	cases["absent fields"] = in

	in = base()
	ctx := map[string]any{"n": 3, "nil": nil}
	for i, s := range tricky {
		ctx[s] = tricky[len(tricky)-1-i]
	}
	in["context"] = ctx
	in["request_id"], in["objective"] = tricky[8], tricky[7]
	cases["escapes"] = in

	in = base()
	feats := map[string]any{
		"n": int32(3), "l": int64(-4), "i": 5, "f": float32(0.1), "d": 1.25, "s": tricky[3], "t": true, "u": false,
		"bytes": []byte(tricky[8]), "nil": nil, "union": map[string]any{"double": 1.0},
	}
	for i, f := range numbers {
		feats[fmt.Sprintf("n%02d", i)] = f
	}
	in["features"] = feats
	in["hour_of_day"], in["day_of_week"] = int64(23), int32(-1)
	in["received_us"], in["deadline_us"], in["enriched_us"] = int64(253402300799999999), int64(-5), int64(999)
	cases["feature types"] = in

	in = base()
	in["context"] = map[string]string{"typed": "not what the decoder gives"}
	cases["context of another type"] = in

	in = base()
	in["features"].(map[string]any)["sepalLength"] = math.Inf(1)
	cases["+Inf feature"] = in
	in = base()
	in["features"].(map[string]any)["petalWidth"] = float32(math.NaN())
	cases["NaN float32 feature"] = in
	return cases
}

// randomCases are records of random shape drawn from the tricky strings
// and numbers, so that the combinations are not only the ones above.
func randomCases(n int) (decisions, inputs []map[string]any) {
	r := rand.New(rand.NewPCG(1, 2))
	str := func() string { return tricky[r.IntN(len(tricky))] }
	num := func() float64 {
		if r.IntN(3) == 0 {
			return numbers[r.IntN(len(numbers))]
		}
		return r.NormFloat64() * math.Pow(10, float64(r.IntN(30)-15))
	}
	opt := func() any {
		if r.IntN(2) == 0 {
			return nil
		}
		return map[string]any{"string": str()}
	}
	us := func() int64 { return r.Int64N(4_000_000_000_000_000) - 1_000_000_000_000_000 }
	feats := func() map[string]any {
		m := map[string]any{}
		for range r.IntN(12) {
			m[str()+fmt.Sprint(r.IntN(5))] = num()
		}
		return m
	}
	for range n {
		var scores, missing []any
		for range r.IntN(6) {
			scores = append(scores, map[string]any{
				"model": str(), "version": str(), "role": str(), "result": opt(), "error": opt(),
				"compute_us": us(), "arrived_us": us(), "late": r.IntN(2) == 0, "duplicates": int32(r.IntN(4)),
			})
		}
		for range r.IntN(4) {
			missing = append(missing, str())
		}
		decisions = append(decisions, map[string]any{
			"request_id": str(), "objective": str(), "key": str(), "received_us": us(), "deadline_us": us(),
			"decided_us": us(), "closed_us": us(), "reason": str(), "policy": str(), "model": str(), "version": str(),
			"result": opt(), "features": feats(), "scores": scores, "missing": missing,
		})
		ctx := map[string]any{}
		for range r.IntN(5) {
			ctx[str()] = str()
		}
		inputs = append(inputs, map[string]any{
			"request_id": str(), "objective": str(), "key": str(), "received_us": us(), "deadline_us": us(),
			"enriched_us": us(), "hour_of_day": int32(r.IntN(24)), "day_of_week": int32(r.IntN(7)),
			"context": ctx, "features": feats(),
		})
	}
	return decisions, inputs
}

// sameDoc checks a written document against the reference's: both fail or
// neither does, and their JSON decodes to the same value. The bytes are
// compared too: the key order is encoding/json's, so nothing that might
// read them in order sees a change either.
func sameDoc(t *testing.T, name string, got []byte, gotErr error, want []byte, wantErr error) {
	t.Helper()
	if (gotErr != nil) != (wantErr != nil) {
		t.Errorf("%s: error %v, reference's %v", name, gotErr, wantErr)
		return
	}
	if wantErr != nil {
		return
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("%s: not JSON: %v\n%s", name, err, got)
		return
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: the reference is not JSON: %v", name, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: decodes to\n%v\nwant\n%v", name, g, w)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: bytes differ\n got %s\nwant %s", name, got, want)
	}
}

func TestDocsEqualMarshalledMaps(t *testing.T) {
	for name, d := range decisionCases(t) {
		got, err := DecisionDoc(d)
		want, wantErr := refDecisionDoc(d)
		sameDoc(t, "decision "+name, got, err, want, wantErr)
	}
	for name, in := range decoyCases(t) {
		got, err := DecoyDoc(in)
		want, wantErr := refDecoyDoc(in)
		sameDoc(t, "decoy "+name, got, err, want, wantErr)
	}
	decisions, inputs := randomCases(300)
	for i := range decisions {
		got, err := DecisionDoc(decisions[i])
		want, wantErr := refDecisionDoc(decisions[i])
		sameDoc(t, fmt.Sprintf("random decision %d", i), got, err, want, wantErr)
		got, err = DecoyDoc(inputs[i])
		want, wantErr = refDecoyDoc(inputs[i])
		sameDoc(t, fmt.Sprintf("random decoy %d", i), got, err, want, wantErr)
	}
}

// TestDocsShareABuffer writes the documents of a batch one after another
// into one buffer, as the connector does: each is what it would be alone,
// and one that fails leaves nothing behind.
func TestDocsShareABuffer(t *testing.T) {
	decisions, inputs := randomCases(50)
	bad, err := elastictest.Decision("iris")
	if err != nil {
		t.Fatal(err)
	}
	bad["features"].(map[string]any)["sepalLength"] = math.NaN()
	var w jsonw
	var got, want [][]byte
	for i := range decisions {
		for _, c := range []struct {
			write func(map[string]any) error
			alone func(map[string]any) ([]byte, error)
			rec   map[string]any
		}{{w.decision, DecisionDoc, decisions[i]}, {w.decoy, DecoyDoc, inputs[i]}, {w.decision, DecisionDoc, bad}} {
			start := len(w.b)
			err := c.write(c.rec)
			alone, aloneErr := c.alone(c.rec)
			if (err != nil) != (aloneErr != nil) {
				t.Fatalf("record %d: error %v in a buffer, %v alone", i, err, aloneErr)
			}
			if err != nil {
				if len(w.b) != start || w.err != nil {
					t.Fatalf("record %d: a failed document left %q", i, w.b[start:])
				}
				continue
			}
			got, want = append(got, w.b[start:len(w.b):len(w.b)]), append(want, alone)
		}
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("document %d in a buffer:\n%s\nalone:\n%s", i, got[i], want[i])
		}
	}
}

// FuzzJSONString holds jsonw's strings to encoding/json's, byte for byte.
func FuzzJSONString(f *testing.F) {
	for _, s := range tricky {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		var w jsonw
		w.str(s)
		if !bytes.Equal(w.b, want) {
			t.Errorf("%q: got %s, want %s", s, w.b, want)
		}
	})
}

// FuzzJSONFloat holds jsonw's numbers to encoding/json's, byte for byte.
func FuzzJSONFloat(f *testing.F) {
	for _, x := range numbers {
		f.Add(math.Float64bits(x))
		f.Add(math.Float64bits(-x))
	}
	f.Add(math.Float64bits(math.NaN()))
	f.Add(math.Float64bits(math.Inf(1)))
	f.Fuzz(func(t *testing.T, bits uint64) {
		x := math.Float64frombits(bits)
		want, wantErr := json.Marshal(x)
		var w jsonw
		w.float(x)
		if (w.err != nil) != (wantErr != nil) {
			t.Fatalf("%v: error %v, encoding/json's %v", x, w.err, wantErr)
		}
		if wantErr == nil && !bytes.Equal(w.b, want) {
			t.Errorf("%v: got %s, want %s", x, w.b, want)
		}
	})
}

// TestJSONTimes holds jsonw's times to the reference's RFC 3339 strings.
func TestJSONTimes(t *testing.T) {
	for _, us := range []int64{0, 1, -1, 999_999, 1_000_000, elastictest.When.UnixMicro(), 253402300799999999, -62135596800000000, math.MaxInt64 / 2} {
		want, _ := json.Marshal(refMicros(us))
		var w jsonw
		w.time(us)
		if !bytes.Equal(w.b, want) {
			t.Errorf("%d: got %s, want %s", us, w.b, want)
		}
	}
}
