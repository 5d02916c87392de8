//! The forest end to end with scripted policies: batching, stopping, release, determinism and the
//! trajectories the learner reads (spec §1–§6).

mod common;

use common::*;
use deepsearch_search::config::SearchConfig;
use deepsearch_search::score::{node_score_target, Outcome};
use deepsearch_search::{search_all, Forest, Judge, TreeInput, TreeOutcome};

fn inputs(ids: &[&str]) -> Vec<TreeInput> {
    ids.iter()
        .map(|id| TreeInput {
            problem: problem(id),
            prompt_tokens: prompt(5),
            salt: 0,
        })
        .collect()
}

fn cfg() -> SearchConfig {
    SearchConfig {
        segment_delimiter: Some("\n".into()),
        ..SearchConfig::for_test()
    }
}

#[test]
fn one_batched_call_per_iteration_for_all_trees() {
    let mut pol = LmPolicy::new(RandomText {
        p_eos: 0.05,
        p_nl: 0.2,
    });
    let v = HashVerifier {
        correct_mod: 3,
        error_mod: 0,
    };
    let judge = Judge {
        verifier: &v,
        prefix_valid: None,
    };
    let mut forest = Forest::new(cfg(), 0).unwrap();
    for i in inputs(&["a", "b", "c", "d"]) {
        forest.add(i);
    }
    let first = forest.step(&mut pol, &judge);
    assert!(first.is_empty());
    assert_eq!(pol.calls, vec![4], "one call holding every tree's request");
    let done = forest.run(&mut pol, &judge);
    assert_eq!(done.len(), 4);
    // batch sizes never grow and every call had ≤ 4 requests
    assert!(
        pol.calls.windows(2).all(|w| w[1] <= w[0]),
        "{:?}",
        pol.calls
    );
    assert_eq!(forest.stats().policy_calls as usize, pol.calls.len());
    // every expanded prefix is released once its tree is done
    let requested: std::collections::HashSet<_> = pol.requested.iter().copied().collect();
    assert_eq!(requested, pol.released);
}

#[test]
fn trees_stop_at_trajectories_per_tree_and_scores_follow_spec() {
    let c = cfg();
    let mut pol = LmPolicy::new(RandomText {
        p_eos: 0.1,
        p_nl: 0.25,
    });
    let v = HashVerifier {
        correct_mod: 3,
        error_mod: 0,
    };
    let judge = Judge {
        verifier: &v,
        prefix_valid: None,
    };
    let done = search_all(&c, inputs(&["p1", "p2", "p3"]), &mut pol, &judge).unwrap();
    for t in &done {
        assert_eq!(t.outcome, TreeOutcome::Completed, "{:?}", t.stats);
        assert_eq!(t.stats.trajectories as usize, c.trajectories_per_tree);
        let trajs = t.trajectories(7);
        assert_eq!(trajs.len(), c.trajectories_per_tree);
        for (tr, &leaf) in trajs.iter().zip(&t.recorded) {
            assert_eq!(tr.policy_version, 7);
            assert_eq!(tr.tokens.len(), tr.logprobs.len());
            assert_eq!(tr.tokens.len(), tr.token_scores.len());
            assert_eq!(tr.entropies.len(), tr.tokens.len());
            assert_eq!(*tr.segment_ends.last().unwrap() as usize, tr.tokens.len());
            assert_eq!(tr.prompt_tokens, prompt(5));
            assert_eq!(decode(&tr.tokens), tr.text);
            let path = t.tree.path(leaf);
            assert_eq!(tr.segment_ends.len(), path.len() - 1);
            let reward = match tr.outcome {
                Outcome::Correct => 1.0,
                _ => -1.0,
            };
            assert_eq!(tr.terminal_score, reward + tr.overlong_penalty);
            // segment j's tokens score tanh(value_j) + p_len, the last one reward + p_len
            let mut start = 0usize;
            for (j, (&end, &node)) in tr.segment_ends.iter().zip(&path[1..]).enumerate() {
                let want = if j + 2 == path.len() {
                    reward + tr.overlong_penalty
                } else {
                    node_score_target(t.tree.node(node).value, 1.0, 1.0) + tr.overlong_penalty
                };
                for &s in &tr.token_scores[start..end as usize] {
                    assert!((s as f64 - want).abs() < 1e-6);
                }
                start = end as usize;
            }
        }
    }
}

#[test]
fn same_seed_same_tree_whatever_the_batch() {
    let c = cfg();
    let run = |ids: &[&str], seed: u64| {
        let mut pol = LmPolicy::new(RandomText {
            p_eos: 0.08,
            p_nl: 0.2,
        });
        let v = HashVerifier {
            correct_mod: 4,
            error_mod: 0,
        };
        let judge = Judge {
            verifier: &v,
            prefix_valid: None,
        };
        let c = SearchConfig { seed, ..c.clone() };
        let done = search_all(&c, inputs(ids), &mut pol, &judge).unwrap();
        let t = done.into_iter().find(|t| t.problem.id == "x").unwrap();
        let nodes: Vec<(Vec<u32>, f64, u32)> = t
            .tree
            .nodes()
            .iter()
            .map(|n| (n.tokens.clone(), n.value, n.visits))
            .collect();
        (nodes, t.recorded.clone())
    };
    let alone = run(&["x"], 1);
    let crowd = run(&["a", "x", "b", "c"], 1);
    assert_eq!(alone, crowd);
    let other = run(&["x"], 2);
    assert_ne!(alone, other);
}

#[test]
fn max_expansions_is_a_counted_stop() {
    // nothing ever ends: EOS never sampled, depth cap far away, few expansions allowed
    let c = SearchConfig {
        max_depth: 64,
        max_expansions: 5,
        ..cfg()
    };
    let mut pol = LmPolicy::new(RandomText {
        p_eos: 0.0,
        p_nl: 0.3,
    });
    let v = HashVerifier {
        correct_mod: 2,
        error_mod: 0,
    };
    let judge = Judge {
        verifier: &v,
        prefix_valid: None,
    };
    let done = search_all(&c, inputs(&["q"]), &mut pol, &judge).unwrap();
    assert_eq!(done[0].outcome, TreeOutcome::MaxExpansions);
    assert_eq!(done[0].stats.expansions, 5);
    assert_eq!(done[0].stats.trajectories, 0);
    // no terminal: every expansion dived into the first new child
    assert_eq!(done[0].stats.max_depth, 5);
}

#[test]
fn depth_cap_terminals_are_incomplete_when_unparsable() {
    struct Unparsable;
    impl deepsearch_tasks::Verifier for Unparsable {
        fn verify(&self, _: &deepsearch_tasks::Problem, _: &str) -> deepsearch_tasks::Verdict {
            deepsearch_tasks::Verdict::Unparsable
        }
    }
    let c = SearchConfig {
        max_depth: 2,
        ..cfg()
    };
    let mut pol = LmPolicy::new(RandomText {
        p_eos: 0.0,
        p_nl: 0.3,
    });
    let judge = Judge {
        verifier: &Unparsable,
        prefix_valid: None,
    };
    let done = search_all(&c, inputs(&["q"]), &mut pol, &judge).unwrap();
    let t = &done[0];
    assert!(t.stats.incomplete > 0);
    assert_eq!(t.stats.wrong, 0);
    for tr in t.trajectories(0) {
        assert_eq!(tr.outcome, Outcome::Incomplete);
        assert_eq!(tr.segment_ends.len(), 2);
    }
}
