#!/usr/bin/env bash
# The benchmark in one command on a fresh machine: install prerequisites, start the local
# Kafka broker, build the release binaries, and run the benchmark with the arguments given
# (e.g. `scripts/bench.sh --quick`; see `consent-enforcer-bench run --help`).
# Reports go to results/ unless --results says otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/install-deps.sh
scripts/kafka.sh ensure
cargo build --release --bins --features bench
exec target/release/consent-enforcer-bench run --bootstrap "127.0.0.1:${KAFKA_PORT:-9092}" "$@"
