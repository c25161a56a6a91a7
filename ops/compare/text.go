package compare

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rendezvous-ml/rendezvous/stages/drift"
)

// WriteText writes the report as terminal tables.
func WriteText(w io.Writer, r Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (champion) vs %s (challenger), %s\n", r.Champion, r.Challenger, r.Kind)
	fmt.Fprintf(&b, "decisions  %d, received %s .. %s\n", r.Decisions, stamp(r.From), stamp(r.To))
	if r.ReplayScores > 0 {
		fmt.Fprintf(&b, "replayed   %d scores from the replay-scores topic, %d of them for these decisions\n", r.ReplayScores, r.ReplayJoined)
	}
	fmt.Fprintf(&b, "agreement  %s (%d of %d requests both answered)\n", pct(r.Agreement()), r.Agree, r.Both)
	if r.Labelled > 0 {
		fmt.Fprintf(&b, "labelled   %d decisions\n", r.Labelled)
	}

	if r.Kind == KindClassifier && len(r.Confusion.Labels) > 0 {
		fmt.Fprintf(&b, "\nCONFUSION (rows: %s, columns: %s)\n", r.Champion, r.Challenger)
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "\t")
		for _, l := range r.Confusion.Labels {
			fmt.Fprintf(tw, "%s\t", l)
		}
		fmt.Fprintln(tw)
		for i, l := range r.Confusion.Labels {
			fmt.Fprintf(tw, "%s\t", l)
			for _, n := range r.Confusion.Counts[i] {
				fmt.Fprintf(tw, "%d\t", n)
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	if rg := r.Regression; rg != nil {
		fmt.Fprintf(&b, "\nDIFFERENCE (%s minus %s) over %d requests: mean %.6g, MAE %.6g, RMSE %.6g, max |d| %.6g\n",
			r.Challenger, r.Champion, rg.Diff.N, rg.Diff.Mean, rg.Diff.MAE, rg.Diff.RMSE, rg.Diff.MaxAbs)
		for _, e := range []struct {
			name string
			s    *ErrorStats
		}{{r.Champion, rg.ChampionErr}, {r.Challenger, rg.ChallengerErr}} {
			if e.s != nil && e.s.N > 0 {
				fmt.Fprintf(&b, "against the labels, %s over %d: mean error %.6g, MAE %.6g, RMSE %.6g\n", e.name, e.s.N, e.s.Mean, e.s.MAE, e.s.RMSE)
			}
		}
	}

	b.WriteString("\nMODELS (latency: score arrival after the request, ms; late: after the answer was decided; timeout: past the deadline or missing)\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tROLE\tSCORED\tREPLAYED\tWON\tERROR\tLATE\tMISSING\tTIMEOUT\tP50\tP90\tP99\tMAX\tCOMPUTE P50\tACCURACY")
	for _, m := range r.Models {
		acc := "-"
		if m.Labelled > 0 {
			acc = fmt.Sprintf("%s (%d)", pct(ratio(m.Correct, m.Labelled)), m.Labelled)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			m.Model, orDash(strings.Join(m.Roles, ",")), m.Scored, m.Replayed, m.Won,
			pct(m.ErrorRate), pct(m.LateRate), pct(m.MissingRate), pct(m.TimeoutRate),
			ms(m.Latency.N, m.Latency.P50), ms(m.Latency.N, m.Latency.P90), ms(m.Latency.N, m.Latency.P99), ms(m.Latency.N, m.Latency.Max),
			ms(m.Compute.N, m.Compute.P50), acc)
	}
	tw.Flush()

	d := r.Drift
	if d.Note != "" {
		fmt.Fprintf(&b, "\nDRIFT: %s\n", d.Note)
	} else {
		fmt.Fprintf(&b, "\nDRIFT (PSI of each feature, %d decisions from %s on against %d before; drifted above %.2f)\n",
			d.Current, stamp(d.Split), d.Reference, drift.Threshold)
		tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FEATURE\tPSI\t")
		for _, f := range d.Features {
			flag := ""
			if f.Drifted {
				flag = "DRIFTED"
			}
			fmt.Fprintf(tw, "%s\t%.4f\t%s\n", f.Feature, f.PSI, flag)
		}
		tw.Flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func pct(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100*v)
}

func ms(n int, v float64) string {
	switch {
	case n == 0:
		return "-"
	case v < 1:
		return fmt.Sprintf("%.3f", v) // a model's compute time is often µs
	}
	return fmt.Sprintf("%.2f", v)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
