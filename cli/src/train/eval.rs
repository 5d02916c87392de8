//! Bootstrap and held-out evaluation for `deepsearch train` (design.md "Embedded default").
//!
//! - [`bootstrap`]: the base policy. A cached SFT model in `<cache_dir>/<hash>` is reused; else a
//!   fresh tiny char-level Qwen2 (`cmd_sft::init_model`) is trained on generated easy Countdown
//!   traces for `bootstrap.max_seconds` and saved there (written to a temporary folder first, then
//!   renamed, so an interrupted bootstrap never leaves a half model in the cache).
//! - [`Evaluator`]: Pass@1 (mean over `samples` T=1 samples per problem) and Pass@k (any correct)
//!   on the held-out set, batched through the generation engine ([`crate::cmd_actor::EngineActor`]
//!   as a search `Policy`), verified with each problem's task verifier. [`Evaluator::new`] builds
//!   the held-out Countdown set of `deepsearch train`; [`Evaluator::with_problems`] takes any
//!   problem list (`deepsearch eval`), and [`Evaluator::run_per_problem`] keeps the per-problem
//!   counts from which [`EvalReport::pass_at_k`] computes the unbiased estimator
//!   ([`deepsearch_tasks::passk`]).
//! - [`search_at_budget`]: search-augmented evaluation of one problem: trees are searched one after
//!   another until a verified-correct leaf appears or the budget of generated tokens is spent.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use deepsearch_learner::sft::{read_examples, train_sft, SftConfig};
use deepsearch_policy::checkpoint::{PolicyModel, SaveOptions};
use deepsearch_search::policy::{ExpandRequest, Policy, PrefixKey};
use deepsearch_search::runtime::{PromptEncoder, Reloadable};
use deepsearch_search::score::Outcome;
use deepsearch_search::{Forest, Judge, Metered, SamplingParams, SearchConfig, TreeInput};
use deepsearch_tasks::passk::{mean_pass_at_k, PassAtKError};
use deepsearch_tasks::{countdown, registry, verify_catching, Problem, Verdict, Verifier};

use super::config::{fnv64, TrainConfig};
use crate::cmd_actor::EngineActor;

