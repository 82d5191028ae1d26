#!/usr/bin/env bash
# Local infrastructure without Docker: Apache Kafka (KRaft, one node) and FerretDB (SQLite),
# run as processes with pid files and logs under .local/. Usage: infra.sh up|down|reset|status
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
RUN="$LOCAL/run"
LOGS="$LOCAL/logs"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/local/kafka/pom.xml")"
KAFKA_HOME="$LOCAL/kafka/$KAFKA_VERSION"
KAFKA_DATA="$LOCAL/data/kafka"
FERRET_BIN="$LOCAL/bin/ferretdb"
FERRET_DATA="$LOCAL/data/ferretdb"
KAFKA_PORT=9092
MONGO_PORT=27017
WAIT_S="${PARLEY_INFRA_WAIT_S:-90}"

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

start_kafka() {
  if alive kafka && port_open $KAFKA_PORT; then say "kafka already running (pid $(cat "$RUN/kafka.pid"))"; return; fi
  if port_open $KAFKA_PORT; then die "port $KAFKA_PORT is taken by a process this script did not start"; fi
  install_kafka
  mkdir -p "$KAFKA_DATA"
  sed "s:@DATA_DIR@:$KAFKA_DATA:" "$ROOT/deploy/local/kafka/server.properties.in" >"$LOCAL/kafka/server.properties"
  local cp="$KAFKA_HOME/libs/*"
  if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    java -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" -cp "$cp" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$LOCAL/kafka/server.properties" --standalone \
      >>"$LOGS/kafka.log" 2>&1 || { tail -20 "$LOGS/kafka.log" >&2; die "kafka storage format failed"; }
  fi
  say "starting kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT"
  local log_start; log_start=$(( $(stat -c %s "$LOGS/kafka.log" 2>/dev/null || echo 0) + 1 ))
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" \
    -cp "$cp" kafka.Kafka "$LOCAL/kafka/server.properties" >>"$LOGS/kafka.log" 2>&1 </dev/null &
  echo $! >"$RUN/kafka.pid"
  wait_port kafka $KAFKA_PORT
  # the port opens before the broker has joined its controller: wait for the started line
  local deadline=$((SECONDS + WAIT_S))
  until tail -c +"$log_start" "$LOGS/kafka.log" | grep -q "Kafka Server started"; do
    alive kafka || { tail -30 "$LOGS/kafka.log" >&2; die "kafka exited during start-up"; }
    (( SECONDS > deadline )) && die "kafka did not finish starting within ${WAIT_S}s (log: $LOGS/kafka.log)"
    sleep 0.3
  done
}

start_ferretdb() {
  if alive ferretdb && port_open $MONGO_PORT; then say "ferretdb already running (pid $(cat "$RUN/ferretdb.pid"))"; return; fi
  if port_open $MONGO_PORT; then die "port $MONGO_PORT is taken by a process this script did not start"; fi
  install_ferretdb
  mkdir -p "$FERRET_DATA"
  say "starting ferretdb (sqlite) on 127.0.0.1:$MONGO_PORT"
  nohup "$FERRET_BIN" --listen-addr "127.0.0.1:$MONGO_PORT" --sqlite-url "file:$FERRET_DATA/" \
    >>"$LOGS/ferretdb.log" 2>&1 </dev/null &
  echo $! >"$RUN/ferretdb.pid"
  wait_port ferretdb $MONGO_PORT
}

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

case "${1:-}" in
  install) install_kafka; install_ferretdb ;;
  up) start_kafka; start_ferretdb; say "kafka 127.0.0.1:$KAFKA_PORT and ferretdb 127.0.0.1:$MONGO_PORT are up" ;;
  down) stop ferretdb; stop kafka ;;
  reset) stop ferretdb; stop kafka; rm -rf "$KAFKA_DATA" "$FERRET_DATA"; say "data wiped" ;;
  status)
    for n in kafka ferretdb; do if alive $n; then say "$n running (pid $(cat "$RUN/$n.pid"))"; else say "$n stopped"; fi; done ;;
  stop-kafka) stop kafka ;;
  stop-ferretdb) stop ferretdb ;;
  *) echo "usage: $0 install|up|down|reset|status" >&2; exit 2 ;;
esac
