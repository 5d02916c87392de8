# syntax=docker/dockerfile:1.7
# The slim coordinator image: `coordinator-server` (the coordinator crate's own binary; no
# libtorch, no CUDA), about 100 MB instead of several GB. Same config file and behaviour as
# `deepsearch coordinator --config FILE`. Operate it with `deepsearch admin` from the deepsearch
# image (or any machine with the binary).
#
#   docker build -f deploy/docker/coordinator.Dockerfile -t deepsearch-coordinator:0.1.0 .

# Rust toolchain: the channel of rust-toolchain.toml (deploy/validate.sh checks they agree).
ARG RUST_VERSION=1.95.0
ARG RUST_IMAGE=docker.io/library/rust:${RUST_VERSION}-slim-bookworm
# Debian 12 point release (glibc 2.36, Python 3.11: the libtorch path below says python3.11).
ARG RUNTIME_IMAGE=docker.io/library/debian:12.12-slim

FROM ${RUST_IMAGE} AS build
ARG RUST_VERSION
# Parquet problem sources on by default (TLS is a default feature of the crate).
ARG FEATURES="parquet"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p deepsearch-coordinator --bin coordinator-server \
        ${FEATURES:+--features "$FEATURES"} \
    && install -D -m 0755 target/release/coordinator-server /out/coordinator-server

FROM ${RUNTIME_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=build /out/coordinator-server /usr/local/bin/coordinator-server
RUN groupadd --system --gid 10001 deepsearch \
    && useradd --system --uid 10001 --gid deepsearch --home-dir /var/lib/deepsearch --create-home deepsearch \
    && { if ldd /usr/local/bin/coordinator-server | grep 'not found'; then exit 1; fi; }
ENV RUST_LOG=info \
    NO_COLOR=1
USER 10001:10001
WORKDIR /var/lib/deepsearch
EXPOSE 50051 9101
ENTRYPOINT ["/usr/local/bin/coordinator-server"]
CMD ["--config", "/etc/deepsearch/coordinator.toml"]