/// Returns the base policy folder, training and caching it if needed.
pub fn bootstrap(cfg: &TrainConfig) -> anyhow::Result<PathBuf> {
    let b = &cfg.bootstrap;
    if let Some(m) = &b.model {
        return Ok(m.clone());
    }
    let mut key = b.clone();
    key.cache_dir = PathBuf::new();
    let hash = fnv64(serde_json::to_string(&key)?.as_bytes());
    let dir = b.cache_dir.join(format!("{hash:016x}"));
    if dir.join("config.json").exists() && dir.join("model.safetensors").exists() {
        tracing::info!(dir = %dir.display(), "reusing cached bootstrap policy");
        return Ok(dir);
    }
    std::fs::create_dir_all(&b.cache_dir).with_context(|| format!("creating {}", b.cache_dir.display()))?;
    let tmp = b.cache_dir.join(format!("{hash:016x}.tmp{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let problems = countdown::generate(&b.problems, b.seed, b.count).context("bootstrap.problems")?;
    let data = tmp.join("sft.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&data)?);
        for p in &problems {
            let trace = registry::solution_trace(p).with_context(|| format!("problem {}: no solution trace", p.id))?;
            writeln!(f, "{}", serde_json::json!({"prompt": p.prompt, "response": trace}))?;
        }
        f.flush()?;
    }
    let mut model = crate::cmd_sft::init_model("countdown", b.init_seed)?;
    let examples = read_examples(&data, &model)?;
    let sft = SftConfig {
        lr: b.lr,
        batch_size: b.batch_size,
        epochs: 1000,
        max_seconds: b.max_seconds,
        max_steps: b.max_updates,
        seed: b.seed,
        decay_to: b.decay_to,
        ..Default::default()
    };
    eprintln!("bootstrap: SFT of a {}-parameter model on {} easy traces for {:.0}s", model.num_parameters(), examples.len(), b.max_seconds);
    let report = train_sft(&mut model, &examples, &sft, |step, loss| {
        if step % 50 == 0 {
            eprintln!("bootstrap: update {step} loss {loss:.4}");
        }
    })?;
    eprintln!("bootstrap: {} updates, loss {:.4} -> {:.4}", report.updates, report.first_loss, report.last_loss);
    std::fs::remove_file(&data)?;
    model.save(&tmp, &SaveOptions::default()).with_context(|| format!("writing {}", tmp.display()))?;
    if std::fs::rename(&tmp, &dir).is_err() {
        // another run cached it meanwhile: use theirs
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(dir)
}

/// One evaluation's numbers.
#[derive(Clone, Copy, Debug)]
pub struct EvalResult {
    /// Mean over problems of correct / samples.
    pub pass1: f64,
    /// Fraction of problems with at least one correct sample (pass@`samples`).
    pub pass_at_k: f64,
    /// Response tokens generated.
    pub tokens: usize,
}

/// How an evaluation samples.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Samples per problem (the `n` of pass@k).
    pub samples: usize,
    /// Response token cap of each sample.
    pub max_new_tokens: usize,
    /// Problems per engine batch.
    pub batch: usize,
    /// Run seed; problem `i` (position in the list) samples with a seed derived from (seed, i).
    pub seed: u64,
    /// Temperature and top-p (default: T=1, top-p 1).
    pub params: SamplingParams,
}

/// One problem's samples.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProblemEval {
    pub id: String,
    /// Samples drawn.
    pub n: usize,
    /// Samples the verifier judged correct.
    pub correct: usize,
    /// Samples whose verification failed (counted as not correct).
    pub verifier_errors: usize,
    /// Response tokens generated for this problem.
    pub tokens: usize,
}

/// The per-problem outcome of one evaluation.
#[derive(Clone, Debug, Default)]
pub struct EvalReport {
    pub problems: Vec<ProblemEval>,
}

impl EvalReport {
    /// The numbers `deepsearch train` logs: Pass@1, any-correct fraction, tokens (0 for no problems).
    pub fn summary(&self) -> EvalResult {
        let n = self.problems.len().max(1) as f64;
        EvalResult {
            pass1: self.problems.iter().map(|p| p.correct as f64 / p.n.max(1) as f64).sum::<f64>() / n,
            pass_at_k: self.problems.iter().filter(|p| p.correct > 0).count() as f64 / n,
            tokens: self.problems.iter().map(|p| p.tokens).sum(),
        }
    }

    /// Unbiased pass@k averaged over the problems.
    pub fn pass_at_k(&self, k: usize) -> Result<f64, PassAtKError> {
        let nc: Vec<(u64, u64)> = self.problems.iter().map(|p| (p.n as u64, p.correct as u64)).collect();
        mean_pass_at_k(&nc, k as u64)
    }
}

/// A problem set and a policy to sample it with.
pub struct Evaluator {
    actor: EngineActor,
    problems: Vec<Problem>,
    opts: EvalOptions,
}

impl Evaluator {
    /// Loads `base` and generates the eval set of `deepsearch train`.
    pub fn new(cfg: &TrainConfig, base: &Path) -> anyhow::Result<Self> {
        let pm = PolicyModel::load_with(base, "cpu", "f32").with_context(|| format!("loading {}", base.display()))?;
        let actor = EngineActor::new(pm, cfg.model.engine.clone(), cfg.model.prompt.clone());
        let problems = countdown::generate(&cfg.data.eval, cfg.data.eval_seed, cfg.data.eval_count).context("data.eval")?;
        let opts = EvalOptions {
            samples: cfg.eval.samples,
            max_new_tokens: cfg.eval.max_new_tokens,
            batch: cfg.eval.batch,
            seed: cfg.run.seed,
            params: SamplingParams::default(),
        };
        Ok(Self::with_problems(actor, problems, opts))
    }

    /// Any problem list (each problem is verified by its own task's verifier).
    pub(crate) fn with_problems(actor: EngineActor, problems: Vec<Problem>, opts: EvalOptions) -> Self {
        Evaluator { actor, problems, opts }
    }

    /// The policy, e.g. to search with it after sampling.
    pub(crate) fn actor_mut(&mut self) -> &mut EngineActor {
        &mut self.actor
    }

    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Swaps in new weights (a safetensors file).
    pub fn load_weights(&mut self, bytes: &[u8], version: u64) -> anyhow::Result<()> {
        self.actor.load_safetensors(bytes, version).map_err(|e| anyhow::anyhow!("eval weights: {e}"))
    }

    /// Samples every problem `samples` times and verifies.
    pub fn run(&mut self) -> anyhow::Result<EvalResult> {
        Ok(self.run_per_problem(&mut |_, _| {})?.summary())
    }

    /// Like [`Evaluator::run`], keeping every problem's counts; `progress(done, total)` is called
    /// after each engine batch.
    pub fn run_per_problem(&mut self, progress: &mut dyn FnMut(usize, usize)) -> anyhow::Result<EvalReport> {
        let mut verifiers: BTreeMap<&str, Arc<dyn Verifier>> = BTreeMap::new();
        for p in &self.problems {
            if !verifiers.contains_key(p.task.as_str()) {
                let v = registry::verifier_for(&p.task).with_context(|| format!("problem {}", p.id))?;
                verifiers.insert(p.task.as_str(), v);
            }
        }
        let (batch, samples) = (self.opts.batch.max(1), self.opts.samples);
        let params = Arc::new(self.opts.params.clone());
        let mut report = EvalReport::default();
        for (c, chunk) in self.problems.chunks(batch).enumerate() {
            let mut reqs = Vec::with_capacity(chunk.len());
            for (i, p) in chunk.iter().enumerate() {
                let prompt = self.actor.encode_prompt(p).map_err(|e| anyhow::anyhow!("problem {}: {e}", p.id))?;
                let index = (c * batch + i) as u64;
                reqs.push(ExpandRequest {
                    key: PrefixKey { tree: index, node: 0 },
                    reuse: None,
                    tokens: Arc::new(prompt),
                    n: samples,
                    max_new_tokens: self.opts.max_new_tokens,
                    params: params.clone(),
                    seed: self.opts.seed.wrapping_mul(1_000_003).wrapping_add(index),
                });
            }
            let keys: Vec<PrefixKey> = reqs.iter().map(|r| r.key).collect();
            let outs = self.actor.expand(&reqs);
            self.actor.release(&keys);
            for (p, out) in chunk.iter().zip(outs) {
                let segs = out.map_err(|e| anyhow::anyhow!("eval of {}: {e}", p.id))?;
                let verifier = verifiers[p.task.as_str()].as_ref();
                let mut r = ProblemEval { id: p.id.clone(), n: segs.len(), correct: 0, verifier_errors: 0, tokens: 0 };
                for s in segs {
                    r.tokens += s.tokens.len();
                    match verify_catching(verifier, p, &self.actor.decode(&s.tokens)) {
                        Verdict::Correct => r.correct += 1,
                        Verdict::Error(e) => {
                            tracing::warn!(problem = %p.id, error = %e, "verifier error: sample counted as not correct");
                            r.verifier_errors += 1;
                        }
                        _ => {}
                    }
                }
                if r.n != samples {
                    anyhow::bail!("eval of {}: the engine returned {} samples, expected {samples}", p.id, r.n);
                }
                report.problems.push(r);
            }
            progress(report.problems.len(), self.problems.len());
        }
        Ok(report)
    }
}

/// Why a search-augmented evaluation of a problem stopped.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchStop {
    /// A verified-correct leaf was found.
    Solved,
    /// The token budget was spent without a correct leaf.
    Budget,
    /// A whole tree ended without generating a token (e.g. the prompt overflows the context);
    /// another one would not either.
    NoProgress { outcome: String },
}

