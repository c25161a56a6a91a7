package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

type gridPos struct{ H, W, X, Y int }

type panel struct {
	ID         int     `json:"id"`
	Type       string  `json:"type"`
	Title      string  `json:"title"`
	GridPos    gridPos `json:"gridPos"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

var (
	grafanaBuiltin = regexp.MustCompile(`\$\{?__[a-z_]+\}?`)
	grafanaVar     = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?`)
	labelValues    = regexp.MustCompile(`^label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\)$`)
)

// promQL turns a panel's query into plain PromQL: Grafana's interval
// variables become a duration and template variables a match-all regex,
// which is what they are when "All" is selected.
func promQL(expr string) string {
	expr = grafanaBuiltin.ReplaceAllString(expr, "5m")
	return grafanaVar.ReplaceAllString(expr, ".*")
}

// checkDashboard checks the dashboard's structure against the provisioned
// data sources, and writes every query as a recording rule to out, so that
// `promtool check rules out` parses each with Prometheus' own parser.
func checkDashboard(path, dsPath, out string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("%s: not valid dashboard JSON: %w", path, err)
	}
	dsb, err := os.ReadFile(dsPath)
	if err != nil {
		return err
	}
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(dsb, &ds); err != nil {
		return fmt.Errorf("%s: %w", dsPath, err)
	}
	uids := map[string]bool{}
	for _, s := range ds.Datasources {
		if s.Type == "prometheus" {
			uids[s.UID] = true
		}
	}
	var bad problems
	if len(uids) == 0 {
		bad.addf("%s provisions no prometheus data source", dsPath)
	}
	if d.UID == "" || d.Title == "" {
		bad.addf("the dashboard needs a uid and a title (uid %q, title %q)", d.UID, d.Title)
	}
	var flat []panel
	for _, p := range d.Panels {
		flat = append(flat, p)
		flat = append(flat, p.Panels...)
	}
	ids := map[int]string{}
	cells := map[[2]int]string{}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	targets := 0
	for _, p := range flat {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			bad.addf("%s: id %d is zero or also %s", where, p.ID, prev)
		}
		ids[p.ID] = where
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			bad.addf("%s: gridPos %+v is outside the 24-column grid", where, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, taken := cells[[2]int{x, y}]; taken {
					bad.addf("%s overlaps %s at column %d, row %d", where, other, x, y)
					x, y = g.X+g.W, g.Y+g.H
					break
				}
				cells[[2]int{x, y}] = where
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || !uids[p.Datasource.UID] {
			bad.addf("%s: its data source is not the provisioned Prometheus (uids %v)", where, keys(uids))
		}
		if len(p.Targets) == 0 {
			bad.addf("%s: no query", where)
		}
		refs := map[string]bool{}
		for _, t := range p.Targets {
			targets++
			if t.RefID == "" || refs[t.RefID] {
				bad.addf("%s: refId %q is empty or repeated", where, t.RefID)
			}
			refs[t.RefID] = true
			if t.Datasource != nil && !uids[t.Datasource.UID] {
				bad.addf("%s/%s: data source uid %q is not provisioned", where, t.RefID, t.Datasource.UID)
			}
			if strings.TrimSpace(t.Expr) == "" {
				bad.addf("%s/%s: empty expression", where, t.RefID)
				continue
			}
			rules = append(rules, rule{fmt.Sprintf("dashboard:panel_%d_%s", p.ID, t.RefID), promQL(t.Expr)})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		if v.Datasource == nil || !uids[v.Datasource.UID] {
			bad.addf("variable %s: its data source is not the provisioned Prometheus", v.Name)
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			bad.addf("variable %s: %q is not label_values(<selector>, <label>)", v.Name, v.Definition)
			continue
		}
		rules = append(rules, rule{"dashboard:variable_" + v.Name, promQL(m[1])})
	}
	bad.exit("dashboard " + path)

	y, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, y, 0o644); err != nil {
		return err
	}
	fmt.Printf("dashboard %s: valid JSON; %d panels, %d queries on data source %v, %d template variables; queries written to %s for promtool\n",
		path, len(flat), targets, keys(uids), len(d.Templating.List), out)
	return nil
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
