#!/usr/bin/env bash
# The compose stack's integration scenario (docker-compose.yml, profile "test") run for real
# without Docker: the project's local broker, the topics of deploy/compose/topics.sh, the
# enforcer binary with deploy/compose/enforcer.toml, then deploy/compose/loadgen.py and
# deploy/compose/verify.py. Exits with verify's status: 0 no leak and no loss, 1 a check
# failed, 2 a setup error; any other failure (broker, enforcer, loadgen) exits 1.
#
#   scripts/scenario.sh
#
# Environment:
#   SCENARIO_KAFKA_PORT       the local broker's port (default 19392; the tests use 19092). A
#                             broker this script starts gets empty data and is stopped at the
#                             end; one already running there is used and left running.
#   CONSENT_ENFORCER_BIN      the enforcer binary (default: the newer of target/release and
#                             target/debug consent-enforcer; built if neither exists)
#   SCENARIO_ENFORCER_CONFIG  the enforcer's config (default deploy/compose/enforcer.toml;
#                             the scenario is written for its destinations and rules)
#   SCENARIO_USERS_PER_CASE   users per case of loadgen.py (default 20)
#   VERIFY_IDLE_SECONDS       verify.py's quiet period once everything expected arrived (5)
#   VERIFY_TIMEOUT_SECONDS    verify.py's longest wait (120)
#
# Python: a venv with confluent-kafka (pinned, as docker-compose.yml installs it) in
# ${XDG_CACHE_HOME:-$HOME/.cache}/consent-enforcer/tools/scenario-venv, made once.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

CONFLUENT_KAFKA_VERSION=2.16.1 # the pin of docker-compose.yml's loadgen and verify services
port=${SCENARIO_KAFKA_PORT:-19392}
bootstrap=127.0.0.1:$port
config=${SCENARIO_ENFORCER_CONFIG:-deploy/compose/enforcer.toml}
venv="${XDG_CACHE_HOME:-$HOME/.cache}/consent-enforcer/tools/scenario-venv"
export VERIFY_IDLE_SECONDS=${VERIFY_IDLE_SECONDS:-5}
export VERIFY_TIMEOUT_SECONDS=${VERIFY_TIMEOUT_SECONDS:-120}

say() { echo "scenario: $*" >&2; }
started=$SECONDS
elapsed() { echo "$((SECONDS - started)) s"; }

work=$(mktemp -d)
broker_started=0
enforcer_pid=""
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  local status=$?
  if [ -n "$enforcer_pid" ] && kill -0 "$enforcer_pid" 2>/dev/null; then
    kill -TERM "$enforcer_pid" 2>/dev/null || true
    # delivery.drain_timeout (30 s) plus 1 s is the worst case from SIGTERM to exit.
    for _ in $(seq 1 70); do kill -0 "$enforcer_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$enforcer_pid" 2>/dev/null || true
    wait "$enforcer_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -s "$work/enforcer.log" ]; then
    say "the enforcer's last log lines:"
    tail -n 20 "$work/enforcer.log" | sed 's/^/    /' >&2
  fi
  if [ "$broker_started" = 1 ]; then KAFKA_PORT=$port scripts/kafka.sh stop || true; fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- The enforcer binary -------------------------------------------------------------------
bin=${CONSENT_ENFORCER_BIN:-}
if [ -z "$bin" ]; then
  for candidate in target/release/consent-enforcer target/debug/consent-enforcer; do
    if [ -x "$candidate" ] && { [ -z "$bin" ] || [ "$candidate" -nt "$bin" ]; }; then
      bin=$candidate
    fi
  done
  if [ -z "$bin" ]; then
    say "no enforcer binary yet: cargo build --bin consent-enforcer"
    cargo build --bin consent-enforcer
    bin=target/debug/consent-enforcer
  fi
fi
[ -x "$bin" ] || { say "CONSENT_ENFORCER_BIN=$bin is not an executable"; exit 1; }
if [ -n "$(find src Cargo.toml Cargo.lock -newer "$bin" -print -quit 2>/dev/null)" ]; then
  say "warning: $bin is older than src/: the scenario tests that build, not the source"
fi

# --- Python with confluent-kafka, in the background while the broker starts ---------------
(
  if ! "$venv/bin/python" -c "import confluent_kafka, sys; sys.exit(confluent_kafka.version()[0] != '$CONFLUENT_KAFKA_VERSION')" 2>/dev/null; then
    say "installing confluent-kafka==$CONFLUENT_KAFKA_VERSION (pip, in $venv)"
    rm -rf "$venv"
    python3 -m venv "$venv" &&
      "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
        "confluent-kafka==$CONFLUENT_KAFKA_VERSION"
  fi
) >"$work/pip.log" 2>&1 &
pip_pid=$!

