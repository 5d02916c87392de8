#!/usr/bin/env bash
# The test command of the README: sets up libtorch if needed, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-libtorch.sh
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo test --workspace --locked "$@"
