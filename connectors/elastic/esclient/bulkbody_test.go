package esclient_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"
)

func TestBulkBody(t *testing.T) {
	docs := []esclient.Doc{
		{Index: "score-log-2026.11.22", ID: "rdv.iris.decisions-0-7", Body: []byte(`{"a":"x y","b":[1,2]}`), Compact: true},
		{Index: "score-log-2026.11.22", ID: "pretty", Body: []byte("{\n  \"a\": 1,\n  \"b\": \"c d\"\n}\n")},
		{Index: "score-log-2026.11.22", ID: "compact-but-not", Body: []byte("{\n\"a\":1}"), Compact: true},
		{Index: "score-log-2026.11.22", ID: "array", Body: []byte(`[1]`), Compact: true},
		{Index: "score-log-2026.11.22", ID: "empty", Body: nil, Compact: true},
		{Index: "", ID: "no-index", Body: []byte(`{}`), Compact: true},
		{Index: "odd-index", ID: "quote \" backslash \\ tab \t caf\u00e9", Body: []byte(`{}`), Compact: true},
		{Index: "auto-id", Body: []byte(`{"x":true}`), Compact: true},
	}
	for _, action := range []string{"index", "create"} {
		results := make([]esclient.ItemResult, len(docs))
		body, sent := esclient.BulkBody(action, docs, results)
		if want := []int{0, 1, 6, 7}; !reflect.DeepEqual(sent, want) {
			t.Fatalf("%s: sent %v, want %v", action, sent, want)
		}
		for _, i := range []int{2, 3, 4, 5} {
			if r := results[i]; r.Status != 400 || r.ErrType != esclient.ErrTypeInvalidDoc || r.Doc.ID != docs[i].ID {
				t.Errorf("%s: %s: %+v", action, docs[i].ID, r)
			}
		}
		if !bytes.HasSuffix(body, []byte("\n")) {
			t.Fatalf("%s: the body does not end with a newline", action)
		}
		lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
		if len(lines) != 2*len(sent) {
			t.Fatalf("%s: %d lines for %d documents:\n%s", action, len(lines), len(sent), body)
		}
		wantSources := []string{`{"a":"x y","b":[1,2]}`, `{"a":1,"b":"c d"}`, `{}`, `{"x":true}`}
		for k, i := range sent {
			var meta map[string]map[string]string
			if err := json.Unmarshal([]byte(lines[2*k]), &meta); err != nil {
				t.Fatalf("%s: action line %q: %v", action, lines[2*k], err)
			}
			want := map[string]string{"_index": docs[i].Index}
			if docs[i].ID != "" {
				want["_id"] = docs[i].ID
			}
			if got := meta[action]; len(meta) != 1 || !reflect.DeepEqual(got, want) {
				t.Errorf("%s: action line %q, want %v", action, lines[2*k], want)
			}
			if lines[2*k+1] != wantSources[k] {
				t.Errorf("%s: source %q, want %q", action, lines[2*k+1], wantSources[k])
			}
		}
	}
}
