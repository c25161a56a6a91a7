package frontend

import (
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/rendezvous-ml/rendezvous/pipeline/jsonenc"
)

// writeResponse writes a successful answer. It produces byte for byte what
// json.NewEncoder(w).Encode(resp) does, without reflection and into a
// pooled buffer: every call of the predict API ends here.
func writeResponse(w http.ResponseWriter, resp Response) {
	bp := respBufs.Get().(*[]byte)
	b, ok := appendResponse((*bp)[:0], &resp)
	if !ok {
		// A value JSON cannot hold (NaN, an infinity, an odd type): let
		// encoding/json deal with it as it always has.
		respBufs.Put(bp)
		writeJSON(w, http.StatusOK, resp)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	if cap(b) <= 4<<10 {
		*bp = b
		respBufs.Put(bp)
	}
}

var respBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func appendResponse(b []byte, r *Response) ([]byte, bool) {
	ok := true
	b = append(b, `{"timestamp":`...)
	b = jsonenc.AppendString(b, r.Timestamp)
	b = append(b, `,"messageId":`...)
	b = jsonenc.AppendString(b, r.MessageID)
	b = append(b, `,"objective":`...)
	b = jsonenc.AppendString(b, r.Objective)
	b = append(b, `,"modelInput":`...)
	if r.ModelInput == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		for i, k := range sortedKeys(r.ModelInput) {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.AppendString(b, k)
			b = append(b, ':')
			if b, ok = appendScalar(b, r.ModelInput[k]); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	b = append(b, `,"modelResult":{"modelName":`...)
	b = jsonenc.AppendString(b, r.ModelResult.ModelName)
	b = append(b, `,"modelVersion":`...)
	b = jsonenc.AppendString(b, r.ModelResult.ModelVersion)
	b = append(b, `,"result":`...)
	if b, ok = appendScalar(b, r.ModelResult.Result); !ok {
		return b, false
	}
	if len(r.ModelResult.Probabilities) > 0 {
		b = append(b, `,"probabilities":{`...)
		for i, k := range sortedKeys(r.ModelResult.Probabilities) {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.AppendString(b, k)
			b = append(b, ':')
			if b, ok = jsonenc.AppendFloat(b, r.ModelResult.Probabilities[k], 64); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	b = append(b, `},"reason":`...)
	b = jsonenc.AppendString(b, r.Reason)
	b = append(b, `,"policy":`...)
	b = jsonenc.AppendString(b, r.Policy)
	b = append(b, `,"latencyMs":`...)
	if b, ok = jsonenc.AppendFloat(b, r.LatencyMs, 64); !ok {
		return b, false
	}
	return append(b, '}', '\n'), true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendScalar writes the values a feature or a result can hold.
func appendScalar(b []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return jsonenc.AppendString(b, x), true
	case float64:
		return jsonenc.AppendFloat(b, x, 64)
	case float32:
		return jsonenc.AppendFloat(b, float64(x), 32)
	case int32:
		return strconv.AppendInt(b, int64(x), 10), true
	case int64:
		return strconv.AppendInt(b, x, 10), true
	case int:
		return strconv.AppendInt(b, int64(x), 10), true
	case bool:
		return strconv.AppendBool(b, x), true
	}
	return b, false
}
