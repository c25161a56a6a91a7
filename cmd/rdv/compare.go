package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/ops/compare"
	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/pipeline/topics"
	"github.com/rendezvous-ml/rendezvous/schemas"
	"github.com/rendezvous-ml/rendezvous/stages/drift"
)

const compareUsage = `usage: rdv compare <objective> -champion NAME -challenger NAME [-since 2h] [-html report.html] [flags]

Compares two models on the same requests: reads the objective's decisions
(every decision holds every model's score) and its replay-scores topic up
to their ends at the start, then prints the agreement, a confusion matrix
(or error statistics for a regressor), latency percentiles, error and
timeout rates per model, and the features' drift between two time windows.

`

// runCompare is `rdv compare`.
func runCompare(args []string) error {
	var c config.Common
	fs := flag.NewFlagSet("rdv compare", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), compareUsage)
		fs.PrintDefaults()
	}
	c.Register(fs)
	champion := fs.String("champion", "", "the model answering today (required)")
	challenger := fs.String("challenger", "", "the model to compare with it: a live model, or one whose scores are on the replay-scores topic (required)")
	since := fs.String("since", "", "only requests received in this window: a duration back from now (2h) or an RFC 3339 time; empty reads everything")
	htmlOut := fs.String("html", "", "also write a self-contained HTML report with plots to this file")
	labelsFile := fs.String("labels", "", "CSV of request_id,label: accuracy of each model against the truth")
	kind := fs.String("kind", "", "classifier or regressor; empty decides from the answers")
	split := fs.String("drift-split", "", "drift: compare the requests from this time on (a duration back from now, or RFC 3339) with those before; empty splits the window in the middle")
	bins := fs.Int("bins", drift.DefaultBins, "drift: quantile bins per feature")
	noReplay := fs.Bool("no-replay", false, "do not read the replay-scores topic")
	// The objective comes first, before the flags (flag parsing stops at
	// the first argument that is not a flag), or last.
	objective := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		objective, args = args[0], args[1:]
	}
	_ = fs.Parse(args)
	switch {
	case fs.NArg() == 1 && objective == "":
		objective = fs.Arg(0)
	case fs.NArg() > 0:
		return fmt.Errorf("compare: unexpected arguments %q (the objective, then flags)", fs.Args())
	}
	if objective != "" {
		c.Objective = objective
	}
	if *champion == "" || *challenger == "" {
		fs.Usage()
		return errors.New("compare: -champion and -challenger are required")
	}
	if *champion == *challenger {
		return fmt.Errorf("compare: the champion and the challenger are both %q", *champion)
	}
	if err := c.Validate(); err != nil {
		return err
	}
	now := time.Now()
	var from, splitAt time.Time
	var err error
	if *since != "" {
		if from, err = parseWhen(*since, now); err != nil {
			return fmt.Errorf("compare: -since: %w", err)
		}
	}
	if *split != "" {
		if splitAt, err = parseWhen(*split, now); err != nil {
			return fmt.Errorf("compare: -drift-split: %w", err)
		}
	}
	var labels map[string]string
	if *labelsFile != "" {
		if labels, err = readLabels(*labelsFile); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	set, err := schemas.Load(c.SchemasDir, c.Objective)
	if err != nil {
		return err
	}
	decReader, err := serde.Parse(set.Text[schemas.Decision])
	if err != nil {
		return err
	}
	scoreReader, err := serde.Parse(set.Text[schemas.Score])
	if err != nil {
		return err
	}
	rc, err := registry.New(registry.Config{URL: c.RegistryURL, Username: c.RegistryUser, Password: c.RegistryPass, Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer rc.Close()
	sd := serde.New(rc)
	base, err := c.Kafka.ClientOpts()
	if err != nil {
		return err
	}
	base = append(base, kgo.ClientID("rdv-compare"))
	ts := topics.For(c.Objective)
	ro := compare.ReadOptions{Since: from, Progress: progress(os.Stderr)}

	var decisions []compare.Decision
	bad := badRecords{topic: ts.Decisions}
	if _, err := compare.ReadTopic(ctx, base, ts.Decisions, ro, func(r *kgo.Record) error {
		rec, err := sd.Decode(ctx, r.Value, decReader)
		if errors.Is(err, serde.ErrDecode) {
			bad.add(r, err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("decode %s partition %d offset %d: %w", r.Topic, r.Partition, r.Offset, err)
		}
		decisions = append(decisions, compare.DecisionFromNative(rec))
		return nil
	}); err != nil {
		return err
	}
	bad.report(os.Stderr)

	replay := map[string]map[string]compare.Score{}
	if !*noReplay {
		badReplay := badRecords{topic: ts.ReplayScores}
		_, err := compare.ReadTopic(ctx, base, ts.ReplayScores, ro, func(r *kgo.Record) error {
			rec, err := sd.Decode(ctx, r.Value, scoreReader)
			if errors.Is(err, serde.ErrDecode) {
				badReplay.add(r, err)
				return nil
			}
			if err != nil {
				return fmt.Errorf("decode %s partition %d offset %d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			id, s := compare.ScoreFromNative(rec)
			if replay[id] == nil {
				replay[id] = map[string]compare.Score{}
			}
			replay[id][s.Model] = s
			return nil
		})
		switch {
		case errors.Is(err, compare.ErrNoTopic):
			fmt.Fprintf(os.Stderr, "no topic %s: comparing live scores only\n", ts.ReplayScores)
		case err != nil:
			return err
		}
		badReplay.report(os.Stderr)
	}
	if len(decisions) == 0 {
		return fmt.Errorf("compare: no decisions in %s%s", ts.Decisions, sinceNote(from))
	}

	rep, err := compare.Compare(decisions, replay, compare.Options{
		Champion: *champion, Challenger: *challenger, Kind: *kind, Labels: labels, DriftSplit: splitAt, Bins: *bins,
	})
	if err != nil {
		return err
	}
	fmt.Printf("rdv compare %s: ", c.Objective)
	if err := compare.WriteText(os.Stdout, rep); err != nil {
		return err
	}
	if *htmlOut != "" {
		if err := writeHTMLReport(*htmlOut, rep, fmt.Sprintf("%s: %s vs %s", c.Objective, *champion, *challenger)); err != nil {
			return err
		}
		fmt.Printf("\nHTML report: %s\n", *htmlOut)
	}
	return nil
}

// parseWhen reads a duration back from now or an RFC 3339 time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration back from now must be positive", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration (2h, 90m) nor an RFC 3339 time (2026-11-22T10:00:00Z)", s)
	}
	return t, nil
}

func sinceNote(from time.Time) string {
	if from.IsZero() {
		return ""
	}
	return " since " + from.UTC().Format(time.RFC3339)
}

// readLabels reads request_id,label rows; a header row is skipped.
func readLabels(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = 2
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("labels %s: %w (want request_id,label rows)", path, err)
	}
	out := map[string]string{}
	for i, row := range rows {
		if i == 0 && row[0] == "request_id" {
			continue
		}
		out[row[0]] = row[1]
	}
	return out, nil
}

// progress prints a line to w while a long read goes on.
func progress(w io.Writer) func(topic string, read, total int64) {
	started := time.Now()
	printed := false
	return func(topic string, read, total int64) {
		if time.Since(started) < time.Second && !printed {
			return // a short read stays quiet
		}
		printed = true
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(read) / float64(total)
		}
		fmt.Fprintf(w, "reading %s: %d of about %d records (%.0f%%)\n", topic, read, total, min(pct, 100))
	}
}

type badRecords struct {
	topic string
	n     int
	first string
}

func (b *badRecords) add(r *kgo.Record, err error) {
	if b.n == 0 {
		b.first = fmt.Sprintf("partition %d offset %d: %v", r.Partition, r.Offset, err)
	}
	b.n++
}

func (b *badRecords) report(w io.Writer) {
	if b.n > 0 {
		fmt.Fprintf(w, "skipped %d undecodable records of %s (first: %s)\n", b.n, b.topic, b.first)
	}
}

func writeHTMLReport(path string, rep compare.Report, title string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".rdv-compare-*.html")
	if err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := compare.WriteHTML(tmp, rep, title); err != nil {
		tmp.Close()
		return fmt.Errorf("html report: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	return nil
}
