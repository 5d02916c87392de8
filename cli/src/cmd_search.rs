//! `deepsearch search`: one DeepSearch tree (spec §1–§6) with the real policy on one problem,
//! written as JSON (`--dump`) and as a self-contained HTML page (`--html`) a person can expand
//! and read (issue #4 item 6). Prints a one-line summary.
//!
//! The problem comes from `--problem-json`, from `--data FILE --problem-id ID` (JSONL/Parquet
//! with problem/answer columns), or from a built-in generator (`--task countdown|arithmetic
//! --seed S --index I`). Search knobs: `--search-config FILE` (TOML of `SearchConfig`) and
//! `--set search.key=value` overrides (values parsed as JSON, else taken as strings).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use deepsearch_search::runtime::PromptEncoder;
use deepsearch_search::{
    search_all, tree_to_html, tree_to_json, Judge, Policy, SearchConfig, TreeInput,
};
use deepsearch_tasks::{registry, source, Problem, TaskError};
use serde_json::Value;

use crate::cmd_actor::{EngineActor, ModelConfig};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Hugging Face Qwen2 folder.
    #[arg(long)]
    model: PathBuf,
    /// Task (selects the generator and the verifier): countdown | arithmetic | math.
    #[arg(long, default_value = "countdown")]
    task: String,
    /// A problem as JSON: {"id", "prompt", "answer", "task"}.
    #[arg(long, conflicts_with_all = ["data", "seed"])]
    problem_json: Option<String>,
    /// Dataset (JSONL or Parquet) to take `--problem-id` from.
    #[arg(long, requires = "problem_id")]
    data: Option<PathBuf>,
    #[arg(long, requires = "data")]
    problem_id: Option<String>,
    /// Seed of the built-in generator.
    #[arg(long)]
    seed: Option<u64>,
    /// Index of the generated problem.
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// Write the tree as JSON here.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Write the tree as a self-contained HTML page here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// TOML file of search settings (`SearchConfig`); `--set` applies on top.
    #[arg(long)]
    search_config: Option<PathBuf>,
    /// Override a search setting, e.g. `--set search.segment_tokens=16` (repeatable).
    #[arg(long = "set", value_name = "search.KEY=VALUE")]
    set: Vec<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32 | bf16 | f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

/// Applies `search.a.b=value` overrides to a search config; errors name the override.
pub fn apply_overrides(cfg: SearchConfig, sets: &[String]) -> anyhow::Result<SearchConfig> {
    let mut v = serde_json::to_value(&cfg)?;
    for s in sets {
        let (key, raw) = s
            .split_once('=')
            .with_context(|| format!("--set {s:?}: expected search.KEY=VALUE"))?;
        let path = key
            .strip_prefix("search.")
            .with_context(|| format!("--set {s:?}: only `search.*` keys can be set here"))?;
        let value: Value =
            serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        let mut cur = &mut v;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, p) in parts.iter().enumerate() {
            let obj = cur
                .as_object_mut()
                .with_context(|| format!("--set {s:?}: `{p}` is not inside a table"))?;
            if i + 1 == parts.len() {
                obj.insert(p.to_string(), value.clone());
                break;
            }
            cur = obj
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
        }
    }
    let cfg: SearchConfig = serde_json::from_value(v).context("applying --set overrides")?;
    cfg.validate()?;
    Ok(cfg)
}

fn load_problem(args: &Args) -> anyhow::Result<Problem> {
    if let Some(j) = &args.problem_json {
        return serde_json::from_str(j)
            .context("--problem-json is not a problem {\"id\", \"prompt\", \"answer\", \"task\"}");
    }
    if let (Some(data), Some(id)) = (&args.data, &args.problem_id) {
        let cfg = source::SourceConfig {
            task: args.task.clone(),
            ..source::SourceConfig::for_path(data)
        };
        let loaded = source::load(&cfg).with_context(|| format!("loading {}", data.display()))?;
        return loaded
            .problems
            .into_iter()
            .find(|p| &p.id == id)
            .with_context(|| format!("no problem with id {id:?} in {}", data.display()));
    }
    let mut ps = registry::generate(&args.task, "{}", args.seed.unwrap_or(0), args.index + 1).map_err(|e| match e {
        TaskError::UnknownTask(t) => anyhow::anyhow!("task {t:?} has no built-in generator: give --problem-json or --data with --problem-id"),
        e => e.into(),
    })?;
    Ok(ps.pop().expect("generated index + 1 problems"))
}

/// The search settings of a TOML file (`SearchConfig`), or the defaults without one.
pub fn read_search_config(file: Option<&Path>) -> anyhow::Result<SearchConfig> {
    let Some(p) = file else { return Ok(SearchConfig::default()) };
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = apply_overrides(read_search_config(args.search_config.as_deref())?, &args.set)?;
    let problem = load_problem(&args)?;
    let verifier = registry::verifier_for(&problem.task)?;
    let model = ModelConfig {
        dir: args.model.clone(),
        device: args.device.clone(),
        dtype: args.dtype.clone(),
        ..ModelConfig::default()
    };
    let mut policy = EngineActor::load(&model)?;
    let prompt_tokens = policy
        .encode_prompt(&problem)
        .map_err(anyhow::Error::msg)
        .context("encoding the prompt")?;
    let hook: &deepsearch_search::sample::PrefixValid = &registry::prefix_is_valid;
    let judge = Judge {
        verifier: verifier.as_ref(),
        prefix_valid: cfg.prune_invalid_prefixes.then_some(hook),
    };
    let started = Instant::now();
    let input = TreeInput {
        problem: problem.clone(),
        prompt_tokens,
        salt: 0,
    };
    let tree = search_all(&cfg, vec![input], &mut policy, &judge)?
        .pop()
        .context("the search returned no tree")?;
    let secs = started.elapsed().as_secs_f64();
    let decode = |ids: &[u32]| policy.decode(ids);
    if let Some(p) = &args.dump {
        let json = serde_json::to_string_pretty(&tree_to_json(&tree, &decode))?;
        std::fs::write(p, json).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.html {
        std::fs::write(p, tree_to_html(&tree, &decode))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let trajs = tree.trajectories(0);
    let correct = trajs.iter().filter(|t| t.verdict.is_correct()).count();
    println!(
        "problem {}: {}, {} trajectories ({} correct), {} expansions, {} nodes, {} tokens, {:.2}s",
        problem.id,
        tree.outcome,
        trajs.len(),
        correct,
        tree.stats.expansions,
        tree.stats.nodes,
        tree.stats.generated_tokens,
        secs
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_set_nested_keys_and_reject_typos() {
        let c = apply_overrides(
            SearchConfig::default(),
            &[
                "search.segment_tokens=16".into(),
                "search.segment_delimiter=\n".into(),
                "search.frontier.lambda1=0.5".into(),
                "search.overlong.buffer_tokens=256".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                c.segment_tokens,
                c.segment_delimiter.as_deref(),
                c.frontier.lambda1
            ),
            (16, Some("\n"), 0.5)
        );
        let e = format!(
            "{:#}",
            apply_overrides(SearchConfig::default(), &["search.segment_tokenz=1".into()])
                .unwrap_err()
        );
        assert!(e.contains("segment_tokenz"), "{e}");
        assert!(apply_overrides(SearchConfig::default(), &["segment_tokens=1".into()]).is_err());
        let e = format!(
            "{:#}",
            apply_overrides(
                SearchConfig::default(),
                &["search.expansion_width=0".into()]
            )
            .unwrap_err()
        );
        assert!(e.contains("expansion_width"), "{e}");
    }
}
