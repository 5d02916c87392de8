//! From trajectory groups to a training step (spec §6, design "learner"): validation at the edge,
//! staleness, advantages, mini-batches, data-parallel shards and micro-batches.
//!
//! Rank 0 ingests [`Group`]s from the actors. [`build_step`] checks every trajectory once (lengths
//! agree, scores and log-probs finite, token ids in the vocabulary, sequence fits the context,
//! policy version known and fresh) and turns the survivors into [`TrainSample`]s with their
//! per-token advantages. Nothing here panics on bad input: every rejection is counted in
//! [`IngestReport`] and logged. Every rank then sees the same [`StepBatch`] and derives its own
//! shard deterministically ([`StepBatch::plan`]), so no counts need to be exchanged.

use crate::config::LearnerConfig;
use crate::loss::{group_baseline, token_advantages, AggCounts};
use deepsearch_search::{Group, Trajectory};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// One trajectory ready for training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSample {
    /// Index of the sample's group in the step.
    pub group: usize,
    pub prompt: Vec<i64>,
    pub response: Vec<i64>,
    /// Per response token: score − μ (÷ σ under `mean_std`).
    pub advantages: Vec<f32>,
    /// The actor's sampling log-probs (None for cached solutions).
    pub sampling_logprobs: Option<Vec<f32>>,
    pub policy_version: u64,
}

impl TrainSample {
    /// Prompt ⊕ response length.
    pub fn len(&self) -> usize {
        self.prompt.len() + self.response.len()
    }

    pub fn is_empty(&self) -> bool {
        self.response.is_empty()
    }
}

/// Counts of what [`build_step`] accepted and rejected.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestReport {
    pub groups_in: usize,
    pub groups_kept: usize,
    pub trajectories_in: usize,
    pub trajectories_kept: usize,
    /// Groups with a trajectory more than `max_staleness` versions behind the learner.
    pub stale_groups: usize,
    /// Groups with a trajectory from a version the learner has not published.
    pub unknown_version_groups: usize,
    /// Groups with no trajectory, or none left after validation.
    pub empty_groups: usize,
    /// Trajectories whose token, score, log-prob or segment lengths disagree.
    pub mismatched_lengths: usize,
    /// Trajectories with a NaN or infinite score or log-prob.
    pub nonfinite: usize,
    /// Trajectories with an empty prompt or response.
    pub empty_trajectories: usize,
    /// Trajectories with a token id outside the vocabulary.
    pub out_of_vocab: usize,
    /// Trajectories longer than the model context.
    pub too_long: usize,
    /// Groups with no correct trajectory, dropped under `drop_unsolved_groups`.
    pub unsolved_groups: usize,
    /// Kept groups whose advantages are all zero (no signal; they still count in token means).
    pub zero_signal_groups: usize,
}

/// Limits the step is validated against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IngestLimits {
    /// The learner's current policy version.
    pub learner_version: u64,
    pub vocab_size: i64,
    pub max_context: usize,
}

/// The samples of one training step, grouped by prompt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepBatch {
    pub samples: Vec<TrainSample>,
    /// `groups[g]` = indices into `samples` of group g.
    pub groups: Vec<Vec<usize>>,
}

/// Why one trajectory is rejected (the counter it goes to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    MismatchedLengths,
    NonFinite,
    Empty,
    OutOfVocab,
    TooLong,
}

/// Checks one trajectory (pure).
pub fn check_trajectory(t: &Trajectory, lim: &IngestLimits) -> Result<(), Reject> {
    let n = t.tokens.len();
    if n == 0 || t.prompt_tokens.is_empty() {
        return Err(Reject::Empty);
    }
    let segs_ok = t.segment_ends.last().map(|&e| e as usize == n).unwrap_or(false)
        && t.segment_ends.windows(2).all(|w| w[0] < w[1]);
    if t.token_scores.len() != n || (!t.logprobs.is_empty() && t.logprobs.len() != n) || !segs_ok {
        return Err(Reject::MismatchedLengths);
    }
    let finite = t.terminal_score.is_finite()
        && t.token_scores.iter().all(|s| s.is_finite())
        && t.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0);
    if !finite {
        return Err(Reject::NonFinite);
    }
    let vocab = lim.vocab_size;
    if t.prompt_tokens.iter().chain(&t.tokens).any(|&id| id as i64 >= vocab) {
        return Err(Reject::OutOfVocab);
    }
    if t.prompt_tokens.len() + n > lim.max_context {
        return Err(Reject::TooLong);
    }
    Ok(())
}

