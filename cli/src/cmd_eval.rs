//! `deepsearch eval`: Pass@1 and the unbiased pass@k of a policy on a problem set, per problem
//! and in total, as a table on stdout and (with `--json`) as JSON (issue #7 item 4).
//!
//! ```text
//! deepsearch eval --model DIR --task countdown --data eval.jsonl --samples 16 --json eval.json
//! deepsearch eval --model DIR --task countdown --count 50 --seed 9 --params '{"min_numbers":4}'
//! deepsearch eval --model DIR --data eval.jsonl --samples 8 --search --token-budget 4000
//! ```
//!
//! Problems come from `--data` (JSONL or Parquet, the fields `deepsearch gen` writes; every bad
//! line is an error naming file and line) or from the task's generator (`--count`, `--seed`,
//! `--params` as in `deepsearch gen`). Every problem is sampled `--samples` (n) times in batches
//! through the generation engine ([`crate::train::eval::Evaluator`], the evaluator of
//! `deepsearch train`); Pass@1 is the mean of c/n and pass@k the estimator of Chen et al. 2021
//! ([`deepsearch_tasks::passk`]), both averaged over problems. Verifier errors count as not
//! correct (and are reported).
//!
//! `--search --token-budget T` adds search-augmented evaluation: each problem is searched with the
//! DeepSearch tree (the search of `deepsearch search`, `--search-config` / `--set` knobs) until a
//! verified-correct leaf appears or T tokens have been generated
//! ([`crate::train::eval::search_at_budget`]); the problem counts as solved when such a leaf was
//! found. The expansion that crosses the budget is completed, so the tokens actually used are
//! reported next to the budget.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use deepsearch_search::runtime::PromptEncoder;
use deepsearch_search::{Judge, SamplingParams, SearchConfig, TreeInput};
use deepsearch_tasks::passk::default_ks;
use deepsearch_tasks::{registry, source, Problem, TaskError};
use serde_json::{json, Value};

use crate::cmd_actor::{EngineActor, ModelConfig};
use crate::train::eval::{search_at_budget, EvalOptions, EvalReport, Evaluator, SearchEval};

/// Problems up to this count get a per-problem table without `--per-problem`.
const FEW_PROBLEMS: usize = 20;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Hugging Face Qwen2 folder.
    #[arg(long)]
    model: PathBuf,
    /// Task (selects the verifier, and the generator without --data): countdown | arithmetic | math.
    #[arg(long, default_value = "countdown")]
    task: String,
    /// Problems as JSONL (or Parquet): `id`, `prompt`/`problem`, `answer` per line.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Generated problems to evaluate (default 100); with --data, evaluate only the first N.
    #[arg(long)]
    count: Option<usize>,
    /// Generator seed (problem i depends only on (seed, i), as in `deepsearch gen`) and run seed
    /// of sampling and search.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The generator's parameters as a JSON object (fields of CountdownConfig or
    /// ArithmeticConfig; omitted fields keep their defaults).
    #[arg(long, default_value = "{}", conflicts_with = "data")]
    params: String,
    /// Samples per problem (the n of pass@k).
    #[arg(long, default_value_t = 8)]
    samples: usize,
    /// The k of pass@k, comma-separated or repeated (default: 1, 2, 4, ... below n, and n).
    #[arg(long = "k", value_delimiter = ',')]
    ks: Vec<usize>,
    /// Response token cap of each sample.
    #[arg(long, default_value_t = 160)]
    max_new_tokens: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Nucleus top-p.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Problems per engine batch (each contributes `--samples` sequences).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// libtorch intra-op threads (0 = libtorch's default).
    #[arg(long, default_value_t = 0)]
    threads: i32,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32 | bf16 | f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Write the full result (per problem and total) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print a table row per problem (the default for at most 20 problems).
    #[arg(long)]
    per_problem: bool,
    /// Also evaluate with the tree search at `--token-budget` tokens per problem.
    #[arg(long, requires = "token_budget")]
    search: bool,
    /// Generated tokens a problem's search may use (with --search).
    #[arg(long, requires = "search")]
    token_budget: Option<u64>,
    /// TOML file of search settings (`SearchConfig`); `--set` applies on top.
    #[arg(long, requires = "search")]
    search_config: Option<PathBuf>,
    /// Override a search setting, e.g. `--set search.segment_tokens=16` (repeatable).
    #[arg(long = "set", value_name = "search.KEY=VALUE", requires = "search")]
    set: Vec<String>,
}