/// One problem under search-augmented evaluation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SearchEval {
    pub id: String,
    /// A verified-correct leaf appeared within the budget (the expansion that crosses the budget
    /// still counts).
    pub solved: bool,
    /// Tokens generated; may exceed the budget by at most the expansion that crossed it.
    pub tokens: u64,
    /// Trees started (each a fresh search with the next salt).
    pub trees: u64,
    /// Expansion requests sent to the policy.
    pub expansions: u64,
    pub stop: SearchStop,
}

/// Searches `problem` with `policy` until a verified-correct leaf is found or `budget` tokens
/// have been generated: tree after tree (salts 0, 1, ...), checking after every batched
/// expansion, so the budget is exceeded by at most one expansion (`expansion_width ×
/// segment_tokens` tokens). A tree cut short has its prefix keys released. Tree ids are
/// `first_tree_id, first_tree_id + 1, ...` (keep them apart from other users of the policy).
pub fn search_at_budget<P: Policy + ?Sized>(
    policy: &mut P,
    judge: &Judge<'_>,
    cfg: &SearchConfig,
    input: TreeInput,
    budget: u64,
    first_tree_id: u64,
) -> anyhow::Result<SearchEval> {
    let mut pol = Metered::new(policy);
    let mut res = SearchEval {
        id: input.problem.id.clone(),
        solved: false,
        tokens: 0,
        trees: 0,
        expansions: 0,
        stop: SearchStop::Budget,
    };
    let is_correct = |n: &deepsearch_search::tree::Node| n.terminal.as_ref().is_some_and(|t| t.outcome == Some(Outcome::Correct));
    while pol.tokens < budget {
        let mut forest = Forest::new(cfg.clone(), first_tree_id + res.trees)?;
        forest.add(TreeInput { salt: input.salt + res.trees, ..input.clone() });
        res.trees += 1;
        let before = pol.tokens;
        let mut last_outcome = String::new();
        while forest.active() > 0 {
            for t in forest.step(&mut pol, judge) {
                res.solved |= t.stats.correct > 0;
                last_outcome = t.outcome.to_string();
            }
            res.solved |= forest.active_trees().any(|(_, _, tree, _)| tree.nodes().iter().any(is_correct));
            if res.solved || pol.tokens >= budget {
                let keys: Vec<PrefixKey> = forest
                    .active_trees()
                    .flat_map(|(id, _, tree, _)| (0..tree.len() as u32).map(move |node| PrefixKey { tree: id, node }))
                    .collect();
                if !keys.is_empty() {
                    pol.release(&keys);
                }
                break;
            }
        }
        if res.solved {
            res.stop = SearchStop::Solved;
            break;
        }
        if pol.tokens == before {
            res.stop = SearchStop::NoProgress { outcome: last_outcome };
            break;
        }
    }
    res.tokens = pol.tokens;
    res.expansions = pol.requests;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepsearch_search::policy::{Finish, PolicyError, Segment};

    fn pe(n: usize, correct: usize, tokens: usize) -> ProblemEval {
        ProblemEval { id: format!("p{correct}"), n, correct, verifier_errors: 0, tokens }
    }

    #[test]
    fn report_summary_and_pass_at_k_agree() {
        let r = EvalReport { problems: vec![pe(4, 0, 10), pe(4, 1, 20), pe(4, 4, 5)] };
        let s = r.summary();
        assert!((s.pass1 - (0.0 + 0.25 + 1.0) / 3.0).abs() < 1e-12);
        assert!((s.pass_at_k - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.tokens, 35);
        assert!((r.pass_at_k(1).unwrap() - s.pass1).abs() < 1e-12);
        assert!((r.pass_at_k(4).unwrap() - s.pass_at_k).abs() < 1e-12);
        let p2 = r.pass_at_k(2).unwrap();
        assert!(s.pass1 < p2 && p2 < s.pass_at_k, "{p2}");
        assert!(r.pass_at_k(5).is_err());
        let empty = EvalReport::default().summary();
        assert_eq!((empty.pass1, empty.pass_at_k, empty.tokens), (0.0, 0.0, 0));
    }

    /// Every sample is `len` copies of token 1, then token 2 (the EOS) when `eos`; the text is
    /// "a" per token 1 and "b" for token 2.
    struct Fixed {
        len: usize,
        eos: bool,
        requested: Vec<PrefixKey>,
        released: Vec<PrefixKey>,
    }

    impl Policy for Fixed {
        fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
            self.requested.extend(reqs.iter().map(|r| r.key));
            reqs.iter()
                .map(|r| {
                    let mut tokens = vec![1; self.len.min(r.max_new_tokens)];
                    let finish = if self.eos {
                        tokens.push(2);
                        Finish::Eos
                    } else {
                        Finish::Length
                    };
                    let n = tokens.len();
                    Ok(vec![Segment { tokens, logprobs: vec![-0.5; n], entropies: vec![], finish: Some(finish) }; r.n])
                })
                .collect()
        }
        fn release(&mut self, keys: &[PrefixKey]) {
            self.released.extend_from_slice(keys);
        }
        fn decode(&self, tokens: &[u32]) -> String {
            tokens.iter().map(|&t| if t == 1 { 'a' } else { 'b' }).collect()
        }
        fn max_context(&self) -> usize {
            1 << 20
        }
    }

    /// Correct when the response ends with "b".
    struct EndsWithB;
    impl Verifier for EndsWithB {
        fn verify(&self, _: &Problem, response: &str) -> Verdict {
            if response.ends_with('b') { Verdict::Correct } else { Verdict::Wrong }
        }
    }

    fn cfg() -> SearchConfig {
        SearchConfig { segment_tokens: 4, expansion_width: 2, max_depth: 2000, max_expansions: 100_000, ..SearchConfig::default() }
    }

    fn input() -> TreeInput {
        TreeInput { problem: Problem::new("p", "countdown", "q", "a"), prompt_tokens: vec![7, 7], salt: 0 }
    }

    #[test]
    fn search_stops_at_the_budget_and_releases_its_keys() {
        let mut pol = Fixed { len: 4, eos: false, requested: vec![], released: vec![] };
        let judge = Judge { verifier: &EndsWithB, prefix_valid: None };
        let r = search_at_budget(&mut pol, &judge, &cfg(), input(), 100, 50).unwrap();
        assert!(!r.solved);
        assert_eq!(r.stop, SearchStop::Budget);
        // 8 tokens per expansion: the one that crosses 100 is the 13th
        assert_eq!((r.tokens, r.expansions, r.trees), (104, 13, 1));
        assert!(pol.requested.iter().all(|k| k.tree == 50 && pol.released.contains(k)), "{:?}", pol.released);
        // a zero budget generates nothing
        let r = search_at_budget(&mut pol, &judge, &cfg(), input(), 0, 50).unwrap();
        assert_eq!((r.tokens, r.trees, r.solved), (0, 0, false));
    }

    #[test]
    fn search_stops_at_the_first_correct_leaf() {
        let mut pol = Fixed { len: 3, eos: true, requested: vec![], released: vec![] };
        let judge = Judge { verifier: &EndsWithB, prefix_valid: None };
        let r = search_at_budget(&mut pol, &judge, &cfg(), input(), 1000, 0).unwrap();
        assert!(r.solved);
        assert_eq!(r.stop, SearchStop::Solved);
        assert_eq!((r.tokens, r.expansions, r.trees), (8, 1, 1));
    }

    #[test]
    fn search_without_progress_ends() {
        // the prompt does not fit the context: each tree ends at once without generating
        struct Tiny(Fixed);
        impl Policy for Tiny {
            fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
                self.0.expand(reqs)
            }
            fn release(&mut self, keys: &[PrefixKey]) {
                self.0.release(keys)
            }
            fn decode(&self, tokens: &[u32]) -> String {
                self.0.decode(tokens)
            }
            fn max_context(&self) -> usize {
                1
            }
        }
        let mut pol = Tiny(Fixed { len: 3, eos: false, requested: vec![], released: vec![] });
        let judge = Judge { verifier: &EndsWithB, prefix_valid: None };
        let r = search_at_budget(&mut pol, &judge, &cfg(), input(), 1000, 0).unwrap();
        assert!(!r.solved && r.tokens == 0 && r.trees == 1);
        assert!(matches!(&r.stop, SearchStop::NoProgress { outcome } if outcome.contains("context_overflow")), "{:?}", r.stop);
    }
}
