#!/usr/bin/env bash
# Stop the MLServer that start.sh started: SIGTERM to its session, up to
# RDV_MLSERVER_STOP_TIMEOUT seconds (default 20), then SIGKILL. Prints
# state=stopped.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
DIR="${RDV_MLSERVER_DIR:-$REPO_ROOT/var/mlserver}"
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
TIMEOUT="${RDV_MLSERVER_STOP_TIMEOUT:-20}"
PID_FILE="$DIR/run/mlserver.pid"

log() { printf 'mlserver/stop.sh: %s\n' "$*" >&2; }

if [ ! -f "$PID_FILE" ]; then
  log "not running (no $PID_FILE)"
  echo "state=stopped"
  exit 0
fi
pid=$(cat "$PID_FILE")
if kill -0 "$pid" 2>/dev/null; then
  # start.sh ran it with setsid: its pid is its process group's id.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((TIMEOUT * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "still running after ${TIMEOUT}s: SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  log "stopped pid $pid"
fi
rm -f "$PID_FILE" "$DIR/run/mlserver.addr"
echo "state=stopped"