/// The k list: the given one (sorted, deduplicated), else the default; every k in 1..=samples.
fn resolve_ks(ks: &[usize], samples: usize) -> anyhow::Result<Vec<usize>> {
    if samples == 0 {
        bail!("--samples must be at least 1");
    }
    let mut ks: Vec<usize> = if ks.is_empty() {
        default_ks(samples as u64)
            .into_iter()
            .map(|k| k as usize)
            .collect()
    } else {
        ks.to_vec()
    };
    ks.sort_unstable();
    ks.dedup();
    for &k in &ks {
        if k == 0 {
            bail!("--k 0: k must be at least 1");
        }
        if k > samples {
            bail!("--k {k}: pass@{k} needs at least {k} samples per problem, but --samples is {samples}");
        }
    }
    Ok(ks)
}

fn load_problems(args: &Args) -> anyhow::Result<Vec<Problem>> {
    let mut problems = match &args.data {
        Some(data) => {
            let cfg = source::SourceConfig {
                task: args.task.clone(),
                strict: true,
                metadata_fields: vec!["task".into()],
                ..source::SourceConfig::for_path(data)
            };
            // the error names file and line (its Display already includes the io cause)
            let loaded = source::load(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            for p in &loaded.problems {
                if let Some(t) = p.metadata.get("task").and_then(Value::as_str) {
                    if t != args.task {
                        bail!(
                            "{}: problem {} has task `{t}`, but --task is `{}`",
                            data.display(),
                            p.id,
                            args.task
                        );
                    }
                }
            }
            loaded.problems
        }
        None => registry::generate(&args.task, &args.params, args.seed, args.count.unwrap_or(100)).map_err(|e| match e {
            TaskError::UnknownTask(t) => anyhow::anyhow!("task `{t}` has no built-in generator: give --data FILE"),
            e => anyhow::anyhow!("--params: {e}"),
        })?,
    };
    if let Some(n) = args.count {
        problems.truncate(n);
    }
    if problems.is_empty() {
        bail!("no problems to evaluate");
    }
    Ok(problems)
}

fn search_config(args: &Args) -> anyhow::Result<SearchConfig> {
    let mut base = crate::cmd_search::read_search_config(args.search_config.as_deref())?;
    base.seed = args.seed;
    crate::cmd_search::apply_overrides(base, &args.set)
}

/// Searches every problem at the budget, one after another on the same policy.
fn run_search(
    actor: &mut EngineActor,
    problems: &[Problem],
    cfg: &SearchConfig,
    budget: u64,
) -> anyhow::Result<Vec<SearchEval>> {
    let verifier = registry::verifier_for(&problems[0].task)?;
    let hook: &deepsearch_search::sample::PrefixValid = &registry::prefix_is_valid;
    let judge = Judge {
        verifier: verifier.as_ref(),
        prefix_valid: cfg.prune_invalid_prefixes.then_some(hook),
    };
    // tree ids above the sampling keys (one per problem index)
    let mut next_tree = 1u64 << 32;
    let mut out = Vec::with_capacity(problems.len());
    for (i, p) in problems.iter().enumerate() {
        let prompt_tokens = actor
            .encode_prompt(p)
            .map_err(|e| anyhow::anyhow!("problem {}: {e}", p.id))?;
        let input = TreeInput {
            problem: p.clone(),
            prompt_tokens,
            salt: 0,
        };
        let r = search_at_budget(actor, &judge, cfg, input, budget, next_tree)?;
        next_tree += r.trees;
        tracing::info!(problem = %p.id, solved = r.solved, tokens = r.tokens, done = i + 1, total = problems.len(), "searched");
        out.push(r);
    }
    Ok(out)
}

/// `{"1": pass@1, ...}` of a report (or of one problem as a one-problem report).
fn pass_map(report: &EvalReport, ks: &[usize]) -> anyhow::Result<BTreeMap<String, f64>> {
    ks.iter()
        .map(|&k| Ok((k.to_string(), report.pass_at_k(k)?)))
        .collect()
}

/// Everything one run measured.
struct Measured<'a> {
    args: &'a Args,
    ks: &'a [usize],
    report: &'a EvalReport,
    search: Option<(&'a SearchConfig, u64, &'a [SearchEval], f64)>,
    seconds: f64,
}

