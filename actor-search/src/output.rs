//! What the learner and the coordinator read after a tree (or a direct-sampling group) is finished
//! (spec §6, §7): per trajectory the tokens, segment boundaries, sampling log-probs, per-token
//! scores and the verdict; per tree its statistics.
//!
//! Scores are built only here, from the finished tree: `r_j = tanh(value_j / eps_q) · q_max` for
//! intermediate nodes, the terminal reward for the last segment, plus the overlong penalty on every
//! token (spec §6); under `credit = outcome` every segment scores the terminal reward. Advantages (`A = score − μ`) are the learner's business.

use deepsearch_tasks::Verdict;
use serde::{Deserialize, Serialize};

use crate::config::{CreditKind, SearchConfig};
use crate::score::{node_score_target, overlong_penalty, reward_of, Outcome};
use crate::tree::{NodeId, Tree};

/// Which path produced a trajectory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A tree search (step-level scores).
    Search,
    /// Independent full responses (outcome scores; GRPO/DAPO baseline, Pass1@K filter).
    Direct,
    /// A cached verified solution (outcome scores, spec §7).
    Cached,
}

/// One training trajectory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    pub problem_id: String,
    pub prompt_tokens: Vec<u32>,
    /// Response token ids (prompt excluded).
    pub tokens: Vec<u32>,
    /// Token offset (into `tokens`) where each segment ends; the last equals `tokens.len()`.
    pub segment_ends: Vec<u32>,
    /// Sampling log-probs per response token; empty for cached solutions (not sampled now).
    pub logprobs: Vec<f32>,
    /// Full-distribution entropies per token; empty when the policy reported none.
    pub entropies: Vec<f32>,
    /// Score of every response token (spec §6): node target + overlong penalty.
    pub token_scores: Vec<f32>,
    /// Terminal reward + overlong penalty: what the group mean μ averages (spec §6).
    pub terminal_score: f64,
    /// p_len of this trajectory (spec §2), already inside the scores above.
    pub overlong_penalty: f64,
    pub verdict: Verdict,
    pub outcome: Outcome,
    /// Decoded response.
    pub text: String,
    pub source: Source,
    /// Policy version that produced the tokens; the actor fills it.
    pub policy_version: u64,
}

/// How a tree's search ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TreeOutcome {
    /// Recorded `trajectories_per_tree` trajectories.
    Completed,
    /// Hit the `max_expansions` safety cap (counted, spec §5).
    MaxExpansions,
    /// No node left to expand.
    Exhausted,
    /// The prompt does not fit the model context; nothing was generated.
    ContextOverflow { len: usize, max: usize },
    /// The policy kept failing on this tree.
    PolicyFailed { reason: String },
}

impl std::fmt::Display for TreeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TreeOutcome::Completed => write!(f, "completed"),
            TreeOutcome::MaxExpansions => write!(f, "max_expansions"),
            TreeOutcome::Exhausted => write!(f, "exhausted"),
            TreeOutcome::ContextOverflow { len, max } => {
                write!(f, "context_overflow (prompt {len} tokens, context {max})")
            }
            TreeOutcome::PolicyFailed { reason } => write!(f, "policy_failed ({reason})"),
        }
    }
}

/// Per-tree statistics (counts, depths, time in bookkeeping vs generation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TreeStats {
    pub expansions: u32,
    pub nodes: u32,
    pub trajectories: u32,
    /// Deepest node.
    pub max_depth: u32,
    /// Mean depth of the recorded trajectories' leaves.
    pub mean_depth: f64,
    /// Frontier size when the tree finished.
    pub frontier_size: u32,
    /// Verified terminal nodes by outcome (all terminals, not only the recorded ones).
    pub correct: u32,
    pub wrong: u32,
    pub incomplete: u32,
    /// Terminals whose verifier failed or timed out: no reward, dropped (spec §2).
    pub verifier_errors: u32,
    /// Wrong terminals skipped as garbled (n-gram repetition).
    pub garbled_wrong: u32,
    /// Children marked wrong at once by the invalid-prefix hook.
    pub pruned_prefixes: u32,
    /// Samples dropped: no tokens.
    pub empty_segments: u32,
    /// Samples dropped: a NaN or infinite log-prob.
    pub nonfinite_logprobs: u32,
    /// Samples dropped: lengths that disagree, too many tokens, or missing samples.
    pub malformed_segments: u32,
    /// Nodes whose expansion produced no usable child.
    pub dead_nodes: u32,
    /// Expansion requests the policy failed.
    pub policy_errors: u32,
    /// Expansions with terminals but none usable for backup.
    pub expansions_without_backup: u32,
    /// Tokens the policy returned for this tree (valid or not).
    pub generated_tokens: u64,
    pub bookkeeping_ns: u64,
    /// Wall time of the batched policy calls this tree took part in.
    pub generation_ns: u64,
    /// Decoding and verifying terminals.
    pub verify_ns: u64,
}

