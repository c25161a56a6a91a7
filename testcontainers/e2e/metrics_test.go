package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rendezvous-ml/rendezvous/pipeline/promtext"
	"github.com/rendezvous-ml/rendezvous/testcontainers/stack"
)

// The files whose PromQL must name only metrics the stages export.
var (
	alertRuleFiles = []string{"ops/prometheus/rules/rendezvous.yml"}
	dashboardFiles = []string{"ops/grafana/dashboards/rendezvous.json"}
)

// metricsMonitored are the metrics the alert rules and the dashboard are
// built on; if either file stops using one, monitoring lost a signal.
var metricsMonitored = []string{
	"rdv_frontend_calls_total",
	"rdv_frontend_call_seconds_bucket",
	"rdv_rendezvous_decisions_total",
	"rdv_rendezvous_open_mailboxes",
	"rdv_rendezvous_model_wins_total",
	"rdv_rendezvous_late_scores_total",
	"rdv_rendezvous_model_errors_total",
	"rdv_rendezvous_circuit_state",
	"rdv_decoy_drift_psi",
	"rdv_decoy_drift_prediction_psi",
	"rdv_model_compute_seconds_bucket",
	"rdv_log_connector_paused",
	"rdv_log_connector_archived_total",
	"rdv_es_connector_paused",
	"rdv_enricher_consumer_lag_records",
	"rdv_model_consumer_lag_records",
	"rdv_rendezvous_consumer_lag_records",
	"rdv_decoy_consumer_lag_records",
	"rdv_es_connector_consumer_lag_records",
}

// prometheusSeries are made by Prometheus itself, not by a stage.
var prometheusSeries = map[string]bool{"up": true, "scrape_duration_seconds": true, "ALERTS": true}

