package compare

// Small SVG plots, drawn by hand so the report needs no script and no
// network: line charts, grouped bar charts and a heat map.

import (
	"fmt"
	"html"
	"math"
	"strings"
)

const (
	plotW, plotH                       = 680, 320
	marginL, marginR, marginT, marginB = 64, 150, 36, 52
)

// palette holds distinguishable colours, used in series order.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

func colour(i int) string { return palette[i%len(palette)] }

type point struct{ x, y float64 }

type series struct {
	name   string
	points []point
	step   bool // draw as a step function (a CDF)
}

type axis struct {
	label    string
	min, max float64
	format   func(float64) string
	noTicks  bool // bar charts label their groups instead
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if !(hi > lo) {
		return []float64{lo}
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func esc(s string) string { return html.EscapeString(s) }

type frame struct {
	b      *strings.Builder
	x, y   axis
	iw, ih float64
}

// newFrame opens an svg with a title and axes; the caller draws inside and
// calls close.
func newFrame(id, title string, x, y axis) *frame {
	f := &frame{b: &strings.Builder{}, x: x, y: y, iw: plotW - marginL - marginR, ih: plotH - marginT - marginB}
	if !(f.x.max > f.x.min) {
		f.x.max = f.x.min + 1
	}
	if !(f.y.max > f.y.min) {
		f.y.max = f.y.min + 1
	}
	fmt.Fprintf(f.b, `<svg id="%s" class="plot" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		esc(id), plotW, plotH, plotW, plotH, esc(title))
	fmt.Fprintf(f.b, `<title>%s</title><text x="%d" y="20" class="t">%s</text>`, esc(title), marginL, esc(title))
	fmt.Fprintf(f.b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" class="area"/>`, marginL, marginT, f.iw, f.ih)
	for _, v := range niceTicks(f.y.min, f.y.max, 5) {
		py := f.py(v)
		fmt.Fprintf(f.b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" class="grid"/><text x="%d" y="%.1f" class="yl">%s</text>`,
			marginL, float64(marginL)+f.iw, py, py, marginL-6, py+4, esc(f.y.format(v)))
	}
	for _, v := range niceTicks(f.x.min, f.x.max, 6) {
		if f.x.noTicks {
			break
		}
		px := f.px(v)
		fmt.Fprintf(f.b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" class="tick"/><text x="%.1f" y="%.1f" class="xl">%s</text>`,
			px, px, marginT, float64(marginT)+f.ih+4, px, float64(marginT)+f.ih+18, esc(f.x.format(v)))
	}
	fmt.Fprintf(f.b, `<text x="%.1f" y="%d" class="al">%s</text>`, float64(marginL)+f.iw/2, plotH-8, esc(f.x.label))
	fmt.Fprintf(f.b, `<text transform="translate(16 %.1f) rotate(-90)" class="al">%s</text>`, float64(marginT)+f.ih/2, esc(f.y.label))
	return f
}

func (f *frame) px(v float64) float64 {
	return float64(marginL) + (v-f.x.min)/(f.x.max-f.x.min)*f.iw
}

func (f *frame) py(v float64) float64 {
	return float64(marginT) + f.ih - (v-f.y.min)/(f.y.max-f.y.min)*f.ih
}

func (f *frame) legend(i int, name string) {
	y := marginT + 8 + 18*i
	x := float64(marginL) + f.iw + 12
	fmt.Fprintf(f.b, `<rect x="%.1f" y="%d" width="12" height="12" fill="%s"/><text x="%.1f" y="%d" class="lg">%s</text>`,
		x, y-9, colour(i), x+18, y+1, esc(name))
}

func (f *frame) close() string {
	f.b.WriteString(`</svg>`)
	return f.b.String()
}

// lineChart draws series as polylines with a legend.
func lineChart(id, title string, x, y axis, ss []series) string {
	f := newFrame(id, title, x, y)
	for i, s := range ss {
		var pts []string
		for j, p := range s.points {
			if s.step && j > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", f.px(p.x), f.py(s.points[j-1].y)))
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", f.px(p.x), f.py(p.y)))
		}
		fmt.Fprintf(f.b, `<polyline class="series" fill="none" stroke="%s" stroke-width="2" points="%s"/>`, colour(i), strings.Join(pts, " "))
		if len(s.points) == 1 {
			p := s.points[0]
			fmt.Fprintf(f.b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, f.px(p.x), f.py(p.y), colour(i))
		}
		f.legend(i, s.name)
	}
	return f.close()
}

// barGroup is one group of bars (a model), one bar per series.
type barGroup struct {
	label  string
	values []float64
}

// barChart draws grouped vertical bars; a threshold, when positive, is a
// dashed horizontal line.
func barChart(id, title string, y axis, seriesNames []string, groups []barGroup, threshold float64) string {
	x := axis{min: 0, max: float64(max(len(groups), 1)), format: func(float64) string { return "" }, noTicks: true}
	f := newFrame(id, title, x, y)
	gw := f.iw / float64(max(len(groups), 1))
	bw := gw * 0.8 / float64(max(len(seriesNames), 1))
	for gi, g := range groups {
		for si, v := range g.values {
			if math.IsNaN(v) {
				continue
			}
			v = min(max(v, y.min), y.max)
			x0 := float64(marginL) + gw*float64(gi) + gw*0.1 + bw*float64(si)
			top := f.py(v)
			fmt.Fprintf(f.b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>`,
				x0, top, math.Max(bw-1, 1), f.py(y.min)-top, colour(si), esc(g.label), esc(seriesNames[si]), esc(y.format(v)))
		}
		fmt.Fprintf(f.b, `<text x="%.1f" y="%.1f" class="xl">%s</text>`, float64(marginL)+gw*(float64(gi)+0.5), float64(marginT)+f.ih+18, esc(g.label))
	}
	if threshold > 0 && threshold <= y.max {
		py := f.py(threshold)
		fmt.Fprintf(f.b, `<line class="threshold" x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="6 4"/><text x="%.1f" y="%.1f" class="lg" style="fill:#d62728">%s</text>`,
			marginL, float64(marginL)+f.iw, py, py, float64(marginL)+f.iw+4, py+4, esc("threshold "+y.format(threshold)))
	}
	if len(seriesNames) > 1 {
		for i, n := range seriesNames {
			f.legend(i, n)
		}
	}
	return f.close()
}

// heatMap draws a matrix of counts, darker for more.
func heatMap(id, title, rowTitle, colTitle string, labels []string, counts [][]int) string {
	n := len(labels)
	cell := 64.0
	if n > 6 {
		cell = 384 / float64(n)
	}
	left, top := 150.0, 70.0
	w, h := int(left+cell*float64(n)+20), int(top+cell*float64(n)+20)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="%s" class="plot" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s"><title>%s</title>`,
		esc(id), w, h, w, h, esc(title), esc(title))
	fmt.Fprintf(&b, `<text x="10" y="20" class="t">%s</text>`, esc(title))
	fmt.Fprintf(&b, `<text x="%.1f" y="44" class="al">%s</text>`, left+cell*float64(n)/2, esc(colTitle+" →"))
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="yl">%s</text>`, left-6, top-24, esc(rowTitle+" ↓"))
	peak := 1
	for _, row := range counts {
		for _, c := range row {
			peak = max(peak, c)
		}
	}
	for j, l := range labels {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="xl">%s</text>`, left+cell*(float64(j)+0.5), top-6, esc(l))
	}
	for i, l := range labels {
		y := top + cell*float64(i)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="yl">%s</text>`, left-6, y+cell/2+4, esc(l))
		for j := range labels {
			c := counts[i][j]
			shade := 0.08 + 0.92*float64(c)/float64(peak)
			if c == 0 {
				shade = 0.03
			}
			fg := "#000"
			if shade > 0.55 {
				fg = "#fff"
			}
			fill := "#1f77b4"
			if i != j && c > 0 {
				fill = "#d62728"
			}
			fmt.Fprintf(&b, `<rect class="cell" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%.2f" stroke="#fff"><title>%s / %s: %d</title></rect>`,
				left+cell*float64(j), y, cell, cell, fill, shade, esc(l), esc(labels[j]), c)
			// A style, not a fill attribute: the page's CSS for text would
			// win over an attribute.
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="cv" style="fill:%s">%d</text>`, left+cell*(float64(j)+0.5), y+cell/2+4, fg, c)
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}
