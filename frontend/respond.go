package frontend

import (
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
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
	b = appendString(b, r.Timestamp)
	b = append(b, `,"messageId":`...)
	b = appendString(b, r.MessageID)
	b = append(b, `,"objective":`...)
	b = appendString(b, r.Objective)
	b = append(b, `,"modelInput":`...)
	if r.ModelInput == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		for i, k := range sortedKeys(r.ModelInput) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			if b, ok = appendScalar(b, r.ModelInput[k]); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	b = append(b, `,"modelResult":{"modelName":`...)
	b = appendString(b, r.ModelResult.ModelName)
	b = append(b, `,"modelVersion":`...)
	b = appendString(b, r.ModelResult.ModelVersion)
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
			b = appendString(b, k)
			b = append(b, ':')
			if b, ok = appendFloat(b, r.ModelResult.Probabilities[k], 64); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	b = append(b, `},"reason":`...)
	b = appendString(b, r.Reason)
	b = append(b, `,"policy":`...)
	b = appendString(b, r.Policy)
	b = append(b, `,"latencyMs":`...)
	if b, ok = appendFloat(b, r.LatencyMs, 64); !ok {
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
		return appendString(b, x), true
	case float64:
		return appendFloat(b, x, 64)
	case float32:
		return appendFloat(b, float64(x), 32)
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

// appendFloat formats as encoding/json does: the shortest representation,
// in exponent form below 1e-6 and from 1e21 on, with "e-9" not "e-09".
func appendFloat(b []byte, f float64, bits int) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does with HTML escaping on (its
// default): <, > and & as \u00XX, invalid UTF-8 as \ufffd, and U+2028 and
// U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
