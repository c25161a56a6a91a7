package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// composeServices are the services the compose file must have: the
// infrastructure of issue 10 and every stage `rdv dev` runs.
var composeServices = []string{
	"kafka", "schema-registry", "elasticsearch", "kibana", "prometheus", "grafana",
	"provision", "kibana-import",
	"frontend", "enricher", "model-dt", "model-canary", "model-challenger",
	"rendezvous", "decoy", "log-connector", "es-connector",
}

// oneShots run to completion; they have no health check and others wait
// for them with service_completed_successfully.
var oneShots = []string{"provision", "kibana-import"}

func checkCompose(path, promPath string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	// The file is loaded the way `docker compose` loads it: schema
	// validation, interpolation, merge keys, relative paths.
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  filepath.Dir(abs),
		ConfigFiles: []types.ConfigFile{{Filename: abs}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("rendezvous", true) })
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var bad problems
	for _, name := range composeServices {
		if _, ok := p.Services[name]; !ok {
			bad.addf("service %s is missing", name)
		}
	}
	image := p.Services["provision"].Image
	var stages []string
	health, conds := 0, 0
	for name, s := range p.Services {
		oneShot := slices.Contains(oneShots, name)
		switch {
		case oneShot && s.Restart != "no":
			bad.addf("%s: a one-shot service needs restart: \"no\", not %q", name, s.Restart)
		case !oneShot && (s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0):
			bad.addf("%s: no health check", name)
		case !oneShot:
			health++
		}
		for dep, d := range s.DependsOn {
			conds++
			target, ok := p.Services[dep]
			if !ok {
				continue // the loader already refuses this
			}
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if target.HealthCheck == nil {
					bad.addf("%s waits for %s to be healthy, but %s has no health check", name, dep, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if !slices.Contains(oneShots, dep) {
					bad.addf("%s waits for %s to complete, but %s is not a one-shot service", name, dep, dep)
				}
			default:
				bad.addf("%s depends on %s with condition %q: use service_healthy or service_completed_successfully, so start order means ready", name, dep, d.Condition)
			}
		}
		if s.Image == image && !oneShot {
			stages = append(stages, name)
			if d, ok := s.DependsOn["provision"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
				bad.addf("%s: a stage must wait for provision (service_completed_successfully): it needs the topics and schemas", name)
			}
			if s.Build == nil {
				bad.addf("%s: no build section: `up` would try to pull %s from a registry", name, s.Image)
			}
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					bad.addf("%s: bind mount source %s: %v", name, v.Source, err)
				}
			}
		}
	}
	sort.Strings(stages)

	// The rendezvous stage must name exactly the models that run.
	var running []string
	for _, name := range stages {
		if strings.HasPrefix(name, "model-") {
			m := flagValue(p.Services[name].Command, "-name")
			if m == "" {
				bad.addf("%s: model runner without -name", name)
			}
			running = append(running, m)
		}
	}
	var raced []string
	for _, spec := range strings.Split(flagValue(p.Services["rendezvous"].Command, "-models"), ",") {
		if n, _, _ := strings.Cut(spec, ":"); n != "" {
			raced = append(raced, n)
		}
	}
	sort.Strings(running)
	sort.Strings(raced)
	if !slices.Equal(running, raced) {
		bad.addf("the rendezvous stage races models %v but the model runners are %v", raced, running)
	}

	// Prometheus must scrape every stage on its health and metrics address.
	targets, err := scrapeTargets(promPath)
	if err != nil {
		return err
	}
	for _, name := range stages {
		addr := ""
		if v := p.Services[name].Environment["RDV_HTTP_ADDR"]; v != nil {
			addr = *v
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			bad.addf("%s: RDV_HTTP_ADDR %q is not host:port", name, addr)
			continue
		}
		if !targets[name+":"+port] {
			bad.addf("%s: %s does not scrape %s:%s", name, promPath, name, port)
		}
	}
	bad.exit("compose " + path)
	fmt.Printf("compose %s: valid (compose-go); %d services, %d stages, %d health checks, %d depends_on conditions, %d stages scraped, models %v\n",
		path, len(p.Services), len(stages), health, conds, len(stages), raced)
	return nil
}

// flagValue finds -name value in a command line.
func flagValue(cmd []string, name string) string {
	for i, a := range cmd {
		if a == name && i+1 < len(cmd) {
			return cmd[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func scrapeTargets(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, t := range st.Targets {
				out[t] = true
			}
		}
	}
	return out, nil
}
