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
#   scripts/kafka.sh tls-dir     print the folder of the KAFKA_SECURE=1 certificates (PEM)
#   scripts/kafka.sh tool CLASS ARGS...   run a Kafka CLI class (e.g. org.apache.kafka.tools.TopicCommand)
#
# Environment:
#   CONSENT_ENFORCER_CACHE_DIR  where jars and data live (default ~/.cache/consent-enforcer)
#   KAFKA_PORT                  client port (default 9092); the controller uses KAFKA_PORT+1
#   KAFKA_HEAP                  JVM heap (default 768m)
#   KAFKA_START_TIMEOUT         seconds to wait for the broker to serve (default 180)
#   KAFKA_SECURE=1              also listen with SASL_PLAINTEXT (SCRAM-SHA-512) on KAFKA_PORT+2
#                               and with SSL (client certificate required) on KAFKA_PORT+3;
#                               the certificates are made with openssl into `tls-dir`: ca.pem,
#                               and client.pem with client.key (CN=enforcer) for clients
#   KAFKA_SCRAM_USER            the SCRAM-SHA-512 user (default enforcer)
#   KAFKA_SCRAM_PASSWORD        its password (default enforcer-secret)
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
secure=${KAFKA_SECURE:-0}
sasl_port=$((port + 2))
ssl_port=$((port + 3))
tls="$run/tls"
scram_user=${KAFKA_SCRAM_USER:-enforcer}
scram_password=${KAFKA_SCRAM_PASSWORD:-enforcer-secret}
# The broker's keystore password: test material, on this machine only.
store_password=broker-keystore

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

# A CA, a broker certificate for 127.0.0.1/localhost (PKCS12 keystore) and a client
# certificate (PEM, for librdkafka), made once per broker folder.
make_tls() {
  if [ -f "$tls/.complete" ]; then return 0; fi
  command -v openssl >/dev/null || { log "openssl not found: install it (apt-get install openssl)"; exit 1; }
  rm -rf "$tls" && mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
      -subj "/CN=consent-enforcer local CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    for name in broker client; do
      if [ "$name" = broker ]; then cn=localhost usage=serverAuth; else cn=enforcer usage=clientAuth; fi
      openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn"
      printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=%s\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' \
        "$usage" >"$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$name.ext" -out "$name.pem"
    done
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
      -passout "pass:$store_password" -out broker.p12
    rm -f ./*.csr ./*.ext ca.srl
  ) >"$run/tls.log" 2>&1 || { cat "$run/tls.log" >&2; exit 1; }
  touch "$tls/.complete"
}

write_config() {
  mkdir -p "$run"
  local listeners="PLAINTEXT://127.0.0.1:$port" protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [ "$secure" = 1 ]; then
    make_tls
    listeners="$listeners,SASL_PLAINTEXT://127.0.0.1:$sasl_port,SSL://127.0.0.1:$ssl_port"
    protocols="$protocols,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL"
  fi
  cat >"$run/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=$listeners,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
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
  if [ "$secure" = 1 ]; then
    cat >>"$run/server.properties" <<EOF
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.ssl.ssl.keystore.type=PKCS12
listener.name.ssl.ssl.keystore.location=$tls/broker.p12
listener.name.ssl.ssl.keystore.password=$store_password
listener.name.ssl.ssl.key.password=$store_password
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$tls/ca.pem
listener.name.ssl.ssl.client.auth=required
EOF
  fi
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
    # without starting a JVM for it. Like Kafka's own Uuid.randomUuid, never one that starts
    # with '-': the format tool would take it for an option (one start in 64 failed so).
    cluster_id=-
    while [ "${cluster_id#-}" != "$cluster_id" ]; do
      cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    local scram=()
    if [ "$secure" = 1 ]; then
      # KRaft takes SCRAM credentials at format time, from the broker's own tool.
      scram=(--add-scram "SCRAM-SHA-512=[name=$scram_user,password=$scram_password]")
    fi
    java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$run/server.properties" "${scram[@]}" \
      >"$run/format.log" 2>&1 || { cat "$run/format.log" >&2; exit 1; }
    if [ "$secure" = 1 ]; then scram_marker >"$data/.scram"; fi
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
      if [ "$secure" = 1 ]; then add_scram_user; fi
      log "ready: 127.0.0.1:$port after $((SECONDS - started)) s"
      if [ "$secure" = 1 ]; then
        log "also SASL_PLAINTEXT (SCRAM-SHA-512, user $scram_user) on 127.0.0.1:$sasl_port and SSL on 127.0.0.1:$ssl_port (certificates: $tls)"
      fi
      return 0
    fi
    sleep 0.5
  done
  log "broker did not become ready within $timeout s (KAFKA_START_TIMEOUT); stopping it:"
  tail -n 30 "$logfile" >&2
  stop
  exit 1
}

# Which SCRAM user and password the data holds, without the password itself.
scram_marker() {
  printf '%s %s\n' "$scram_user" "$(printf '%s' "$scram_password" | sha256sum | cut -d' ' -f1)"
}

# Data formatted without this SCRAM user (or with another password) gets it through the
# PLAINTEXT listener, from the broker's own tool.
add_scram_user() {
  if [ "$(cat "$data/.scram" 2>/dev/null)" = "$(scram_marker)" ]; then return 0; fi
  java_cmd kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$port" --alter --entity-type users \
    --entity-name "$scram_user" --add-config "SCRAM-SHA-512=[password=$scram_password]" \
    >"$run/scram.log" 2>&1 || { cat "$run/scram.log" >&2; exit 1; }
  scram_marker >"$data/.scram"
}

ensure() {
  if is_running && port_open "$port"; then
    if [ "$secure" = 1 ]; then add_scram_user; fi
    return 0
  fi
  start
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
  tls-dir) echo "$tls" ;;
  tool) shift; fetch; write_config; java_cmd "$@" ;;
  *) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
