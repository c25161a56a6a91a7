package compare

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"time"

	"github.com/rendezvous-ml/rendezvous/stages/drift"
)

// Plot ids in the HTML report, one svg each.
const (
	PlotAgreement = "plot-agreement"
	PlotConfusion = "plot-confusion"
	PlotLatency   = "plot-latency"
	PlotRates     = "plot-rates"
	PlotDrift     = "plot-drift"
)

// WriteHTML writes the report as one self-contained HTML page: inline CSS
// and SVG, no script, nothing fetched from the network.
func WriteHTML(w io.Writer, r Report, title string) error {
	v := htmlView{Title: title, R: r, Generated: time.Now().UTC().Format(time.RFC3339), Threshold: drift.Threshold}
	v.Agreement = pct(r.Agreement())
	v.Plots = append(v.Plots, template.HTML(agreementPlot(r)))
	if r.Kind == KindClassifier && len(r.Confusion.Labels) > 0 {
		v.Plots = append(v.Plots, template.HTML(heatMap(PlotConfusion, fmt.Sprintf("Confusion: %s (rows) vs %s (columns)", r.Champion, r.Challenger),
			r.Champion, r.Challenger, r.Confusion.Labels, r.Confusion.Counts)))
	}
	if p := latencyPlot(r); p != "" {
		v.Plots = append(v.Plots, template.HTML(p))
	}
	v.Plots = append(v.Plots, template.HTML(ratesPlot(r)))
	if len(r.Drift.Features) > 0 {
		v.Plots = append(v.Plots, template.HTML(driftPlot(r)))
	}
	for _, m := range r.Models {
		acc := "-"
		if m.Labelled > 0 {
			acc = fmt.Sprintf("%s of %d", pct(ratio(m.Correct, m.Labelled)), m.Labelled)
		}
		v.Rows = append(v.Rows, modelRow{ModelStats: m, Error: pct(m.ErrorRate), Late: pct(m.LateRate), PastDeadline: pct(m.PastDeadlineRate), Missing: pct(m.MissingRate),
			Timeout: pct(m.TimeoutRate), P50: ms(m.Latency.N, m.Latency.P50), P90: ms(m.Latency.N, m.Latency.P90),
			P99: ms(m.Latency.N, m.Latency.P99), Max: ms(m.Latency.N, m.Latency.Max), Compute: ms(m.Compute.N, m.Compute.P50), Accuracy: acc})
	}
	return page.Execute(w, v)
}

type htmlView struct {
	Title, Generated, Agreement string
	R                           Report
	Plots                       []template.HTML
	Rows                        []modelRow
	Threshold                   float64
}

type modelRow struct {
	ModelStats
	Error, Late, PastDeadline, Missing, Timeout, P50, P90, P99, Max, Compute, Accuracy string
}

func agreementPlot(r Report) string {
	// The time axis in a unit that suits the window's length.
	span := r.To.Sub(r.From)
	unit, name := time.Second, "seconds"
	switch {
	case span > 48*time.Hour:
		unit, name = 24*time.Hour, "days"
	case span > 2*time.Hour:
		unit, name = time.Hour, "hours"
	case span > 2*time.Minute:
		unit, name = time.Minute, "minutes"
	}
	s := series{name: "agreement"}
	champ := series{name: r.Champion + " answered"}
	for _, b := range r.Timeline {
		x := float64(b.Start.Sub(r.From)) / float64(unit)
		if b.Both > 0 {
			s.points = append(s.points, point{x, float64(b.Agree) / float64(b.Both)})
		}
		if b.Decisions > 0 {
			champ.points = append(champ.points, point{x, float64(b.ChampionOK) / float64(b.Decisions)})
		}
	}
	return lineChart(PlotAgreement, fmt.Sprintf("Agreement of %s and %s over time", r.Champion, r.Challenger),
		axis{label: name + " since " + stamp(r.From), min: 0, max: float64(span) / float64(unit), format: func(v float64) string { return fmt.Sprintf("%.3g", v) }},
		axis{label: "share of requests", min: 0, max: 1, format: func(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }},
		[]series{s, champ})
}

