package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
	"github.com/rendezvous-ml/rendezvous/pipeline/fleet"
	"github.com/rendezvous-ml/rendezvous/pipeline/registry"
	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/stages/rendezvous/policy"
)

const modelsUsage = `rdv models: the live model registry (topic rdv.models)

  rdv models list [objective]                    every model version: role, status, instances, replay progress
  rdv models promote <objective> <model>         make the model's newest live version the champion; the
                                                 current champion becomes a challenger (-demote-to)
  rdv models retire <objective> <model>          stop waiting for the model (every version, or -version)
  rdv models activate <objective> <model>        undo a retirement
  rdv models set <objective> <model>             set -role, -priority or -budget of a model's versions

Changes are directives on rdv.models: every rendezvous instance applies them
within a fraction of a second, with no restart.
`

// parseInterleaved parses flags that may come before, between or after
// the positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

type modelsCLI struct {
	c      config.Common
	ttl    time.Duration
	cl     *kgo.Client
	codec  *fleet.Codec
	w      *fleet.Watcher
	models []fleet.Model
}

func runModels(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" {
		fmt.Print(modelsUsage)
		if len(args) == 0 {
			os.Exit(2)
		}
		return nil
	}
	sub := args[0]
	m := &modelsCLI{}
	fs := flag.NewFlagSet("rdv models "+sub, flag.ExitOnError)
	m.c.Register(fs)
	fs.DurationVar(&m.ttl, "ttl", fleet.DefaultTTL, "a version is live while a heartbeat is younger than this (the rendezvous stage's -heartbeat-ttl)")
	version := fs.String("version", "", "promote, retire, activate, set: this version only")
	asJSON := fs.Bool("json", false, "list: print JSON")
	demoteTo := fs.String("demote-to", policy.RoleChallenger, "promote: the role the current champion gets (challenger keeps it scored and logged; canary keeps it as a fallback)")
	budget := fs.Duration("budget", -1, "promote, set: the wait budget (promote: default the old champion's)")
	role := fs.String("role", "", "set: champion, canary, challenger or shadow")
	prio := fs.Int("priority", -1, "promote, set: the priority (lower answers first; promote: default the old champion's)")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	objective := m.c.Objective
	if len(pos) > 0 {
		objective = pos[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.load(ctx, objective); err != nil {
		return err
	}
	defer m.cl.Close()
	if sub == "list" {
		if len(pos) > 1 {
			return fmt.Errorf("models list: unexpected %q (usage: rdv models list [objective])", pos[1])
		}
		return m.list(objective, *asJSON)
	}
	if len(pos) != 2 {
		return fmt.Errorf("models %s: want <objective> <model>, got %d arguments", sub, len(pos))
	}
	name := pos[1]
	var opt directiveOpts
	if *budget >= 0 {
		opt.budget = budget
	}
	if *prio >= 0 {
		opt.priority = prio
	}
	switch sub {
	case "promote":
		return m.promote(ctx, objective, name, *version, *demoteTo, opt)
	case "retire":
		return m.each(ctx, objective, name, *version, func(e *fleet.Event) { e.Status = fleet.StatusRetired }, "retired")
	case "activate":
		return m.each(ctx, objective, name, *version, func(e *fleet.Event) { e.Status = fleet.StatusActive }, "activated")
	case "set":
		if *role == "" && opt.budget == nil && opt.priority == nil {
			return errors.New("models set: nothing to set: give -role, -priority or -budget")
		}
		return m.each(ctx, objective, name, *version, func(e *fleet.Event) {
			if *role != "" {
				e.Role = *role
			}
			if opt.budget != nil {
				e.Budget = opt.budget
			}
			if opt.priority != nil {
				e.Priority = opt.priority
			}
		}, "set")
	}
	return fmt.Errorf("models: unknown command %q\n\n%s", sub, modelsUsage)
}

type directiveOpts struct {
	budget   *time.Duration
	priority *int
}

// load reads the whole registry once.
func (m *modelsCLI) load(ctx context.Context, objective string) error {
	rc, err := registry.New(registry.Config{URL: m.c.RegistryURL, Username: m.c.RegistryUser, Password: m.c.RegistryPass, Timeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if m.codec, err = fleet.NewCodec(ctx, serde.New(rc)); err != nil {
		return fmt.Errorf("model registry schema: %w", err)
	}
	base, err := m.c.Kafka.ClientOpts()
	if err != nil {
		return err
	}
	if m.cl, err = kgo.NewClient(append(base, fleet.ConsumeOpts()...)...); err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	w := fleet.NewWatcher(m.cl, m.codec, config.Common{LogLevel: "error"}.Logger("rdv"))
	wctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- w.Run(wctx) }()
	select {
	case <-w.Ready():
	case err := <-errc:
		stop()
		return fmt.Errorf("read %s: %w", "rdv.models", err)
	case <-ctx.Done():
		stop()
		return fmt.Errorf("read rdv.models: %w", ctx.Err())
	}
	stop()
	<-errc
	m.w = w
	m.models = w.Models(objective, time.Now(), m.ttl)
	return nil
}

func (m *modelsCLI) list(objective string, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(m.models)
	}
	if len(m.models) == 0 {
		fmt.Printf("no model of objective %s has announced itself on rdv.models\n", objective)
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tVERSION\tROLE\tPRIORITY\tBUDGET\tSTATUS\tINSTANCES\tLAST HEARTBEAT\tREPLAY")
	now := time.Now()
	for _, x := range m.models {
		p, b := "-", "-"
		if x.Priority != nil {
			p = strconv.Itoa(*x.Priority)
		}
		if x.Budget != nil {
			b = x.Budget.String()
		}
		r := x.Role
		if x.Directed {
			r += "*"
		}
		replay := "-"
		if x.Replay.Done > 0 || x.Replay.Left > 0 {
			replay = fmt.Sprintf("%d done, %d left, %.0f/s", x.Replay.Done, x.Replay.Left, x.Replay.Rate)
			if eta := x.Replay.ETA(); eta > 0 {
				replay += ", eta " + eta.Round(time.Second).String()
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s ago\t%s\n", x.Name, x.Version, r, p, b, x.Status,
			len(x.Instances), now.Sub(x.LastSeen).Round(100*time.Millisecond), replay)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Println("(* set by an operator's directive; only live versions are waited for)")
	return nil
}

func (m *modelsCLI) versions(name, version string) []fleet.Model {
	var out []fleet.Model
	for _, x := range m.models {
		if x.Name == name && (version == "" || x.Version == version) {
			out = append(out, x)
		}
	}
	return out
}

func (m *modelsCLI) known() string {
	var ks []string
	for _, x := range m.models {
		ks = append(ks, x.Key()+" ("+x.Status+")")
	}
	if len(ks) == 0 {
		return "none"
	}
	return strings.Join(ks, ", ")
}

// directive is the directive in force for a version, to change: a new one
// replaces it whole.
func (m *modelsCLI) directive(objective, name, version string) fleet.Event {
	if e, ok := m.w.Directive(objective, name, version); ok {
		return e
	}
	return fleet.Event{Objective: objective, Name: name, Version: version}
}

func (m *modelsCLI) publish(ctx context.Context, e fleet.Event) error {
	e.Kind, e.At = fleet.KindDirective, time.Now()
	if u, err := os.Hostname(); err == nil {
		e.By = os.Getenv("USER") + "@" + u
	}
	return fleet.Publish(ctx, m.cl, m.codec, e)
}

// each writes one directive per matching version, so a later directive
// for one version is never shadowed by an older one for the whole name.
func (m *modelsCLI) each(ctx context.Context, objective, name, version string, set func(*fleet.Event), verb string) error {
	vs := m.versions(name, version)
	if len(vs) == 0 {
		return fmt.Errorf("objective %s has no model %s%s on rdv.models (known: %s)", objective, name, at(version), m.known())
	}
	for _, v := range vs {
		e := m.directive(objective, v.Name, v.Version)
		set(&e)
		if err := m.publish(ctx, e); err != nil {
			return err
		}
		fmt.Printf("%s %s@%s\n", verb, v.Name, v.Version)
	}
	return nil
}

func at(version string) string {
	if version == "" {
		return ""
	}
	return "@" + version
}

// promote makes the newest live version of name the champion, with the
// old champion's priority and budget unless told otherwise, and demotes
// every other champion.
func (m *modelsCLI) promote(ctx context.Context, objective, name, version, demoteTo string, opt directiveOpts) error {
	switch demoteTo {
	case policy.RoleCanary, policy.RoleChallenger, policy.RoleShadow:
	default:
		return fmt.Errorf("demote-to: %q is not canary, challenger or shadow", demoteTo)
	}
	var target *fleet.Model
	for _, v := range m.versions(name, version) {
		if !v.Waited() {
			continue
		}
		if target == nil || policy.CompareVersions(v.Version, target.Version) > 0 {
			v := v
			target = &v
		}
	}
	if target == nil {
		return fmt.Errorf("objective %s has no live version of %s%s to promote (known: %s)", objective, name, at(version), m.known())
	}
	var old []fleet.Model
	for _, x := range m.models {
		if x.Role == policy.RoleChampion && x.Key() != target.Key() && !x.Retired {
			old = append(old, x)
		}
	}
	e := m.directive(objective, target.Name, target.Version)
	e.Role, e.Priority, e.Budget = policy.RoleChampion, opt.priority, opt.budget
	for _, o := range old {
		if e.Priority == nil && o.Priority != nil {
			e.Priority = o.Priority
		}
		if e.Budget == nil && o.Budget != nil {
			e.Budget = o.Budget
		}
	}
	if e.Priority == nil {
		zero := 0
		e.Priority = &zero
	}
	// The new champion first: there is never a moment without one.
	if err := m.publish(ctx, e); err != nil {
		return err
	}
	var was []string
	for _, o := range old {
		d := m.directive(objective, o.Name, o.Version)
		d.Role = demoteTo
		if err := m.publish(ctx, d); err != nil {
			return err
		}
		was = append(was, o.Key()+" -> "+demoteTo)
	}
	desc := target.Key() + " is the champion of " + objective
	if e.Budget != nil {
		desc += " (budget " + e.Budget.String() + ")"
	}
	if len(was) > 0 {
		desc += "; " + strings.Join(was, ", ")
	}
	fmt.Println("promoted:", desc)
	return nil
}
