#!/usr/bin/env bash
# Runs every test: unit tests (no broker) and the broker-backed suites in tests/.
# Uses the broker in CONSENT_ENFORCER_TEST_BOOTSTRAP if set; otherwise starts the project's
# local broker on 127.0.0.1:19092 with empty data (and stops it afterwards if this script
# started it).
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh --test routing`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/install-deps.sh

if [ -z "${CONSENT_ENFORCER_TEST_BOOTSTRAP:-}" ]; then
  export KAFKA_PORT=19092
  if ! scripts/kafka.sh status; then
    trap 'KAFKA_PORT=19092 scripts/kafka.sh stop' EXIT
  fi
  scripts/kafka.sh fresh
  export CONSENT_ENFORCER_TEST_BOOTSTRAP=127.0.0.1:19092
fi

# The broker-backed tests mostly wait on I/O; more threads than cores keeps the run short.
cargo test --all-targets --features bench "$@" -- --test-threads="${TEST_THREADS:-4}"
