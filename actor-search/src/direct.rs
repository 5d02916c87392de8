//! The two other ways of producing a group (spec §6–§7), on the same interfaces as the search.
//!
//! * Direct sampling: `k` independent full responses scored by outcome (±1 + p_len): the GRPO/DAPO
//!   baseline and the Pass1@K hard-problem filter (the pass fraction is returned with the group).
//! * Cached path: a cached problem skips search; its group is its cached verified solutions (up to
//!   `k`) plus `k − cached` fresh direct samples, all with outcome scores.
//!
//! Design choice: a problem's fresh samples are ONE request with `n = fresh` and
//! `max_new_tokens = min(Lmax, context − prompt)` and no stop string, and all problems of a call go
//! to the policy in one batch. A response that stops at that budget without an answer is
//! incomplete, an unparsable one after EOS is wrong (spec §2), a verifier error is dropped.

use deepsearch_tasks::{Verdict, Verifier};

use crate::config::{ConfigError, SearchConfig};
use crate::output::{outcome_trajectory, Group, GroupStats, OutcomeSample, Source, TreeOutcome};
use crate::policy::{
    ExpandRequest, Finish, Policy, PolicyError, PrefixKey, SamplingParams, Segment,
};
use crate::score::{outcome_of, Outcome};
use crate::search::{mix64, tree_seed, validate_segment, TreeInput};

/// A verified solution kept in the solution cache (spec §7).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CachedSolution {
    pub tokens: Vec<u32>,
    pub text: String,
}

/// One problem for direct sampling: `k` responses, of which `min(k, cached.len())` come from the
/// cache (empty for the baseline and the filter).
#[derive(Clone, Debug)]
pub struct DirectInput {
    pub input: TreeInput,
    pub k: usize,
    pub cached: Vec<CachedSolution>,
}

/// Seed of a problem's direct samples; a domain apart from the search's request seeds.
pub fn direct_seed(run_seed: u64, problem_id: &str, salt: u64) -> u64 {
    mix64(tree_seed(run_seed, problem_id, salt) ^ 0xD1EC_7000_0000_0000)
}

/// Sample groups for every input in one batched policy call, in input order. `first_key` is the
/// `tree` id of the first request's prefix key (keys are released before returning). Failures
/// (prompt past the context, policy error, invalid samples, verifier errors) are counted in each
/// group's stats; only an invalid config is an error.
pub fn sample_groups<P: Policy + ?Sized>(
    cfg: &SearchConfig,
    inputs: &[DirectInput],
    policy: &mut P,
    verifier: &dyn Verifier,
    policy_version: u64,
    first_key: u64,
) -> Result<Vec<Group>, ConfigError> {
    cfg.validate()?;
    let max_ctx = policy.max_context();
    let params = std::sync::Arc::new(SamplingParams {
        temperature: cfg.temperature,
        top_p: cfg.top_p,
        top_k: 0,
        stop: Vec::new(),
    });
    let mut groups: Vec<Group> = inputs
        .iter()
        .map(|d| cached_part(cfg, d, policy_version))
        .collect();
    let mut reqs = Vec::new();
    let mut who = Vec::new();
    for (i, d) in inputs.iter().enumerate() {
        let fresh = d.k - d.k.min(d.cached.len());
        let plen = d.input.prompt_tokens.len();
        if fresh == 0 {
            continue;
        }
        if plen >= max_ctx {
            groups[i].stats.invalid_samples += fresh as u32;
            groups[i].stats.outcome = Some(TreeOutcome::ContextOverflow {
                len: plen,
                max: max_ctx,
            });
            continue;
        }
        let key = PrefixKey {
            tree: first_key + i as u64,
            node: 0,
        };
        reqs.push(ExpandRequest {
            key,
            reuse: None,
            tokens: std::sync::Arc::new(d.input.prompt_tokens.clone()),
            n: fresh,
            max_new_tokens: cfg.max_response_tokens().min(max_ctx - plen),
            params: params.clone(),
            seed: direct_seed(cfg.seed, &d.input.problem.id, d.input.salt),
        });
        who.push(i);
    }
    if reqs.is_empty() {
        return Ok(groups);
    }
    let mut results = policy.expand(&reqs);
    if results.len() != reqs.len() {
        let msg = format!(
            "policy returned {} results for {} requests",
            results.len(),
            reqs.len()
        );
        results = reqs
            .iter()
            .map(|_| Err(PolicyError::Failed(msg.clone())))
            .collect();
    }
    let keys: Vec<PrefixKey> = reqs.iter().map(|r| r.key).collect();
    for ((i, res), req) in who.into_iter().zip(results).zip(&reqs) {
        let d = &inputs[i];
        add_fresh(
            cfg,
            d,
            req,
            res,
            &*policy,
            verifier,
            policy_version,
            &mut groups[i],
        );
    }
    policy.release(&keys);
    Ok(groups)
}

