//! Running one leased batch on the policy thread (spec §5–§7): every direct-sampling item
//! (filter, sample, cached) in one batched call, every search item as a tree of ONE forest (one
//! batched policy call per iteration), then each item's trajectories and outcome report.
//!
//! Pure of any I/O: it takes the policy, the verifier and the items, and returns [`ItemResult`]s;
//! the async side streams and reports them.

use std::sync::atomic::{AtomicBool, Ordering};

use deepsearch_tasks::{Problem, Verifier};

use crate::config::SearchConfig;
use crate::direct::{sample_groups, CachedSolution, DirectInput};
use crate::forest::Forest;
use crate::output::{Group, Source, Trajectory, TreeOutcome};
use crate::policy::Policy;
use crate::runtime::convert::{WorkItem, WorkMode};
use crate::sample::{Judge, TreeInput};
use crate::score::Outcome;

/// The prompt of a problem as token ids (tokenizer + chat template live with the model).
pub trait PromptEncoder {
    fn encode_prompt(&self, problem: &Problem) -> Result<Vec<u32>, String>;
}

impl<P: PromptEncoder + ?Sized> PromptEncoder for crate::policy::Metered<'_, P> {
    fn encode_prompt(&self, problem: &Problem) -> Result<Vec<u32>, String> {
        self.inner.encode_prompt(problem)
    }
}

/// What the async side reports for one item (mirrors `ReportOutcomeRequest`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub samples: u32,
    pub correct: u32,
    pub verifier_errors: u32,
    pub solved: bool,
    /// Verified correct (text, tokens).
    pub solutions: Vec<(String, Vec<u32>)>,
    pub generated_tokens: u64,
    /// Set when the item could not be run; the lease is released for re-leasing.
    pub error: Option<String>,
}

/// One item's result.
#[derive(Clone, Debug)]
pub struct ItemResult {
    pub lease_id: String,
    pub mode: WorkMode,
    /// The group to stream to the learner (empty for FILTER items and failures).
    pub trajectories: Vec<Trajectory>,
    pub report: Report,
    /// Expansions of the item's tree (search items).
    pub expansions: u64,
    /// The tree's deepest node and its frontier size when it finished (search items; else 0).
    pub max_depth: u32,
    pub frontier_size: u32,
}

/// Knobs of a batch.
#[derive(Clone, Copy, Debug)]
pub struct BatchParams<'a> {
    pub cfg: &'a SearchConfig,
    /// Version of the weights every sampled token of this batch comes from.
    pub version: u64,
    /// First prefix-key tree id; the batch uses `first_key .. first_key + items`.
    pub first_key: u64,
    pub max_solutions: usize,
}