// TestMetricsExist runs every stage (the Elasticsearch connector against the
// Elasticsearch test server), sends predict calls, scrapes each stage's
// /metrics and checks that every metric named by the alert rules and the
// Grafana dashboard is exported by some stage. A vector metric appears only
// once it has a labelled series, so the scrape is retried while the
// pipeline works through the calls.
func TestMetricsExist(t *testing.T) {
	root, err := stack.Root()
	if err != nil {
		t.Fatal(err)
	}
	used, recorded := metricsUsedBy(t, root)
	for _, m := range metricsMonitored {
		if len(used[m]) == 0 {
			t.Errorf("%s is no longer used by the alert rules or the dashboard", m)
		}
	}
	t.Logf("%d metric names used by %s and %s (plus %d recording rules)", len(used),
		strings.Join(alertRuleFiles, ", "), strings.Join(dashboardFiles, ", "), len(recorded))

	// The drift gauges have a series once the reference is complete and
	// the live window full: small ones, so that the calls below fill both.
	t.Setenv("RDV_DRIFT_REFERENCE", "20")
	t.Setenv("RDV_DRIFT_WINDOW", "20")
	t.Setenv("RDV_DRIFT_INTERVAL", "1s")
	_, esURL := startESFake(t)
	s := stack.Start(t, stack.Options{Extra: []string{"-es-url", esURL}})
	stages := []string{"frontend", "enricher", "model-dt", "model-canary", "model-challenger", "rendezvous", "decoy", "log-connector", "es-connector"}
	rows := irisRows(t)
	for i := 0; i < 80; i++ {
		a, err := s.Predict("/predict", rows[i%len(rows)].body)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != http.StatusOK {
			t.Fatalf("predict: status %d: %s", a.Status, a.Error)
		}
	}

	// Lag is sampled every 5 s and the archive finishes a file every 5 s.
	var missing []string
	var families map[string]string
	deadline := time.Now().Add(30 * time.Second)
	for {
		families = map[string]string{}
		for _, st := range stages {
			addr, err := s.Addr(st)
			if err != nil {
				t.Fatal(err)
			}
			fs, err := promtext.Types(context.Background(), http.DefaultClient, addr)
			if err != nil {
				t.Fatalf("scrape %s: %v", st, err)
			}
			for n, typ := range fs {
				families[n] = typ
			}
		}
		missing = missing[:0]
		for name := range used {
			if !exported(name, families) {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	sort.Strings(missing)
	rdv := 0
	for n := range families {
		if strings.HasPrefix(n, "rdv_") {
			rdv++
		}
	}
	t.Logf("scraped %d stages: %d metric families, %d of them rdv_*", len(stages), len(families), rdv)
	for _, m := range missing {
		t.Errorf("metric %s is used by %s but no stage exports it (absent from the code, or a labelled metric with no series yet: a vector shows only once a series exists, so create them at start)", m, strings.Join(used[m], ", "))
	}
	if len(missing) == 0 {
		t.Logf("all %d metric names used by the alert rules and the dashboard are exported", len(used))
	}
}

// exported says whether a stage exports name: a family of that name, or a
// histogram's or summary's _bucket/_sum/_count series.
func exported(name string, families map[string]string) bool {
	if prometheusSeries[name] {
		return true
	}
	if _, ok := families[name]; ok {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if typ := families[base]; typ == "histogram" || (typ == "summary" && suf != "_bucket") {
				return true
			}
		}
	}
	return false
}

// metricsUsedBy returns each metric name the rule files and dashboards
// query, with where, and the names the rule files record themselves.
func metricsUsedBy(t *testing.T, root string) (used map[string][]string, recorded map[string]bool) {
	t.Helper()
	used, recorded = map[string][]string{}, map[string]bool{}
	type expr struct{ where, q string }
	var exprs []expr
	for _, f := range alertRuleFiles {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		var rf struct {
			Groups []struct {
				Rules []struct {
					Record string `yaml:"record"`
					Alert  string `yaml:"alert"`
					Expr   string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					recorded[r.Record] = true
				}
				exprs = append(exprs, expr{f + " " + r.Alert + r.Record, r.Expr})
			}
		}
	}
	for _, f := range dashboardFiles {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels     []dashPanel `json:"panels"`
			Templating struct {
				List []struct {
					Name       string `json:"name"`
					Definition string `json:"definition"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var walk func([]dashPanel)
		walk = func(ps []dashPanel) {
			for _, p := range ps {
				for _, tg := range p.Targets {
					exprs = append(exprs, expr{fmt.Sprintf("%s panel %q", f, p.Title), tg.Expr})
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
		for _, v := range d.Templating.List {
			// label_values(<selector>, <label>): the label is not a metric.
			q := v.Definition
			if m := labelValuesQuery.FindStringSubmatch(q); m != nil {
				q = m[1]
			}
			exprs = append(exprs, expr{f + " variable " + v.Name, q})
		}
	}
	if len(exprs) == 0 {
		t.Fatal("no expressions found in the rule files and dashboards")
	}
	for _, e := range exprs {
		for _, n := range promQLMetricNames(e.q) {
			if recorded[n] {
				continue
			}
			if !strings.HasPrefix(n, "rdv_") && !prometheusSeries[n] {
				t.Errorf("%s: %q is neither a Rendezvous metric (rdv_*) nor a recording rule", e.where, n)
			}
			if !contains(used[n], e.where) {
				used[n] = append(used[n], e.where)
			}
		}
	}
	return used, recorded
}

type dashPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

var (
	labelValuesQuery = regexp.MustCompile(`^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)
	promStrings      = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promRanges       = regexp.MustCompile(`\[[^\]]*\]`)
	promMatchers     = regexp.MustCompile(`\{[^}]*\}`)
	promGrouping     = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promKeywords     = map[string]bool{
		"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true, "offset": true, "bool": true, "inf": true, "nan": true, "atan2": true,
	}
)

// promQLMetricNames lists the metric names a PromQL expression (or a
// Grafana query using $variables) selects: what remains once strings,
// ranges, label matchers, grouping labels, functions, keywords and
// numbers are taken out.
func promQLMetricNames(q string) []string {
	q = promStrings.ReplaceAllString(q, " ")
	q = promRanges.ReplaceAllString(q, " ")
	q = promMatchers.ReplaceAllString(q, " ")
	q = promGrouping.ReplaceAllString(q, " ")
	var out []string
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '$': // a Grafana variable
			i++
			for i < len(q) && (isPart(q[i]) || q[i] == '{' || q[i] == '}') {
				i++
			}
		case c >= '0' && c <= '9' || c == '.': // a number or a duration
			for i < len(q) && (isPart(q[i]) || q[i] == '.') {
				i++
			}
		case isStart(c):
			j := i
			for j < len(q) && isPart(q[j]) {
				j++
			}
			name := q[i:j]
			k := j
			for k < len(q) && (q[k] == ' ' || q[k] == '\n' || q[k] == '\t') {
				k++
			}
			if (k >= len(q) || q[k] != '(') && !promKeywords[strings.ToLower(name)] && !contains(out, name) {
				out = append(out, name)
			}
			i = j
		default:
			i++
		}
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestPromQLMetricNames(t *testing.T) {
	for _, c := range []struct {
		q    string
		want []string
	}{
		{`sum by (reason) (rate(rdv_frontend_calls_total{objective=~"$objective",code="200"}[$__rate_interval]))`, []string{"rdv_frontend_calls_total"}},
		{`histogram_quantile(0.99, sum by (le, model) (rate(rdv_model_compute_seconds_bucket[5m])))`, []string{"rdv_model_compute_seconds_bucket"}},
		{"a / on (objective) group_left b offset 5m > 0.25 unless c", []string{"a", "b", "c"}},
		{`label_replace(sum by (topic) (x), "stage", "rdv_not_a_metric", "", "") or y{le="0.5"}`, []string{"x", "y"}},
		{`max by (instance) (rdv_log_connector_paused) == 1 and on() vector(1)`, []string{"rdv_log_connector_paused"}},
		{`rdv:answers_by_reason:ratio_rate5m{reason="default"} > 5e-2`, []string{"rdv:answers_by_reason:ratio_rate5m"}},
	} {
		if got := promQLMetricNames(c.q); strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("promQLMetricNames(%q) = %v, want %v", c.q, got, c.want)
		}
	}
}
