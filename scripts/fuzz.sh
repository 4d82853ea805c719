#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/fuzz_targets/: event, consent_record, config) one after another.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     each target for SECONDS (default 60)
#   scripts/fuzz.sh --runs N [TARGET...]      each target for N executions
#
# Needs the nightly toolchain and cargo-fuzz (scripts/install-deps.sh installs cargo-fuzz).
# Each target starts from its seeds (fuzz/corpus/<target>, committed) and what earlier local
# runs added (fuzz/work/<target>, not committed). A crash, or a disagreement with the oracle,
# stops that target, leaves the input in fuzz/artifacts/<target>/, and makes this script
# exit 1 once every target has run. Keep such an input under fuzz/regressions/<target>/ so
# that `cargo test --test fuzz_regressions` replays it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

limit=(-max_total_time=60)
case "${1:-}" in
  --runs)
    [ $# -ge 2 ] || { echo "usage: scripts/fuzz.sh [SECONDS | --runs N] [TARGET...]" >&2; exit 2; }
    limit=(-runs="$2")
    shift 2
    ;;
  [0-9]*)
    limit=(-max_total_time="$1")
    shift
    ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(event consent_record config)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz is missing (cargo install cargo-fuzz, or scripts/install-deps.sh)" >&2
  exit 1
fi

# Without AddressSanitizer: zstd-sys builds its C code with it when Rust code is, and
# librdkafka's configure then fails to link against it. Coverage guidance and debug
# assertions (overflow checks included) stay on; the parsers are safe Rust.
fuzz=(cargo +nightly fuzz run --sanitizer none)
cargo +nightly fuzz build --sanitizer none

failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/work/$target" "fuzz/artifacts/$target"
  echo "fuzz: $target (${limit[*]})"
  if ! "${fuzz[@]}" "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
    -dict="fuzz/dicts/$target.dict" -max_len=4096 -timeout=10 -print_final_stats=1 \
    "${limit[@]}"; then
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crash and no disagreement in ${targets[*]}"
