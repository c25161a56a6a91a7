package elastic

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/jsonenc"
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

// float writes a float64 as encoding/json does; NaN and the infinities,
// which JSON has no form for, become the writer's error.
func (w *jsonw) float(v float64) {
	w.sep()
	var ok bool
	if w.b, ok = jsonenc.AppendFloat(w.b, v, 64); !ok {
		if w.err == nil {
			w.err = fmt.Errorf("json: unsupported value: %v", v)
		}
		w.b = append(w.b, "null"...)
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

func (w *jsonw) str(s string) {
	w.sep()
	w.b = jsonenc.AppendString(w.b, s)
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