# --- The broker and the topics -------------------------------------------------------------
if ! KAFKA_PORT=$port scripts/kafka.sh status; then broker_started=1; fi
KAFKA_PORT=$port scripts/kafka.sh fresh
broker_ready=$(elapsed)

# topics.sh runs kafka-topics.sh in the compose stack; here the same tool through kafka.sh.
cat >"$work/kafka-topics" <<EOF
#!/usr/bin/env bash
exec env KAFKA_PORT=$(printf '%q' "$port") $(printf '%q' "$root/scripts/kafka.sh") tool org.apache.kafka.tools.TopicCommand "\$@"
EOF
chmod +x "$work/kafka-topics"
KAFKA_BOOTSTRAP_SERVERS=$bootstrap KAFKA_TOPICS="$work/kafka-topics" \
  bash deploy/compose/topics.sh >"$work/topics.log" 2>&1 ||
  { say "deploy/compose/topics.sh failed:"; sed 's/^/    /' "$work/topics.log" >&2; exit 1; }

wait "$pip_pid" || { say "installing confluent-kafka failed:"; sed 's/^/    /' "$work/pip.log" >&2; exit 1; }
python=$venv/bin/python

# --- The enforcer --------------------------------------------------------------------------
metrics_port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
say "starting $bin with $config (metrics on 127.0.0.1:$metrics_port)"
CONSENT_ENFORCER_CONFIG=$config KAFKA_BOOTSTRAP_SERVERS=$bootstrap \
  CONSENT_ENFORCER_METRICS_LISTEN=127.0.0.1:$metrics_port RUST_LOG=${RUST_LOG:-info} \
  "$bin" run >"$work/enforcer.log" 2>&1 &
enforcer_pid=$!
ready=""
for _ in $(seq 1 120); do
  kill -0 "$enforcer_pid" 2>/dev/null || { say "the enforcer exited during start-up"; exit 1; }
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$metrics_port/readyz")" = 200 ]; then
    ready=1
    break
  fi
  sleep 0.5
done
[ -n "$ready" ] || { say "the enforcer was not ready within 60 s"; exit 1; }
enforcer_ready=$(elapsed)

# --- The scenario --------------------------------------------------------------------------
export KAFKA_BOOTSTRAP_SERVERS=$bootstrap
export SCENARIO_INPUT_TOPIC=events.raw SCENARIO_CONSENT_TOPIC=consent.states
export SCENARIO_PRIVACY_TOPIC=privacy.requests SCENARIO_DEAD_LETTER_TOPIC=events.dead-letter
export SCENARIO_DESTINATIONS=amplitude=dest.amplitude,google-ads=dest.google-ads,braze=dest.braze,warehouse=dest.warehouse
# verify.py waits until this group has committed the input topic's end: everything judged.
SCENARIO_ENFORCER_GROUP=$("$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["kafka"]["group_id"])' "$config")
export SCENARIO_ENFORCER_GROUP SCENARIO_RUN_ID_FILE=$work/run-id PYTHONUNBUFFERED=1
"$python" deploy/compose/loadgen.py || { say "loadgen.py failed"; exit 1; }
status=0
"$python" deploy/compose/verify.py || status=$?

kill -0 "$enforcer_pid" 2>/dev/null || { say "the enforcer exited during the scenario"; exit 1; }
metrics=$(curl -s "http://127.0.0.1:$metrics_port/metrics" || true)
sum() { # metric name: the sum of its series
  awk -v name="$1" '$1 == name || index($1, name "{") == 1 { total += $NF } END { printf "%d", total }' <<<"$metrics"
}
drops_by_reason=$(awk -F'[{}]' '$1 == "consent_enforcer_events_dropped_total" {
    if (match($2, /reason="[^"]*"/)) { split($3, v, " "); n[substr($2, RSTART + 8, RLENGTH - 9)] += v[1] }
  } END { for (r in n) if (n[r] > 0) printf "%s%s=%d", (s++ ? " " : ""), r, n[r] }' <<<"$metrics")
say "enforcer: $(sum consent_enforcer_events_received_total) events read," \
  "$(sum consent_enforcer_events_delivered_total) deliveries," \
  "$(sum consent_enforcer_events_dropped_total) drops (${drops_by_reason:-none})," \
  "$(sum consent_enforcer_events_dead_lettered_total) dead letters"
result=PASS
[ "$status" -eq 0 ] || result="FAIL (verify exited $status)"
say "$result in $(elapsed) (broker ready at $broker_ready, enforcer ready at $enforcer_ready)"
exit "$status"
