// Package kibana holds the Kibana saved objects of the rendezvous
// dashboards (rendezvous.ndjson) and the tests that keep them true to the
// documents the Elasticsearch connector writes.
package kibana

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic"
	"github.com/rendezvous-ml/rendezvous/connectors/elastic/elastictest"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

const file = "rendezvous.ndjson"

var update = flag.Bool("update", false, "rewrite "+file+" from gen_test.go")

func TestNDJSONIsGenerated(t *testing.T) {
	objs, err := generate("iris")
	if err != nil {
		t.Fatal(err)
	}
	want := ndjson(objs)
	if *update {
		if err := os.WriteFile(file, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what gen_test.go generates; run: go test ./ops/kibana -run TestNDJSONIsGenerated -update", file)
	}
}

// docFields lists the dotted field paths of a document as the connector
// writes it, objects inside arrays included.
func docFields(t *testing.T, body []byte) map[string]bool {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, e)
			}
		case []any:
			objects := false
			for _, e := range x {
				if _, ok := e.(map[string]any); ok {
					objects = true
					walk(prefix, e)
				}
			}
			if !objects {
				out[prefix] = true
			}
		default:
			out[prefix] = true
		}
	}
	walk("", doc)
	return out
}

// view is what a data view stands for: the fields of its documents and
// their mapping.
type view struct {
	fields   map[string]bool
	mappings map[string]any
}

// mappingOf finds a dotted field's mapping type and whether it lies under
// a nested field.
func (v view) mappingOf(path string) (typ string, nested bool) {
	props, _ := v.mappings["properties"].(map[string]any)
	for _, p := range strings.Split(path, ".") {
		f, ok := props[p].(map[string]any)
		if !ok {
			return "", nested
		}
		typ, _ = f["type"].(string)
		if typ == "nested" {
			nested = true
		}
		props, _ = f["properties"].(map[string]any)
	}
	return typ, nested
}

func views(t *testing.T) map[string]view {
	t.Helper()
	d, err := elastictest.Decision("iris")
	if err != nil {
		t.Fatal(err)
	}
	in, err := elastictest.Input("iris")
	if err != nil {
		t.Fatal(err)
	}
	db, err := elastic.DecisionDoc(d)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := elastic.DecoyDoc(in)
	if err != nil {
		t.Fatal(err)
	}
	set, err := schemas.For("iris")
	if err != nil {
		t.Fatal(err)
	}
	feats, err := set.Features()
	if err != nil {
		t.Fatal(err)
	}
	mappings := func(tpl []byte) map[string]any {
		var x struct {
			Template struct {
				Mappings map[string]any `json:"mappings"`
			} `json:"template"`
		}
		if err := json.Unmarshal(tpl, &x); err != nil {
			t.Fatal(err)
		}
		return x.Template.Mappings
	}
	return map[string]view{
		"score-log*": {docFields(t, db), mappings(elastic.ScoreTemplate("score-log", feats, elastic.TemplateOptions{}))},
		"decoy-log*": {docFields(t, ib), mappings(elastic.DecoyTemplate("decoy-log", feats, elastic.TemplateOptions{}))},
	}
}

type savedObject struct {
	Type       string         `json:"type"`
	ID         string         `json:"id"`
	Attributes map[string]any `json:"attributes"`
	References []savedRef     `json:"references"`
}

type savedRef struct {
	Type, ID, Name string
}

func readObjects(t *testing.T) []savedObject {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []savedObject
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if strings.TrimSpace(sc.Text()) == "" {
			t.Errorf("line %d is empty", line)
			continue
		}
		var o savedObject
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Errorf("line %d does not parse: %v", line, err)
			continue
		}
		if o.Type == "" || o.ID == "" || o.Attributes == nil {
			t.Errorf("line %d: type %q, id %q, attributes %v: all three are required", line, o.Type, o.ID, o.Attributes != nil)
		}
		out = append(out, o)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func attrJSON(t *testing.T, o savedObject, keys ...string) map[string]any {
	t.Helper()
	var v any = o.Attributes
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	s, ok := v.(string)
	if !ok {
		t.Errorf("%s %s: %s is not a JSON string", o.Type, o.ID, strings.Join(keys, "."))
		return nil
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Errorf("%s %s: %s does not parse: %v", o.Type, o.ID, strings.Join(keys, "."), err)
	}
	return out
}

var numeric = map[string]bool{"float": true, "double": true, "half_float": true, "scaled_float": true,
	"long": true, "integer": true, "short": true, "byte": true, "unsigned_long": true}

// aggNeeds is the kind of field each aggregation type works on.
var aggNeeds = map[string]string{
	"date_histogram": "date", "terms": "keyword",
	"avg": "number", "sum": "number", "min": "number", "max": "number", "median": "number",
	"percentiles": "number", "histogram": "number",
}

