#!/usr/bin/env bash
# Start MLServer with the iris model on 127.0.0.1, on free HTTP, gRPC and
# metrics ports, and wait until it is ready (/v2/health/ready and the
# model's /ready). Runs setup.sh first (quick when everything is cached).
#
# stdout only carries key=value lines:
#   url=http://127.0.0.1:PORT   the Open Inference Protocol REST endpoint
#   grpc=127.0.0.1:PORT  model=iris  expected=<file>  pid=<pid>
#   mlserver_version=  start_seconds=
# With a server of this directory already running, it prints the same lines
# for that one and starts nothing.
#
# Environment: those of setup.sh, and
#   RDV_MLSERVER_START_TIMEOUT  seconds to wait for readiness (default 90)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
DIR="${RDV_MLSERVER_DIR:-$REPO_ROOT/var/mlserver}"
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
TIMEOUT="${RDV_MLSERVER_START_TIMEOUT:-90}"
PID_FILE="$DIR/run/mlserver.pid"
ADDR_FILE="$DIR/run/mlserver.addr"
LOG_FILE="$DIR/run/mlserver.log"
MODEL=iris

log() { printf 'mlserver/start.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

setup_out=$(RDV_MLSERVER_DIR="$DIR" "$SCRIPT_DIR/setup.sh")
venv=$(sed -n 's/^venv=//p' <<<"$setup_out")
mlserver_version=$(sed -n 's/^mlserver_version=//p' <<<"$setup_out")
mkdir -p "$DIR/run"

if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null && [ -f "$ADDR_FILE" ]; then
  log "already running (pid $(cat "$PID_FILE"))"
  cat "$ADDR_FILE"
  echo "pid=$(cat "$PID_FILE")"
  exit 0
fi

started=$(date +%s%N)
read -r http_port grpc_port metrics_port < <("$venv/bin/python" - <<'PY'
import socket
socks = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
PY
)
url="http://127.0.0.1:$http_port"

# Its own session, so stop.sh can end it and everything it spawned.
MLSERVER_HOST=127.0.0.1 \
MLSERVER_HTTP_PORT="$http_port" \
MLSERVER_GRPC_PORT="$grpc_port" \
MLSERVER_METRICS_PORT="$metrics_port" \
MLSERVER_PARALLEL_WORKERS=0 \
  setsid "$venv/bin/mlserver" start "$DIR" >"$LOG_FILE" 2>&1 < /dev/null &
pid=$!
echo "$pid" > "$PID_FILE"
log "started pid $pid on $url (log $LOG_FILE)"

ready=""
for _ in $(seq 1 $((TIMEOUT * 10))); do
  if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$PID_FILE"
    tail -n 30 "$LOG_FILE" >&2 || true
    die "mlserver exited before it was ready"
  fi
  if curl -sf -o /dev/null "$url/v2/health/ready" && curl -sf -o /dev/null "$url/v2/models/$MODEL/ready"; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  tail -n 30 "$LOG_FILE" >&2 || true
  "$SCRIPT_DIR/stop.sh" >/dev/null 2>&1 || true
  die "mlserver not ready after ${TIMEOUT}s"
fi

{
  echo "url=$url"
  echo "grpc=127.0.0.1:$grpc_port"
  echo "model=$MODEL"
  echo "expected=$DIR/expected.json"
  echo "mlserver_version=$mlserver_version"
} > "$ADDR_FILE"
cat "$ADDR_FILE"
echo "pid=$pid"
ms=$((($(date +%s%N) - started) / 1000000))
printf 'start_seconds=%d.%03d\n' $((ms / 1000)) $((ms % 1000))
