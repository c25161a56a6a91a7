#!/usr/bin/env bash
# Run a real single-node Apache Kafka 4.x (KRaft, broker+controller in one JVM)
# on 127.0.0.1, with the jars fetched from Maven Central and cached.
#
# Run `ops/kafka/kafka.sh help` for the commands and settings.
# Progress and errors go to stderr; stdout only carries key=value lines
# (kafka_version=..., brokers=..., ...) so callers can parse them.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"

# ---------------------------------------------------------------- settings --
default_version() {
  sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n 1
}

KAFKA_VERSION="${RDV_KAFKA_VERSION:-$(default_version)}"
CACHE_ROOT="${RDV_CACHE:-$HOME/.cache/rendezvous}"
M2_REPO="$CACHE_ROOT/m2"
LIBS_DIR="$CACHE_ROOT/kafka-$KAFKA_VERSION/libs"
STAMP="$CACHE_ROOT/kafka-$KAFKA_VERSION/fetched.stamp"
LOG4J_TOOLS="$CACHE_ROOT/kafka-$KAFKA_VERSION/log4j2-tools.properties"

DATA_DIR="${RDV_KAFKA_DIR:-$REPO_ROOT/var/kafka-real}"
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$PWD/$DATA_DIR" ;; esac

PORT="${RDV_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${RDV_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
HOST=127.0.0.1
PARTITIONS="${RDV_KAFKA_PARTITIONS:-1}"
HEAP_OPTS="${RDV_KAFKA_HEAP_OPTS:-${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}}"
START_TIMEOUT="${RDV_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${RDV_KAFKA_STOP_TIMEOUT:-30}"
PROBE="${RDV_KAFKA_PROBE:-auto}"
JAVA="${JAVA:-${JAVA_HOME:+$JAVA_HOME/bin/}java}"

PID_FILE="$DATA_DIR/kafka.pid"
PROPS="$DATA_DIR/server.properties"
LOG4J_SERVER="$DATA_DIR/log4j2-server.properties"
MARKER="$DATA_DIR/.kafka-sh-data-dir"
LOG_DIR="$DATA_DIR/logs"
KAFKA_DATA="$DATA_DIR/data"
SERVER_LOG="$LOG_DIR/server.log"
STDOUT_LOG="$LOG_DIR/stdout.log"

# ----------------------------------------------------------------- helpers --
log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  cat <<EOF
Usage: ops/kafka/kafka.sh <command> [args]

Runs a real single-node Apache Kafka $KAFKA_VERSION (KRaft, combined broker and
controller) on $HOST, jars from Maven Central, cached between runs.

Commands:
  deps       install kcat with apt-get (optional; makes the readiness probe fast)
  fetch      resolve the Kafka jars into the cache (quick when already cached)
  start      fetch, format storage if new, start in the background, wait until
             ready; prints kafka_version=, brokers=, pid=
  stop       SIGTERM, wait up to ${STOP_TIMEOUT}s, then SIGKILL; removes the pid file
  status     prints state=running|stopped (exit 0 if running, 3 if stopped)
  clean      stop if running, then delete the data dir
  tool CLASS [ARGS...]
             run a Kafka tool class from the cached jars, e.g.
             tool TopicCommand --bootstrap-server $HOST:$PORT --list
             (a name without a dot means org.apache.kafka.tools.CLASS)
  help       this text

Environment:
  RDV_KAFKA_VERSION          Kafka version (default from pom.xml: $(default_version))
  RDV_CACHE                  cache root (default \$HOME/.cache/rendezvous)
                             jars: \$RDV_CACHE/kafka-<version>/libs, maven repo: \$RDV_CACHE/m2
  RDV_KAFKA_DIR              data dir (default <repo>/var/kafka-real)
  RDV_KAFKA_PORT             client port (default 19092)
  RDV_KAFKA_CONTROLLER_PORT  KRaft controller port (default client port + 1)
  RDV_KAFKA_PARTITIONS       num.partitions for auto-created topics (default 1)
  RDV_KAFKA_HEAP_OPTS        JVM heap flags (else KAFKA_HEAP_OPTS, else "-Xms256m -Xmx512m")
  RDV_KAFKA_START_TIMEOUT    seconds to wait for readiness (default 90)
  RDV_KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM (default 30)
  RDV_KAFKA_PROBE            readiness probe: auto (kcat if installed, else a
                             Kafka Java tool), kcat, or java (default auto)
  JAVA / JAVA_HOME           Java 17+ to run Kafka with (default: java on PATH)

