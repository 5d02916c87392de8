//! Direct sampling (GRPO/DAPO baseline, Pass1@K filter) and the cached path (spec §6–§7).

mod common;

use common::*;
use deepsearch_search::config::{OverlongConfig, SearchConfig};
use deepsearch_search::policy::{ExpandRequest, Finish, Policy, PolicyError, PrefixKey, Segment};
use deepsearch_search::score::Outcome;
use deepsearch_search::{
    sample_groups, CachedSolution, DirectInput, Source, TreeInput, TreeOutcome,
};
use deepsearch_tasks::Verdict;

/// Returns fixed responses: "gg" (correct), "bb" (wrong), "g" cut at the budget (incomplete when
/// unparsable, here judged wrong text) and a NaN one.
struct Fixed;

fn seg(tokens: &[u32], finish: Finish) -> Segment {
    Segment {
        tokens: tokens.to_vec(),
        logprobs: vec![-0.5; tokens.len()],
        entropies: vec![1.0; tokens.len()],
        finish: Some(finish),
    }
}

impl Policy for Fixed {
    fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
        reqs.iter()
            .map(|r| {
                let all = [
                    seg(&[letter('g'), NL, letter('g'), EOS], Finish::Eos),
                    seg(&[letter('b'), NL, letter('x'), EOS], Finish::Eos),
                    seg(&[letter('g'), NL, letter('g'), NL], Finish::Length),
                    Segment {
                        logprobs: vec![f32::NAN; 2],
                        ..seg(&[letter('g'), EOS], Finish::Eos)
                    },
                ];
                Ok((0..r.n).map(|i| all[i % 4].clone()).collect())
            })
            .collect()
    }
    fn release(&mut self, _: &[PrefixKey]) {}
    fn decode(&self, t: &[u32]) -> String {
        decode(t)
    }
    fn max_context(&self) -> usize {
        64
    }
}

fn cfg() -> SearchConfig {
    SearchConfig {
        overlong: OverlongConfig {
            max_response_tokens: Some(8),
            buffer_tokens: 8,
            factor: 1.0,
        },
        ..SearchConfig::for_test()
    }
}

fn input(id: &str, plen: usize) -> TreeInput {
    TreeInput {
        problem: problem(id),
        prompt_tokens: prompt(plen),
        salt: 0,
    }
}

#[test]
fn direct_groups_score_outcomes_and_report_pass_fraction() {
    let v = RareChoiceVerifier { lines: 2 };
    let inputs = vec![DirectInput {
        input: input("a", 3),
        k: 8,
        cached: Vec::new(),
    }];
    let g = sample_groups(&cfg(), &inputs, &mut Fixed, &v, 3, 0)
        .unwrap()
        .remove(0);
    assert_eq!(g.source, Source::Direct);
    // 8 samples: 2 × correct, 2 × wrong, 2 × cut (unparsable text "g\ng\n" → 3 lines → wrong
    // verdict by this verifier), 2 × NaN dropped
    assert_eq!(g.trajectories.len(), 6);
    assert_eq!(
        (g.stats.correct, g.stats.wrong, g.stats.invalid_samples),
        (2, 4, 2)
    );
    assert_eq!(g.stats.pass_fraction, Some(2.0 / 6.0));
    assert_eq!(g.stats.generated_tokens, 2 * (4 + 4 + 4 + 2));
    let c = &g.trajectories[0];
    assert_eq!(c.outcome, Outcome::Correct);
    assert_eq!(c.policy_version, 3);
    assert_eq!(c.segment_ends, vec![4]);
    // Lmax 8, B 8: p_len = min(0, −(4 − 0)/8) = −0.5 on every token
    assert_eq!(c.overlong_penalty, -0.5);
    assert_eq!(c.terminal_score, 0.5);
    assert_eq!(c.token_scores, vec![0.5f32; 4]);
    let w = &g.trajectories[1];
    assert_eq!((w.outcome, w.terminal_score), (Outcome::Wrong, -1.5));
}

/// Judges everything unparsable: EOS responses are wrong, budget-cut ones incomplete (spec §2).
struct NoAnswer;
impl deepsearch_tasks::Verifier for NoAnswer {
    fn verify(&self, _: &deepsearch_tasks::Problem, _: &str) -> Verdict {
        Verdict::Unparsable
    }
}

