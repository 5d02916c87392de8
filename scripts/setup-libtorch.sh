#!/usr/bin/env bash
# Installs libtorch (from the PyPI torch wheel) into ./.venv once; idempotent and quick when done.
# tch =0.24.0 needs exactly torch 2.11.0. PyPI ships only CUDA builds; the two small nvidia
# libraries are needed even on CPU. NCCL (for multi-GPU) is added with --with-nccl.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.11.0
STAMP=.venv/.deepsearch-libtorch-$TORCH_VERSION
if [[ ! -f $STAMP ]]; then
    echo "setup: installing libtorch $TORCH_VERSION into .venv (about 1.3 GB, once)" >&2
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check --no-deps \
        "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
    touch "$STAMP"
fi
if [[ "${1:-}" == "--with-nccl" && ! -f .venv/.deepsearch-nccl ]]; then
    .venv/bin/pip install -q --disable-pip-version-check --no-deps nvidia-nccl-cu13
    lib=$(ls -d .venv/lib/python3.11/site-packages/nvidia/nccl/lib 2>/dev/null || true)
    # cudarc dlopens libnccl.so; the wheel ships libnccl.so.2 only.
    [[ -n $lib && ! -e $lib/libnccl.so ]] && ln -s libnccl.so.2 "$lib/libnccl.so"
    touch .venv/.deepsearch-nccl
fi
