package elastic

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/elastictest"
	"github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake"
)

func sampleDocs(t *testing.T) (decision, decoy map[string]any) {
	t.Helper()
	d, err := elastictest.Decision("iris")
	if err != nil {
		t.Fatal(err)
	}
	in, err := elastictest.Input("iris")
	if err != nil {
		t.Fatal(err)
	}
	db, err := DecisionDoc(d)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := DecoyDoc(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(db, &decision); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(ib, &decoy); err != nil {
		t.Fatal(err)
	}
	return decision, decoy
}

func irisFields(t *testing.T) []schemas.Field {
	t.Helper()
	set, err := schemas.For("iris")
	if err != nil {
		t.Fatal(err)
	}
	f, err := set.Features()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDecisionDoc(t *testing.T) {
	doc, _ := sampleDocs(t)
	want := map[string]any{
		"@timestamp":    "2026-11-22T03:16:22.335051Z",
		"decided_at":    "2026-11-22T03:16:22.347551Z",
		"closed_at":     "2026-11-22T03:16:23.435051Z",
		"request_id":    "27a927cc-2b82-4119-a0f7-519483654517",
		"objective":     "iris",
		"key":           "tenant-1",
		"reason":        "champion",
		"policy":        "priority",
		"model":         "dt",
		"version":       "1",
		"result":        "setosa",
		"latency_ms":    12.5,
		"sla_ms":        100.0,
		"scores_count":  3.0,
		"late_count":    1.0,
		"failed_count":  1.0,
		"missing_count": 1.0,
		"late_models":   []any{"challenger"},
		"failed_models": []any{"canary"},
		"missing":       []any{"ghost"},
		"features":      map[string]any{"sepalLength": 1.5, "sepalWidth": 2.5, "petalLength": 3.5, "petalWidth": 4.5},
	}
	for k, v := range want {
		if !reflect.DeepEqual(doc[k], v) {
			t.Errorf("%s = %#v, want %#v", k, doc[k], v)
		}
	}
	scores, _ := doc["scores"].([]any)
	if len(scores) != 3 {
		t.Fatalf("scores = %v", doc["scores"])
	}
	dt, canary, shadow := scores[0].(map[string]any), scores[1].(map[string]any), scores[2].(map[string]any)
	if dt["result"] != "setosa" || dt["error"] != nil || dt["failed"] != false || dt["compute_ms"] != 0.25 || dt["arrived_ms"] != 12.4 {
		t.Errorf("champion score: %v", dt)
	}
	if canary["result"] != nil || canary["error"] != "model error" || canary["failed"] != true || canary["duplicates"] != 1.0 {
		t.Errorf("failed score: %v", canary)
	}
	if shadow["late"] != true || shadow["role"] != "shadow" || shadow["arrived_ms"] != 130.0 {
		t.Errorf("late score: %v", shadow)
	}
	var keys []string
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Logf("score-log document fields: %s", strings.Join(keys, " "))
}

func TestDecisionDocDefaultAnswer(t *testing.T) {
	d, err := elastictest.Decision("iris")
	if err != nil {
		t.Fatal(err)
	}
	d["result"], d["reason"], d["model"], d["version"] = nil, "default", "default", ""
	d["scores"], d["missing"] = []any{}, []any{}
	b, err := DecisionDoc(d)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if v, ok := doc["result"]; !ok || v != nil {
		t.Errorf("result of a decision without one: %#v (want null)", v)
	}
	for _, k := range []string{"scores", "missing", "late_models", "failed_models"} {
		if l, ok := doc[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s = %#v, want []", k, doc[k])
		}
	}
	if doc["scores_count"] != 0.0 || doc["late_count"] != 0.0 || doc["failed_count"] != 0.0 {
		t.Errorf("counts: %v %v %v", doc["scores_count"], doc["late_count"], doc["failed_count"])
	}
	if _, err := DecisionDoc(map[string]any{"scores": []any{"not a record"}}); err == nil {
		t.Error("a score that is not a record must be an error")
	}
}

func TestDecoyDoc(t *testing.T) {
	_, doc := sampleDocs(t)
	want := map[string]any{
		"@timestamp":  "2026-11-22T03:16:22.335051Z",
		"enriched_at": "2026-11-22T03:16:22.335351Z",
		"request_id":  "27a927cc-2b82-4119-a0f7-519483654517",
		"objective":   "iris",
		"key":         "tenant-1",
		"sla_ms":      100.0,
		"hour_of_day": 3.0,
		"day_of_week": 0.0,
		"context":     map[string]any{"segment": "default", "region": "local"},
		"features":    map[string]any{"sepalLength": 1.5, "sepalWidth": 2.5, "petalLength": 3.5, "petalWidth": 4.5},
	}
	if !reflect.DeepEqual(doc, want) {
		t.Errorf("decoy document:\n got %v\nwant %v", doc, want)
	}
}

func TestDecoyDocKeepsFeatureTypes(t *testing.T) {
	b, err := DecoyDoc(map[string]any{"features": map[string]any{
		"n": int32(3), "l": int64(4), "f": float32(0.5), "d": 1.25, "s": "red", "b": true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Features map[string]any `json:"features"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"n": 3.0, "l": 4.0, "f": 0.5, "d": 1.25, "s": "red", "b": true}
	if !reflect.DeepEqual(doc.Features, want) {
		t.Errorf("features = %v, want %v", doc.Features, want)
	}
}

// leafPaths lists the dotted paths of a document's values, objects within
// arrays included (their fields are the array's subfields).
func leafPaths(prefix string, v any, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			leafPaths(p, e, out)
		}
	case []any:
		objects := false
		for _, e := range x {
			if _, ok := e.(map[string]any); ok {
				objects = true
				leafPaths(prefix, e, out)
			}
		}
		if !objects {
			out[prefix] = true
		}
	default:
		out[prefix] = true
	}
}

// mappedType finds a dotted path in a template's mappings: the field's
// type, "dynamic:<template>" when a dynamic template covers it, or "".
func mappedType(mappings map[string]any, path string) string {
	props, _ := mappings["properties"].(map[string]any)
	parts := strings.Split(path, ".")
	for i, p := range parts {
		f, ok := props[p].(map[string]any)
		if !ok {
			break
		}
		if i == len(parts)-1 {
			if t, ok := f["type"].(string); ok {
				return t
			}
			return "object"
		}
		props, _ = f["properties"].(map[string]any)
	}
	dts, _ := mappings["dynamic_templates"].([]any)
	for _, dt := range dts {
		for name, body := range dt.(map[string]any) {
			pm, _ := body.(map[string]any)["path_match"].(string)
			if pm != "" && strings.HasSuffix(pm, ".*") && strings.HasPrefix(path, strings.TrimSuffix(pm, "*")) {
				return "dynamic:" + name
			}
		}
	}
	return ""
}

func templateMappings(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var tpl struct {
		Template struct {
			Mappings map[string]any `json:"mappings"`
		} `json:"template"`
	}
	if err := json.Unmarshal(body, &tpl); err != nil {
		t.Fatalf("template is not valid JSON: %v\n%s", err, body)
	}
	return tpl.Template.Mappings
}

func TestTemplatesAreValidAndMapEveryField(t *testing.T) {
	decision, decoy := sampleDocs(t)
	fields := irisFields(t)
	for _, o := range []TemplateOptions{{}, {DataStreams: true}, {ILMPolicy: "rdv-logs"}, {DataStreams: true, ILMPolicy: "rdv-logs"}} {
		for _, c := range []struct {
			name string
			body []byte
			doc  map[string]any
		}{
			{"score", ScoreTemplate("score-log", fields, o), decision},
			{"decoy", DecoyTemplate("decoy-log", fields, o), decoy},
		} {
			var tpl map[string]any
			if err := json.Unmarshal(c.body, &tpl); err != nil {
				t.Fatalf("%s template %+v is not JSON: %v", c.name, o, err)
			}
			if p := tpl["index_patterns"].([]any); len(p) != 1 || p[0] != c.name+"-log-*" {
				t.Errorf("%s index_patterns = %v", c.name, p)
			}
			if _, ds := tpl["data_stream"]; ds != o.DataStreams {
				t.Errorf("%s %+v: data_stream present = %v", c.name, o, ds)
			}
			settings := tpl["template"].(map[string]any)["settings"].(map[string]any)
			if got, _ := settings["index.lifecycle.name"].(string); got != o.ILMPolicy {
				t.Errorf("%s %+v: index.lifecycle.name = %q", c.name, o, got)
			}
			m := templateMappings(t, c.body)
			paths := map[string]bool{}
			leafPaths("", c.doc, paths)
			for p := range paths {
				if typ := mappedType(m, p); typ == "" || typ == "object" {
					t.Errorf("%s document field %s is not mapped by the template (%q)", c.name, p, typ)
				}
			}
		}
	}
	if mappedType(templateMappings(t, ScoreTemplate("score-log", fields, TemplateOptions{})), "scores") != "nested" {
		t.Error("scores must be nested")
	}
}

// startES runs an in-process Elasticsearch test server.
func startES(t *testing.T, opts ...esfake.Option) (*esfake.Server, esclient.Config) {
	t.Helper()
	es := esfake.New(opts...)
	url, err := es.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(es.Close)
	cfg := esclient.Config{URLs: []string{url}}
	cfg.Defaults()
	return es, cfg
}

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, m)
	}
	return m
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// TestTemplatesOnESFake installs the templates on the Elasticsearch test
// server, indexes the sample documents, and checks that they were accepted
// and that indexing added no field the templates do not map (other than
// the context map's keys, which the dynamic template maps as keywords).
func TestTemplatesOnESFake(t *testing.T) {
	decisionDoc, decoyDoc := sampleDocs(t)
	fields := irisFields(t)
	for _, ds := range []bool{false, true} {
		t.Run(fmt.Sprintf("data_streams=%v", ds), func(t *testing.T) {
			es, cfg := startES(t)
			cl, err := esclient.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := newRawClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			o := TemplateOptions{DataStreams: ds}
			if err := cl.EnsureTemplate(ctx, "score-log", ScoreTemplate("score-log", fields, o)); err != nil {
				t.Fatal(err)
			}
			if err := cl.EnsureTemplate(ctx, "decoy-log", DecoyTemplate("decoy-log", fields, o)); err != nil {
				t.Fatal(err)
			}
			rec := &kgo.Record{Topic: "rdv.iris.decisions", Partition: 1, Offset: 7, Timestamp: elastictest.When}
			in := &kgo.Record{Topic: "rdv.iris.decoy", Partition: 0, Offset: 3, Timestamp: elastictest.When}
			db, _ := json.Marshal(decisionDoc)
			ib, _ := json.Marshal(decoyDoc)
			docs := []esclient.Doc{
				{Index: IndexName("score-log", "iris", ds, rec), ID: DocID(rec), Body: db},
				{Index: IndexName("decoy-log", "iris", ds, in), ID: DocID(in), Body: ib},
			}
			bulk := cl.Bulk
			if ds {
				bulk = raw.BulkCreate
			}
			res, err := bulk(ctx, docs)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if !r.OK() {
					t.Fatalf("%s refused: %d %s %s %s", r.Doc.Index, r.Status, r.ErrType, r.Reason, r.Cause)
				}
			}
			wantIdx := []string{"decoy-log-2026.11.22", "score-log-2026.11.22"}
			if ds {
				wantIdx = []string{"decoy-log-iris", "score-log-iris"}
			}
			if got := es.Indices(); !reflect.DeepEqual(got, wantIdx) {
				t.Errorf("indices = %v, want %v", got, wantIdx)
			}
			if got := es.ItemErrorTypes(); len(got) != 0 {
				t.Errorf("item errors: %v", got)
			}
			// The mapping after indexing is the template's: nothing was
			// added dynamically, except context.* as keyword.
			for i, tpl := range [][]byte{ScoreTemplate("score-log", fields, o), DecoyTemplate("decoy-log", fields, o)} {
				idx := wantIdx[1-i]
				m := getJSON(t, cfg.URLs[0]+"/"+idx+"/_mapping")
				props := dig(m, idx, "mappings", "properties").(map[string]any)
				tplProps := templateMappings(t, tpl)["properties"].(map[string]any)
				for _, extra := range diffProps("", props, tplProps) {
					if !strings.HasPrefix(extra, "context.") {
						t.Errorf("%s: field %s was mapped dynamically", idx, extra)
					} else if typ := mappedType(dig(m, idx, "mappings").(map[string]any), extra); typ != "keyword" {
						t.Errorf("%s: %s mapped as %q, want keyword", idx, extra, typ)
					}
				}
			}
			// A replay of the same documents: dated indices overwrite, data
			// streams answer 409, which the connector counts as stored.
			res, err = bulk(ctx, docs)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if o := classify(r, ds); o != stored && o != already {
					t.Errorf("replay of %s: %d %s classified %v", r.Doc.ID, r.Status, r.ErrType, o)
				}
			}
			if n := es.DocCount("*"); n != 2 {
				t.Errorf("%d documents after the replay, want 2", n)
			}
		})
	}
}

// diffProps lists the dotted fields of got that want does not have.
func diffProps(prefix string, got, want map[string]any) []string {
	var out []string
	for k, v := range got {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		w, ok := want[k].(map[string]any)
		if !ok {
			out = append(out, p)
			continue
		}
		gp, _ := v.(map[string]any)["properties"].(map[string]any)
		wp, _ := w["properties"].(map[string]any)
		if gp != nil {
			if wp == nil {
				wp = map[string]any{}
			}
			out = append(out, diffProps(p, gp, wp)...)
		}
	}
	sort.Strings(out)
	return out
}