/// The cached solutions (≤ k) of a problem as outcome-scored trajectories.
fn cached_part(cfg: &SearchConfig, d: &DirectInput, policy_version: u64) -> Group {
    let id = &d.input.problem.id;
    let trajectories = d
        .cached
        .iter()
        .take(d.k)
        .map(|c| {
            let s = OutcomeSample {
                tokens: c.tokens.clone(),
                logprobs: Vec::new(),
                entropies: Vec::new(),
                verdict: Verdict::Correct,
                outcome: Outcome::Correct,
                text: c.text.clone(),
                source: Source::Cached,
            };
            outcome_trajectory(cfg, id, &d.input.prompt_tokens, s, policy_version)
        })
        .collect();
    let source = if d.cached.is_empty() {
        Source::Direct
    } else {
        Source::Cached
    };
    Group {
        problem_id: id.clone(),
        source,
        trajectories,
        stats: GroupStats::default(),
    }
}

/// Verify and score one problem's fresh samples into its group.
#[allow(clippy::too_many_arguments)]
fn add_fresh<P: Policy + ?Sized>(
    cfg: &SearchConfig,
    d: &DirectInput,
    req: &ExpandRequest,
    res: Result<Vec<Segment>, PolicyError>,
    policy: &P,
    verifier: &dyn Verifier,
    policy_version: u64,
    g: &mut Group,
) {
    let segs = match res {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(problem = %d.input.problem.id, error = %e, "direct sampling failed");
            g.stats.invalid_samples += req.n as u32;
            g.stats.outcome = Some(TreeOutcome::PolicyFailed {
                reason: e.to_string(),
            });
            return;
        }
    };
    g.stats.invalid_samples += req.n.saturating_sub(segs.len()) as u32;
    let (mut judged, mut correct) = (0u32, 0u32);
    for s in segs.into_iter().take(req.n) {
        g.stats.generated_tokens += s.tokens.len() as u64;
        if let Err(why) = validate_segment(&s, req.max_new_tokens) {
            tracing::warn!(problem = %d.input.problem.id, ?why, "invalid sample dropped");
            g.stats.invalid_samples += 1;
            continue;
        }
        let text = policy.decode(&s.tokens);
        let verdict = verifier.verify(&d.input.problem, &text);
        let Some(outcome) = outcome_of(&verdict, s.finish == Some(Finish::Eos)) else {
            g.stats.verifier_errors += 1;
            tracing::warn!(problem = %d.input.problem.id, ?verdict, "verifier error: sample dropped");
            continue;
        };
        judged += 1;
        match outcome {
            Outcome::Correct => {
                correct += 1;
                g.stats.correct += 1;
            }
            Outcome::Wrong => g.stats.wrong += 1,
            Outcome::Incomplete => g.stats.incomplete += 1,
        }
        let sample = OutcomeSample {
            tokens: s.tokens,
            logprobs: s.logprobs,
            entropies: s.entropies,
            verdict,
            outcome,
            text,
            source: Source::Direct,
        };
        g.trajectories.push(outcome_trajectory(
            cfg,
            &d.input.problem.id,
            &d.input.prompt_tokens,
            sample,
            policy_version,
        ));
    }
    g.stats.pass_fraction = (judged > 0).then(|| correct as f64 / judged as f64);
}