Now: cache=$CACHE_ROOT data=$DATA_DIR port=$PORT controller_port=$CONTROLLER_PORT
EOF
}

require_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (set JAVA or JAVA_HOME; Kafka 4 needs Java 17+)"
  local major
  major="$("$JAVA" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java.specification.version = //p' | cut -d. -f1)"
  [[ "$major" =~ ^[0-9]+$ ]] || die "could not read the Java version of $JAVA"
  (( major >= 17 )) || die "Kafka 4 needs Java 17 or newer; $JAVA is Java $major"
}

# The process in the pid file, if it is alive and is the Kafka we started.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n "$pid" ]] && alive "$pid" || return 1
  # Guard against a recycled pid: the command line must name our config file.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$PROPS" || return 1
  echo "$pid"
}

# True while the process exists and is not a zombie (a zombie whose parent
# never reaps it would otherwise look alive forever).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)"
  [[ "$state" != Z ]]
}

now_ms() { date +%s%3N; }

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Lines already in server.log when this start began (the log is appended to
# across restarts); only what came after is shown when startup fails.
LOG_START_LINE=0

show_log_tail() {
  if [[ -s "$STDOUT_LOG" ]]; then
    log "---- last lines of $STDOUT_LOG ----"
    tail -n 20 "$STDOUT_LOG" >&2
  fi
  local new_lines=""
  if [[ -s "$SERVER_LOG" ]]; then
    new_lines="$(tail -n "+$((LOG_START_LINE + 1))" "$SERVER_LOG" | tail -n 40)"
  fi
  if [[ -n "$new_lines" ]]; then
    log "---- last lines of $SERVER_LOG (this start only) ----"
    printf '%s\n' "$new_lines" >&2
  fi
}

# ------------------------------------------------------------------- fetch --
cmd_fetch() {
  local quiet="${1:-}"
  if [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(fetch_key)" ]] && [[ -d "$LIBS_DIR" ]]; then
    [[ "$quiet" == quiet ]] || { echo "kafka_version=$KAFKA_VERSION"; echo "libs=$LIBS_DIR"; }
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found (Maven 3 is needed to fetch the Kafka jars)"
  mkdir -p "$CACHE_ROOT/kafka-$KAFKA_VERSION" "$M2_REPO"

  # One fetch at a time per version (two shells may start Kafka at once).
  exec 9>"$CACHE_ROOT/kafka-$KAFKA_VERSION/fetch.lock"
  command -v flock >/dev/null 2>&1 && flock 9
  if [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(fetch_key)" ]] && [[ -d "$LIBS_DIR" ]]; then
    exec 9>&-
    cmd_fetch "$quiet"
    return 0
  fi

  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS_DIR"
  local tmp="$LIBS_DIR.tmp.$$" mvn_log="$CACHE_ROOT/kafka-$KAFKA_VERSION/fetch.log"
  rm -rf "$tmp"
  # Maven's output goes to fetch.log and is shown only when it fails.
  if ! mvn -B -f "$POM" \
      -Dmaven.repo.local="$M2_REPO" \
      -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies \
      -DincludeScope=runtime \
      -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    grep -E 'ERROR|WARN' "$mvn_log" | head -n 20 >&2 || true
    rm -rf "$tmp"
    die "maven could not resolve Kafka $KAFKA_VERSION (is that version on Maven Central? full log: $mvn_log)"
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch (log: $mvn_log)"
  rm -rf "$LIBS_DIR"
  mv "$tmp" "$LIBS_DIR"
  fetch_key >"$STAMP"
  exec 9>&-
  log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS_DIR" | cut -f1))"
  [[ "$quiet" == quiet ]] || { echo "kafka_version=$KAFKA_VERSION"; echo "libs=$LIBS_DIR"; }
}

# Changes when the version or the pom changes, so an edited pom re-fetches.
fetch_key() {
  echo "$KAFKA_VERSION $(cksum <"$POM" | cut -d' ' -f1)"
}

# -------------------------------------------------------------------- deps --
cmd_deps() {
  if command -v kcat >/dev/null 2>&1; then
    log "kcat already installed: $(command -v kcat)"
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install kcat by other means"
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install kcat"
    sudo=(sudo)
  fi
  local apt_log
  apt_log="$(mktemp)"
  if ! { "${sudo[@]}" apt-get update -qq &&
         "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2; rm -f "$apt_log"
    die "apt-get install kcat failed"
  fi
  rm -f "$apt_log"
  log "installed kcat: $(command -v kcat)"
}

# ------------------------------------------------------------------- start --
write_configs() {
  mkdir -p "$KAFKA_DATA" "$LOG_DIR"
  # Marks the dir as ours: `clean` deletes nothing else.
  echo "data dir of ops/kafka/kafka.sh; 'kafka.sh clean' deletes it" >"$MARKER"
  cat >"$PROPS" <<EOF
# Written by ops/kafka/kafka.sh on every start; edits are overwritten.
# Single node: this process is both the KRaft controller and the broker.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DATA

# Topics: auto-created on first use, one replica (there is only one broker).
auto.create.topics.enable=true
num.partitions=$PARTITIONS
default.replication.factor=1
min.insync.replicas=1

# Internal topics: one replica and few partitions, or groups and
# transactions would wait forever for replicas that never come.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Consumer groups start at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0

# Small thread pools: this is a 2-core test machine.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
EOF

  cat >"$LOG4J_SERVER" <<'EOF'
# Broker log: everything goes to logs/server.log in the data dir.
status = warn
name = kafka-server
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
}

# Run a Kafka class in a short-lived JVM tuned to start fast.
run_tool_class() {
  local class="$1"; shift
  if [[ ! -f "$LOG4J_TOOLS" ]]; then
    cat >"$LOG4J_TOOLS" <<'EOF'
# Kafka command-line tools run by kafka.sh: warnings and errors to stderr only.
status = warn
name = kafka-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
  fi
  "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_TOOLS" \
    -cp "$LIBS_DIR/*" "$class" "$@"
}

new_cluster_id() {
  # A Kafka cluster id is 16 random bytes in URL-safe base64 without padding
  # (22 characters); Kafka itself never hands out ids starting with '-'.
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* ]] && { echo "$id"; return; }
  done
}

format_storage_if_needed() {
  if [[ -f "$KAFKA_DATA/meta.properties" ]]; then
    return 0
  fi
  local cluster_id
  cluster_id="$(new_cluster_id)"
  log "formatting new KRaft storage in $KAFKA_DATA (cluster id $cluster_id)"
  run_tool_class kafka.tools.StorageTool format \
    --config "$PROPS" --cluster-id "$cluster_id" >"$LOG_DIR/format.log" 2>&1 ||
    { cat "$LOG_DIR/format.log" >&2; die "formatting the storage failed"; }
}

# One metadata round trip: the broker answers and lists itself.
probe_ready() {
  local use_kcat=no
  case "$PROBE" in
    kcat) use_kcat=yes ;;
    java) use_kcat=no ;;
    *) command -v kcat >/dev/null 2>&1 && use_kcat=yes ;;
  esac
  if [[ "$use_kcat" == yes ]]; then
    kcat -L -b "$HOST:$PORT" -m 3 2>/dev/null | grep -q "broker 1 at $HOST:$PORT"
  else
    run_tool_class org.apache.kafka.tools.BrokerApiVersionsCommand \
      --bootstrap-server "$HOST:$PORT" 2>/dev/null | grep -q "^$HOST:$PORT (id: 1"
  fi
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  while (( SECONDS < deadline )); do
    alive "$pid" || { show_log_tail; die "Kafka exited during startup (logs in $LOG_DIR)"; }
    if port_open "$PORT" && probe_ready; then
      return 0
    fi
    sleep 0.3
  done
  show_log_tail
  log "Kafka not ready on $HOST:$PORT after ${START_TIMEOUT}s; stopping it (logs stay in $LOG_DIR)"
  cmd_stop
  die "Kafka did not become ready within ${START_TIMEOUT}s (raise RDV_KAFKA_START_TIMEOUT?)"
}

