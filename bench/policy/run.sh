#!/usr/bin/env bash
# Policy-engine benchmarks: Rust engine vs PyTorch/transformers on the same weights, same machine,
# same thread count (2). Prints each measurement and the ratios against the targets:
#   (a) decode tokens/s vs transformers generate(), batch 1/8/32   target >= 1.5x
#   (b) 8 children of a depth-10 node, prefix reuse vs recompute    target >= 4x
#   (c) training forward+backward tokens/s vs PyTorch               target >= 0.9x
# Usage: bench/policy/run.sh [WORKDIR]   (model folder written to WORKDIR, default /tmp/bench-policy)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-/tmp/bench-policy}
PY=${PYREF:-/work/pyref/bin/python}
THREADS=${THREADS:-2}
mkdir -p "$WORK"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p deepsearch-policy --example bench_policy
BIN=target/release/examples/bench_policy
[ -f "$WORK/model/config.json" ] || $BIN init --out "$WORK/model" --threads "$THREADS"
OUT="$WORK/results.jsonl"
: > "$OUT"
run() { "$@" | tee -a "$OUT"; }
for B in 1 8 32; do
  run $BIN decode --model "$WORK/model" --batch $B --prompt-len 16 --new 128 --threads "$THREADS"
  run $PY bench/policy/bench_torch.py decode --model "$WORK/model" --batch $B --prompt-len 16 --new 128 --threads "$THREADS" 2>/dev/null
done
run $BIN reuse --model "$WORK/model" --prompt-len 128 --depth 10 --segment 32 --width 8 --threads "$THREADS"
run $BIN train --model "$WORK/model" --batch 8 --seq 256 --threads "$THREADS"
run $PY bench/policy/bench_torch.py train --model "$WORK/model" --batch 8 --seq 256 --threads "$THREADS" 2>/dev/null
$PY - "$OUT" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def get(bench, impl, **kw):
    for r in rows:
        if r["bench"] == bench and r.get("impl") == impl and all(r.get(k) == v for k, v in kw.items()):
            return r
print("\n== ratios (rust / torch) ==")
for b in (1, 8, 32):
    r, t = get("decode", "rust", batch=b), get("decode", "torch", batch=b)
    ratio = r["tokens_per_s"] / t["tokens_per_s"]
    print(f"(a) decode batch {b:2}: rust {r['tokens_per_s']:9.1f} tok/s  torch {t['tokens_per_s']:9.1f} tok/s  ratio {ratio:5.2f}x  (target >= 1.5x: {'ok' if ratio >= 1.5 else 'MISSED'})")
u = [r for r in rows if r["bench"] == "reuse"][0]
s = u["speedup_vs_recompute_once"]
print(f"(b) reuse, prefix {u['prefix_tokens']} tokens, {u['width']} children x {u['segment']} tokens: "
      f"{u['secs_reuse']*1e3:.1f} ms vs {u['secs_recompute_once']*1e3:.1f} ms recompute-once ({s:.2f}x, target >= 4x: {'ok' if s >= 4 else 'MISSED'}), "
      f"{u['secs_recompute_per_sample']*1e3:.1f} ms recompute-per-sample ({u['speedup_vs_recompute_per_sample']:.2f}x)")
r, t = get("train", "rust"), get("train", "torch")
ratio = r["tokens_per_s"] / t["tokens_per_s"]
print(f"(c) train fwd+bwd: rust {r['tokens_per_s']:.1f} tok/s  torch {t['tokens_per_s']:.1f} tok/s  ratio {ratio:.2f}x  (target >= 0.9x: {'ok' if ratio >= 0.9 else 'MISSED'})")
EOF
