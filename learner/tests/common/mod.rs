//! Shared helpers of the learner's integration tests: a tiny seeded model and synthetic groups.
#![allow(dead_code)]

use deepsearch_learner::{Learner, LearnerConfig};
use deepsearch_policy::{PolicyModel, PolicyTokenizer, Qwen2Config};
use deepsearch_search::score::Outcome;
use deepsearch_search::{Group, GroupStats, Source, Trajectory};
use deepsearch_tasks::Verdict;
use rand::{Rng, SeedableRng};

/// Vocabulary of the tiny test model.
pub const VOCAB: i64 = 24;

/// A tiny random Qwen2 (hidden 64, 2 layers) with a char tokenizer, deterministic in `seed`.
pub fn tiny_model(seed: u64) -> PolicyModel {
    let tok = PolicyTokenizer::char_level("abcdefghijklmnopqrst").unwrap();
    let mut cfg = Qwen2Config::tiny(VOCAB);
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    PolicyModel::init_random(&cfg, tok, seed).unwrap()
}

/// A trajectory with the given tokens and scores (lengths consistent).
pub fn trajectory(
    prompt: Vec<u32>,
    tokens: Vec<u32>,
    scores: Vec<f32>,
    terminal: f64,
    logprobs: Vec<f32>,
    version: u64,
) -> Trajectory {
    let n = tokens.len() as u32;
    Trajectory {
        problem_id: "p".into(),
        prompt_tokens: prompt,
        segment_ends: vec![n],
        logprobs,
        entropies: Vec::new(),
        token_scores: scores,
        terminal_score: terminal,
        overlong_penalty: 0.0,
        verdict: if terminal > 0.0 {
            Verdict::Correct
        } else {
            Verdict::Wrong
        },
        outcome: if terminal > 0.0 {
            Outcome::Correct
        } else {
            Outcome::Wrong
        },
        text: String::new(),
        source: Source::Search,
        tokens,
        policy_version: version,
    }
}

/// `n_groups` groups of `k` random trajectories (prompt 3–5 tokens, response 2–9 tokens,
/// step-level scores, ±1 terminals), seeded.
pub fn synthetic_groups(seed: u64, n_groups: usize, k: usize, version: u64) -> Vec<Group> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n_groups)
        .map(|g| {
            let plen = rng.random_range(3..6);
            let prompt: Vec<u32> = (0..plen).map(|_| rng.random_range(3..VOCAB as u32)).collect();
            let trajectories = (0..k)
                .map(|_| {
                    let len = rng.random_range(2..10);
                    let tokens: Vec<u32> = (0..len).map(|_| rng.random_range(3..VOCAB as u32)).collect();
                    let terminal = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                    let mid: f32 = rng.random_range(-0.9..0.9);
                    let cut = rng.random_range(1..len);
                    let scores: Vec<f32> = (0..len).map(|i| if i < cut { mid } else { terminal as f32 }).collect();
                    let logprobs: Vec<f32> = (0..len).map(|_| -rng.random_range(0.5f32..4.0)).collect();
                    trajectory(prompt.clone(), tokens, scores, terminal, logprobs, version)
                })
                .collect();
            Group {
                problem_id: format!("g{g}"),
                source: Source::Search,
                trajectories,
                stats: GroupStats::default(),
            }
        })
        .collect()
}

/// Named weights of a learner as f32 vectors, sorted by name.
pub fn weights(l: &Learner) -> Vec<(String, Vec<f32>)> {
    deepsearch_learner::weights::named_tensors(&l.policy.vs)
        .into_iter()
        .map(|(n, t)| {
            (
                n,
                Vec::<f32>::try_from(t.to_kind(tch::Kind::Float).reshape([-1])).unwrap(),
            )
        })
        .collect()
}

/// Largest absolute difference between two weight sets.
pub fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            va.iter().zip(vb).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
        })
        .fold(0.0, f32::max)
}

/// A test config: lr 1e-3, 2 mini-batches, micro-batches of 3 sequences.
pub fn cfg() -> LearnerConfig {
    LearnerConfig {
        micro_batch_size: 3,
        ..LearnerConfig::for_test()
    }
}
