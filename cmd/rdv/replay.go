package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rendezvous-ml/rendezvous/pipeline/fleet"
	"github.com/rendezvous-ml/rendezvous/stages/model"
)

const replayUsage = `rdv replay <objective> <model> -model FILE (-since 2h | -from-timestamp T | -from-offset N | -from-archive DIR)

Runs a model runner for a new model version that scores history first, into
the objective's replay-scores topic (never answered to users), with a
progress bar, then goes live by itself and keeps running (Ctrl-C stops it;
-until-live stops it once live).
`

func runReplay(args []string) error {
	cfg := model.Defaults()
	fs := flag.NewFlagSet("rdv replay", flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, replayUsage); fs.PrintDefaults() }
	cfg.Common.Register(fs)
	fs.StringVar(&cfg.ModelPath, "model", "", "the model file")
	fs.StringVar(&cfg.Version, "version", "", "model version (default: the file's)")
	fs.StringVar(&cfg.Role, "role", model.RoleChallenger, "the role it announces once live")
	fs.StringVar(&cfg.Group, "group", "", "consumer group (default rdv.<objective>.model.<model>.<version>)")
	cfg.Replay.Register(fs)
	untilLive := fs.Bool("until-live", false, "stop once live (the history's scores are written)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("replay: want <objective> <model>, got %d arguments", len(pos))
	}
	cfg.Common.Objective, cfg.Name = pos[0], pos[1]
	if !cfg.Replay.Active() {
		return errors.New("replay: say from where: -since, -from-timestamp, -from-offset or -from-archive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tty := isTerminal(os.Stderr)
	live := make(chan struct{})
	cfg.Replay.OnProgress = func(p fleet.Progress, status string) {
		if status == fleet.StatusLive {
			fmt.Fprintf(os.Stderr, "\r%s\n%s %s: live after %d history records\n", bar(p.Done, 0, 0), cfg.Common.Objective, cfg.Name, p.Done)
			close(live)
			return
		}
		line := bar(p.Done, p.Left, p.Rate)
		if tty {
			fmt.Fprintf(os.Stderr, "\r%s", line)
		} else {
			fmt.Fprintln(os.Stderr, line)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *untilLive {
		go func() {
			select {
			case <-live:
				cancel()
			case <-rctx.Done():
			}
		}()
	}
	err = model.Run(rctx, cfg)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if err == nil && *untilLive {
		select {
		case <-live:
		default:
			return errors.New("replay: stopped before it went live")
		}
	}
	return err
}

// bar draws a progress line: a bar, done of total, the rate and the ETA.
func bar(done, left int64, rate float64) string {
	total := done + left
	const width = 30
	filled := width
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
		filled = int(float64(width) * float64(done) / float64(total))
	}
	s := fmt.Sprintf("[%s%s] %5.1f%% %d/%d", strings.Repeat("#", filled), strings.Repeat("-", width-filled), pct, done, total)
	if rate > 0 {
		s += fmt.Sprintf(" %.0f rec/s", rate)
		if left > 0 {
			s += " eta " + (fleet.Progress{Left: left, Rate: rate}).ETA().Round(time.Second).String()
		}
	}
	return s + "   "
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
