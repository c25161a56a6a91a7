package loadtest

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// SVG draws latency against achieved throughput: p50, p99 and p99.9 of
// each mode, on a log latency axis, with the targets as reference lines.
func (r *Report) SVG() string {
	const (
		width, height            = 900, 540
		left, right, top, bottom = 70, 200, 50, 60
	)
	pw, ph := float64(width-left-right), float64(height-top-bottom)

	type series struct {
		mode, label, color string
		dash               bool
		pts                [][2]float64 // achieved rps, ms
		pass               []bool
	}
	metrics := []struct {
		label, color string
		get          func(Step) float64
	}{
		{"p50", "#1f77b4", func(s Step) float64 { return s.P50Ms }},
		{"p99", "#ff7f0e", func(s Step) float64 { return s.P99Ms }},
		{"p99.9", "#d62728", func(s Step) float64 { return s.P999Ms }},
	}
	var all []series
	maxX, maxY, minY := 0.0, 100.0, 1.0
	for _, mode := range []string{"rendezvous", "direct"} {
		var steps []Step
		for _, s := range r.Steps {
			if s.Mode == mode && s.Answered > 0 {
				steps = append(steps, s)
			}
		}
		sort.Slice(steps, func(i, j int) bool { return steps[i].TargetRPS < steps[j].TargetRPS })
		for _, m := range metrics {
			sr := series{mode: mode, label: mode + " " + m.label, color: m.color, dash: mode == "direct"}
			for _, s := range steps {
				y := math.Max(m.get(s), 0.01)
				sr.pts = append(sr.pts, [2]float64{s.AchievedRPS, y})
				sr.pass = append(sr.pass, s.Pass)
				maxX, maxY, minY = math.Max(maxX, s.AchievedRPS), math.Max(maxY, y), math.Min(minY, y)
			}
			if len(sr.pts) > 0 {
				all = append(all, sr)
			}
		}
	}
	xMax := niceCeil(math.Max(maxX*1.05, 1000))
	yLo := math.Pow(10, math.Floor(math.Log10(minY)))
	yHi := math.Pow(10, math.Ceil(math.Log10(maxY)))
	xp := func(x float64) float64 { return float64(left) + x/xMax*pw }
	yp := func(y float64) float64 {
		return float64(top) + ph - (math.Log10(y)-math.Log10(yLo))/(math.Log10(yHi)-math.Log10(yLo))*ph
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" font-weight="bold">End-to-end latency vs throughput (%d CPUs, broker: %s)</text>`+"\n",
		left, r.Machine.CPUs, esc(short(r.Broker, 40)))
	// Grid: decades and their 2 and 5 on y, even steps on x.
	for d := yLo; d <= yHi*1.0001; d *= 10 {
		for _, k := range []float64{1, 2, 5} {
			y := d * k
			if y > yHi*1.0001 {
				break
			}
			stroke := "#eee"
			if k == 1 {
				stroke = "#ccc"
			}
			fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s"/>`+"\n", left, float64(left)+pw, yp(y), yp(y), stroke)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, yp(y)+4, trimNum(y))
		}
	}
	xStep := niceCeil(xMax / 8)
	for x := 0.0; x <= xMax+1e-9; x += xStep {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#eee"/>`+"\n", xp(x), xp(x), top, float64(top)+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xp(x), float64(top)+ph+18, trimNum(x))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%.1f" fill="none" stroke="#444"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">achieved throughput (answered calls per second)</text>`+"\n", float64(left)+pw/2, height-18)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">latency from due time (ms, log scale)</text>`+"\n", float64(top)+ph/2)
	// The targets.
	for _, ref := range []struct {
		ms    float64
		label string
	}{{TargetP50Ms, "p50 target 5 ms"}, {TargetP99Ms, "p99 target 25 ms"}, {SaturationP99, "SLA / saturation bound 100 ms"}} {
		if ref.ms < yLo || ref.ms > yHi {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="2 3"/>`+"\n", left, float64(left)+pw, yp(ref.ms), yp(ref.ms))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#666" font-size="10">%s</text>`+"\n", float64(left)+pw-4, yp(ref.ms)-3, ref.label)
	}
	for _, sr := range all {
		var pts []string
		for _, p := range sr.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xp(p[0]), yp(p[1])))
		}
		dash := ""
		if sr.dash {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), sr.color, dash)
		for i, p := range sr.pts {
			fill := sr.color
			if !sr.pass[i] {
				fill = "white" // a step that failed: lost calls, fallbacks or p99 over the bound
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" stroke="%s"/>`+"\n", xp(p[0]), yp(p[1]), fill, sr.color)
		}
	}
	// Legend.
	lx := float64(left) + pw + 16
	for i, sr := range all {
		y := float64(top) + 10 + float64(i)*20
		dash := ""
		if sr.dash {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", lx, lx+28, y, y, sr.color, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+34, y+4, esc(sr.label))
	}
	y := float64(top) + 10 + float64(len(all))*20 + 10
	fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="white" stroke="#444"/><text x="%.1f" y="%.1f">step failed</text>`+"\n", lx+14, y, lx+34, y+4)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" fill="#666">saturation: %.0f req/s</text>`+"\n", lx, y+24, r.Summary.SaturationRPS)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" fill="#666">%s</text>`+"\n", lx, y+40, r.Started.Format("2006-01-02 15:04 UTC"))
	b.WriteString("</svg>\n")
	return b.String()
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, k := range []float64{1, 2, 5, 10} {
		if k*p >= x {
			return k * p
		}
	}
	return 10 * p
}

func trimNum(x float64) string {
	if x >= 1 {
		return fmt.Sprintf("%.0f", x)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", x), "0"), ".")
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