/// FNV-1a of the lease id: the salt of a tree, so a re-leased problem is searched afresh.
fn salt_of(lease_id: &str) -> u64 {
    lease_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn failed(item: &WorkItem, error: String) -> ItemResult {
    tracing::warn!(lease_id = %item.lease_id, problem_id = %item.problem.id, %error, "work item failed");
    ItemResult {
        lease_id: item.lease_id.clone(),
        mode: item.mode,
        trajectories: Vec::new(),
        report: Report {
            error: Some(error),
            ..Report::default()
        },
        expansions: 0,
        max_depth: 0,
        frontier_size: 0,
    }
}

/// Runs every item; results in item order. `cancel` stops the search between iterations (the
/// unfinished trees are reported as errors).
pub fn run_batch<P: Policy + PromptEncoder + ?Sized>(
    policy: &mut P,
    verifier: &dyn Verifier,
    prefix_valid: Option<&crate::sample::PrefixValid>,
    items: &[WorkItem],
    params: BatchParams<'_>,
    cancel: &AtomicBool,
) -> Vec<ItemResult> {
    let mut out: Vec<Option<ItemResult>> = vec![None; items.len()];
    let mut direct: Vec<(usize, DirectInput)> = Vec::new();
    let mut search: Vec<(usize, TreeInput)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let prompt_tokens = match policy.encode_prompt(&item.problem) {
            Ok(t) if !t.is_empty() => t,
            Ok(_) => {
                out[i] = Some(failed(item, "the prompt encodes to no tokens".into()));
                continue;
            }
            Err(e) => {
                out[i] = Some(failed(item, format!("cannot encode the prompt: {e}")));
                continue;
            }
        };
        let input = TreeInput {
            problem: item.problem.clone(),
            prompt_tokens,
            salt: salt_of(&item.lease_id),
        };
        match item.mode {
            WorkMode::Search => search.push((i, input)),
            WorkMode::Filter | WorkMode::Sample => direct.push((
                i,
                DirectInput {
                    input,
                    k: item.num_samples as usize,
                    cached: Vec::new(),
                },
            )),
            WorkMode::Cached => {
                let cached: Vec<CachedSolution> = item
                    .cached
                    .iter()
                    .map(|s| CachedSolution {
                        tokens: s.tokens.clone(),
                        text: s.text.clone(),
                    })
                    .collect();
                let k = cached.len() + item.num_samples as usize;
                direct.push((i, DirectInput { input, k, cached }));
            }
        }
    }
    let cfg = params.cfg;
    if !direct.is_empty() {
        let inputs: Vec<DirectInput> = direct.iter().map(|(_, d)| d.clone()).collect();
        match sample_groups(
            cfg,
            &inputs,
            policy,
            verifier,
            params.version,
            params.first_key,
        ) {
            Ok(groups) => {
                for ((i, _), g) in direct.iter().zip(groups) {
                    out[*i] = Some(direct_result(&items[*i], g));
                }
            }
            Err(e) => {
                for (i, _) in &direct {
                    out[*i] = Some(failed(&items[*i], format!("invalid search config: {e}")));
                }
            }
        }
    }
    if !search.is_empty() {
        let first = params.first_key + items.len() as u64;
        run_forest(
            policy,
            verifier,
            prefix_valid,
            items,
            &search,
            params,
            first,
            cancel,
            &mut out,
        );
    }
    out.into_iter()
        .zip(items)
        .map(|(r, item)| r.unwrap_or_else(|| failed(item, "not run".into())))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn run_forest<P: Policy + ?Sized>(
    policy: &mut P,
    verifier: &dyn Verifier,
    prefix_valid: Option<&crate::sample::PrefixValid>,
    items: &[WorkItem],
    search: &[(usize, TreeInput)],
    params: BatchParams<'_>,
    first_tree: u64,
    cancel: &AtomicBool,
    out: &mut [Option<ItemResult>],
) {
    let mut forest = match Forest::new(params.cfg.clone(), first_tree) {
        Ok(f) => f,
        Err(e) => {
            for (i, _) in search {
                out[*i] = Some(failed(&items[*i], format!("invalid search config: {e}")));
            }
            return;
        }
    };
    let mut who = std::collections::HashMap::new();
    for (i, input) in search {
        who.insert(forest.add(input.clone()), *i);
    }
    let judge = Judge {
        verifier,
        prefix_valid,
    };
    while forest.active() > 0 && !cancel.load(Ordering::Relaxed) {
        for tree in forest.step(policy, &judge) {
            let i = who[&tree.id];
            let item = &items[i];
            let group = tree.group(params.version);
            let mut r = search_result(item, group, tree.solved(), params.max_solutions);
            r.expansions = tree.stats.expansions as u64;
            r.max_depth = tree.stats.max_depth;
            r.frontier_size = tree.stats.frontier_size;
            out[i] = Some(r);
        }
    }
    if forest.active() > 0 {
        for (id, _, _, _) in forest.active_trees() {
            let i = who[&id];
            out[i] = Some(failed(&items[i], "actor shutting down".into()));
        }
    }
}

fn count(trajs: &[Trajectory], o: Outcome) -> u32 {
    trajs.iter().filter(|t| t.outcome == o).count() as u32
}

/// A search item's report (spec §7): samples = recorded trajectories, correct among them,
/// solved = some correct terminal was found, solutions = distinct correct responses.
fn search_result(item: &WorkItem, g: Group, solved: bool, max_solutions: usize) -> ItemResult {
    let stats = g.stats.clone();
    if g.trajectories.is_empty() {
        let why = match &stats.outcome {
            Some(o @ (TreeOutcome::ContextOverflow { .. } | TreeOutcome::PolicyFailed { .. })) => {
                o.to_string()
            }
            Some(o) => format!("the search recorded no trajectory ({o})"),
            None => "the search recorded no trajectory".into(),
        };
        let mut r = failed(item, why);
        r.report.generated_tokens = stats.generated_tokens;
        r.report.verifier_errors = stats.verifier_errors;
        return r;
    }
    let mut solutions: Vec<(String, Vec<u32>)> = Vec::new();
    for t in g
        .trajectories
        .iter()
        .filter(|t| t.outcome == Outcome::Correct)
    {
        if solutions.len() < max_solutions && !solutions.iter().any(|(_, toks)| *toks == t.tokens) {
            solutions.push((t.text.clone(), t.tokens.clone()));
        }
    }
    ItemResult {
        lease_id: item.lease_id.clone(),
        mode: item.mode,
        report: Report {
            samples: g.trajectories.len() as u32,
            correct: count(&g.trajectories, Outcome::Correct),
            verifier_errors: stats.verifier_errors,
            solved: solved || stats.correct > 0,
            solutions,
            generated_tokens: stats.generated_tokens,
            error: None,
        },
        trajectories: g.trajectories,
        expansions: 0,
        max_depth: 0,
        frontier_size: 0,
    }
}

/// A filter / sample / cached item's report: samples and correct count the FRESH samples that
/// got a verdict (the coordinator bounds them by `num_samples`); cached trajectories carry the
/// version that produced their tokens.
fn direct_result(item: &WorkItem, mut g: Group) -> ItemResult {
    let fresh: Vec<&Trajectory> = g
        .trajectories
        .iter()
        .filter(|t| t.source == Source::Direct)
        .collect();
    let samples = fresh.len() as u32;
    let correct = fresh
        .iter()
        .filter(|t| t.outcome == Outcome::Correct)
        .count() as u32;
    let stats = g.stats.clone();
    if samples == 0 && item.num_samples > 0 && stats.verifier_errors == 0 {
        let why = match &stats.outcome {
            Some(o) => format!("no sample could be judged ({o})"),
            None => format!(
                "no sample could be judged ({} invalid)",
                stats.invalid_samples
            ),
        };
        let mut r = failed(item, why);
        r.report.generated_tokens = stats.generated_tokens;
        return r;
    }
    for (t, s) in g
        .trajectories
        .iter_mut()
        .filter(|t| t.source == Source::Cached)
        .zip(&item.cached)
    {
        t.policy_version = s.policy_version;
    }
    let trajectories = if item.mode == WorkMode::Filter {
        Vec::new()
    } else {
        g.trajectories
    };
    ItemResult {
        lease_id: item.lease_id.clone(),
        mode: item.mode,
        trajectories,
        report: Report {
            samples,
            correct,
            verifier_errors: stats.verifier_errors,
            solved: correct > 0,
            solutions: Vec::new(),
            generated_tokens: stats.generated_tokens,
            error: None,
        },
        expansions: 0,
        max_depth: 0,
        frontier_size: 0,
    }
}