/// Validates `groups` and builds the step's samples with their advantages (spec §6).
pub fn build_step(groups: &[Group], cfg: &LearnerConfig, lim: &IngestLimits) -> (StepBatch, IngestReport) {
    let mut rep = IngestReport {
        groups_in: groups.len(),
        ..Default::default()
    };
    let mut step = StepBatch::default();
    for g in groups {
        rep.trajectories_in += g.trajectories.len();
        if g.trajectories.is_empty() {
            rep.empty_groups += 1;
            continue;
        }
        if g.trajectories.iter().any(|t| t.policy_version > lim.learner_version) {
            tracing::warn!(problem = %g.problem_id, learner_version = lim.learner_version, "group from an unknown policy version dropped");
            rep.unknown_version_groups += 1;
            continue;
        }
        let oldest = g.trajectories.iter().map(|t| t.policy_version).min().unwrap_or(0);
        if lim.learner_version - oldest > cfg.max_staleness {
            tracing::debug!(problem = %g.problem_id, oldest, "stale group dropped");
            rep.stale_groups += 1;
            continue;
        }
        let valid: Vec<&Trajectory> = g
            .trajectories
            .iter()
            .filter(|t| match check_trajectory(t, lim) {
                Ok(()) => true,
                Err(why) => {
                    tracing::warn!(problem = %g.problem_id, ?why, "trajectory rejected");
                    *match why {
                        Reject::MismatchedLengths => &mut rep.mismatched_lengths,
                        Reject::NonFinite => &mut rep.nonfinite,
                        Reject::Empty => &mut rep.empty_trajectories,
                        Reject::OutOfVocab => &mut rep.out_of_vocab,
                        Reject::TooLong => &mut rep.too_long,
                    } += 1;
                    false
                }
            })
            .collect();
        if valid.is_empty() {
            rep.empty_groups += 1;
            continue;
        }
        if cfg.drop_unsolved_groups && !valid.iter().any(|t| t.verdict.is_correct()) {
            rep.unsolved_groups += 1;
            continue;
        }
        let terminal: Vec<f64> = valid.iter().map(|t| t.terminal_score).collect();
        let (mu, scale) = group_baseline(&terminal, cfg.adv_norm);
        let gi = step.groups.len();
        let mut members = Vec::with_capacity(valid.len());
        let mut signal = false;
        for t in valid {
            let advantages = token_advantages(&t.token_scores, mu, scale);
            signal |= advantages.iter().any(|&a| a != 0.0);
            members.push(step.samples.len());
            step.samples.push(TrainSample {
                group: gi,
                prompt: t.prompt_tokens.iter().map(|&x| x as i64).collect(),
                response: t.tokens.iter().map(|&x| x as i64).collect(),
                advantages,
                sampling_logprobs: (!t.logprobs.is_empty()).then(|| t.logprobs.clone()),
                policy_version: t.policy_version,
            });
        }
        rep.zero_signal_groups += usize::from(!signal);
        rep.trajectories_kept += members.len();
        step.groups.push(members);
    }
    rep.groups_kept = step.groups.len();
    (step, rep)
}

/// One rank's work on one mini-batch.
#[derive(Clone, Debug, PartialEq)]
pub struct MiniBatchPlan {
    /// Global counts of the whole mini-batch (all ranks), for the aggregation weights.
    pub counts: AggCounts,
    /// This rank's micro-batches: indices into `StepBatch::samples`.
    pub micro: Vec<Vec<usize>>,
}

impl StepBatch {
    /// The plan of rank `rank` of `world`: groups (shuffled by `rng` if asked) split into
    /// `mini_batches` contiguous runs of groups; each mini-batch's samples sorted by length
    /// (longest first, ties by index) and dealt round-robin to ranks; each rank's share cut into
    /// micro-batches of ≤ `micro_batch_size` sequences and ≤ `micro_batch_tokens` padded tokens.
    /// Every rank computes the same split from the same inputs.
    pub fn plan(&self, cfg: &LearnerConfig, rank: usize, world: usize, rng: &mut impl rand::Rng) -> Vec<MiniBatchPlan> {
        let mut order: Vec<usize> = (0..self.groups.len()).collect();
        if cfg.shuffle {
            order.shuffle(rng);
        }
        let n_mini = cfg.mini_batches.min(order.len()).max(1);
        let mut plans = Vec::new();
        for m in 0..n_mini {
            let (lo, hi) = (m * order.len() / n_mini, (m + 1) * order.len() / n_mini);
            let mut members: Vec<usize> = order[lo..hi]
                .iter()
                .flat_map(|&g| self.groups[g].iter().copied())
                .collect();
            if members.is_empty() {
                continue;
            }
            members.sort_by(|&a, &b| self.samples[b].len().cmp(&self.samples[a].len()).then(a.cmp(&b)));
            let lens: Vec<usize> = members.iter().map(|&i| self.samples[i].response.len()).collect();
            let counts = AggCounts::of(&lens);
            let mine: Vec<usize> = members.iter().copied().skip(rank).step_by(world.max(1)).collect();
            plans.push(MiniBatchPlan {
                counts,
                micro: self.micro_batches(&mine, cfg),
            });
        }
        plans
    }

    /// Cuts length-sorted (longest first) samples into micro-batches.
    fn micro_batches(&self, sorted: &[usize], cfg: &LearnerConfig) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        let mut cur: Vec<usize> = Vec::new();
        let mut longest = 0;
        for &i in sorted {
            let len = self.samples[i].len();
            let would = longest.max(len) * (cur.len() + 1);
            let over_tokens = cfg.micro_batch_tokens > 0 && would > cfg.micro_batch_tokens;
            if !cur.is_empty() && (cur.len() == cfg.micro_batch_size || over_tokens) {
                out.push(std::mem::take(&mut cur));
                longest = 0;
            }
            longest = longest.max(len);
            cur.push(i);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
}