// TestSavedObjects checks rendezvous.ndjson: every line is a saved object
// with a type, an id and attributes; every reference points to an object
// of the file; every field a panel uses is one the connector's documents
// have (taken from DecisionDoc and DecoyDoc of a sample), mapped with a
// type its aggregation works on, and not inside the nested scores (Kibana
// visualizations cannot aggregate nested fields).
func TestSavedObjects(t *testing.T) {
	objs := readObjects(t)
	vs := views(t)
	byKey := map[string]savedObject{}
	for _, o := range objs {
		k := o.Type + "/" + o.ID
		if _, dup := byKey[k]; dup {
			t.Errorf("%s appears twice", k)
		}
		byKey[k] = o
	}
	for _, o := range objs {
		for _, r := range o.References {
			if _, ok := byKey[r.Type+"/"+r.ID]; !ok {
				t.Errorf("%s %s references %s %s (%s), which is not in the file", o.Type, o.ID, r.Type, r.ID, r.Name)
			}
		}
	}
	viewOf := map[string]view{} // data view id -> view
	used := map[string]bool{}   // fields used by panels
	counts := map[string]int{}
	for _, o := range objs {
		counts[o.Type]++
		switch o.Type {
		case "index-pattern":
			title, _ := o.Attributes["title"].(string)
			v, ok := vs[title]
			if !ok {
				t.Errorf("data view %s has title %q, want score-log* or decoy-log*", o.ID, title)
				continue
			}
			viewOf[o.ID] = v
			if tf, _ := o.Attributes["timeFieldName"].(string); tf != "@timestamp" || !v.fields[tf] {
				t.Errorf("data view %s: time field %q, want @timestamp (a field of the documents)", o.ID, tf)
			}
		}
	}
	onDashboard := map[string]bool{}
	for _, o := range objs {
		switch o.Type {
		case "visualization":
			state := attrJSON(t, o, "visState")
			search := attrJSON(t, o, "kibanaSavedObjectMeta", "searchSourceJSON")
			if state == nil || search == nil {
				continue
			}
			refName, _ := search["indexRefName"].(string)
			var v view
			found := false
			for _, r := range o.References {
				if r.Name == refName && r.Type == "index-pattern" {
					v, found = viewOf[r.ID]
				}
			}
			if !found {
				t.Errorf("visualization %s: no data view for indexRefName %q", o.ID, refName)
				continue
			}
			if q, _ := search["query"].(map[string]any); q != nil && q["query"] != "" {
				t.Errorf("visualization %s has a query %v: panels filter with aggregations only, so their fields are checked", o.ID, q)
			}
			aggs, _ := state["aggs"].([]any)
			ids := map[string]string{}
			for _, a := range aggs {
				am := a.(map[string]any)
				id, _ := am["id"].(string)
				ids[id], _ = am["schema"].(string)
			}
			for _, a := range aggs {
				am := a.(map[string]any)
				typ, _ := am["type"].(string)
				params, _ := am["params"].(map[string]any)
				field, _ := params["field"].(string)
				if need, ok := aggNeeds[typ]; ok {
					if field == "" {
						t.Errorf("visualization %s: %s aggregation without a field", o.ID, typ)
						continue
					}
					used[field] = true
					if !v.fields[field] {
						t.Errorf("visualization %s: field %q is not in the connector's documents", o.ID, field)
						continue
					}
					mt, nested := v.mappingOf(field)
					if nested {
						t.Errorf("visualization %s: field %q is inside a nested field, which Kibana visualizations cannot aggregate", o.ID, field)
					}
					if ok := (need == "number" && numeric[mt]) || mt == need; !ok {
						t.Errorf("visualization %s: %s on %q, which is mapped %q", o.ID, typ, field, mt)
					}
				} else if typ != "count" {
					t.Errorf("visualization %s: aggregation type %q is not checked by this test", o.ID, typ)
				}
				if ob, ok := params["orderBy"].(string); ok && ob != "_key" && ids[ob] != "metric" {
					t.Errorf("visualization %s: terms ordered by %q, which is not a metric of the panel", o.ID, ob)
				}
			}
			if p, _ := state["params"].(map[string]any); p != nil {
				sp, _ := p["seriesParams"].([]any)
				for _, s := range sp {
					id, _ := s.(map[string]any)["data"].(map[string]any)["id"].(string)
					if ids[id] != "metric" {
						t.Errorf("visualization %s: series of %q, which is not a metric of the panel", o.ID, id)
					}
				}
			}
		case "dashboard":
			var panels []map[string]any
			s, _ := o.Attributes["panelsJSON"].(string)
			if err := json.Unmarshal([]byte(s), &panels); err != nil {
				t.Errorf("dashboard %s: panelsJSON: %v", o.ID, err)
				continue
			}
			refs := map[string]savedRef{}
			for _, r := range o.References {
				refs[r.Name] = r
			}
			for _, p := range panels {
				name, _ := p["panelRefName"].(string)
				r, ok := refs[name]
				if !ok {
					t.Errorf("dashboard %s: panel %v has no reference %q", o.ID, p["panelIndex"], name)
					continue
				}
				onDashboard[r.ID] = true
				g, _ := p["gridData"].(map[string]any)
				x, _ := g["x"].(float64)
				w, _ := g["w"].(float64)
				if w <= 0 || x+w > 48 {
					t.Errorf("dashboard %s: panel %s is outside the 48 columns: x %v w %v", o.ID, r.ID, x, w)
				}
			}
			if tr, _ := o.Attributes["timeRestore"].(bool); !tr {
				t.Errorf("dashboard %s does not restore its time range", o.ID)
			}
		}
	}
	for _, o := range objs {
		if o.Type == "visualization" && !onDashboard[o.ID] {
			t.Errorf("visualization %s is not on the dashboard", o.ID)
		}
	}
	if counts["index-pattern"] != 2 || counts["dashboard"] != 1 || counts["visualization"] == 0 {
		t.Errorf("objects %v: want 2 data views, 1 dashboard and its visualizations", counts)
	}
	// The panels the issue asks for.
	for _, f := range []string{"reason", "model", "latency_ms", "late_count", "failed_count", "late_models", "failed_models", "features.sepalLength", "features.petalWidth"} {
		if !used[f] {
			t.Errorf("no panel uses %s", f)
		}
	}
	var list []string
	for f := range used {
		list = append(list, f)
	}
	sort.Strings(list)
	t.Logf("%d objects %v; fields used by panels: %s", len(objs), counts, strings.Join(list, " "))
}
