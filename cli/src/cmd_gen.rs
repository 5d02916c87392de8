//! `deepsearch gen`: writes problems of a built-in task as JSONL, optionally with solution traces
//! (the `{"prompt", "response"}` lines `deepsearch sft` reads).
//!
//! ```text
//! deepsearch gen --task countdown --count 2000 --seed 1 --params '{"min_numbers":3,"max_numbers":4}' --traces --out sft.jsonl
//! deepsearch gen --task countdown --count 200 --seed 9 --params '{"min_numbers":5,"max_numbers":5}' --out eval.jsonl
//! ```
//! Without `--traces` each line is a problem (`id`, `prompt`, `answer`, `task`), the format the
//! JSONL sources and `deepsearch verify --jsonl` read.

use anyhow::Context;
use deepsearch_tasks::{registry, Problem, TaskError};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Built-in task.
    #[arg(long, value_parser = ["countdown", "arithmetic"])]
    task: String,
    /// Number of problems.
    #[arg(long)]
    count: usize,
    /// Generator seed (problem i depends only on (seed, i)).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The task's generator parameters as a JSON object (fields of CountdownConfig or
    /// ArithmeticConfig; omitted fields keep their defaults).
    #[arg(long, default_value = "{}")]
    params: String,
    /// Write `{"prompt", "response"}` solution traces instead of problems.
    #[arg(long)]
    traces: bool,
    /// Output file (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn problems(args: &Args) -> anyhow::Result<Vec<Problem>> {
    registry::generate(&args.task, &args.params, args.seed, args.count).map_err(|e| match e {
        TaskError::UnknownTask(t) => anyhow::anyhow!("--task: unknown built-in task `{t}`"),
        e => anyhow::anyhow!("--params: {e}"),
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let problems = problems(&args)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("{}: cannot create", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    for p in &problems {
        let line = if args.traces {
            let trace = registry::solution_trace(p)
                .with_context(|| format!("problem {}: no solution trace", p.id))?;
            serde_json::json!({"prompt": p.prompt, "response": trace})
        } else {
            serde_json::to_value(p)?
        };
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
