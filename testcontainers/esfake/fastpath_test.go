package esfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

// The fast paths of bulk indexing (docscan.go, parsePlainAction, the
// hand-written bulk answer) must never change an outcome. These tests check
// each one against the general code it short-cuts, on generated input.

// scanMappings covers every branch of valueAccepted and of the walk:
// dynamic settings, disabled and nested objects, multi-fields, formats.
var scanMappings = []string{
	`{"dynamic":"strict","properties":{
	  "@timestamp":{"type":"date"},"k":{"type":"keyword"},"t":{"type":"text","fields":{"raw":{"type":"keyword"},"n":{"type":"long"}}},
	  "l":{"type":"long"},"i":{"type":"integer"},"s":{"type":"short"},"b":{"type":"byte"},"u":{"type":"unsigned_long"},
	  "d":{"type":"double"},"f":{"type":"float"},"h":{"type":"half_float"},"sf":{"type":"scaled_float","scaling_factor":100},
	  "bo":{"type":"boolean"},"ip":{"type":"ip"},"ck":{"type":"constant_keyword","value":"x"},
	  "dt":{"type":"date","format":"yyyy/MM/dd"},"de":{"type":"date","format":"epoch_millis"},"dn":{"type":"date_nanos"},
	  "dl":{"type":"date","format":"yyyy-MM-dd'T'HH:mm:ss.SSSZ||strict_date_optional_time"},"dw":{"type":"date","format":"ww"},
	  "gp":{"type":"geo_point"},"fl":{"type":"flattened"},"w":{"type":"wildcard"},"v":{"type":"version"},
	  "o":{"properties":{"k":{"type":"keyword"},"l":{"type":"long"},"in":{"properties":{"d":{"type":"date"}}}}},
	  "off":{"type":"object","enabled":false},
	  "nf":{"type":"object","dynamic":false,"properties":{"k":{"type":"keyword"}}},
	  "nr":{"type":"object","dynamic":"runtime"},
	  "nt":{"type":"object","dynamic":true},
	  "n":{"type":"nested","properties":{"k":{"type":"keyword"},"f":{"type":"float"},"bo":{"type":"boolean"}}}}}`,
	`{"dynamic":false,"properties":{"k":{"type":"keyword"},"l":{"type":"long"},"d":{"type":"date"},
	  "o":{"dynamic":"strict","properties":{"k":{"type":"keyword"}}}}}`,
	`{"properties":{"k":{"type":"keyword","ignore_malformed":true},"l":{"type":"long","ignore_malformed":true},
	  "d":{"type":"date"},"o":{"properties":{"l":{"type":"long","coerce":false}}}}}`,
	`{"dynamic":"runtime","date_detection":false,"properties":{"@timestamp":{"type":"date"},"f":{"type":"float"}}}`,
}

var scanNames = []string{"@timestamp", "k", "t", "l", "i", "s", "b", "u", "d", "f", "h", "sf", "bo", "ip", "ck",
	"dt", "de", "dn", "dl", "dw", "gp", "fl", "w", "v", "o", "in", "off", "nf", "nr", "nt", "n",
	"new", "o.k", "", " ", "_id", "_doc_count", "a..b", ".a", "é", `q"uote`, "tab\t", "x y"}