fn to_json(o: &Measured<'_>) -> anyhow::Result<Value> {
    let (a, r) = (o.args, o.report);
    let s = r.summary();
    let mut problems = Vec::with_capacity(r.problems.len());
    for (i, p) in r.problems.iter().enumerate() {
        let one = EvalReport {
            problems: vec![p.clone()],
        };
        let mut v = serde_json::to_value(p)?;
        v["pass1"] = json!(p.correct as f64 / p.n as f64);
        v["pass_at_k"] = json!(pass_map(&one, o.ks)?);
        if let Some((_, _, se, _)) = &o.search {
            v["search"] = serde_json::to_value(&se[i])?;
        }
        problems.push(v);
    }
    let search = o.search.map(|(cfg, budget, se, secs)| {
        let solved = se.iter().filter(|x| x.solved).count();
        let tokens: u64 = se.iter().map(|x| x.tokens).sum();
        json!({
            "token_budget": budget,
            "solved": solved,
            "solved_fraction": solved as f64 / se.len() as f64,
            "tokens": tokens,
            "mean_tokens": tokens as f64 / se.len() as f64,
            "max_tokens": se.iter().map(|x| x.tokens).max(),
            "seconds": secs,
            "config": cfg,
        })
    });
    Ok(json!({
        "model": a.model.display().to_string(),
        "task": a.task,
        "data": a.data.as_ref().map(|d| d.display().to_string()),
        "generated": a.data.is_none().then(|| json!({"count": r.problems.len(), "seed": a.seed, "params": a.params})),
        "samples": a.samples,
        "ks": o.ks,
        "max_new_tokens": a.max_new_tokens,
        "temperature": a.temperature,
        "top_p": a.top_p,
        "seed": a.seed,
        "seconds": o.seconds,
        "total": {
            "problems": r.problems.len(),
            "samples": r.problems.iter().map(|p| p.n).sum::<usize>(),
            "correct": r.problems.iter().map(|p| p.correct).sum::<usize>(),
            "verifier_errors": r.problems.iter().map(|p| p.verifier_errors).sum::<usize>(),
            "tokens": s.tokens,
            "pass1": s.pass1,
            "any_correct": s.pass_at_k,
            "pass_at_k": pass_map(r, o.ks)?,
        },
        "search": search,
        "problems": problems,
    }))
}

