package frontend

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"testing"
)

// writeResponse must write exactly what encoding/json writes, for every
// value a response can hold.
func TestWriteResponseMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	strs := []string{"", "setosa", "a\"b\\c", "<tag>&amp;", "tab\there\nnl\r\b\f\x01\x1f", "ünïcødé ✓", "\u2028\u2029", "bad \xff\xfe utf8", "emoji 🌸"}
	floats := []float64{0, 1, -1, 0.1, 1.0 / 3, 5.1, 1e-7, 1e-6, 123456789.125, 1e20, 1e21, 1e-300, -2.5e-9, math.MaxFloat64, math.SmallestNonzeroFloat64}
	pick := func() string { return strs[r.Intn(len(strs))] }
	scalar := func() any {
		switch r.Intn(7) {
		case 0:
			return pick()
		case 1:
			if f := float32(floats[r.Intn(len(floats))]); !math.IsInf(float64(f), 0) {
				return f
			}
			return float32(math.MaxFloat32)
		case 2:
			return int32(r.Int63())
		case 3:
			return r.Int63() - r.Int63()
		case 4:
			return r.Intn(2) == 1
		case 5:
			return nil
		}
		return floats[r.Intn(len(floats))] * float64(1-2*r.Intn(2))
	}
	for i := 0; i < 2000; i++ {
		resp := Response{
			Timestamp: pick(), MessageID: pick(), Objective: pick(), Reason: pick(), Policy: pick(),
			LatencyMs:   floats[r.Intn(len(floats))],
			ModelResult: ModelResult{ModelName: pick(), ModelVersion: pick(), Result: scalar()},
		}
		if r.Intn(4) > 0 {
			resp.ModelInput = map[string]any{}
			for j := r.Intn(5); j > 0; j-- {
				resp.ModelInput[pick()] = scalar()
			}
		}
		if r.Intn(3) > 0 {
			resp.ModelResult.Probabilities = map[string]float64{}
			for j := r.Intn(4); j > 0; j-- {
				resp.ModelResult.Probabilities[pick()] = floats[r.Intn(len(floats))]
			}
		}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(resp); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		writeResponse(rec, resp)
		if rec.Body.String() != want.String() {
			t.Fatalf("case %d:\n got %s\nwant %s", i, rec.Body, want.String())
		}
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
		}
	}
}

// A value JSON cannot hold is left to encoding/json, which writes nothing:
// the same answer as before the fast path.
func TestWriteResponseUnsupportedValue(t *testing.T) {
	resp := Response{ModelResult: ModelResult{Probabilities: map[string]float64{"x": math.NaN()}}}
	rec := httptest.NewRecorder()
	writeResponse(rec, resp)
	var want bytes.Buffer
	_ = json.NewEncoder(&want).Encode(resp)
	if rec.Body.String() != want.String() {
		t.Fatalf("got %q, want %q", rec.Body, want.String())
	}
}