// latencyPlot draws each model's latency distribution as a CDF.
func latencyPlot(r Report) string {
	var ss []series
	hi := 0.0
	for _, m := range r.Models {
		if len(m.LatencyMS) == 0 {
			continue
		}
		s := series{name: m.Model, step: true}
		n := len(m.LatencyMS)
		// At most 400 points a model: the curve's shape needs no more.
		stride := max(1, n/400)
		for i := 0; i < n; i += stride {
			s.points = append(s.points, point{m.LatencyMS[i], float64(i+1) / float64(n)})
		}
		s.points = append(s.points, point{m.LatencyMS[n-1], 1})
		// Clip the axis at the 99th percentile of the slowest model so a
		// single outlier does not flatten everything.
		hi = max(hi, m.Latency.P99)
		ss = append(ss, s)
	}
	if len(ss) == 0 {
		return ""
	}
	hi = math.Max(hi*1.1, 1)
	for i := range ss {
		for j := range ss[i].points {
			ss[i].points[j].x = math.Min(ss[i].points[j].x, hi)
		}
	}
	return lineChart(PlotLatency, "Score latency per model (arrival after the request, CDF)",
		axis{label: "milliseconds (clipped at 1.1 × the largest p99)", min: 0, max: hi, format: func(v float64) string { return fmt.Sprintf("%.4g", v) }},
		axis{label: "share of scores", min: 0, max: 1, format: func(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }},
		ss)
}

func ratesPlot(r Report) string {
	var groups []barGroup
	top := 0.0
	for _, m := range r.Models {
		vals := []float64{m.ErrorRate, m.LateRate, m.PastDeadlineRate, m.MissingRate}
		for _, v := range vals {
			if !math.IsNaN(v) {
				top = max(top, v)
			}
		}
		groups = append(groups, barGroup{label: m.Model, values: vals})
	}
	// A scale of at least 5% keeps a few errors visible without
	// pretending they are many.
	top = math.Max(0.05, math.Min(1, top*1.2))
	return barChart(PlotRates, "Error and timeout rates per model",
		axis{label: "share of expected requests", min: 0, max: top, format: func(v float64) string { return fmt.Sprintf("%.3g%%", 100*v) }},
		[]string{"error", "late", "past deadline", "missing"}, groups, 0)
}