var scanScalars = []string{
	"null", "true", "false", "0", "-0", "1", "-1", "127", "128", "-128", "-129", "255", "32767", "32768", "-32769",
	"2147483647", "2147483648", "-2147483649", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
	"123456789012345678", "1234567890123456789", "18446744073709551615", "18446744073709551616",
	"1.5", "-0.0", "1e3", "1E-3", "2.5e+2", "1e400", "-1e400", "1e-400", "3.4e38", "3.5e38", "340282356779733661637539395458142568447",
	"340282356779733661637539395458142568448", "65504", "65504.4", "65505", "65519.99", "65520", "1.0",
	"1700000000000", "1700000000000.5", "-1", "12345678901234567890123",
	`""`, `"x"`, `"true"`, `"false"`, `"42"`, `" 42 "`, `"4.5f"`, `"0x10"`, `"x\"y"`, `"\u0041"`, `"caf\u00e9"`, "\"caf\xc3\xa9\"", "\"bad\xff\"",
	`"2026-11-22T03:16:22.335051Z"`, `"2026-11-22T03:16:22Z"`, `"2026-11-22T03:16:22"`, `"2026-11-22T03:16:22.1234567890Z"`,
	`"2026-11-22T03:16:22.123456789Z"`, `"2024-02-29T00:00:00Z"`, `"2026-02-29T00:00:00Z"`, `"2026-13-01T00:00:00Z"`,
	`"2026-11-31T00:00:00Z"`, `"2026-11-22T24:00:00Z"`, `"2026-11-22T23:60:00Z"`, `"2026-11-22T23:59:60Z"`,
	`"2026-11-22T03:16:22.Z"`, `"2026-11-22T03:16:22+02:00"`, `"2026-11-22"`, `"0000-01-01T00:00:00Z"`, `"1969-12-31T23:59:59Z"`,
	`"2026\u002d11-22T03:16:22Z"`, `"2026/11/22"`, `"1700000000000"`, `"127.0.0.1"`, `"::1"`, `"10.0.0.300"`, `"12"`,
	`"1.2.3"`, `"Hello World"`, `"\x41"`, `"\u12"`, `"\u12G4"`, "\"ctl\x01\"", `"\/\b\f\n\r\t"`, "01", "1.", ".5", "+1", "-", "1e", "tru", "nul",
}

// randValue writes a random JSON value, sometimes an object of random
// fields, sometimes an array.
func randValue(rng *rand.Rand, b *bytes.Buffer, depth int) {
	switch r := rng.Intn(10); {
	case r < 6 || depth > 3:
		b.WriteString(scanScalars[rng.Intn(len(scanScalars))])
	case r < 8:
		randObject(rng, b, depth+1)
	default:
		b.WriteByte('[')
		for i, n := 0, rng.Intn(4); i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			randValue(rng, b, depth+1)
		}
		b.WriteByte(']')
	}
}

func randObject(rng *rand.Rand, b *bytes.Buffer, depth int) {
	b.WriteByte('{')
	for i, n := 0, rng.Intn(6); i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		if rng.Intn(8) == 0 {
			b.WriteString(" \n")
		}
		name := scanNames[rng.Intn(len(scanNames))]
		if rng.Intn(10) == 0 {
			b.WriteString(`"` + strings.ReplaceAll(name, "k", `\u006b`) + `"`)
		} else {
			fmt.Fprintf(b, "%q", name)
		}
		b.WriteByte(':')
		randValue(rng, b, depth)
	}
	b.WriteByte('}')
}

// mutate damages a document the way a broken client might.
func mutate(rng *rand.Rand, src []byte) []byte {
	out := append([]byte(nil), src...)
	if len(out) == 0 {
		return out
	}
	i := rng.Intn(len(out))
	junk := []byte(`{}[]",:\ 0-.eE+tfnu` + "\x00\x1f\x7f\xff")
	switch rng.Intn(3) {
	case 0:
		out[i] = junk[rng.Intn(len(junk))]
	case 1:
		out = append(out[:i], out[i+1:]...)
	default:
		out = append(out[:i], append([]byte{junk[rng.Intn(len(junk))]}, out[i:]...)...)
	}
	return out
}

func scanTestIndices(t testing.TB) []*index {
	s := New()
	var out []*index
	for i, m := range scanMappings {
		var raw any
		if err := json.Unmarshal([]byte(m), &raw); err != nil {
			t.Fatal(err)
		}
		settings := map[string]any{}
		if i == 2 {
			settings["mapping.ignore_malformed"] = "true"
		}
		for _, ds := range []bool{false, true} {
			ix, e := s.createIndex(fmt.Sprintf("scan-%d-%v", i, ds), &indexBody{mappings: raw, settings: settings})
			if e != nil {
				t.Fatal(e)
			}
			ix.dataStream = ds
			out = append(out, ix)
		}
	}
	return out
}

// checkScan fails when scanDocument accepts a document the full parser
// would not store as it is.
func checkScan(t testing.TB, ix *index, src []byte) (accepted bool) {
	ok, hasTS := scanDocument(ix, src)
	if !ok || ix.dataStream && !hasTS {
		return false
	}
	root, _, err := parseJSON(src)
	if err != nil {
		t.Fatalf("%s: scan accepts malformed JSON %q: %v", ix.name, src, err)
	}
	p := newDocParser(ix, src, "x", false)
	if e := p.parse(root); e != nil {
		t.Fatalf("%s: scan accepts %s, the parser says %v", ix.name, src, e)
	}
	if p.added != 0 || len(p.pending) != 0 {
		t.Fatalf("%s: scan accepts %s, which adds %d fields", ix.name, src, p.added)
	}
	if hasTS != hasTimestamp(root) {
		t.Fatalf("%s: scan says @timestamp %v for %s", ix.name, hasTS, src)
	}
	return true
}

