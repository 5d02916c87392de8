#!/usr/bin/env bash
# The test command of the README: sets up libtorch if needed, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-libtorch.sh
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo test --workspace --locked "$@"
# report.html (issue #7) in headless Chromium from Debian (installed with apt-get if missing): it
# renders, every chart has points of both fixture runs, no console errors, a non-blank screenshot.
DEEPSEARCH_BIN=${DEEPSEARCH_BIN:-target/debug/deepsearch} scripts/report-browser-test.sh
# deploy/ (issue #8): every manifest of every overlay against the Kubernetes schemas, Dockerfile
# and shell lint (tools from PyPI into .venv-deploy); then the multi-host test in network
# namespaces with the binary cargo test just built (it prints SKIP where netns is not permitted).
deploy/validate.sh
DEEPSEARCH_BIN=${DEEPSEARCH_BIN:-target/debug/deepsearch} deploy/netns/netns-test.sh