#[test]
fn unparsable_is_wrong_after_eos_and_incomplete_at_the_budget() {
    let inputs = vec![DirectInput {
        input: input("a", 3),
        k: 3,
        cached: Vec::new(),
    }];
    let g = sample_groups(&cfg(), &inputs, &mut Fixed, &NoAnswer, 0, 0)
        .unwrap()
        .remove(0);
    let outcomes: Vec<Outcome> = g.trajectories.iter().map(|t| t.outcome).collect();
    assert_eq!(
        outcomes,
        vec![Outcome::Wrong, Outcome::Wrong, Outcome::Incomplete]
    );
    assert_eq!(g.stats.pass_fraction, Some(0.0));
}

#[test]
fn cached_groups_fill_up_with_fresh_samples() {
    let v = RareChoiceVerifier { lines: 2 };
    let sol = CachedSolution {
        tokens: vec![letter('g'), NL, letter('g'), EOS],
        text: "g\ng".into(),
    };
    let inputs = vec![
        DirectInput {
            input: input("c", 3),
            k: 3,
            cached: vec![sol.clone()],
        },
        DirectInput {
            input: input("full", 3),
            k: 2,
            cached: vec![sol.clone(), sol.clone(), sol.clone()],
        },
        DirectInput {
            input: input("long", 80),
            k: 4,
            cached: vec![sol.clone()],
        },
    ];
    let gs = sample_groups(&cfg(), &inputs, &mut Fixed, &v, 0, 10).unwrap();
    // 1 cached + 2 fresh (correct, wrong)
    assert_eq!(gs[0].source, Source::Cached);
    let src: Vec<Source> = gs[0].trajectories.iter().map(|t| t.source).collect();
    assert_eq!(src, vec![Source::Cached, Source::Direct, Source::Direct]);
    assert!(gs[0].trajectories[0].logprobs.is_empty());
    assert_eq!(gs[0].trajectories[0].terminal_score, 0.5);
    assert_eq!(gs[0].stats.pass_fraction, Some(0.5));
    // more cached than k: k cached, nothing sampled
    assert_eq!(gs[1].trajectories.len(), 2);
    assert_eq!(gs[1].stats.generated_tokens, 0);
    // a prompt past the context: the cached part stays, the fresh part is counted, not sampled
    assert_eq!(gs[2].trajectories.len(), 1);
    assert_eq!(gs[2].stats.invalid_samples, 3);
    assert_eq!(
        gs[2].stats.outcome,
        Some(TreeOutcome::ContextOverflow { len: 80, max: 64 })
    );
}

/// Fails every request.
struct Down;
impl Policy for Down {
    fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
        reqs.iter()
            .map(|_| Err(PolicyError::Failed("worker died".into())))
            .collect()
    }
    fn release(&mut self, _: &[PrefixKey]) {}
    fn decode(&self, t: &[u32]) -> String {
        decode(t)
    }
    fn max_context(&self) -> usize {
        64
    }
}

struct TimesOut;
impl deepsearch_tasks::Verifier for TimesOut {
    fn verify(&self, _: &deepsearch_tasks::Problem, _: &str) -> Verdict {
        Verdict::Error("timeout".into())
    }
}

#[test]
fn policy_and_verifier_failures_are_counted_not_scored() {
    let inputs = vec![DirectInput {
        input: input("a", 3),
        k: 4,
        cached: Vec::new(),
    }];
    let g = sample_groups(&cfg(), &inputs, &mut Down, &NoAnswer, 0, 0)
        .unwrap()
        .remove(0);
    assert!(g.trajectories.is_empty());
    assert_eq!(g.stats.invalid_samples, 4);
    assert_eq!(
        g.stats.outcome,
        Some(TreeOutcome::PolicyFailed {
            reason: "policy failed: worker died".into()
        })
    );
    assert_eq!(g.stats.pass_fraction, None);
    let g = sample_groups(&cfg(), &inputs, &mut Fixed, &TimesOut, 0, 0)
        .unwrap()
        .remove(0);
    assert!(g.trajectories.is_empty());
    // 3 valid samples reached the verifier and timed out, the NaN one was dropped before
    assert_eq!((g.stats.verifier_errors, g.stats.invalid_samples), (3, 1));
    assert_eq!(g.stats.pass_fraction, None);
    let bad = SearchConfig {
        segment_tokens: 0,
        ..cfg()
    };
    assert_eq!(
        sample_groups(&bad, &inputs, &mut Fixed, &TimesOut, 0, 0)
            .unwrap_err()
            .field,
        "segment_tokens"
    );
}
