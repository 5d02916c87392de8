# syntax=docker/dockerfile:1.7
# The `deepsearch` image (every role: coordinator, actor, learner, admin, train, sft, ...), with
# the CUDA 13 libtorch and NCCL of the PyPI `torch==2.11.0` wheel (tch 0.24 needs exactly 2.11.0;
# scripts/setup-libtorch.sh installs the same wheel for development). GPU access comes from the
# node's NVIDIA driver through the NVIDIA container runtime; the image carries no driver.
#
#   docker build -f deploy/docker/deepsearch.Dockerfile -t deepsearch:0.1.0 .
#
# Build context: the repository root (deploy/docker/deepsearch.Dockerfile.dockerignore trims it).
# Base images are pinned by exact tag; deploy/docker/pin-digests.sh rewrites them to tag@digest
# where a registry is reachable (not from the development machines, which reach no registry).

# Rust toolchain: the channel of rust-toolchain.toml (deploy/validate.sh checks they agree).
ARG RUST_VERSION=1.95.0
ARG RUST_IMAGE=docker.io/library/rust:${RUST_VERSION}-slim-bookworm
# Debian 12 point release (glibc 2.36, Python 3.11: the libtorch path below says python3.11).
ARG RUNTIME_IMAGE=docker.io/library/debian:12.12-slim
ARG TORCH_VERSION=2.11.0

# ---- libtorch + CUDA 13 + NCCL from PyPI ------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS torch
ARG TORCH_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# apt versions follow the pinned base image (exact Debian point release), so not pinned again
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
# torch pins its CUDA 13 stack (cuda-toolkit 13.0.2, cuDNN, NCCL 2.28, ...) exactly in its metadata.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check "torch==${TORCH_VERSION}" \
    && site=/opt/venv/lib/python3.11/site-packages \
    && test -f "$site/torch/lib/libtorch_cuda.so" \
    && nccl=$(find "$site/nvidia" -name 'libnccl.so.2' -print -quit) \
    && test -n "$nccl" \
    && ln -sf libnccl.so.2 "$(dirname "$nccl")/libnccl.so"
# cudarc dlopens libnccl.so; the wheel ships libnccl.so.2 only (hence the symlink above).

# ---- build ------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
ARG RUST_VERSION
ARG FEATURES=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# g++: torch-sys compiles its C++ shim against libtorch's headers.
# apt versions follow the pinned base image (exact Debian point release), so not pinned again
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
COPY --from=torch /opt/venv/lib/python3.11/site-packages/torch /opt/venv/lib/python3.11/site-packages/torch
COPY --from=torch /opt/venv/lib/python3.11/site-packages/nvidia /opt/venv/lib/python3.11/site-packages/nvidia
# LIBTORCH wins over .cargo/config.toml (which points at the development .venv); the build
# scripts embed an rpath to $LIBTORCH/lib and to the nvidia/*/lib folders beside it.
ENV LIBTORCH=/opt/venv/lib/python3.11/site-packages/torch \
    RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p deepsearch-cli ${FEATURES:+--features "$FEATURES"} \
    && install -D -m 0755 target/release/deepsearch /out/deepsearch

# ---- runtime ----------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=torch /opt/venv/lib/python3.11/site-packages/torch/lib /opt/venv/lib/python3.11/site-packages/torch/lib
COPY --from=torch /opt/venv/lib/python3.11/site-packages/nvidia /opt/venv/lib/python3.11/site-packages/nvidia
COPY --from=build /out/deepsearch /usr/local/bin/deepsearch
COPY configs /etc/deepsearch/configs
RUN groupadd --system --gid 10001 deepsearch \
    && useradd --system --uid 10001 --gid deepsearch --home-dir /var/lib/deepsearch --create-home deepsearch \
    && { if ldd /usr/local/bin/deepsearch | grep 'not found'; then exit 1; fi; } \
    && /usr/local/bin/deepsearch --version
# The rpath finds libtorch; LD_LIBRARY_PATH also serves libtorch_cuda.so and libnccl.so, which are
# dlopened by name (policy/src/device.rs, cudarc).
ENV LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/torch/lib:/opt/venv/lib/python3.11/site-packages/nvidia/nccl/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cu13/lib \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    RUST_LOG=info \
    NO_COLOR=1
USER 10001:10001
WORKDIR /var/lib/deepsearch
# coordinator gRPC, learner gRPC, coordinator and learner /metrics
EXPOSE 50051 50061 9101 9102
ENTRYPOINT ["/usr/local/bin/deepsearch"]
CMD ["--help"]