func driftPlot(r Report) string {
	var groups []barGroup
	top := drift.Threshold * 1.6
	for _, f := range r.Drift.Features {
		groups = append(groups, barGroup{label: f.Feature, values: []float64{f.PSI}})
		top = max(top, math.Min(f.PSI*1.1, 10))
	}
	return barChart(PlotDrift, fmt.Sprintf("Feature drift (PSI), from %s on against before", stamp(r.Drift.Split)),
		axis{label: "population stability index", min: 0, max: top, format: func(v float64) string { return fmt.Sprintf("%.3g", v) }},
		[]string{"PSI"}, groups, drift.Threshold)
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"stamp": stamp,
	"psi":   func(v float64) string { return fmt.Sprintf("%.4f", v) },
	"join": func(s []string) string {
		out := ""
		for i, x := range s {
			if i > 0 {
				out += ", "
			}
			out += x
		}
		return out
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.summary td { text-align: left; }
.drifted { color: #d62728; font-weight: bold; }
.plots { display: flex; flex-wrap: wrap; gap: 18px; }
svg.plot { background: #fff; border: 1px solid #e4e4e4; }
svg .area { fill: #fafafa; stroke: #ccc; }
svg .grid { stroke: #e6e6e6; } svg .tick { stroke: #bbb; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
svg .t { font-size: 13px; font-weight: bold; fill: #222; }
svg .yl { text-anchor: end; } svg .xl, svg .al, svg .cv { text-anchor: middle; }
svg .cv { font-size: 13px; }
.note { color: #666; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<table class="summary">
<tr><td>champion</td><td>{{.R.Champion}}</td></tr>
<tr><td>challenger</td><td>{{.R.Challenger}}</td></tr>
<tr><td>kind</td><td>{{.R.Kind}}</td></tr>
<tr><td>decisions</td><td>{{.R.Decisions}}, received {{stamp .R.From}} .. {{stamp .R.To}}</td></tr>
{{if .R.ReplayScores}}<tr><td>replayed scores</td><td>{{.R.ReplayScores}} read, {{.R.ReplayJoined}} for these decisions</td></tr>{{end}}
<tr><td>agreement</td><td><b id="agreement">{{.Agreement}}</b> ({{.R.Agree}} of {{.R.Both}} requests both answered)</td></tr>
{{if .R.Labelled}}<tr><td>labelled</td><td>{{.R.Labelled}} decisions</td></tr>{{end}}
</table>

<h2>Plots</h2>
<div class="plots">
{{range .Plots}}{{.}}
{{end}}</div>

<h2>Models</h2>
<p class="note">Latency is when a score reached the rendezvous stage after the request was received, in milliseconds. Rates are over the requests the model was expected in. Late: the score came after the answer was decided, which is normal for a model that stands by. Timeout: the score came after the request's deadline, or never (missing).</p>
<table>
<tr><th>model</th><th>role</th><th>version</th><th>scored</th><th>replayed</th><th>won</th><th>error</th><th>late</th><th>past deadline</th><th>missing</th><th>timeout</th><th>p50</th><th>p90</th><th>p99</th><th>max</th><th>compute p50</th><th>accuracy</th></tr>
{{range .Rows}}<tr><td>{{.Model}}</td><td>{{join .Roles}}</td><td>{{join .Versions}}</td><td>{{.Scored}}</td><td>{{.Replayed}}</td><td>{{.Won}}</td><td>{{.Error}}</td><td>{{.Late}}</td><td>{{.PastDeadline}}</td><td>{{.Missing}}</td><td>{{.Timeout}}</td><td>{{.P50}}</td><td>{{.P90}}</td><td>{{.P99}}</td><td>{{.Max}}</td><td>{{.Compute}}</td><td>{{.Accuracy}}</td></tr>
{{end}}</table>

{{if .R.Confusion.Labels}}<h2>Confusion</h2>
<table>
<tr><th>{{.R.Champion}} ↓ / {{.R.Challenger}} →</th>{{range .R.Confusion.Labels}}<th>{{.}}</th>{{end}}</tr>
{{range $i, $row := .R.Confusion.Counts}}<tr><td>{{index $.R.Confusion.Labels $i}}</td>{{range $row}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>{{end}}
{{with .R.Regression}}<h2>Differences</h2>
<p>{{$.R.Challenger}} minus {{$.R.Champion}} over {{.Diff.N}} requests: mean {{.Diff.Mean}}, MAE {{.Diff.MAE}}, RMSE {{.Diff.RMSE}}, max |d| {{.Diff.MaxAbs}}.</p>{{end}}

<h2>Drift</h2>
{{if .R.Drift.Note}}<p class="note">{{.R.Drift.Note}}</p>{{else}}
<p class="note">PSI of each feature: the {{.R.Drift.Current}} decisions received from {{stamp .R.Drift.Split}} on, against the {{.R.Drift.Reference}} before, in bins cut at the earlier window's quantiles. Above {{.Threshold}} a feature has drifted.</p>
<table>
<tr><th>feature</th><th>PSI</th><th></th></tr>
{{range .R.Drift.Features}}<tr><td>{{.Feature}}</td><td>{{psi .PSI}}</td><td>{{if .Drifted}}<span class="drifted">drifted</span>{{end}}</td></tr>
{{end}}</table>{{end}}
<p class="note">Generated {{.Generated}} by rdv compare.</p>
</body>
</html>
`))
