#!/usr/bin/env bash
# Checks the deployment files with no Docker engine and no cluster:
#
#   image       the Dockerfile's build: static binaries (CGO_ENABLED=0) and
#               its health-check probe, compiled from the Dockerfile's text
#   compose     ops/compose.yaml loaded by compose-go (Docker Compose's own
#               loader and schema), plus start order, health checks and
#               Prometheus targets (ops/check)
#   k8s         `kustomize build` of every overlay, validated against the
#               Kubernetes schemas of 1.28 (the oldest this needs) and the
#               newest kubernetes-validate bundles, strict; plus probes,
#               resources, PDBs, HPAs, replicas <= partitions (ops/check)
#   prometheus  promtool check config/rules and promtool test rules
#   grafana     the dashboard's structure and data source (ops/check), and
#               each of its queries parsed by promtool
#   metrics     TestMetricsExist: every metric the rules and the dashboard
#               name is exported by the running stages
#
# It installs what it needs under ${RDV_CACHE:-~/.cache/rendezvous}/ops:
# kustomize (Go module proxy), kubernetes-validate (PyPI) and promtool
# (Debian's prometheus package). A warm run installs nothing.
# Usage: ops/check.sh [image|compose|k8s|prometheus|grafana|metrics]...
set -uo pipefail
cd "$(dirname "$0")/.."

KUSTOMIZE_VERSION=v5.8.2          # v5.8.3 needs Go 1.27
KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_VERSIONS="1.28.0 1.37.0"

CACHE="${RDV_CACHE:-$HOME/.cache/rendezvous}/ops"
BIN="$CACHE/bin"
mkdir -p "$BIN"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
export GOFLAGS=-mod=mod

