#!/usr/bin/env bash
# The test command of the README: sets up libtorch if needed, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-libtorch.sh
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo test --workspace --locked "$@"
# deploy/ (issue #8): every manifest of every overlay against the Kubernetes schemas, Dockerfile
# and shell lint (tools from PyPI into .venv-deploy); then the multi-host test in network
# namespaces with the binary cargo test just built (it prints SKIP where netns is not permitted).
deploy/validate.sh
DEEPSEARCH_BIN=${DEEPSEARCH_BIN:-target/debug/deepsearch} deploy/netns/netns-test.sh
