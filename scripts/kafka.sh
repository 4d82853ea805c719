#!/usr/bin/env bash
# A local, single-node Apache Kafka 4.x broker (KRaft, combined broker+controller) on 127.0.0.1,
# for the quickstart and the tests. The broker jars come from Maven Central through
# scripts/kafka/pom.xml and are cached; nothing here needs Docker.
#
#   scripts/kafka.sh fetch       download the broker jars into the cache (once)
#   scripts/kafka.sh start       fetch, format storage if new, start, wait until it serves
#   scripts/kafka.sh ensure      start unless a broker started by this script already runs
#   scripts/kafka.sh fresh       like ensure, but a broker that has to be started gets empty data
#                                (tests: topics left by earlier runs only slow the start-up down)
#   scripts/kafka.sh stop        stop it (SIGTERM, then SIGKILL after 30 s)
#   scripts/kafka.sh restart     stop then start, keeping the data
#   scripts/kafka.sh reset       stop and delete the data
#   scripts/kafka.sh status      exit 0 if it runs
#   scripts/kafka.sh bootstrap   print the bootstrap address
#   scripts/kafka.sh tool CLASS ARGS...   run a Kafka CLI class (e.g. org.apache.kafka.tools.TopicCommand)
#
# Environment:
#   CONSENT_ENFORCER_CACHE_DIR  where jars and data live (default ~/.cache/consent-enforcer)
#   KAFKA_PORT                  client port (default 9092); the controller uses KAFKA_PORT+1
#   KAFKA_HEAP                  JVM heap (default 768m)
#   KAFKA_START_TIMEOUT         seconds to wait for the broker to serve (default 180)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pom="$here/kafka/pom.xml"
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
cache=${CONSENT_ENFORCER_CACHE_DIR:-$HOME/.cache/consent-enforcer}
libs="$cache/kafka-$version/libs"
port=${KAFKA_PORT:-9092}
controller_port=$((port + 1))
run="$cache/broker-$port"
data="$run/data"
pidfile="$run/broker.pid"
logfile="$run/broker.log"

log() { echo "kafka.sh: $*" >&2; }

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "mvn not found: install Maven (apt-get install maven)"; exit 1; }
  command -v java >/dev/null || { log "java not found: install a JDK 17+ (apt-get install openjdk-17-jre-headless)"; exit 1; }
  log "fetching Apache Kafka $version from Maven Central into $libs"
  rm -rf "$libs" && mkdir -p "$libs"
  mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs"
  touch "$libs/.complete"
}

java_cmd() {
  # shellcheck disable=SC2086
  java -Xmx"${KAFKA_HEAP:-768m}" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$run/log4j2.properties" -cp "$libs/*" "$@"
}

write_config() {
  mkdir -p "$run"
  cat >"$run/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Tests write many small topics; compaction should be observable within seconds.
log.cleaner.backoff.ms=1000
log.retention.check.interval.ms=10000
EOF
  cat >"$run/log4j2.properties" <<EOF
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka.server.KafkaRaftServer
logger.kafka.level=INFO
logger.broker.name=kafka.server.BrokerServer
logger.broker.level=INFO
EOF
}

is_running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  fetch
  if is_running; then
    log "already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
    wait_ready
    return 0
  fi
  if port_open "$port"; then
    log "127.0.0.1:$port is taken by another process; set KAFKA_PORT or stop it"
    exit 1
  fi
  write_config
  if [ ! -f "$data/meta.properties" ]; then
    mkdir -p "$data"
    # What `StorageTool random-uuid` prints (16 random bytes, URL-safe base64 without padding),
    # without starting a JVM for it.
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$run/server.properties" >"$run/format.log" 2>&1 ||
      { cat "$run/format.log" >&2; exit 1; }
  fi
  log "starting Kafka $version on 127.0.0.1:$port (log: $logfile)"
  # Emptied here: the background shell's own redirection can come after the first look for
  # "started" below, which an earlier start's log would then answer.
  : >"$logfile"
  nohup bash -c "exec $(printf '%q ' java -Xmx"${KAFKA_HEAP:-768m}" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$run/log4j2.properties" -cp "$libs/*" kafka.Kafka "$run/server.properties")" \
    >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_ready
}

# Waits until the broker started by this script serves (its log says so), at most
# KAFKA_START_TIMEOUT seconds.
wait_ready() {
  local timeout=${KAFKA_START_TIMEOUT:-180} started=$SECONDS
  while [ $((SECONDS - started)) -lt "$timeout" ]; do
    if ! is_running; then log "broker exited during start-up:"; tail -n 30 "$logfile" >&2; exit 1; fi
    if grep -q "Kafka Server started\|\[BrokerServer id=1\] Transition from STARTING to STARTED" "$logfile" 2>/dev/null; then
      log "ready: 127.0.0.1:$port after $((SECONDS - started)) s"
      return 0
    fi
    sleep 0.5
  done
  log "broker did not become ready within $timeout s (KAFKA_START_TIMEOUT); stopping it:"
  tail -n 30 "$logfile" >&2
  stop
  exit 1
}

ensure() {
  is_running && port_open "$port" || start
}

stop() {
  if ! is_running; then rm -f "$pidfile"; return 0; fi
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; log "stopped"; return 0; }
    sleep 0.5
  done
  log "broker did not stop within 30 s; killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  ensure) ensure ;;
  fresh) is_running || rm -rf "$data"; ensure ;;
  stop) stop ;;
  restart) stop; start ;;
  reset) stop; rm -rf "$run" ;;
  status) is_running ;;
  bootstrap) echo "127.0.0.1:$port" ;;
  tool) shift; fetch; write_config; java_cmd "$@" ;;
  *) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
