package elastic

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// jsonw appends JSON to b. It writes what encoding/json.Marshal writes for
// the same values, byte for byte (HTML-safe string escapes, ES6 number
// form, sorted map keys), so documents read exactly as they did when they
// were marshalled maps; docs_equal_test.go holds it to that.
//
// Commas are placed by the last byte written: a value or key that follows
// anything but '{', '[' or ':' gets one. The opening brace of a document
// is therefore written directly, not through open, so that it takes no
// comma after the previous document in the same buffer.
type jsonw struct {
	b   []byte
	err error // the first value JSON has no form for (NaN, ±Inf)
	kvs []kv  // a map's entries while their keys are sorted
}

type kv struct {
	k string
	v any
}

func (w *jsonw) sep() {
	if n := len(w.b); n > 0 {
		switch w.b[n-1] {
		case '{', '[', ':':
		default:
			w.b = append(w.b, ',')
		}
	}
}

func (w *jsonw) open(c byte)  { w.sep(); w.b = append(w.b, c) }
func (w *jsonw) close(c byte) { w.b = append(w.b, c) }

// key writes an object's key; its value is written on what it returns.
func (w *jsonw) key(k string) *jsonw {
	w.str(k)
	w.b = append(w.b, ':')
	return w
}

func (w *jsonw) null() { w.sep(); w.b = append(w.b, "null"...) }

func (w *jsonw) bool(v bool) { w.sep(); w.b = strconv.AppendBool(w.b, v) }

func (w *jsonw) int(v int64) { w.sep(); w.b = strconv.AppendInt(w.b, v, 10) }

// float writes a float64 as encoding/json does: like %g but with the
// exponent only below 1e-6 and from 1e21 on, and not padded to two digits.
func (w *jsonw) float(v float64) {
	w.sep()
	if math.IsNaN(v) || math.IsInf(v, 0) {
		if w.err == nil {
			w.err = fmt.Errorf("json: unsupported value: %v", v)
		}
		w.b = append(w.b, "null"...)
		return
	}
	format := byte('f')
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	w.b = strconv.AppendFloat(w.b, v, format, -1, 64)
	if n := len(w.b); format == 'e' && w.b[n-4] == 'e' && w.b[n-3] == '-' && w.b[n-2] == '0' {
		w.b[n-2] = w.b[n-1]
		w.b = w.b[:n-1]
	}
}

// time writes a time in microseconds since the epoch as an RFC 3339 UTC
// string with as many fractional digits as it needs.
func (w *jsonw) time(us int64) {
	w.sep()
	w.b = append(w.b, '"')
	w.b = time.UnixMicro(us).UTC().AppendFormat(w.b, time.RFC3339Nano)
	w.b = append(w.b, '"')
}

// plain marks the ASCII bytes a JSON string takes as they are. <, > and &
// are left out, as encoding/json escapes them too.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = !strings.ContainsRune(`"\<>&`, c)
	}
	return t
}()

const hexDigits = "0123456789abcdef"

func (w *jsonw) str(s string) {
	w.sep()
	w.b = append(w.b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			if plain[c] {
				continue
			}
			w.b = append(w.b, s[start:i-1]...)
			switch c {
			case '"', '\\':
				w.b = append(w.b, '\\', c)
			case '\b':
				w.b = append(w.b, '\\', 'b')
			case '\f':
				w.b = append(w.b, '\\', 'f')
			case '\n':
				w.b = append(w.b, '\\', 'n')
			case '\r':
				w.b = append(w.b, '\\', 'r')
			case '\t':
				w.b = append(w.b, '\\', 't')
			default:
				w.b = append(w.b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			// Invalid UTF-8 becomes U+FFFD, one per bad byte.
			w.b = append(w.b, s[start:i]...)
			w.b = append(w.b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but line ends to JavaScript.
			w.b = append(w.b, s[start:i]...)
			w.b = append(w.b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	w.b = append(w.b, s[start:]...)
	w.b = append(w.b, '"')
}

// sorted returns m's entries ordered by key, as encoding/json writes a
// map. The slice is w's scratch: it is valid until the next call.
func (w *jsonw) sorted(m map[string]any) []kv {
	w.kvs = w.kvs[:0]
	for k, v := range m {
		w.kvs = append(w.kvs, kv{k, v})
	}
	slices.SortFunc(w.kvs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	return w.kvs
}