/// Counts of a direct-sampling or cached group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupStats {
    pub generated_tokens: u64,
    pub correct: u32,
    pub wrong: u32,
    pub incomplete: u32,
    /// Verifier errors: dropped, not in `trajectories`.
    pub verifier_errors: u32,
    /// Samples dropped as malformed (empty, NaN log-probs, ...) or lost to a policy error.
    pub invalid_samples: u32,
    /// Correct fraction among the fresh samples that got a verdict (the Pass1@K estimate);
    /// `None` when there were none.
    pub pass_fraction: Option<f64>,
    pub outcome: Option<TreeOutcome>,
    pub tree: Option<TreeStats>,
}

/// What one problem contributes to a training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub problem_id: String,
    pub source: Source,
    pub trajectories: Vec<Trajectory>,
    pub stats: GroupStats,
}

/// Fraction of correct trajectories over all of `groups` (0 when there are none).
pub fn pass_rate(groups: &[Group]) -> f64 {
    let (ok, all) = groups
        .iter()
        .flat_map(|g| &g.trajectories)
        .fold((0, 0), |(o, a), t| (o + usize::from(t.verdict.is_correct()), a + 1));
    ok as f64 / all.max(1) as f64
}

/// p_len of a response of `len` tokens under `cfg` (spec §2).
pub fn penalty_for(cfg: &SearchConfig, len: usize) -> f64 {
    overlong_penalty(
        len,
        cfg.max_response_tokens(),
        cfg.overlong.buffer_tokens,
        cfg.overlong.factor,
    )
}

/// The trajectory of a recorded leaf, read after the tree is finished (spec §6).
pub fn search_trajectory(
    cfg: &SearchConfig,
    tree: &Tree,
    problem_id: &str,
    leaf: NodeId,
    policy_version: u64,
) -> Trajectory {
    let term = tree
        .node(leaf)
        .terminal
        .as_ref()
        .expect("recorded leaves are terminal");
    let outcome = term.outcome.expect("recorded leaves have an outcome");
    let path = tree.path(leaf);
    let nodes = &path[1..]; // root excluded
    let len = tree.node(leaf).response_len;
    let p_len = penalty_for(cfg, len);
    let reward = reward_of(&cfg.reward, outcome);
    let with_entropies = nodes.iter().all(|&n| {
        let n = tree.node(n);
        n.entropies.len() == n.tokens.len()
    });
    let mut t = Trajectory {
        problem_id: problem_id.to_string(),
        prompt_tokens: tree.prompt.to_vec(),
        tokens: Vec::with_capacity(len),
        segment_ends: Vec::with_capacity(nodes.len()),
        logprobs: Vec::with_capacity(len),
        entropies: Vec::new(),
        token_scores: Vec::with_capacity(len),
        terminal_score: reward + p_len,
        overlong_penalty: p_len,
        verdict: term.verdict.clone(),
        outcome,
        text: term.text.clone(),
        source: Source::Search,
        policy_version,
    };
    for (j, &id) in nodes.iter().enumerate() {
        let n = tree.node(id);
        let r = if j + 1 == nodes.len() || cfg.credit == CreditKind::Outcome {
            reward
        } else {
            node_score_target(n.value, cfg.q_eps, cfg.q_max)
        };
        t.tokens.extend_from_slice(&n.tokens);
        t.logprobs.extend_from_slice(&n.logprobs);
        if with_entropies {
            t.entropies.extend_from_slice(&n.entropies);
        }
        t.token_scores
            .extend(std::iter::repeat_n((r + p_len) as f32, n.tokens.len()));
        t.segment_ends.push(t.tokens.len() as u32);
    }
    t
}

/// Everything needed for an outcome-scored trajectory (direct or cached, spec §6–§7).
#[derive(Clone, Debug)]
pub struct OutcomeSample {
    pub tokens: Vec<u32>,
    pub logprobs: Vec<f32>,
    pub entropies: Vec<f32>,
    pub verdict: Verdict,
    pub outcome: Outcome,
    pub text: String,
    pub source: Source,
}

