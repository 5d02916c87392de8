#!/usr/bin/env bash
# The paper's comparison at our scale (issue #7): DeepSearch against the GRPO/DAPO baseline from
# the same bootstrap policy, at the same budget of generated tokens, on the same held-out problems,
# over several seeds. Each run is `deepsearch train` with the embedded default (or --config FILE)
# and `run.mode` set per arm; every run stops at the token budget (or the time budget, if that
# comes first: keep it generous so the token budget decides). The bootstrap is trained once (the
# first run caches it; every later run reuses it because the bootstrap settings are equal).
#
# Usage: bench/compare.sh [--seeds "0 1 2"] [--tokens N] [--time 30m] [--out runs/compare]
#                         [--modes "deepsearch grpo"] [--config FILE] [--bin PATH]
#                         [-- extra --set arguments for every run]
# --modes runs only some arms (e.g. a DeepSearch variant into its own --out, next to the
# GRPO runs of another comparison).
# Prints a Markdown table (first and last held-out Pass@1/Pass@k of every run, and the mean of its
# last 3 evals, which halves the sampling noise of one eval; mean and sample standard deviation
# per arm, the difference of the arm means) and writes it to OUT/summary.md,
# with OUT/report.html drawing every run on the same axes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SEEDS="0 1 2"
MODES="deepsearch grpo"
TOKENS=3000000
TIME=30m
OUT=runs/compare
CONFIG=""
BIN=""
EXTRA=()
while (($# > 0)); do
    case $1 in
        --seeds) SEEDS=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --tokens) TOKENS=$2; shift 2 ;;
        --time) TIME=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --config) CONFIG=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "compare: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $TOKENS =~ ^[0-9]+$ && $TOKENS -gt 0 ]] || { echo "compare: --tokens must be a positive integer, got '$TOKENS'" >&2; exit 2; }
if [[ -z $BIN ]]; then
    "$ROOT/scripts/setup-libtorch.sh"
    (cd "$ROOT" && cargo build --release --locked -p deepsearch-cli)
    BIN=$ROOT/target/release/deepsearch
fi
[[ -x $BIN ]] || { echo "compare: no deepsearch binary at $BIN" >&2; exit 2; }
mkdir -p "$OUT"
cfg=()
[[ -n $CONFIG ]] && cfg=(--config "$CONFIG")
runs=()
for seed in $SEEDS; do
    for mode in $MODES; do
        [[ $mode == deepsearch || $mode == grpo ]] || { echo "compare: --modes takes deepsearch and/or grpo, got '$mode'" >&2; exit 2; }
        dir="$OUT/$mode-s$seed"
        runs+=("$dir")
        if [[ -f $dir/report.html ]]; then
            echo "compare: $dir done already; kept" >&2
            continue
        fi
        rm -rf "$dir"
        echo "compare: $mode, seed $seed, $TOKENS generated tokens -> $dir" >&2
        "$BIN" train "${cfg[@]}" --out "$dir" --set "run.mode=\"$mode\"" --set "run.seed=$seed" \
            --set "run.token_budget=$TOKENS" --set "run.time_budget=\"$TIME\"" "${EXTRA[@]}"
    done
done
"$BIN" report "${runs[@]}" --out "$OUT/report.html" >/dev/null
python3 - "$TOKENS" "${runs[@]}" <<'EOF' | tee "$OUT/summary.md"
import json, statistics, sys
tokens, runs = int(sys.argv[1]), sys.argv[2:]
rows, arms = [], {}
for d in runs:
    evals = [r for r in map(json.loads, open(f"{d}/metrics.jsonl")) if r.get("kind") == "eval"]
    steps = [r for r in map(json.loads, open(f"{d}/metrics.jsonl")) if r.get("kind") == "step"]
    if not evals:
        sys.exit(f"compare: {d}/metrics.jsonl has no eval record")
    first, last = evals[0], evals[-1]
    gen = max((r.get("generated_tokens", 0) for r in steps), default=0)
    arm = d.rstrip("/").split("/")[-1].rsplit("-s", 1)[0]
    tail = sum(r["pass1"] for r in evals[-3:]) / len(evals[-3:])
    arms.setdefault(arm, []).append((last["pass1"], tail))
    rows.append((d, arm, len(steps), gen, first["pass1"], last["pass1"], tail, first["pass_at_k"], last["pass_at_k"]))
print(f"token budget {tokens} per run; held-out Pass@1 / Pass@k (k = eval.samples) before -> after\n")
print("| run | arm | steps | generated tokens | Pass@1 before | Pass@1 after | Pass@1, mean of the last 3 evals | Pass@k before | Pass@k after |")
print("|---|---|---|---|---|---|---|---|---|")
for d, arm, n, g, p0, p1, pt, k0, k1 in rows:
    print(f"| {d} | {arm} | {n} | {g} | {p0:.3f} | {p1:.3f} | {pt:.3f} | {k0:.3f} | {k1:.3f} |")
print()
def ms(v):
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else float("nan"))
for arm, v in arms.items():
    (m1, s1), (m3, s3) = ms([a for a, _ in v]), ms([b for _, b in v])
    print(f"- {arm}: Pass@1 after = {m1:.3f} ± {s1:.3f}; mean of the last 3 evals = {m3:.3f} ± {s3:.3f} (mean ± sd over {len(v)} seeds)")
if "deepsearch" in arms and "grpo" in arms:
    d1 = statistics.mean(a for a, _ in arms["deepsearch"]) - statistics.mean(a for a, _ in arms["grpo"])
    d3 = statistics.mean(b for _, b in arms["deepsearch"]) - statistics.mean(b for _, b in arms["grpo"])
    print(f"- DeepSearch − GRPO: {d1:+.3f} Pass@1 after, {d3:+.3f} on the mean of the last 3 evals")
EOF
echo "compare: report $OUT/report.html, table $OUT/summary.md" >&2