func TestScanDocumentAgreesWithParser(t *testing.T) {
	indices := scanTestIndices(t)
	rng := rand.New(rand.NewSource(7))
	accepted := 0
	var b bytes.Buffer
	for n := 0; n < 20000; n++ {
		b.Reset()
		randObject(rng, &b, 0)
		src := b.Bytes()
		if n%2 == 1 {
			src = mutate(rng, src)
		}
		for _, ix := range indices {
			if checkScan(t, ix, src) {
				accepted++
			}
		}
	}
	if accepted < 1000 {
		t.Errorf("only %d documents took the fast path: the test no longer exercises it", accepted)
	}
}

func FuzzScanDocument(f *testing.F) {
	for _, s := range []string{`{}`, `{"k":"x","l":1,"o":{"in":{"d":"2026-11-22T03:16:22Z"}}}`, `{"n":[{"f":1.5},{"bo":true}]}`,
		`{"off":{"x":[1,{"y":null}]},"nf":{"z":"q"}}`, `{"gp":{"lat":1,"lon":2},"fl":{"a":{"b":1}}}`, `{"t":"12"}`, `{"h":65504}`} {
		f.Add([]byte(s))
	}
	indices := scanTestIndices(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		for _, ix := range indices {
			checkScan(t, ix, src)
		}
	})
}

// The connector's documents take the fast path once their index has mapped
// the fields its template leaves dynamic.
func TestConnectorDocumentsTakeTheFastPath(t *testing.T) {
	s := New()
	for name, tmpl := range map[string]string{"score": connectorScoreTemplate, "decoy": connectorDecoyTemplate} {
		var m map[string]any
		if err := json.Unmarshal([]byte(tmpl), &m); err != nil {
			t.Fatal(err)
		}
		if e := s.putIndexTemplate(name, m, false); e != nil {
			t.Fatal(e)
		}
	}
	for _, c := range []struct{ index, doc string }{{"score-log-2026.11.22", connectorScoreDoc}, {"decoy-log-2026.11.22", connectorDecoyDoc}} {
		s.mu.Lock()
		res := s.applyOp(bulkOp{action: "index", index: c.index, id: "1", source: []byte(c.doc)}, "")
		ix := s.indices[c.index]
		s.mu.Unlock()
		if res.Error != nil {
			t.Fatalf("%s: %v", c.index, res.Error)
		}
		if ok, _ := scanDocument(ix, []byte(c.doc)); !ok {
			t.Errorf("%s: the connector's document takes the slow path", c.index)
		}
	}
}

