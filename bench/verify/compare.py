#!/usr/bin/env python3
"""Compare the Rust math verifier with Python `math-verify` on the hand-labelled case table.

Usage (from the repository root):
    cargo run --release -p deepsearch-tasks --no-default-features --example bench_verify -- \
        --out /tmp/rust_verdicts.jsonl --secs 3
    /work/pyref/bin/python bench/verify/compare.py --rust /tmp/rust_verdicts.jsonl \
        [--cases tasks/tests/data/math_cases.tsv] [--passes 3] [--rust-rate N]

math-verify is run as its README recommends: gold = parse(gold), answer = parse(response),
verify(gold, answer). A gold without \\boxed is wrapped in $...$ so its LaTeX extractor sees it.
An empty parse of the response is `unparsable`, an exception `error`. Timing covers parse +
verify of both sides (the Rust number covers the same work: extraction, normalisation,
comparison), with math-verify's small lru caches cleared before each pass.
"""
import argparse
import json
import sys
import time
from collections import Counter, defaultdict

from math_verify import parse, verify
from math_verify import parser as mv_parser


def load_cases(path):
    cases = []
    with open(path, encoding="utf-8") as f:
        for i, raw in enumerate(f, 1):
            raw = raw.rstrip("\n")
            if raw.startswith("#") or not raw.strip():
                continue
            family, expected, gold, response = raw.split("\t", 3)
            cases.append(dict(line=i, family=family, expected=expected, gold=gold,
                              response=response.replace("<NL>", "\n")))
    return cases


def mv_verdict(gold, response):
    if not gold.strip():
        return "error"
    try:
        g = parse(gold if "\\boxed" in gold else f"${gold}$")
        a = parse(response)
        if not a:
            return "unparsable"
        return "correct" if verify(g, a) else "wrong"
    except Exception:  # noqa: BLE001 - any failure is an error verdict
        return "error"


def clear_caches():
    for name in ("parse_latex_cached", "parse_expr_cached"):
        fn = getattr(mv_parser, name, None)
        if fn is not None and hasattr(fn, "cache_clear"):
            fn.cache_clear()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="tasks/tests/data/math_cases.tsv")
    ap.add_argument("--rust", required=True, help="JSONL of {line, verdict} from bench_verify")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--rust-rate", type=float, default=None, help="Rust answers/s, for the ratio")
    args = ap.parse_args()

    cases = load_cases(args.cases)
    rust = {}
    with open(args.rust, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            rust[r["line"]] = r["verdict"]

    verdicts = {}
    times = []  # per pass: (total seconds, seconds excluding the adversarial family)
    for p in range(args.passes):
        clear_caches()
        total = tame = 0.0
        for c in cases:
            t0 = time.perf_counter()
            verdicts[c["line"]] = mv_verdict(c["gold"], c["response"])
            dt = time.perf_counter() - t0
            total += dt
            tame += 0.0 if c["family"] == "adversarial" else dt
        times.append((total, tame))
    rate = len(cases) / min(t for t, _ in times)
    n_tame = sum(c["family"] != "adversarial" for c in cases)
    rate_tame = n_tame / min(t for _, t in times)

    n = len(cases)
    mv_ok = sum(verdicts[c["line"]] == c["expected"] for c in cases)
    rs_ok = sum(rust[c["line"]] == c["expected"] for c in cases)
    agree = sum(verdicts[c["line"]] == rust[c["line"]] for c in cases)
    print(f"cases: {n}")
    print(f"hand-label accuracy: rust {rs_ok}/{n} ({100*rs_ok/n:.1f}%), math-verify {mv_ok}/{n} ({100*mv_ok/n:.1f}%)")
    print(f"rust vs math-verify agreement: {agree}/{n} ({100*agree/n:.1f}%)")
    print(f"math-verify answers/s (best of {args.passes} passes): {rate:.1f} all cases, "
          f"{rate_tame:.1f} without the adversarial family (its internal timeouts)")
    if args.rust_rate:
        print(f"rust/math-verify throughput ratio: {args.rust_rate / rate:.0f}x all cases, "
              f"{args.rust_rate / rate_tame:.0f}x without the adversarial family")
    fam = defaultdict(Counter)
    for c in cases:
        fam[c["family"]]["n"] += 1
        fam[c["family"]]["mv_ok"] += verdicts[c["line"]] == c["expected"]
        fam[c["family"]]["rs_ok"] += rust[c["line"]] == c["expected"]
    print("\nper family (n, rust correct-label, math-verify correct-label):")
    for k in sorted(fam):
        print(f"  {k:12s} {fam[k]['n']:3d} {fam[k]['rs_ok']:3d} {fam[k]['mv_ok']:3d}")
    print("\ndisagreements (line, family, label, rust, math-verify, in favour of):")
    for c in cases:
        mv, rs = verdicts[c["line"]], rust[c["line"]]
        if mv != rs:
            favour = "math-verify" if mv == c["expected"] else ("rust" if rs == c["expected"] else "neither")
            print(f"  {c['line']:4d} {c['family']:11s} label={c['expected']:10s} rust={rs:10s} mv={mv:10s} "
                  f"-> {favour}: gold={c['gold']!r} response={c['response'][:70]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
