package elastic

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/connectors/elastic/elastictest"
	"github.com/rendezvous-ml/rendezvous/connectors/elastic/esclient"
	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/stage"
)

var policyFiles = []string{"../../ops/elastic/ilm-policy.json", "../../ops/elastic/ilm-policy-dated.json"}

func TestPolicyFiles(t *testing.T) {
	for _, f := range policyFiles {
		b, err := readPolicy(f)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Policy struct {
				Phases map[string]struct {
					MinAge  string                    `json:"min_age"`
					Actions map[string]map[string]any `json:"actions"`
				} `json:"phases"`
			} `json:"policy"`
		}
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		del, ok := p.Policy.Phases["delete"]
		if !ok || del.MinAge != "30d" || del.Actions["delete"] == nil {
			t.Errorf("%s: delete phase %+v, want delete after 30d", f, del)
		}
		ro, rollover := p.Policy.Phases["hot"].Actions["rollover"]
		if strings.HasSuffix(f, "dated.json") {
			if rollover {
				t.Errorf("%s: dated indices cannot roll over (no rollover alias)", f)
			}
			continue
		}
		if !rollover || ro["max_age"] != "1d" || ro["max_primary_shard_size"] != "5gb" {
			t.Errorf("%s: hot rollover %v, want 1d or 5gb", f, ro)
		}
	}
	dir := t.TempDir()
	for name, body := range map[string]string{"not-json": "{", "no-policy": `{"phases":{}}`} {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(body), 0o644)
		if _, err := readPolicy(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// ilmConnector is a connector with just what setup needs.
func ilmConnector(t *testing.T, es esclient.Config, cfg Config) *connector {
	t.Helper()
	env, err := stage.NewEnv("es-connector", config.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := esclient.New(es)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := newRawClient(es)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Common = env.Cfg
	return &connector{cfg: cfg, env: env, es: cl, raw: raw, fields: irisFields(t)}
}

// TestILMPolicyAttached installs the example policy through the
// connector's setup (-ilm-policy with -ilm-policy-file), and checks with
// the test server's ILM endpoints that both templates use it and that an
// index they create is managed by it.
func TestILMPolicyAttached(t *testing.T) {
	for _, ds := range []bool{false, true} {
		es, ecfg := startES(t)
		cfg := Defaults()
		cfg.ILMPolicy, cfg.ILMPolicyFile, cfg.DataStreams = "rdv-logs", policyFiles[0], ds
		if !ds {
			cfg.ILMPolicyFile = policyFiles[1]
		}
		c := ilmConnector(t, ecfg, cfg)
		ctx := context.Background()
		if err := c.setup(ctx); err != nil {
			t.Fatal(err)
		}
		got := getJSON(t, ecfg.URLs[0]+"/_ilm/policy/rdv-logs")
		want, _ := readPolicy(cfg.ILMPolicyFile)
		var wantBody map[string]any
		_ = json.Unmarshal(want, &wantBody)
		if !reflect.DeepEqual(dig(got, "rdv-logs", "policy"), wantBody["policy"]) {
			t.Errorf("installed policy %v, want %v", dig(got, "rdv-logs", "policy"), wantBody["policy"])
		}
		tpls := strList(dig(got, "rdv-logs", "in_use_by", "composable_templates"))
		if !reflect.DeepEqual(tpls, []string{"decoy-log", "score-log"}) {
			t.Errorf("policy used by templates %v, want decoy-log and score-log", tpls)
		}
		// An index the template creates carries the policy.
		d, _ := elastictest.Decision("iris")
		body, _ := DecisionDoc(d)
		r := &kgo.Record{Topic: "rdv.iris.decisions", Offset: 1, Timestamp: elastictest.When}
		bulk := c.es.Bulk
		if ds {
			bulk = c.raw.BulkCreate
		}
		res, err := bulk(ctx, []esclient.Doc{{Index: IndexName("score-log", "iris", ds, r), ID: DocID(r), Body: body}})
		if err != nil || !res[0].OK() {
			t.Fatalf("index: %v %+v", err, res)
		}
		got = getJSON(t, ecfg.URLs[0]+"/_ilm/policy/rdv-logs")
		if idx := strList(dig(got, "rdv-logs", "in_use_by", "indices")); !reflect.DeepEqual(idx, es.Indices()) {
			t.Errorf("policy used by indices %v, want %v", idx, es.Indices())
		}
		settings := getJSON(t, ecfg.URLs[0]+"/"+es.Indices()[0])
		if n := dig(settings, es.Indices()[0], "settings", "index", "lifecycle", "name"); n != "rdv-logs" {
			t.Errorf("index.lifecycle.name = %v", n)
		}
	}

	// Without a file, a missing policy is reported, not fatal; an existing
	// one is used as it is.
	es, ecfg := startES(t)
	cfg := Defaults()
	cfg.ILMPolicy = "absent"
	c := ilmConnector(t, ecfg, cfg)
	if err := c.setup(context.Background()); err != nil {
		t.Fatalf("setup with a missing policy: %v", err)
	}
	if ok, err := c.raw.ILMPolicyExists(context.Background(), "absent"); ok || err != nil {
		t.Errorf("ILMPolicyExists(absent) = %v, %v", ok, err)
	}
	if len(es.Indices()) != 0 {
		t.Errorf("setup created indices %v", es.Indices())
	}
}

func TestConfigValidate(t *testing.T) {
	base := Defaults()
	base.ES.URLs = []string{"http://127.0.0.1:9200"}
	base.ES.Defaults()
	if err := base.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"upper-case prefix":   func(c *Config) { c.ScoreIndex = "Score" },
		"wildcard prefix":     func(c *Config) { c.DecoyIndex = "decoy*" },
		"underscore start":    func(c *Config) { c.ScoreIndex = "_x" },
		"same prefixes":       func(c *Config) { c.DecoyIndex = c.ScoreIndex },
		"overlapping":         func(c *Config) { c.ScoreIndex, c.DecoyIndex = "logs", "logs-decoy" },
		"file without policy": func(c *Config) { c.ILMPolicyFile = policyFiles[0] },
		"missing file":        func(c *Config) { c.ILMPolicy, c.ILMPolicyFile = "p", "/nonexistent.json" },
		"bad policy name":     func(c *Config) { c.ILMPolicy = "a,b" },
		"zero batch":          func(c *Config) { c.MaxBatch = 0 },
		"no url":              func(c *Config) { c.ES.URLs = nil },
	} {
		c := base
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func strList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