fn table(o: &Measured<'_>, per_problem: bool) -> anyhow::Result<String> {
    let r = o.report;
    let idw = r
        .problems
        .iter()
        .map(|p| p.id.len())
        .max()
        .unwrap_or(0)
        .clamp(12, 40);
    let mut t = String::new();
    write!(t, "{:<idw$} {:>6} {:>8}", "problem", "n", "correct")?;
    for k in o.ks {
        write!(t, " {:>8}", format!("pass@{k}"))?;
    }
    write!(t, " {:>9}", "tokens")?;
    if let Some((_, budget, _, _)) = &o.search {
        write!(t, " {:>8} {:>12}", "search", format!("tok/{budget}"))?;
    }
    t.push('\n');
    let row = |t: &mut String,
               id: &str,
               rep: &EvalReport,
               search: Option<(String, u64)>|
     -> anyhow::Result<()> {
        let (n, c): (usize, usize) = rep
            .problems
            .iter()
            .fold((0, 0), |(n, c), p| (n + p.n, c + p.correct));
        let id: String = id.chars().take(idw).collect();
        write!(t, "{id:<idw$} {n:>6} {c:>8}")?;
        for &k in o.ks {
            write!(t, " {:>8.4}", rep.pass_at_k(k)?)?;
        }
        write!(t, " {:>9}", rep.summary().tokens)?;
        if let Some((solved, tokens)) = search {
            write!(t, " {solved:>8} {tokens:>12}")?;
        }
        t.push('\n');
        Ok(())
    };
    if per_problem {
        for (i, p) in r.problems.iter().enumerate() {
            let one = EvalReport {
                problems: vec![p.clone()],
            };
            let s = o.search.map(|(_, _, se, _)| {
                (
                    if se[i].solved { "yes" } else { "no" }.to_string(),
                    se[i].tokens,
                )
            });
            row(&mut t, &p.id, &one, s)?;
        }
    }
    let s = o.search.map(|(_, _, se, _)| {
        let solved = se.iter().filter(|x| x.solved).count();
        (
            format!("{solved}/{}", se.len()),
            se.iter().map(|x| x.tokens).sum(),
        )
    });
    row(&mut t, &format!("total ({})", r.problems.len()), r, s)?;
    Ok(t)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let ks = resolve_ks(&args.ks, args.samples)?;
    if args.batch == 0 || args.max_new_tokens == 0 {
        bail!("--batch and --max-new-tokens must be at least 1");
    }
    registry::verifier_for(&args.task).context("--task")?;
    if !args.model.is_dir() {
        bail!(
            "--model {}: no such folder (expected a Hugging Face folder with config.json)",
            args.model.display()
        );
    }
    if !args.model.join("config.json").is_file() {
        bail!(
            "--model {}: no config.json (expected a Hugging Face folder)",
            args.model.display()
        );
    }
    let search_cfg = match (args.search, args.token_budget) {
        (true, Some(_)) => Some(search_config(&args)?),
        _ => None,
    };
    let problems = load_problems(&args)?;
    let model = ModelConfig {
        dir: args.model.clone(),
        device: args.device.clone(),
        dtype: args.dtype.clone(),
        ..ModelConfig::default()
    };
    let actor = EngineActor::load(&model)?;
    let opts = EvalOptions {
        samples: args.samples,
        max_new_tokens: args.max_new_tokens,
        batch: args.batch,
        seed: args.seed,
        params: SamplingParams {
            temperature: args.temperature,
            top_p: args.top_p,
            ..SamplingParams::default()
        },
    };
    let mut evaluator = Evaluator::with_problems(actor, problems, opts);
    let started = Instant::now();
    let report =
        evaluator.run_per_problem(&mut |done, total| tracing::info!(done, total, "sampled"))?;
    let seconds = started.elapsed().as_secs_f64();
    let search = match (&search_cfg, args.token_budget) {
        (Some(cfg), Some(budget)) => {
            let t = Instant::now();
            let problems = evaluator.problems().to_vec();
            let res = run_search(evaluator.actor_mut(), &problems, cfg, budget)?;
            Some((res, t.elapsed().as_secs_f64()))
        }
        _ => None,
    };
    let outcome = Measured {
        args: &args,
        ks: &ks,
        report: &report,
        search: match (&search_cfg, args.token_budget, &search) {
            (Some(c), Some(b), Some((res, secs))) => Some((c, b, res.as_slice(), *secs)),
            _ => None,
        },
        seconds,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&to_json(&outcome)?)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "model {}, task {}, {} problems, {} samples each (T={}, top-p {}, at most {} new tokens), {:.1}s",
        args.model.display(),
        args.task,
        report.problems.len(),
        args.samples,
        args.temperature,
        args.top_p,
        args.max_new_tokens,
        seconds
    );
    if let (Some(budget), Some((res, secs))) = (args.token_budget, &search) {
        let used: u64 = res.iter().map(|r| r.tokens).sum();
        println!(
            "search: budget {budget} tokens per problem, {used} used in all (mean {:.0}, max {}), {:.1}s",
            used as f64 / res.len() as f64,
            res.iter().map(|r| r.tokens).max().unwrap_or(0),
            secs
        );
    }
    print!(
        "{}",
        table(
            &outcome,
            args.per_problem || report.problems.len() <= FEW_PROBLEMS
        )?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_default_sort_and_reject_out_of_range() {
        assert_eq!(resolve_ks(&[], 8).unwrap(), vec![1, 2, 4, 8]);
        assert_eq!(resolve_ks(&[], 6).unwrap(), vec![1, 2, 4, 6]);
        assert_eq!(resolve_ks(&[4, 1, 4], 4).unwrap(), vec![1, 4]);
        let e = resolve_ks(&[2, 16], 8).unwrap_err().to_string();
        assert!(e.contains("--k 16") && e.contains("--samples is 8"), "{e}");
        assert!(resolve_ks(&[0], 8).is_err());
        assert!(resolve_ks(&[], 0).is_err());
    }
}