/// A single-segment trajectory whose every token scores `reward + p_len`.
pub fn outcome_trajectory(
    cfg: &SearchConfig,
    problem_id: &str,
    prompt_tokens: &[u32],
    s: OutcomeSample,
    policy_version: u64,
) -> Trajectory {
    let p_len = penalty_for(cfg, s.tokens.len());
    let score = reward_of(&cfg.reward, s.outcome) + p_len;
    Trajectory {
        problem_id: problem_id.to_string(),
        prompt_tokens: prompt_tokens.to_vec(),
        segment_ends: vec![s.tokens.len() as u32],
        token_scores: vec![score as f32; s.tokens.len()],
        terminal_score: score,
        overlong_penalty: p_len,
        tokens: s.tokens,
        logprobs: s.logprobs,
        entropies: s.entropies,
        verdict: s.verdict,
        outcome: s.outcome,
        text: s.text,
        source: s.source,
        policy_version,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backup::backup;
    use crate::config::{EntropyKind, OverlongConfig};
    use crate::tree::{NewChild, TerminalKind};

    fn kid(tokens: &[u32], terminal: bool) -> NewChild {
        NewChild {
            tokens: tokens.to_vec(),
            logprobs: vec![-0.5; tokens.len()],
            entropies: Vec::new(),
            finish: None,
            terminal: terminal.then_some(TerminalKind::Eos),
        }
    }

    #[test]
    fn search_trajectory_scores_by_hand() {
        // Lmax 8, B 4; root → A (4 tokens) → B (2 tokens, correct)
        let cfg = SearchConfig {
            overlong: OverlongConfig {
                max_response_tokens: Some(8),
                buffer_tokens: 4,
                factor: 1.0,
            },
            ..SearchConfig::default()
        };
        let mut t = Tree::new(Arc::new(vec![9, 9]), EntropyKind::Nll);
        t.add_children(0, vec![kid(&[1, 2, 3, 4], false)]);
        t.add_children(1, vec![kid(&[5, 6], true)]);
        let term = t.node_mut(2).terminal.as_mut().unwrap();
        term.outcome = Some(Outcome::Correct);
        term.verdict = Verdict::Correct;
        backup(&mut t, 2, 1.0, cfg.backup, cfg.gamma_min);
        // A: w = 2/3 → value 2/3; p_len = min(0, −(6 − 4)/4) = −0.5
        let tr = search_trajectory(&cfg, &t, "p", 2, 5);
        assert_eq!(tr.tokens, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(tr.segment_ends, vec![4, 6]);
        assert_eq!(tr.prompt_tokens, vec![9, 9]);
        assert_eq!(tr.overlong_penalty, -0.5);
        assert_eq!(tr.terminal_score, 0.5);
        // tanh(2/3) − 0.5 = 0.58278295 − 0.5
        for &s in &tr.token_scores[..4] {
            assert!((s - 0.082_782_95).abs() < 1e-6, "{s}");
        }
        assert_eq!(&tr.token_scores[4..], &[0.5, 0.5]);
        assert!(tr.entropies.is_empty());
        assert_eq!(tr.logprobs, vec![-0.5; 6]);
        assert_eq!((tr.source, tr.policy_version), (Source::Search, 5));
    }

    #[test]
    fn outcome_credit_scores_every_segment_with_the_terminal_reward() {
        // root → A (3 tokens) → B (2 tokens, wrong); node credit gives A tanh(value_A) > −1
        let mut cfg = SearchConfig::default();
        let mut t = Tree::new(Arc::new(vec![9]), EntropyKind::Nll);
        t.add_children(0, vec![kid(&[1, 2, 3], false)]);
        t.add_children(1, vec![kid(&[4, 5], true)]);
        let term = t.node_mut(2).terminal.as_mut().unwrap();
        term.outcome = Some(Outcome::Wrong);
        term.verdict = Verdict::Wrong;
        backup(&mut t, 2, -1.0, cfg.backup, cfg.gamma_min);
        // A: w = 2/3, value −2/3 → node score tanh(−2/3) = −0.58278295
        let node = search_trajectory(&cfg, &t, "p", 2, 0);
        assert!((node.token_scores[0] + 0.582_782_95).abs() < 1e-6, "{:?}", node.token_scores);
        assert_eq!(&node.token_scores[3..], &[-1.0, -1.0]);
        cfg.credit = CreditKind::Outcome;
        let out = search_trajectory(&cfg, &t, "p", 2, 0);
        assert_eq!(out.token_scores, vec![-1.0; 5]);
        assert_eq!((out.terminal_score, out.segment_ends.clone()), (-1.0, vec![3, 5]));
    }

    #[test]
    fn outcome_trajectories_score_every_token_alike() {
        let cfg = SearchConfig {
            overlong: OverlongConfig {
                max_response_tokens: Some(8),
                buffer_tokens: 4,
                factor: 2.0,
            },
            ..SearchConfig::default()
        };
        let s = OutcomeSample {
            tokens: vec![1; 7],
            logprobs: vec![-1.0; 7],
            entropies: Vec::new(),
            verdict: Verdict::Wrong,
            outcome: Outcome::Wrong,
            text: String::new(),
            source: Source::Direct,
        };
        // p_len = −(7 − 4)/4 · 2 = −1.5; score −1 − 1.5
        let tr = outcome_trajectory(&cfg, "p", &[9], s, 0);
        assert_eq!(tr.overlong_penalty, -1.5);
        assert_eq!(tr.terminal_score, -2.5);
        assert_eq!(tr.token_scores, vec![-2.5; 7]);
        assert_eq!(tr.segment_ends, vec![7]);
    }
}
