#!/usr/bin/env bash
# Creates the topics of deploy/compose/enforcer.toml (the compose stack's `topics` service runs
# it in the apache/kafka image). Idempotent: an existing topic is left as it is.
#
#   KAFKA_BOOTSTRAP_SERVERS   the broker (default kafka:9092)
#   KAFKA_TOPICS              the kafka-topics command (default /opt/kafka/bin/kafka-topics.sh)
#   INPUT_PARTITIONS          partitions of events.raw (default 6); other topics get 3
set -euo pipefail

bootstrap=${KAFKA_BOOTSTRAP_SERVERS:-kafka:9092}
read -r -a kafka_topics <<<"${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"
input_partitions=${INPUT_PARTITIONS:-6}

create() { # topic partitions [config=value...]
  local topic=$1 partitions=$2 configs=()
  shift 2
  for config in "$@"; do configs+=(--config "$config"); done
  "${kafka_topics[@]}" --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "$topic" --partitions "$partitions" --replication-factor 1 "${configs[@]}"
}

# The broker sets record timestamps on the input and consent topics, so that neither a
# client's clock nor a writer can date an event or a choice (README "Event time and CreateTime").
create events.raw "$input_partitions" message.timestamp.type=LogAppendTime
create consent.states 3 cleanup.policy=compact message.timestamp.type=LogAppendTime
create privacy.requests 3 cleanup.policy=compact message.timestamp.type=LogAppendTime
for destination in amplitude google-ads braze warehouse; do
  create "dest.$destination" 3
done
create events.dead-letter 3 retention.ms=604800000
create consent.audit 3 cleanup.policy=delete
echo "topics: ready"
"${kafka_topics[@]}" --bootstrap-server "$bootstrap" --list
