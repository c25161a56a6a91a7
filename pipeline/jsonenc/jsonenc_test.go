package jsonenc_test

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"

	"github.com/rendezvous-ml/rendezvous/pipeline/jsonenc"
)

var strs = []string{"", "plain", `quote " backslash \`, "<script>&</script>", "\x00\x1f\b\f\n\r\t",
	"\u2028\u2029", "é ü 日本 🙂", "bad \xff utf-8 \xc3", "\x7f"}

var floats = []float64{0, 1, -1, 0.1, 1e-6, 9.99e-7, 1e20, 1e21, 123456789.125, 5e-324, math.MaxFloat64, math.Copysign(0, -1)}

// FuzzAppendString holds AppendString to encoding/json, byte for byte.
func FuzzAppendString(f *testing.F) {
	for _, s := range strs {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := jsonenc.AppendString([]byte("x"), s); !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Errorf("%q: got %s, want x%s", s, got, want)
		}
	})
}

// FuzzAppendFloat holds AppendFloat to encoding/json for float64 and
// float32, refusals included.
func FuzzAppendFloat(f *testing.F) {
	for _, x := range append(floats, math.NaN(), math.Inf(-1)) {
		f.Add(math.Float64bits(x))
	}
	f.Fuzz(func(t *testing.T, bits uint64) {
		x := math.Float64frombits(bits)
		for _, v := range []any{x, float32(x)} {
			want, err := json.Marshal(v)
			var got []byte
			var ok bool
			if y, is32 := v.(float32); is32 {
				got, ok = jsonenc.AppendFloat(nil, float64(y), 32)
			} else {
				got, ok = jsonenc.AppendFloat(nil, x, 64)
			}
			if ok != (err == nil) || ok && !bytes.Equal(got, want) {
				t.Errorf("%T %v: got %s (ok %v), want %s (err %v)", v, v, got, ok, want, err)
			}
		}
	})
}
