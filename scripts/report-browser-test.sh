#!/usr/bin/env bash
# The run report page (issue #7) checked in a real headless browser, run by scripts/test.sh:
#   0. chromium from Debian (apt-get install, once, about a minute) if it is missing;
#   1. a canary page with a console error, an uncaught exception and a blocked load proves that
#      this chromium's log shows each of them, so a clean log below means something;
#   2. `deepsearch report` fails on a metrics.jsonl with a malformed line, naming file:line;
#   3. `deepsearch report` draws the two committed fixture runs; chromium loads the page and dumps
#      the DOM after its script ran: every chart is there with points of both runs, every series
#      has points, the summary has a row per run, the script ran to the end, and the log has no
#      console message at all (the page logs nothing; a failed or blocked load is a console
#      message because the page's Content-Security-Policy forbids every load);
#   4. a screenshot at laptop-ish width is a non-trivial PNG.
#
# Usage: scripts/report-browser-test.sh
# Env:   DEEPSEARCH_BIN          the binary (default target/debug/deepsearch, built by cargo test)
#        REPORT_TEST_DIR         work folder (default target/report-browser-test; emptied first)
#        REPORT_SCREENSHOT_TO    also copy the screenshot there (e.g. docs/report.png)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DEEPSEARCH_BIN:-target/debug/deepsearch}
WORK=${REPORT_TEST_DIR:-target/report-browser-test}
FIXTURES=cli/tests/fixtures/report
CHARTS=(reward-step reward-tokens eval-step eval-tokens hard-set cache-share tree-depth expansions time-split)
T0=$(date +%s)
say() { printf 'report-browser [%3ds] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
fail() {
    say "FAIL: $*"
    exit 1
}

[[ -x $BIN ]] || fail "$BIN is not built (run cargo build -p deepsearch-cli, or set DEEPSEARCH_BIN)"
rm -rf "$WORK"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# ---- 0. chromium ---------------------------------------------------------------------------
find_chromium() { command -v chromium || command -v chromium-browser || true; }
CHROMIUM=$(find_chromium)
if [[ -z $CHROMIUM ]]; then
    [[ $(id -u) -eq 0 ]] || fail "chromium is missing; install it as root: apt-get install chromium"
    say "chromium is missing: installing it from Debian with apt-get (once, about a minute)"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { timeout 900 apt-get install -y -q chromium >>"$WORK/apt.log" 2>&1; }
    if ! apt_install; then
        say "apt-get install failed; running apt-get update and trying again"
        timeout 300 apt-get update -q >>"$WORK/apt.log" 2>&1 || true
        apt_install || {
            tail -n 20 "$WORK/apt.log" >&2
            fail "apt-get install chromium failed (log: $WORK/apt.log)"
        }
    fi
    CHROMIUM=$(find_chromium)
    [[ -n $CHROMIUM ]] || fail "chromium installed but not on PATH"
    say "installed $("$CHROMIUM" --version 2>/dev/null | tail -n 1)"
fi

# browse NAME URL ARGS...: one headless chromium run; stdout to NAME.out, its log to NAME.log
browse() {
    local name=$1 url=$2
    shift 2
    timeout -k 5 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
        --no-default-browser-check --user-data-dir="$WORK/profile-$name" \
        --enable-logging=stderr --v=0 "$@" "$url" >"$WORK/$name.out" 2>"$WORK/$name.log" ||
        fail "chromium ($name) exited with $? (log: $WORK/$name.log)"
}
# console_lines LOG: the page's console messages (all logged at INFO, whatever their level)
console_lines() { grep -E ':CONSOLE[:(]|Uncaught|net::ERR_|Failed to load resource' "$1" || true; }

# ---- 1. canary -----------------------------------------------------------------------------
cat >"$WORK/canary.html" <<'EOF'
<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'">
</head><body><img src="blocked.png" alt="">
<script>console.error("canary-console-error");</script>
<script>canaryUndefinedFunction();</script></body></html>
EOF
browse canary "file://$WORK/canary.html" --dump-dom
canary=$(console_lines "$WORK/canary.log")
for want in canary-console-error 'Uncaught ReferenceError' 'blocked.png'; do
    grep -qF "$want" <<<"$canary" || fail "chromium's log does not show '$want' of the canary page; the checks below would be blind (log: $WORK/canary.log)"
done
say "ok: the canary's console error, exception and blocked load show in chromium's log"

# ---- 2. a malformed line fails with file:line ----------------------------------------------
mkdir -p "$WORK/broken"
cp "$FIXTURES/run-a/metrics.jsonl" "$WORK/broken/metrics.jsonl"
lines=$(wc -l <"$WORK/broken/metrics.jsonl")
printf '{"kind":"step","step":99,\n' >>"$WORK/broken/metrics.jsonl"
if "$BIN" report "$WORK/broken" --out "$WORK/broken.html" 2>"$WORK/broken.err"; then
    fail "deepsearch report accepted a malformed metrics.jsonl"
fi
grep -qF "broken/metrics.jsonl:$((lines + 1)): invalid JSON" "$WORK/broken.err" ||
    fail "deepsearch report's error does not name file:line: $(cat "$WORK/broken.err")"
say "ok: a malformed line fails: $(tail -n 1 "$WORK/broken.err")"

# ---- 3. the report in the browser ----------------------------------------------------------
"$BIN" report "$FIXTURES/run-a" "$FIXTURES/run-b" --out "$WORK/report.html" >/dev/null
browse dom "file://$WORK/report.html" --dump-dom
dom=$(tr '\n' ' ' <"$WORK/dom.out")
grep -q '</html>' <<<"$dom" || fail "the DOM dump is incomplete ($WORK/dom.out)"
grep -q '<html[^>]* data-script="ok"' <<<"$dom" || fail "the page's script did not run to the end"
grep -qF "default-src 'none'" <<<"$dom" || fail "the page lost its Content-Security-Policy (default-src 'none')"
for id in "${CHARTS[@]}"; do
    fig=$(grep -oP "data-chart=\"$id\".*?</figure>" <<<"$dom" | head -n 1) || true
    [[ -n $fig ]] || fail "chart $id is missing"
    points=$(sed -n 's/^data-chart="[^"]*" data-points="\([0-9]*\)".*/\1/p' <<<"$fig")
    [[ ${points:-0} -gt 0 ]] || fail "chart $id has no points"
    for run in 0 1; do
        grep -q "class=\"series\" data-run=\"$run\"" <<<"$fig" || fail "chart $id draws nothing of run $run"
    done
done
mapfile -t counts < <(grep -oP 'data-series-points="\K[0-9]+' <<<"$dom")
[[ ${#counts[@]} -ge ${#CHARTS[@]} ]] || fail "only ${#counts[@]} series in ${#CHARTS[@]} charts"
for n in "${counts[@]}"; do
    [[ $n -gt 0 ]] || fail "a series has no points"
done
rows=$(grep -o '<tr data-run=' <<<"$dom" | wc -l)
[[ $rows -eq 2 ]] || fail "the summary has $rows run rows, not 2"
errors=$(console_lines "$WORK/dom.log")
[[ -z $errors ]] || fail "console messages or failed loads: $errors"
say "ok: ${#CHARTS[@]} charts, ${#counts[@]} series, all with points; summary of 2 runs; script ran; no console messages"

# ---- 4. screenshot -------------------------------------------------------------------------
browse shot "file://$WORK/report.html" --screenshot="$WORK/report.png" --window-size=1400,2400 --hide-scrollbars
[[ -f $WORK/report.png ]] || fail "no screenshot written"
[[ $(head -c 8 "$WORK/report.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "the screenshot is not a PNG"
size=$(stat -c %s "$WORK/report.png")
[[ $size -gt 60000 ]] || fail "the screenshot is only $size bytes: a blank page?"
errors=$(console_lines "$WORK/shot.log")
[[ -z $errors ]] || fail "console messages while taking the screenshot: $errors"
if [[ -n ${REPORT_SCREENSHOT_TO:-} ]]; then
    cp "$WORK/report.png" "$REPORT_SCREENSHOT_TO"
fi
say "ok: screenshot $WORK/report.png ($((size / 1024)) KiB)"
say "all report browser checks passed"