const (
	connectorScoreTemplate = `{"index_patterns":["score-log-*"],"priority":200,"template":{"mappings":{"dynamic":true,"properties":{"@timestamp":{"type":"date"},"closed_at":{"type":"date"},"decided_at":{"type":"date"},"failed_count":{"type":"integer"},"failed_models":{"type":"keyword"},"features":{"properties":{"petalLength":{"type":"double"},"petalWidth":{"type":"double"},"sepalLength":{"type":"double"},"sepalWidth":{"type":"double"}}},"key":{"type":"keyword"},"late_count":{"type":"integer"},"late_models":{"type":"keyword"},"latency_ms":{"type":"float"},"missing":{"type":"keyword"},"missing_count":{"type":"integer"},"model":{"type":"keyword"},"objective":{"type":"keyword"},"policy":{"type":"keyword"},"reason":{"type":"keyword"},"request_id":{"type":"keyword"},"result":{"type":"keyword"},"scores":{"properties":{"arrived_ms":{"type":"float"},"compute_ms":{"type":"float"},"duplicates":{"type":"integer"},"error":{"type":"keyword"},"failed":{"type":"boolean"},"late":{"type":"boolean"},"model":{"type":"keyword"},"result":{"type":"keyword"},"role":{"type":"keyword"},"version":{"type":"keyword"}},"type":"nested"},"scores_count":{"type":"integer"},"sla_ms":{"type":"float"},"version":{"type":"keyword"}}},"settings":{"index.number_of_shards":1}}}`
	connectorDecoyTemplate = `{"index_patterns":["decoy-log-*"],"priority":200,"template":{"mappings":{"dynamic":true,"dynamic_templates":[{"context_as_keyword":{"mapping":{"type":"keyword"},"path_match":"context.*"}}],"properties":{"@timestamp":{"type":"date"},"context":{"dynamic":true,"type":"object"},"day_of_week":{"type":"integer"},"enriched_at":{"type":"date"},"features":{"properties":{"petalLength":{"type":"double"},"petalWidth":{"type":"double"},"sepalLength":{"type":"double"},"sepalWidth":{"type":"double"}}},"hour_of_day":{"type":"integer"},"key":{"type":"keyword"},"objective":{"type":"keyword"},"request_id":{"type":"keyword"},"sla_ms":{"type":"float"}}},"settings":{"index.number_of_shards":1}}}`
	connectorScoreDoc      = `{"@timestamp":"2026-11-22T03:16:22.335051Z","closed_at":"2026-11-22T03:16:23.435051Z","decided_at":"2026-11-22T03:16:22.347551Z","failed_count":1,"failed_models":["canary"],"features":{"petalLength":3.5,"petalWidth":4.5,"sepalLength":1.5,"sepalWidth":2.5},"key":"tenant-1","late_count":1,"late_models":["challenger"],"latency_ms":12.5,"missing":["ghost"],"missing_count":1,"model":"dt","objective":"iris","policy":"priority","reason":"champion","request_id":"27a927cc-2b82-4119-a0f7-519483654517","result":"setosa","scores":[{"arrived_ms":12.4,"compute_ms":0.25,"duplicates":0,"error":null,"failed":false,"late":false,"model":"dt","result":"setosa","role":"champion","version":"1"},{"arrived_ms":13,"compute_ms":0.9,"duplicates":1,"error":"model error: \"boom\"","failed":true,"late":false,"model":"canary","result":null,"role":"canary","version":"2"},{"arrived_ms":130,"compute_ms":80,"duplicates":0,"error":null,"failed":false,"late":true,"model":"challenger","result":"versicolor","role":"shadow","version":"1"}],"scores_count":3,"sla_ms":100,"version":"1"}`
	connectorDecoyDoc      = `{"@timestamp":"2026-11-22T03:16:22.335051Z","context":{"region":"local","segment":"default"},"day_of_week":0,"enriched_at":"2026-11-22T03:16:22.335351Z","features":{"petalLength":3.5,"petalWidth":4.5,"sepalLength":1.5,"sepalWidth":2.5},"hour_of_day":3,"key":"tenant-1","objective":"iris","request_id":"27a927cc-2b82-4119-a0f7-519483654517","sla_ms":100}`
)

func TestPlainISODate(t *testing.T) {
	df, err := compileDateFormat("strict_date_optional_time")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(3))
	digits := "0123456789"
	recognised := 0
	for n := 0; n < 100000; n++ {
		b := []byte("2026-11-22T03:16:22.335051Z")
		for k := rng.Intn(4); k > 0; k-- {
			i := rng.Intn(len(b))
			switch rng.Intn(4) {
			case 0:
				b[i] = digits[rng.Intn(10)]
			case 1:
				b = append(b[:i], b[i+1:]...)
			case 2:
				b = append(b[:i], append([]byte{digits[rng.Intn(10)]}, b[i:]...)...)
			default:
				b[i] = "-T:.Z+ x"[rng.Intn(8)]
			}
		}
		if isPlainISODate(b) {
			recognised++
			if _, e := df.parseDate(string(b)); e != nil {
				t.Fatalf("isPlainISODate(%s) but the parser says %v", b, e)
			}
		}
	}
	if recognised < 1000 {
		t.Errorf("only %d dates recognised", recognised)
	}
}

