//! Property tests over random scripted trees (spec §4–§5 invariants): a node that was ever on a
//! backed-up correct path keeps value ≥ 0 (constrained backup), visit counts are consistent, the
//! search always terminates within its caps, and the same seed gives the same tree.

mod common;

use common::*;
use deepsearch_search::config::{BackupKind, DepthBonus, EntropyKind, SearchConfig, SelectionKind};
use deepsearch_search::score::Outcome;
use deepsearch_search::{FinishedTree, Forest, Judge, TreeInput};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Case {
    cfg: SearchConfig,
    p_eos: f64,
    p_nl: f64,
    correct_mod: u64,
    error_mod: u64,
    trees: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            any::<u64>(),
            1usize..5,
            1u32..7,
            1usize..6,
            1usize..6,
            1usize..40,
        ),
        (0.0f64..0.4, 0.0f64..0.4, 2u64..6, 0u64..4, 1usize..4),
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0u8..3,
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (seed, width, depth, seg, tpt, max_exp),
                (p_eos, p_nl, cm, em, trees),
                (vanilla, uct, full, db, delim),
            )| {
                let mut cfg = SearchConfig::for_test();
                cfg.seed = seed;
                cfg.expansion_width = width;
                cfg.max_depth = depth;
                cfg.segment_tokens = seg;
                cfg.trajectories_per_tree = tpt;
                cfg.max_expansions = max_exp;
                cfg.backup = if vanilla {
                    BackupKind::Vanilla
                } else {
                    BackupKind::Constrained
                };
                cfg.selection = if uct {
                    SelectionKind::Uct
                } else {
                    SelectionKind::Frontier
                };
                cfg.entropy = if full {
                    EntropyKind::Full
                } else {
                    EntropyKind::Nll
                };
                cfg.frontier.depth_bonus =
                    [DepthBonus::Sqrt, DepthBonus::Linear, DepthBonus::Log][db as usize];
                cfg.segment_delimiter = delim.then(|| "\n".to_string());
                cfg.overlong.buffer_tokens = depth as usize * seg / 2;
                Case {
                    cfg,
                    p_eos,
                    p_nl,
                    correct_mod: cm,
                    error_mod: em,
                    trees,
                }
            },
        )
}

/// Run a case to the end, stepping by hand with a hard cap so a non-terminating search fails.
fn run(c: &Case) -> Vec<FinishedTree> {
    let mut pol = LmPolicy::new(RandomText {
        p_eos: c.p_eos,
        p_nl: c.p_nl,
    });
    let v = HashVerifier {
        correct_mod: c.correct_mod,
        error_mod: c.error_mod,
    };
    let judge = Judge {
        verifier: &v,
        prefix_valid: None,
    };
    let mut forest = Forest::new(c.cfg.clone(), 0).unwrap();
    for i in 0..c.trees {
        forest.add(TreeInput {
            problem: problem(&format!("p{i}")),
            prompt_tokens: prompt(3),
            salt: 0,
        });
    }
    let mut done = Vec::new();
    // each step expands every active tree once (or finishes it): max_expansions + 2 steps suffice
    for _ in 0..c.cfg.max_expansions + 2 {
        done.extend(forest.step(&mut pol, &judge));
        if c.cfg.backup == BackupKind::Constrained {
            // checked after every step, not only at the end: once on a correct path, never < 0
            for (_, _, tree, recorded) in forest.active_trees() {
                for &leaf in recorded {
                    if tree.node(leaf).terminal.as_ref().unwrap().outcome == Some(Outcome::Correct)
                    {
                        for id in tree.path(leaf) {
                            assert!(tree.node(id).value >= 0.0, "node {id} went negative");
                        }
                    }
                }
            }
        }
        if forest.active() == 0 {
            break;
        }
    }
    assert_eq!(
        forest.active(),
        0,
        "search did not terminate within its caps"
    );
    done.sort_by_key(|t| t.id);
    done
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn search_invariants(c in case()) {
        let done = run(&c);
        prop_assert_eq!(done.len(), c.trees);
        for t in &done {
            let tree = &t.tree;
            prop_assert!(t.stats.expansions as usize <= c.cfg.max_expansions);
            prop_assert!(t.recorded.len() <= c.cfg.trajectories_per_tree);
            // visits: initial count (1 for non-terminal non-root nodes) + recorded paths through it
            let mut through = vec![0u32; tree.len()];
            for &leaf in &t.recorded {
                for id in tree.path(leaf) {
                    through[id as usize] += 1;
                }
            }
            for (id, n) in tree.nodes().iter().enumerate() {
                let init = u32::from(id != 0 && n.terminal.is_none());
                prop_assert_eq!(n.visits, init + through[id], "node {}", id);
                // a node has 0 children or at most `expansion_width`
                prop_assert!(n.n_children as usize <= c.cfg.expansion_width);
                prop_assert!(n.value.abs() <= n.visits as f64 + 1e-9);
            }
            // constrained backup: every node that was on a recorded correct path is ≥ 0
            if c.cfg.backup == BackupKind::Constrained {
                for &leaf in &t.recorded {
                    let term = tree.node(leaf).terminal.as_ref().unwrap();
                    if term.outcome == Some(Outcome::Correct) {
                        for id in tree.path(leaf) {
                            prop_assert!(tree.node(id).value >= 0.0, "node {} value {}", id, tree.node(id).value);
                        }
                    }
                }
            }
            // every terminal was judged exactly once and counted
            let terminals = tree.nodes().iter().filter(|n| n.terminal.is_some()).count() as u32;
            let s = &t.stats;
            prop_assert_eq!(s.correct + s.wrong + s.incomplete + s.verifier_errors, terminals);
            // no recorded trajectory carries a verifier error
            for tr in t.trajectories(0) {
                prop_assert!(!matches!(tr.verdict, deepsearch_tasks::Verdict::Error(_)));
                prop_assert_eq!(tr.token_scores.len(), tr.tokens.len());
            }
        }
    }

    #[test]
    fn same_seed_same_tree(c in case()) {
        let a = run(&c);
        let b = run(&c);
        for (x, y) in a.iter().zip(&b) {
            prop_assert_eq!(x.tree.len(), y.tree.len());
            prop_assert_eq!(&x.recorded, &y.recorded);
            for (n, m) in x.tree.nodes().iter().zip(y.tree.nodes()) {
                prop_assert_eq!(&n.tokens, &m.tokens);
                prop_assert_eq!(n.value.to_bits(), m.value.to_bits());
                prop_assert_eq!(n.visits, m.visits);
            }
        }
    }
}