say() { printf '%s\n' "$*"; }
die() { printf 'ops/check.sh: %s\n' "$*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------

need_kustomize() {
  if [ -x "$BIN/kustomize" ] && "$BIN/kustomize" version 2>/dev/null | grep -qx "$KUSTOMIZE_VERSION"; then return; fi
  say "installing kustomize $KUSTOMIZE_VERSION (go install)"
  GOBIN="$BIN" GOFLAGS= go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" \
    || die "go install sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION failed"
}

need_kubernetes_validate() {
  local venv="$CACHE/venv"
  if [ -x "$venv/bin/kubernetes-validate" ] && [ -f "$venv/.kubernetes-validate-$KUBERNETES_VALIDATE_VERSION" ]; then return; fi
  say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (pip)"
  python3 -m venv "$venv" || die "python3 -m venv $venv failed"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    || die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed"
  touch "$venv/.kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
}

# promtool comes out of Debian's prometheus package, unpacked into the cache:
# nothing is installed system-wide and no service is started.
need_promtool() {
  if [ -x "$BIN/promtool" ]; then return; fi
  command -v apt-get >/dev/null || die "promtool is not in $BIN and there is no apt-get to fetch Debian's prometheus package"
  say "fetching promtool from Debian's prometheus package (apt-get download)"
  if ! (cd "$TMP" && apt-get download prometheus >/dev/null 2>&1); then
    [ "$(id -u)" = 0 ] || die "apt-get download prometheus failed; run 'apt-get update' as root first"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    (cd "$TMP" && apt-get download prometheus >/dev/null) || die "apt-get download prometheus failed"
  fi
  dpkg-deb -x "$TMP"/prometheus_*.deb "$TMP/prometheus" || die "cannot unpack the prometheus package"
  install -m 0755 "$TMP/prometheus/usr/bin/promtool" "$BIN/promtool"
}

need_checker() {
  # go build is a no-op when nothing changed (the build cache).
  (cd ops/check && go build -o "$BIN/rdv-ops-check" .) || die "building ops/check failed"
}

# --- checks ------------------------------------------------------------------

check_image() {
  grep -qE '^FROM (gcr\.io/distroless/static[^ ]*|scratch)( |$)' Dockerfile \
    || { say "Dockerfile: the runtime stage is not distroless static or scratch"; return 1; }
  grep -qE '^USER [1-9][0-9]*(:[0-9]+)?$' Dockerfile \
    || { say "Dockerfile: no numeric non-root USER"; return 1; }
  grep -q 'CGO_ENABLED=0' Dockerfile || { say "Dockerfile: CGO_ENABLED=0 is not set"; return 1; }
  CGO_ENABLED=0 go build -o "$TMP/bin/" ./cmd/... || return 1
  local n=0 b
  for b in "$TMP"/bin/*; do
    if readelf -l "$b" | grep -q 'INTERP'; then say "$(basename "$b") is dynamically linked"; return 1; fi
    n=$((n + 1))
  done
  # The probe the compose health checks run, exactly as the Dockerfile has it.
  mkdir -p "$TMP/probe"
  awk '/^COPY <<.EOF. \/probe\/main.go$/ {on=1; next} on && /^EOF$/ {exit} on' Dockerfile > "$TMP/probe/main.go"
  [ -s "$TMP/probe/main.go" ] || { say "Dockerfile: the probe's source (COPY <<'EOF' /probe/main.go) is missing"; return 1; }
  (cd "$TMP/probe" && GOFLAGS= go vet main.go && GOFLAGS= CGO_ENABLED=0 go build -o "$TMP/bin-probe" main.go) || return 1
  readelf -l "$TMP/bin-probe" | grep -q INTERP && { say "rdv-probe is dynamically linked"; return 1; }
  "$TMP/bin-probe" "http://127.0.0.1:1/readyz" >/dev/null 2>&1 && { say "rdv-probe reported a closed port healthy"; return 1; }
  say "image: $n stage binaries and rdv-probe build static with CGO_ENABLED=0; runtime stage distroless, non-root"
}

check_compose() {
  "$BIN/rdv-ops-check" compose ops/compose.yaml ops/prometheus/prometheus.yml
}

check_k8s() {
  local overlay rc=0 out n
  for overlay in ops/k8s/overlays/*/; do
    overlay="${overlay%/}"
    out="$TMP/$(basename "$overlay").yaml"
    "$BIN/kustomize" build "$overlay" > "$out" || { say "kustomize build $overlay failed"; rc=1; continue; }
    n=$(grep -c '^kind:' "$out")
    for v in $K8S_VERSIONS; do
      if "$CACHE/venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$out"; then
        say "kubernetes-validate --strict -k $v: $overlay: $n resources valid"
      else
        say "kubernetes-validate --strict -k $v: $overlay: invalid (above)"; rc=1
      fi
    done
    "$BIN/rdv-ops-check" k8s "$out" || rc=1
  done
  return $rc
}

check_prometheus() {
  "$BIN/promtool" check config ops/prometheus/prometheus.yml || return 1
  "$BIN/promtool" check rules ops/prometheus/rules/*.yml || return 1
  "$BIN/promtool" test rules ops/prometheus/tests/*.yml || return 1
  say "promtool test rules: $(grep -c 'alertname:' ops/prometheus/tests/*.yml | awk -F: '{s+=$NF} END {print s}') alert cases and $(grep -c 'expr:' ops/prometheus/tests/*.yml | awk -F: '{s+=$NF} END {print s}') expression cases passed"
}

check_grafana() {
  "$BIN/rdv-ops-check" dashboard ops/grafana/dashboards/rendezvous.json \
    ops/grafana/provisioning/datasources/prometheus.yaml "$TMP/dashboard.rules.yml" || return 1
  "$BIN/promtool" check rules "$TMP/dashboard.rules.yml" >/dev/null || { say "promtool cannot parse a dashboard query:"; "$BIN/promtool" check rules "$TMP/dashboard.rules.yml"; return 1; }
  say "promtool: every dashboard query parses as PromQL"
}

check_metrics() {
  go test -count=1 -timeout 10m -run '^(TestMetricsExist|TestPromQLMetricNames)$' -v ./testcontainers/e2e/ 2>&1 \
    | grep -vE '^\s+time=' | grep -E '^(--- |ok|FAIL|PASS|#)|\.go:[0-9]+'
  return "${PIPESTATUS[0]}"
}

# --- main --------------------------------------------------------------------

checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(image compose k8s prometheus grafana metrics)
for c in "${checks[@]}"; do
  case "$c" in
    image|metrics) ;;
    compose) need_checker ;;
    k8s) need_checker; need_kustomize; need_kubernetes_validate ;;
    prometheus) need_promtool ;;
    grafana) need_checker; need_promtool ;;
    *) die "unknown check $c (image, compose, k8s, prometheus, grafana, metrics)" ;;
  esac
done

passed=0 failed=0 failures=()
for c in "${checks[@]}"; do
  start=$SECONDS
  say "--- $c"
  if "check_$c"; then
    passed=$((passed + 1)); say "--- $c: ok ($((SECONDS - start))s)"
  else
    failed=$((failed + 1)); failures+=("$c"); say "--- $c: FAILED ($((SECONDS - start))s)"
  fi
done
say ""
[ "$failed" -eq 0 ] || say "failed checks: ${failures[*]}"
say "ops: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