func TestPlainActionAgreesWithParser(t *testing.T) {
	lines := []string{
		`{"index":{"_index":"a","_id":"1"}}`, `{"create":{"_id":"x-1-2","_index":"score-log-2026.11.22"}}`,
		`{"update":{"_index":"a","_id":"1"}}`, `{"delete":{"_index":"a","_id":"1"}}`, `{"index":{}}`, `{"index":{"_id":""}}`,
		`{"index":{"_index":""}}`, `{"index":{"_index":"a","_index":"b"}}`, `{"index":{"_id":"1","_id":"2"}}`,
		`{"index":{"_index":"a","_id":1}}`, `{"index":{"_index":"a","_id":null}}`, `{"index":{"_index":"a","op_type":"create"}}`,
		`{"index":{"_index":"a"},"delete":{}}`, `{"index":{"_index":"a",}}`, `{"index":{"_index":"a""_id":"1"}}`,
		`{"index":{"_index":"a","_id":"\u0031"}}`, `{"index":{"_index":"a","_id":"é"}}`, `{"index":{"_index":"a","_id":"1"}} `,
		`{"index":{"_index":"a","_id":"1"}}}`, `{"index":{"_index":"a","_id":"1"}`, `{"bogus":{"_index":"a"}}`, `{"index":[]}`,
		`{ "index":{"_index":"a"}}`, `{"index":{"_index":"a","routing":"r"}}`, `{"index":{"_index":"a","_id":"1","x":"y"}}`,
	}
	rng := rand.New(rand.NewSource(5))
	for n := 0; n < 5000; n++ {
		lines = append(lines, string(mutate(rng, []byte(lines[rng.Intn(25)]))))
	}
	fast := 0
	for _, l := range lines {
		op, ok := parsePlainAction([]byte(l), "def", map[string]string{})
		if !ok {
			continue
		}
		fast++
		want, e := parseAction([]byte(l), 1, "def")
		if e != nil {
			t.Fatalf("%s: fast path accepts it, parseAction says %v", l, e)
		}
		if fmt.Sprintf("%+v", op) != fmt.Sprintf("%+v", want) {
			t.Fatalf("%s: fast path reads %+v, parseAction %+v", l, op, want)
		}
	}
	if fast < 10 {
		t.Errorf("only %d lines took the fast path", fast)
	}
}

// legacyItem is how bulk items were encoded with encoding/json; the
// hand-written encoder must write the same bytes.
type legacyItem struct {
	Index       string      `json:"_index"`
	ID          string      `json:"_id"`
	Version     int64       `json:"_version,omitempty"`
	Result      string      `json:"result,omitempty"`
	Shards      *shardsInfo `json:"_shards,omitempty"`
	SeqNo       *int64      `json:"_seq_no,omitempty"`
	PrimaryTerm *int64      `json:"_primary_term,omitempty"`
	Status      int         `json:"status"`
	Error       *esError    `json:"error,omitempty"`
}

func TestItemJSONMatchesEncodingJSON(t *testing.T) {
	odd := []string{"", "a", "score-log-2026.11.22", `q"uote`, `back\slash`, "<html>&", "tab\tnl\n", "\x00\x1f\x7f", "café", "bad\xff",
		"\u2028\u2029", "emoji 🙂"}
	rng := rand.New(rand.NewSource(9))
	pick := func() string { return odd[rng.Intn(len(odd))] }
	for n := 0; n < 2000; n++ {
		it := itemResult{Index: pick(), ID: pick(), Status: []int{200, 201, 400, 404, 409, 429}[rng.Intn(6)]}
		legacy := legacyItem{Index: it.Index, ID: it.ID, Status: it.Status}
		if rng.Intn(2) == 0 {
			it.Version, it.Result = rng.Int63n(3), []string{"", "created", "updated", pick()}[rng.Intn(4)]
			legacy.Version, legacy.Result = it.Version, it.Result
		}
		if rng.Intn(2) == 0 {
			it.written, it.SeqNo, it.Shards = true, rng.Int63n(5), shardsInfo{Total: rng.Intn(3), Successful: rng.Intn(2)}
			seq, term, shards := it.SeqNo, int64(1), it.Shards
			legacy.SeqNo, legacy.PrimaryTerm, legacy.Shards = &seq, &term, &shards
		}
		if rng.Intn(3) == 0 {
			it.Error = newErr("document_parsing_exception", "[1:2] %s", pick()).withMeta("index", pick(), "shard", "0").
				withCause(newErr("illegal_argument_exception", "%s", pick()))
			legacy.Error = it.Error
		}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(map[string]legacyItem{"index": legacy}); err != nil {
			t.Fatal(err)
		}
		got := append(append([]byte(`{"index":`), it.appendJSON(nil)...), "}\n"...)
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("item %+v:\n got %s\nwant %s", it, got, want.Bytes())
		}
	}
}
