//! Throughput of the math verifier on the hand-labelled case table, and the per-case verdicts
//! for the comparison with Python `math-verify` (bench/verify/compare.py reads them).
//!
//! ```text
//! cargo run --release -p deepsearch-tasks --no-default-features --example bench_verify -- \
//!     [--cases tasks/tests/data/math_cases.tsv] [--out /tmp/rust_verdicts.jsonl] [--secs 3]
//! ```
//!
//! Prints one JSON summary line: cases, agreement with the hand labels, single-thread
//! answers/s (extraction + normalisation + equivalence, the same work math-verify's
//! `parse` + `verify` do), and answers/s through a 2-worker `VerifierPool`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deepsearch_tasks::math::cases::{parse_tsv, MathCase};
use deepsearch_tasks::math::MathVerifier;
use deepsearch_tasks::{PoolConfig, Problem, VerifierPool};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let default_cases = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/math_cases.tsv");
    let cases_path = arg(&args, "--cases").unwrap_or_else(|| default_cases.to_string());
    let secs: f64 = arg(&args, "--secs")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3.0);
    let cases: Vec<MathCase> = parse_tsv(&std::fs::read_to_string(&cases_path)?)?;
    let v = MathVerifier::default();

    // Verdicts, once, for the agreement numbers and the comparison file.
    let mut agree = 0;
    let mut out = arg(&args, "--out").map(std::fs::File::create).transpose()?;
    for c in &cases {
        let got = v.verify_answer(&c.gold, &c.response);
        agree += usize::from(got.as_str() == c.expected);
        if let Some(f) = out.as_mut() {
            writeln!(
                f,
                "{}",
                serde_json::json!({"line": c.line, "verdict": got.as_str()})
            )?;
        }
    }

    // Single-thread throughput: whole passes over the table until `secs` have elapsed.
    let budget = Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let mut n = 0usize;
    while t0.elapsed() < budget {
        for c in &cases {
            std::hint::black_box(v.verify_answer(
                std::hint::black_box(&c.gold),
                std::hint::black_box(&c.response),
            ));
        }
        n += cases.len();
    }
    let single = n as f64 / t0.elapsed().as_secs_f64();

    // Through the pool (2 workers, deadline 5 s), in batches of the whole table.
    let pool = VerifierPool::new(&PoolConfig::default())?;
    let problems: Vec<Arc<Problem>> = cases
        .iter()
        .map(|c| {
            Arc::new(Problem::new(
                c.line.to_string(),
                "math",
                "",
                c.gold.as_str(),
            ))
        })
        .collect();
    let t0 = Instant::now();
    let mut m = 0usize;
    while t0.elapsed() < budget {
        let pending: Vec<_> = cases
            .iter()
            .zip(&problems)
            .map(|(c, p)| pool.submit(p.clone(), c.response.clone()))
            .collect();
        for p in pending {
            std::hint::black_box(p.wait());
        }
        m += cases.len();
    }
    let pooled = m as f64 / t0.elapsed().as_secs_f64();

    println!(
        "{}",
        serde_json::json!({
            "cases": cases.len(),
            "agree_with_labels": agree,
            "answers_per_s_single_thread": single.round(),
            "answers_per_s_pool_2_workers": pooled.round(),
        })
    );
    Ok(())
}
