// Command check validates the deployment files without a Docker engine or a
// cluster: the compose file (with compose-go, the loader Docker Compose
// itself uses), the Kubernetes manifests that `kustomize build` rendered,
// and the Grafana dashboard. Schema validation proper is left to the tools
// that own the schemas (compose-go here, kubernetes-validate and promtool in
// ops/check.sh); this program checks what no schema can: that the pieces
// agree with each other and with how the stages must be run.
//
//	check compose  ops/compose.yaml ops/prometheus/prometheus.yml
//	check k8s      BUILT.yaml...
//	check dashboard DASHBOARD.json DATASOURCES.yaml OUT.rules.yml
//
// It is its own module so that compose-go never enters the main build.
package main

import (
	"fmt"
	"os"
	"strings"
)

// problems collects every finding so one run reports them all.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) exit(what string) {
	if len(p) == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "%s: %d problem(s):\n  - %s\n", what, len(p), strings.Join(p, "\n  - "))
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: check compose|k8s|dashboard FILES...")
		os.Exit(2)
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "compose":
		if len(args) != 2 {
			err = fmt.Errorf("usage: check compose COMPOSE.yaml PROMETHEUS.yml")
			break
		}
		err = checkCompose(args[0], args[1])
	case "k8s":
		if len(args) == 0 {
			err = fmt.Errorf("usage: check k8s BUILT.yaml...")
			break
		}
		for _, f := range args {
			if err = checkK8s(f); err != nil {
				break
			}
		}
	case "dashboard":
		if len(args) != 3 {
			err = fmt.Errorf("usage: check dashboard DASHBOARD.json DATASOURCES.yaml OUT.rules.yml")
			break
		}
		err = checkDashboard(args[0], args[1], args[2])
	default:
		err = fmt.Errorf("unknown check %q (compose, k8s or dashboard)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "check:", err)
		os.Exit(1)
	}
}
