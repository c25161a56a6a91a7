#!/usr/bin/env bash
# Prepare a real MLServer for the end-to-end test of the model runner's
# http kind (Open Inference Protocol):
#
#  1. a Python virtualenv with the pinned mlserver, mlserver-sklearn and
#     scikit-learn of ops/mlserver/requirements.txt, created once and reused
#     from $RDV_CACHE/mlserver-venv (reinstalled when the file changes);
#  2. the iris model: ops/mlserver/train.py fits a LogisticRegression on
#     models/iris.csv and writes the model directory MLServer loads
#     (<dir>/iris/model.joblib + model-settings.json), the server settings
#     (<dir>/settings.json) and scikit-learn's own predictions for all 150
#     rows (<dir>/expected.json); skipped when they are up to date.
#
# Progress goes to stderr; stdout only carries key=value lines (venv=,
# model_dir=, expected=, mlserver_version=, setup_seconds=).
#
# Environment:
#   RDV_CACHE          cache root (default $HOME/.cache/rendezvous)
#   RDV_MLSERVER_DIR   model and run directory (default <repo>/var/mlserver)
#   PYTHON             the Python that creates the virtualenv (default python3, 3.9 to 3.12)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE_ROOT="${RDV_CACHE:-$HOME/.cache/rendezvous}"
VENV="$CACHE_ROOT/mlserver-venv"
DIR="${RDV_MLSERVER_DIR:-$REPO_ROOT/var/mlserver}"
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
PYTHON="${PYTHON:-python3}"
REQ="$SCRIPT_DIR/requirements.txt"

log() { printf 'mlserver/setup.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
started=$(date +%s%N)

# ------------------------------------------------------------- virtualenv --
req_hash=$(sha256sum "$REQ" | cut -c1-16)
stamp="$VENV/.requirements.$req_hash"
if [ ! -f "$stamp" ]; then
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
  log "creating $VENV (pip install -r ${REQ#"$REPO_ROOT"/}; about a minute)"
  rm -rf "$VENV"
  mkdir -p "$CACHE_ROOT"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ" >&2 \
    || die "pip install failed (Python $("$PYTHON" -c 'import sys; print(sys.version.split()[0])'); mlserver 1.7 needs 3.9 to 3.12)"
  touch "$stamp"
else
  log "reusing $VENV"
fi
mlserver_version=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mlserver"))')

# ------------------------------------------------------------------ model --
model_hash=$(cat "$REPO_ROOT/models/iris.csv" "$SCRIPT_DIR/train.py" "$REQ" | sha256sum | cut -c1-16)
model_stamp="$DIR/.trained.$model_hash"
if [ ! -f "$model_stamp" ] || [ ! -f "$DIR/expected.json" ] || [ ! -f "$DIR/iris/model-settings.json" ]; then
  mkdir -p "$DIR"
  rm -f "$DIR"/.trained.*
  "$VENV/bin/python" "$SCRIPT_DIR/train.py" "$DIR"
  touch "$model_stamp"
else
  log "reusing the model in $DIR"
fi
# Server-wide settings; the ports come from start.sh's environment. One
# process (no parallel inference workers) and no metrics server: it starts
# in about two seconds on two cores.
cat > "$DIR/settings.json" <<JSON
{
  "host": "127.0.0.1",
  "parallel_workers": 0,
  "metrics_endpoint": null,
  "load_models_at_startup": true,
  "debug": false
}
JSON

echo "venv=$VENV"
echo "model_dir=$DIR"
echo "expected=$DIR/expected.json"
echo "mlserver_version=$mlserver_version"
ms=$((($(date +%s%N) - started) / 1000000))
printf 'setup_seconds=%d.%03d\n' $((ms / 1000)) $((ms % 1000))
