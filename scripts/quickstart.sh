#!/usr/bin/env bash
# The main job, locally, in one command: start the local Kafka broker, create the topics of
# deploy/quickstart/enforcer.toml, write sample consent states, start the enforcer, write
# sample events, and print what each destination received and why events were dropped.
#
# Re-runnable: the quickstart topics are deleted and created afresh each time.
# The broker is left running for exploration; stop it with `scripts/kafka.sh stop`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
config=deploy/quickstart/enforcer.toml
bootstrap=127.0.0.1:${KAFKA_PORT:-9092}
metrics_addr=127.0.0.1:9464
unset KAFKA_BOOTSTRAP_SERVERS # the quickstart talks to the local broker only

step() { printf '\n==> %s\n' "$*"; }

step "Installing prerequisites (if missing)"
scripts/install-deps.sh

step "Starting the local Kafka broker"
scripts/kafka.sh ensure

step "Building consent-enforcer"
cargo build --quiet --bin consent-enforcer
bin=target/debug/consent-enforcer
$bin check-config --config "$config"

kafka_tool() { scripts/kafka.sh tool "$@" 2> >(grep -v '^SLF4J' >&2); }
topics=$(sed -n 's/^topic[s]* *= *\(.*\)$/\1/p' "$config" | tr -d '[]",' | tr ' ' '\n' | sed '/^$/d')

step "Creating topics"
# One TopicCommand JVM for all deletions, then one per creation (each takes ~2 s).
existing=$(kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --list)
for topic in $topics; do
  if grep -qx "$topic" <<<"$existing"; then
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --delete --topic "$topic"
  fi
done
sleep 1
for topic in $topics; do
  extra=()
  [ "$topic" = quickstart.consent.states ] && extra=(--config cleanup.policy=compact)
  [ "$topic" = quickstart.events.raw ] && extra=(--partitions 3)
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --create \
    --if-not-exists --topic "$topic" "${extra[@]}" >/dev/null
  echo "  $topic"
done

produce() { # topic file: lines of key<TAB>value
  kafka_tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$bootstrap" --topic "$1" \
    --property parse.key=true --property "key.separator=	" --producer-property acks=all <"$2"
}

step "Writing sample consent states (deploy/quickstart/consent.tsv)"
produce quickstart.consent.states deploy/quickstart/consent.tsv
cut -f1 deploy/quickstart/consent.tsv | sed 's/^/  /'

step "Starting the enforcer"
log=$(mktemp -t consent-enforcer-quickstart.XXXXXX)
$bin run --config "$config" 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do
  if curl -fs "http://$metrics_addr/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then echo "enforcer exited:"; cat "$log"; exit 1; fi
  sleep 0.5
done
curl -fs "http://$metrics_addr/readyz"

step "Writing sample events (deploy/quickstart/events.tsv)"
produce quickstart.events.raw deploy/quickstart/events.tsv
expected=$(wc -l <deploy/quickstart/events.tsv)

metric() { curl -fs "http://$metrics_addr/metrics" | grep "^$1" || true; }
for _ in $(seq 1 60); do
  received=$(metric consent_enforcer_events_received_total | awk '{print $2}')
  in_flight=$(metric consent_enforcer_writes_in_flight | awk '{print $2}')
  if [ "${received:-0}" -ge "$expected" ] && [ "${in_flight:-0}" = 0 ]; then break; fi
  sleep 0.5
done

# "reason=count" pairs of the non-zero series of one metric selector.
reasons() {
  { grep "^$1" <<<"$metrics" || true; } | sed -n 's/.*reason="\([^"]*\)"} \([0-9]*\)/\1=\2/p' |
    { grep -v '=0$' || true; } | tr '\n' ' '
}

step "Results: $received events received"
metrics=$(curl -fs "http://$metrics_addr/metrics")
printf '%-12s %10s   %s\n' destination delivered "dropped (by reason)"
for dest in $(grep -o 'name = "[^"]*"' "$config" | cut -d'"' -f2); do
  delivered=$({ grep "^consent_enforcer_events_delivered_total{destination=\"$dest\"}" <<<"$metrics" || true; } | awk '{print $2}')
  dropped=$(reasons "consent_enforcer_events_dropped_total{destination=\"$dest\"")
  printf '%-12s %10s   %s\n' "$dest" "${delivered:-0}" "${dropped:-none}"
done
echo
echo "dead-lettered:            $(reasons consent_enforcer_events_dead_lettered_total)"
echo "consent records rejected: $(reasons consent_enforcer_consent_records_rejected_total)"

step "Stopping the enforcer (SIGTERM)"
kill -TERM "$pid"
wait "$pid" && echo "enforcer exited 0 after committing its offsets"
trap - EXIT
echo
echo "Inspect a destination:  scripts/kafka.sh tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server $bootstrap --topic quickstart.dest.amplitude --from-beginning --property print.key=true"
echo "Stop the broker:        scripts/kafka.sh stop"
