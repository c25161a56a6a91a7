#!/usr/bin/env bash
# Set up the peers: the standard clients of other languages that
# testcontainers/e2e/peers_test.go uses to read the pipeline's topics.
#
#   - a Python venv with Confluent's client (confluent-kafka with its Avro and
#     Schema Registry extras), pinned in testcontainers/peers/requirements.txt,
#     cached at ${RDV_CACHE:-$HOME/.cache/rendezvous}/peers-venv and rebuilt
#     only when the requirements (or the base Python) change;
#   - kcat, installed with apt-get when it is not on PATH.
#
# Progress and errors go to stderr; stdout only carries key=value lines:
#   python=<the venv's python>
#   kcat=<path of kcat>
#
# Run the suite with them:
#   eval "$(ops/peers-setup.sh)"; RDV_TEST_PYTHON=$python go test ./testcontainers/e2e -run Peers
#
# Environment:
#   RDV_CACHE          cache root (default $HOME/.cache/rendezvous)
#   RDV_PEERS_PYTHON   base interpreter for the venv (default python3)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
REQS="$REPO_ROOT/testcontainers/peers/requirements.txt"
CACHE_ROOT="${RDV_CACHE:-$HOME/.cache/rendezvous}"
VENV="$CACHE_ROOT/peers-venv"
STAMP="$VENV/.rdv-peers.stamp"
LOCK="$CACHE_ROOT/peers-venv.lock"
BASE_PYTHON="${RDV_PEERS_PYTHON:-python3}"

log() { printf 'peers-setup.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -f "$REQS" ] || die "requirements not found: $REQS"

# ------------------------------------------------------------------ python --
base_version() { "$BASE_PYTHON" -c 'import sys; print(sys.version.split()[0])'; }

venv_ok() {
  [ -x "$VENV/bin/python" ] &&
    [ -f "$STAMP" ] &&
    [ "$(cat "$STAMP")" = "$1" ] &&
    "$VENV/bin/python" -c 'import confluent_kafka.schema_registry.avro' >/dev/null 2>&1
}

setup_venv() {
  command -v "$BASE_PYTHON" >/dev/null 2>&1 ||
    die "$BASE_PYTHON not found: install Python 3.9+ (apt-get install python3 python3-venv) or set RDV_PEERS_PYTHON"
  local ver want
  ver="$(base_version)" || die "$BASE_PYTHON does not run"
  # The stamp names what the venv was built from: the requirements and the
  # base interpreter's version.
  want="$(sha256sum "$REQS" | cut -d' ' -f1) python-$ver"

  mkdir -p "$CACHE_ROOT"
  # One builder at a time: parallel test runs share the cache.
  exec 9>"$LOCK"
  flock 9
  if venv_ok "$want"; then
    log "venv up to date: $VENV"
  else
    log "building venv $VENV with $BASE_PYTHON $ver"
    rm -rf "$VENV"
    "$BASE_PYTHON" -m venv "$VENV" ||
      die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQS" >&2 ||
      die "pip install -r $REQS failed"
    "$VENV/bin/python" -c 'import confluent_kafka.schema_registry.avro' ||
      die "confluent_kafka does not import in $VENV"
    printf '%s\n' "$want" >"$STAMP"
    log "installed: $("$VENV/bin/python" -c 'import confluent_kafka as c; print("confluent-kafka", c.__version__, "librdkafka", c.libversion()[0])')"
  fi
  flock -u 9
  exec 9>&-
}

# -------------------------------------------------------------------- kcat --
setup_kcat() {
  if command -v kcat >/dev/null 2>&1; then
    return
  fi
  command -v apt-get >/dev/null 2>&1 || die "kcat is not on PATH and there is no apt-get to install it"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "kcat is not on PATH; installing it needs root (or sudo)"
    sudo="sudo"
  fi
  log "installing kcat with apt-get"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kcat >&2 ||
    die "apt-get install kcat failed"
  command -v kcat >/dev/null 2>&1 || die "kcat still not on PATH after apt-get install"
}

setup_venv
setup_kcat
echo "python=$VENV/bin/python"
echo "kcat=$(command -v kcat)"