print_endpoints() {
  echo "kafka_version=$KAFKA_VERSION"
  echo "brokers=$HOST:$PORT"
  echo "pid=$1"
  echo "data_dir=$DATA_DIR"
}

cmd_start() {
  require_java
  local pid
  if pid="$(running_pid)"; then
    log "already running (pid $pid)"
    wait_ready "$pid"
    print_endpoints "$pid"
    return 0
  fi
  local p
  for p in "$PORT" "$CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "port $p on $HOST is already in use by another process"
    fi
  done

  cmd_fetch quiet
  write_configs
  format_storage_if_needed
  rm -f "$PID_FILE"
  if [[ -f "$SERVER_LOG" ]]; then
    LOG_START_LINE="$(wc -l <"$SERVER_LOG")"
  fi

  log "starting Kafka $KAFKA_VERSION on $HOST:$PORT (controller $HOST:$CONTROLLER_PORT, data $DATA_DIR)"
  local t0
  t0="$(now_ms)"
  # setsid: the broker gets its own session, so a Ctrl-C in the caller's
  # terminal does not reach it. The inner shell writes its own pid (which
  # becomes the java pid through exec) before starting Kafka.
  local detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  # shellcheck disable=SC2086,SC2016  # HEAP_OPTS is a list of flags; $$ is for the inner shell
  "${detach[@]}" bash -c 'echo $$ >"$1"; shift; exec "$@"' kafka-launch "$PID_FILE" \
    "$JAVA" $HEAP_OPTS \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dkafka.logs.dir="$LOG_DIR" \
    -Dlog4j2.configurationFile="$LOG4J_SERVER" \
    -cp "$LIBS_DIR/*" kafka.Kafka "$PROPS" \
    </dev/null >"$STDOUT_LOG" 2>&1 &

  local _
  for _ in $(seq 50); do [[ -s "$PID_FILE" ]] && break; sleep 0.1; done
  pid="$(tr -dc '0-9' <"$PID_FILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] || die "could not start java (see $STDOUT_LOG)"

  wait_ready "$pid"
  local ms=$(( $(now_ms) - t0 ))
  log "ready in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s (pid $pid, log $SERVER_LOG)"
  print_endpoints "$pid"
}

