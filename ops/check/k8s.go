package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// replyPartitions is the results topic's partition count that
// `rdv provision` creates (topics.DefaultLayout): one per frontend.
const replyPartitions = 4

type obj = map[string]any

// dig walks nested maps and lists: dig(o, "spec", "template", 0).
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(obj)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func num(v any) int {
	n, _ := strconv.Atoi(str(v))
	return n
}

func checkK8s(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var docs []obj
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var d obj
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	byKind := map[string]map[string]obj{}
	kinds := map[string]int{}
	for _, d := range docs {
		k, n := str(d["kind"]), str(dig(d, "metadata", "name"))
		if byKind[k] == nil {
			byKind[k] = map[string]obj{}
		}
		byKind[k][n] = d
		kinds[k]++
	}
	var bad problems

	type workload struct {
		kind, name string
		o          obj
	}
	var wls []workload
	for _, k := range []string{"Deployment", "StatefulSet"} {
		for n, o := range byKind[k] {
			wls = append(wls, workload{k, n, o})
		}
	}
	sort.Slice(wls, func(i, j int) bool { return wls[i].name < wls[j].name })
	if len(wls) == 0 {
		return fmt.Errorf("%s: no Deployment or StatefulSet", path)
	}

	hpaFor := map[string]obj{}
	for _, h := range byKind["HorizontalPodAutoscaler"] {
		ref := dig(h, "spec", "scaleTargetRef")
		key := str(dig(ref, "kind")) + "/" + str(dig(ref, "name"))
		if byKind[str(dig(ref, "kind"))][str(dig(ref, "name"))] == nil {
			bad.addf("HPA %s scales %s, which is not in the build", dig(h, "metadata", "name"), key)
		}
		if mn, mx := num(dig(h, "spec", "minReplicas")), num(dig(h, "spec", "maxReplicas")); mn < 1 || mn > mx {
			bad.addf("HPA %s: minReplicas %d, maxReplicas %d", dig(h, "metadata", "name"), mn, mx)
		}
		hpaFor[key] = h
	}

	var models []string
	for _, w := range wls {
		podLabels, _ := dig(w.o, "spec", "template", "metadata", "labels").(obj)
		if dig(w.o, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
			bad.addf("%s %s: pod securityContext.runAsNonRoot is not true", w.kind, w.name)
		}
		ctrs, _ := dig(w.o, "spec", "template", "spec", "containers").([]any)
		for _, c := range ctrs {
			cn := str(dig(c, "name"))
			where := fmt.Sprintf("%s %s, container %s", w.kind, w.name, cn)
			if p := str(dig(c, "readinessProbe", "httpGet", "path")); p != "/readyz" {
				bad.addf("%s: readiness probe on %q, want /readyz", where, p)
			}
			if p := str(dig(c, "livenessProbe", "httpGet", "path")); p != "/healthz" {
				bad.addf("%s: liveness probe on %q, want /healthz", where, p)
			}
			for _, r := range []string{"requests", "limits"} {
				for _, res := range []string{"cpu", "memory"} {
					if dig(c, "resources", r, res) == nil {
						bad.addf("%s: no resources.%s.%s", where, r, res)
					}
				}
			}
			if img := str(dig(c, "image")); !strings.Contains(img, ":") {
				bad.addf("%s: image %q has no tag (did the overlay set images:?)", where, img)
			}
			envFrom, _ := dig(c, "envFrom").([]any)
			for _, ef := range envFrom {
				if n := str(dig(ef, "configMapRef", "name")); n != "" {
					if byKind["ConfigMap"][n] == nil {
						bad.addf("%s: envFrom ConfigMap %s is not in the build", where, n)
					}
				}
				if n := str(dig(ef, "secretRef", "name")); n != "" && byKind["Secret"][n] == nil {
					bad.addf("%s: envFrom Secret %s is not in the build", where, n)
				}
			}
			if len(envFrom) == 0 {
				bad.addf("%s: no envFrom: the stage's settings come from the ConfigMap", where)
			}
			if str(podLabels["app.kubernetes.io/component"]) == "model-runner" {
				if m := flagValue(anyStrings(dig(c, "command")), "-name"); m != "" {
					models = append(models, m)
				} else {
					bad.addf("%s: model runner without -name", where)
				}
			}
		}

		// Each stage has a disruption budget that selects its pods only.
		pdbs := 0
		for pn, p := range byKind["PodDisruptionBudget"] {
			sel, _ := dig(p, "spec", "selector", "matchLabels").(obj)
			if len(sel) > 0 && subset(sel, podLabels) {
				pdbs++
				others := 0
				for _, o := range wls {
					ol, _ := dig(o.o, "spec", "template", "metadata", "labels").(obj)
					if subset(sel, ol) {
						others++
					}
				}
				if others != 1 {
					bad.addf("PodDisruptionBudget %s selects the pods of %d workloads", pn, others)
				}
			}
		}
		if pdbs != 1 {
			bad.addf("%s %s: %d PodDisruptionBudgets select its pods, want 1", w.kind, w.name, pdbs)
		}

		h := hpaFor[w.kind+"/"+w.name]
		replicas := num(dig(w.o, "spec", "replicas"))
		switch w.name {
		case "log-connector":
			// One writer per archive volume.
			if h != nil || replicas != 1 || str(dig(w.o, "spec", "strategy", "type")) != "Recreate" {
				bad.addf("log-connector: must run exactly one replica (replicas 1, strategy Recreate, no HPA)")
			}
		default:
			if h == nil {
				bad.addf("%s %s: no HorizontalPodAutoscaler", w.kind, w.name)
			}
		}
		limit, why := 0, ""
		switch w.name {
		case "rendezvous":
			limit, why = num(configValue(byKind, "RDV_PARTITIONS")), "partitions (RDV_PARTITIONS)"
		case "frontend":
			limit, why = replyPartitions, "reply partitions of the results topic"
		}
		if limit > 0 {
			if replicas > limit {
				bad.addf("%s: %d replicas > %d %s", w.name, replicas, limit, why)
			}
			if h != nil && num(dig(h, "spec", "maxReplicas")) > limit {
				bad.addf("%s: HPA maxReplicas %d > %d %s", w.name, num(dig(h, "spec", "maxReplicas")), limit, why)
			}
		}
	}

	partitions := configValue(byKind, "RDV_PARTITIONS")
	if partitions == "" {
		bad.addf("no ConfigMap sets RDV_PARTITIONS")
	}
	var raced []string
	for _, spec := range strings.Split(configValue(byKind, "RDV_MODELS"), ",") {
		if n, _, _ := strings.Cut(spec, ":"); n != "" {
			raced = append(raced, n)
		}
	}
	sort.Strings(models)
	sort.Strings(raced)
	if !slices.Equal(models, raced) {
		bad.addf("RDV_MODELS races %v but the model runner Deployments run %v", raced, models)
	}
	bad.exit("k8s " + path)

	var ks []string
	for k, n := range kinds {
		ks = append(ks, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(ks)
	fmt.Printf("k8s %s: %d resources (%s); %d workloads with probes, resources and a PDB; %d HPAs; partitions %s, rendezvous maxReplicas %v; models %v\n",
		path, len(docs), strings.Join(ks, ", "), len(wls), len(byKind["HorizontalPodAutoscaler"]), partitions,
		dig(hpaFor["Deployment/rendezvous"], "spec", "maxReplicas"), raced)
	return nil
}

// configValue is key from the build's one rdv-config ConfigMap.
func configValue(byKind map[string]map[string]obj, key string) string {
	for n, c := range byKind["ConfigMap"] {
		if strings.HasPrefix(n, "rdv-config") {
			return str(dig(c, "data", key))
		}
	}
	return ""
}

func anyStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		out = append(out, str(x))
	}
	return out
}

func subset(sel, labels obj) bool {
	for k, v := range sel {
		if str(labels[k]) != str(v) {
			return false
		}
	}
	return true
}
