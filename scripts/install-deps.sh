#!/usr/bin/env bash
# Installs what building and testing consent-enforcer needs and a fresh Debian/Ubuntu machine
# may lack: a C toolchain and pkg-config with OpenSSL headers (librdkafka is built from
# source), a Java runtime and Maven (the local Kafka broker), curl, and openssl (the local
# broker's certificates). Rust itself comes from rustup (https://rustup.rs); Debian's
# packaged cargo is too old for the dependencies.
set -euo pipefail

missing=()
need() { # command package
  command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need cc gcc
need c++ g++
need make make
need pkg-config pkg-config
need perl perl
need java openjdk-17-jre-headless
need mvn maven
need curl curl
# Certificates for the local broker's SSL listener (scripts/kafka.sh, KAFKA_SECURE=1).
need openssl openssl
# OpenSSL headers for librdkafka's TLS/SASL support.
if ! pkg-config --exists openssl 2>/dev/null; then missing+=(libssl-dev); fi
# zlib headers for librdkafka's gzip codec.
if ! pkg-config --exists zlib 2>/dev/null; then missing+=(zlib1g-dev); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install Rust with rustup (https://rustup.rs) and retry" >&2
  exit 1
fi

# rustfmt and clippy, for .ci/run's checks.
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" ||
      rustup component add "$component" >/dev/null 2>&1 || true
  done
fi

# cargo-fuzz, for scripts/fuzz.sh; fuzzing needs the nightly toolchain, so without it this is
# skipped (scripts/fuzz.sh then says what is missing).
if cargo +nightly --version >/dev/null 2>&1; then
  if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "install-deps: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
  fi
else
  echo "install-deps: no nightly toolchain, so no cargo-fuzz (for scripts/fuzz.sh: rustup toolchain install nightly)"
fi