# -------------------------------------------------------------------- stop --
cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping Kafka (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while alive "$pid" && (( SECONDS < deadline )); do
    sleep 0.2
  done
  if alive "$pid"; then
    log "still running after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while alive "$pid" && (( SECONDS < deadline )); do sleep 0.1; done
    if alive "$pid"; then
      die "pid $pid survived SIGKILL for 10s; pid file kept at $PID_FILE"
    fi
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

# ------------------------------------------------------------------ status --
cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    echo "state=running"
    print_endpoints "$pid"
    return 0
  fi
  echo "state=stopped"
  echo "data_dir=$DATA_DIR"
  return 3
}

# ------------------------------------------------------------------- clean --
cmd_clean() {
  cmd_stop
  [[ -e "$DATA_DIR" ]] || { log "nothing to clean at $DATA_DIR"; return 0; }
  # Only delete a directory that this script made (it holds the marker file)
  # or an empty one, so a mistyped RDV_KAFKA_DIR cannot wipe something else.
  if [[ -f "$MARKER" || -z "$(ls -A "$DATA_DIR")" ]]; then
    rm -rf -- "$DATA_DIR"
    log "removed $DATA_DIR"
  else
    die "$DATA_DIR does not look like a kafka.sh data dir; not deleting it"
  fi
}

# -------------------------------------------------------------------- tool --
cmd_tool() {
  [[ $# -ge 1 ]] || die "usage: kafka.sh tool CLASS [ARGS...]"
  require_java
  local class="$1"; shift
  [[ "$class" == *.* ]] || class="org.apache.kafka.tools.$class"
  cmd_fetch quiet
  run_tool_class "$class" "$@"
}

# -------------------------------------------------------------------- main --
main() {
  local cmd="${1:-help}"
  [[ $# -gt 0 ]] && shift
  [[ -n "$KAFKA_VERSION" ]] || die "no Kafka version (pom.xml unreadable and RDV_KAFKA_VERSION unset)"
  case "$cmd" in
    deps)   cmd_deps ;;
    fetch)  cmd_fetch ;;
    start)  cmd_start ;;
    stop)   cmd_stop ;;
    status) cmd_status ;;
    clean)  cmd_clean ;;
    tool)   cmd_tool "$@" ;;
    help|-h|--help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
