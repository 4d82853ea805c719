# syntax=docker/dockerfile:1
#
# consent-enforcer: the service binary on a slim Debian, as a non-root user.
#
#   docker build -t consent-enforcer .
#   docker run --rm -p 9464:9464 \
#     -v "$PWD/enforcer.toml:/etc/consent-enforcer/enforcer.toml:ro" consent-enforcer
#
# The builder and the runtime stage use the same Debian release, so the binary finds the
# glibc and the OpenSSL 3 it was linked against. The enforcer links dynamically to libssl3,
# libcrypto3 and zlib (librdkafka is built from source by rdkafka-sys with its `ssl` feature
# and the default `libz`; `zstd` is compiled in statically; no `gssapi`, so no libsasl2).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder

# What librdkafka's build needs (as scripts/install-deps.sh installs it outside Docker):
# a C toolchain, make, perl, pkg-config, and the OpenSSL and zlib headers.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gcc g++ make perl pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The git revision for consent_enforcer_build_info (the build context has no .git):
#   docker build --build-arg CONSENT_ENFORCER_REVISION="$(git rev-parse --short=12 HEAD)" .
ARG CONSENT_ENFORCER_REVISION=unknown
ENV CONSENT_ENFORCER_REVISION=${CONSENT_ENFORCER_REVISION}
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto/ proto/
COPY src/ src/

# The build command, exactly; .ci/run must build with the same command and flags:
#   cargo build --release --locked --bin consent-enforcer
# Only the service binary: the benchmark (consent-enforcer-bench) is neither built nor
# copied. The cache mounts keep the crate downloads and the build between image builds; the
# binary is copied out of the cached target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin consent-enforcer \
 && install -D -m 0755 target/release/consent-enforcer /out/consent-enforcer


FROM debian:${DEBIAN_RELEASE}-slim

# ca-certificates for TLS to the brokers; libssl3 and zlib1g are what the binary links to.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 consent-enforcer \
 && useradd --system --uid 10001 --gid consent-enforcer --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin consent-enforcer

COPY --from=builder /out/consent-enforcer /usr/local/bin/consent-enforcer
# The example config: the compose stack's (bootstrap kafka:9092, KAFKA_BOOTSTRAP_SERVERS
# overrides it), chosen over deploy/quickstart/enforcer.toml because it binds the metrics
# listener to 0.0.0.0:9464, so that Prometheus can scrape the container (the enforcer's
# default, 127.0.0.1, is unreachable from outside it). Mount your own over it.
COPY --chmod=0644 deploy/compose/enforcer.toml /etc/consent-enforcer/enforcer.toml
# That config's metrics.listen is "${CONSENT_ENFORCER_METRICS_LISTEN}".
ENV CONSENT_ENFORCER_METRICS_LISTEN=0.0.0.0:9464

USER 10001:10001
EXPOSE 9464

# /healthz on the metrics listener, without curl: bash's /dev/tcp sends the request and the
# status line is checked for 200. The port is the config's metrics.listen: change both together.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 2 _ status _ <&3 && [ \"$status\" = 200 ]"]

# The config comes from CONSENT_ENFORCER_CONFIG: set it, or mount a file over this one.
ENV CONSENT_ENFORCER_CONFIG=/etc/consent-enforcer/enforcer.toml
ENTRYPOINT ["consent-enforcer"]
CMD ["run"]
