//! Bad input (issue #4): a policy that returns empty segments, NaN log-probs, too few samples or
//! errors; a verifier that times out; a prompt longer than the context. Each has a clear, counted
//! outcome on its own tree and the rest of the forest goes on unchanged.

mod common;

use common::*;
use deepsearch_search::config::SearchConfig;
use deepsearch_search::policy::{ExpandRequest, Finish, Policy, PolicyError, PrefixKey, Segment};
use deepsearch_search::{search_all, Forest, Judge, TreeInput, TreeOutcome};
use deepsearch_tasks::{Problem, Verdict, Verifier};

/// Wraps a scripted policy and damages the answers for some trees (by tree id).
struct Faulty {
    inner: LmPolicy<RandomText>,
    broken_batch: bool,
}

impl Policy for Faulty {
    fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
        if self.broken_batch {
            return Vec::new();
        }
        let mut out = self.inner.expand(reqs);
        for (r, res) in reqs.iter().zip(out.iter_mut()) {
            match r.key.tree {
                1 => {
                    for s in res.as_mut().unwrap() {
                        *s = Segment {
                            finish: Some(Finish::Length),
                            ..Segment::default()
                        };
                    }
                }
                2 => res.as_mut().unwrap()[0].logprobs[0] = f32::NAN,
                3 => *res = Err(PolicyError::Failed("device lost".into())),
                5 => {
                    res.as_mut().unwrap().pop();
                }
                _ => {}
            }
        }
        out
    }
    fn release(&mut self, keys: &[PrefixKey]) {
        self.inner.release(keys)
    }
    fn decode(&self, tokens: &[u32]) -> String {
        decode(tokens)
    }
    fn max_context(&self) -> usize {
        40
    }
}

fn cfg() -> SearchConfig {
    SearchConfig {
        segment_delimiter: Some("\n".into()),
        max_depth: 4,
        ..SearchConfig::for_test()
    }
}

fn input(id: &str, prompt_len: usize) -> TreeInput {
    TreeInput {
        problem: problem(id),
        prompt_tokens: prompt(prompt_len),
        salt: 0,
    }
}

#[test]
fn each_fault_is_counted_on_its_tree_and_the_forest_goes_on() {
    let v = HashVerifier {
        correct_mod: 3,
        error_mod: 0,
    };
    let judge = Judge {
        verifier: &v,
        prefix_valid: None,
    };
    let mut pol = Faulty {
        inner: LmPolicy::new(RandomText {
            p_eos: 0.15,
            p_nl: 0.3,
        }),
        broken_batch: false,
    };
    let mut forest = Forest::new(cfg(), 0).unwrap();
    for (id, plen) in [
        ("ok", 4),
        ("empty", 4),
        ("nan", 4),
        ("err", 4),
        ("long", 50),
        ("short", 4),
    ] {
        forest.add(input(id, plen));
    }
    let mut done = forest.run(&mut pol, &judge);
    done.sort_by_key(|t| t.id);
    let by = |id: &str| done.iter().find(|t| t.problem.id == id).unwrap();

    let empty = by("empty");
    assert_eq!(empty.outcome, TreeOutcome::Exhausted);
    assert_eq!((empty.stats.empty_segments, empty.stats.dead_nodes), (4, 1));
    assert_eq!(empty.stats.trajectories, 0);

    let nan = by("nan");
    assert_eq!(nan.stats.nonfinite_logprobs, nan.stats.expansions);
    assert!(nan
        .trajectories(0)
        .iter()
        .all(|t| t.logprobs.iter().all(|l| l.is_finite())));

    let err = by("err");
    assert_eq!(
        err.outcome,
        TreeOutcome::PolicyFailed {
            reason: "policy failed: device lost".into()
        }
    );
    assert_eq!((err.stats.policy_errors, err.stats.expansions), (3, 0));

    let long = by("long");
    assert_eq!(
        long.outcome,
        TreeOutcome::ContextOverflow { len: 50, max: 40 }
    );
    assert_eq!(long.stats.generated_tokens, 0);

    let short = by("short");
    assert_eq!(short.stats.malformed_segments, short.stats.expansions);

    // the healthy tree is exactly the tree it would have been alone
    let mut alone_pol = Faulty {
        inner: LmPolicy::new(RandomText {
            p_eos: 0.15,
            p_nl: 0.3,
        }),
        broken_batch: false,
    };
    let alone = search_all(&cfg(), vec![input("ok", 4)], &mut alone_pol, &judge).unwrap();
    let ok = by("ok");
    assert_eq!(ok.outcome, TreeOutcome::Completed);
    assert_eq!(ok.recorded, alone[0].recorded);
    assert_eq!(ok.tree.len(), alone[0].tree.len());
    // no request ever ran past the context
    assert!(pol.inner.requested.iter().all(|k| k.tree != 4));
}

#[test]
fn a_malformed_batch_fails_each_request_and_is_counted() {
    let v = HashVerifier {
        correct_mod: 3,
        error_mod: 0,
    };
    let judge = Judge {
        verifier: &v,
        prefix_valid: None,
    };
    let mut pol = Faulty {
        inner: LmPolicy::new(RandomText {
            p_eos: 0.15,
            p_nl: 0.3,
        }),
        broken_batch: true,
    };
    let mut forest = Forest::new(cfg(), 0).unwrap();
    forest.add(input("a", 4));
    forest.add(input("b", 4));
    let done = forest.run(&mut pol, &judge);
    assert_eq!(forest.stats().malformed_batches, 3);
    for t in done {
        assert!(matches!(t.outcome, TreeOutcome::PolicyFailed { .. }));
        assert_eq!(t.stats.policy_errors, 3);
    }
}

/// Times out on every response.
struct TimesOut;
impl Verifier for TimesOut {
    fn verify(&self, _: &Problem, _: &str) -> Verdict {
        Verdict::Error("verifier timed out after 5s".into())
    }
}

#[test]
fn verifier_timeouts_drop_terminals_instead_of_scoring_them() {
    let judge = Judge {
        verifier: &TimesOut,
        prefix_valid: None,
    };
    let mut pol = LmPolicy::new(RandomText {
        p_eos: 0.2,
        p_nl: 0.3,
    });
    let done = search_all(&cfg(), vec![input("t", 4)], &mut pol, &judge).unwrap();
    let t = &done[0];
    let terminals = t
        .tree
        .nodes()
        .iter()
        .filter(|n| n.terminal.is_some())
        .count() as u32;
    assert!(terminals > 0);
    assert_eq!(t.stats.verifier_errors, terminals);
    assert_eq!(
        t.stats.trajectories, 0,
        "a timed-out terminal is never backed up as −1"
    );
    assert_eq!(t.tree.node(0).value, 0.0);
    assert!(t.stats.expansions_without_backup > 0);
    assert!(matches!(
        t.outcome,
        TreeOutcome::Exhausted | TreeOutcome::MaxExpansions
    ));

    // partial timeouts: the others are still scored, no trajectory carries an error verdict
    let v = HashVerifier {
        correct_mod: 3,
        error_mod: 2,
    };
    let judge = Judge {
        verifier: &v,
        prefix_valid: None,
    };
    let done = search_all(&cfg(), vec![input("u", 4)], &mut pol, &judge).unwrap();
    assert!(done[0].stats.verifier_errors > 0);
    assert!(done[0].stats.trajectories > 0);
    assert!(done[0]
        .trajectories(0)
        .iter()
        .all(|t| !matches!(t.verdict, Verdict::Error(_))));
}
