//! Choosing the next node to expand (spec §5): local UCT for the depth-first dive, global frontier
//! selection after a terminal, and the `selection = uct` ablation that descends from the root.
//!
//! The scores are [`crate::score::uct`] and [`crate::score::frontier_score`]; ties go to the first
//! sibling (UCT) or the first node in depth-first order (frontier).

use std::cmp::Ordering;

use crate::config::SearchConfig;
use crate::score::{frontier_score, q_value, uct, FrontierInputs};
use crate::tree::{NodeId, Tree};

/// The UCT-best child of `parent` (spec §5): argmax, ties → first, terminal (and dead) children
/// score −∞. `None` when there are no children or every child scores −∞.
pub fn best_uct_child(tree: &Tree, parent: NodeId, lambda: f64) -> Option<NodeId> {
    let pn = tree.node(parent).visits;
    let mut best: Option<(NodeId, f64)> = None;
    for c in tree.children(parent) {
        let n = tree.node(c);
        // a dead node or an exhausted subtree cannot be expanded: treat like a terminal
        let closed = n.terminal.is_some() || n.dead;
        let s = uct(n.value, n.visits, pn, lambda, closed);
        if s == f64::NEG_INFINITY {
            continue;
        }
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((c, s));
        }
    }
    best.map(|(c, _)| c)
}

/// Frontier score of one candidate (spec §5).
pub fn frontier_score_of(tree: &Tree, cfg: &SearchConfig, id: NodeId) -> f64 {
    let n = tree.node(id);
    let parent = tree.node(n.parent.expect("frontier nodes are not the root"));
    frontier_score(
        &cfg.frontier,
        cfg.max_depth,
        FrontierInputs {
            q_parent: q_value(parent.value, parent.visits),
            entropy: n.segment_entropy,
            depth: n.depth,
            q_node: q_value(n.value, n.visits),
        },
    )
}

/// Global frontier selection (spec §5): the best-scoring non-root, non-terminal, childless node;
/// ties → first in depth-first order. `None` when the frontier is empty.
pub fn select_frontier(tree: &Tree, cfg: &SearchConfig) -> Option<NodeId> {
    let mut best: Option<(NodeId, f64)> = None;
    for &id in tree.frontier() {
        let s = frontier_score_of(tree, cfg, id);
        let better = match best {
            None => true,
            Some((b, bs)) => match s.partial_cmp(&bs) {
                Some(Ordering::Greater) => true,
                Some(Ordering::Equal) => tree.dfs_cmp(id, b) == Ordering::Less,
                // a NaN score never wins; a number beats a NaN incumbent
                _ => bs.is_nan() && !s.is_nan(),
            },
        };
        if better {
            best = Some((id, s));
        }
    }
    best.map(|(id, _)| id)
}

/// `selection = uct` (spec §5, "vanilla UCT"): descend from the root by UCT to a childless node.
/// The root itself while it has no children. If the descent reaches a node whose children are all
/// terminal or dead, fall back to the global frontier (a documented choice: the ablation in the
/// paper does not say, and an exhausted subtree must not stall the tree).
pub fn select_uct_from_root(tree: &Tree, cfg: &SearchConfig) -> Option<NodeId> {
    let mut cur: NodeId = 0;
    loop {
        let n = tree.node(cur);
        if n.dead {
            return select_frontier(tree, cfg);
        }
        if n.n_children == 0 {
            return Some(cur);
        }
        match best_uct_child(tree, cur, cfg.uct_lambda) {
            Some(c) => cur = c,
            None => return select_frontier(tree, cfg),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{DepthBonus, EntropyKind};
    use crate::tree::{NewChild, TerminalKind};

    fn kid(terminal: bool, logprob: f32) -> NewChild {
        NewChild {
            tokens: vec![1],
            logprobs: vec![logprob],
            entropies: Vec::new(),
            finish: None,
            terminal: terminal.then_some(TerminalKind::Eos),
        }
    }

    #[test]
    fn uct_picks_best_first_on_ties_and_skips_terminals() {
        let mut t = Tree::new(Arc::new(vec![]), EntropyKind::Nll);
        t.add_children(0, vec![kid(true, -1.0), kid(false, -1.0), kid(false, -1.0)]);
        // all non-terminal children equal (N = 1, value 0): the first one
        assert_eq!(best_uct_child(&t, 0, 2.0), Some(2));
        t.node_mut(0).visits = 4;
        t.node_mut(2).value = -0.5; // Q = −0.5, bonus 2·sqrt(ln 4) = 2.3548
        t.node_mut(3).value = 0.2; // Q = 0.2
        assert_eq!(best_uct_child(&t, 0, 2.0), Some(3));
        // a child with more visits has a smaller bonus: 0.2/3 + 2·sqrt(ln 4 / 3) = 1.426 < 1.855
        t.node_mut(3).visits = 3;
        assert_eq!(best_uct_child(&t, 0, 2.0), Some(2));
        let mut all_terminal = Tree::new(Arc::new(vec![]), EntropyKind::Nll);
        all_terminal.add_children(0, vec![kid(true, -1.0), kid(true, -1.0)]);
        assert_eq!(best_uct_child(&all_terminal, 0, 2.0), None);
    }

    /// root → {1, 2}; 1 → {3, 4}; 2 → {5, 6}; 3 → {7}
    fn frontier_tree() -> Tree {
        let mut t = Tree::new(Arc::new(vec![]), EntropyKind::Nll);
        t.add_children(0, vec![kid(false, -1.0), kid(false, -1.0)]);
        t.add_children(1, vec![kid(false, -1.0), kid(false, -2.0)]);
        t.add_children(2, vec![kid(false, -3.0), kid(true, -1.0)]);
        t.add_children(3, vec![kid(false, -1.0)]);
        t
    }

    #[test]
    fn frontier_scores_and_ties_in_dfs_order() {
        let mut t = frontier_tree();
        let mut cfg = SearchConfig {
            max_depth: 4,
            ..SearchConfig::default()
        };
        // frontier: 4 (depth 2, parent 1), 5 (depth 2, parent 2), 7 (depth 3, parent 3)
        // all parents Q = 0: the depth bonus decides → 7
        assert_eq!(select_frontier(&t, &cfg), Some(7));
        // 0.01·sqrt(3/4) = 0.0086603
        assert!((frontier_score_of(&t, &cfg, 7) - 0.0086603).abs() < 1e-6);
        // parent 3 turns negative: Q(3) = −0.5/2; 0.4·tanh(−0.25) + 0.0086603 < 0.01·sqrt(2/4)
        t.node_mut(3).value = -0.5;
        t.node_mut(3).visits = 2;
        // 4 and 5 tie at 0.0070711: the first in DFS order (4, under node 1) wins
        assert_eq!(select_frontier(&t, &cfg), Some(4));
        // node 2 gets a positive Q: 5 wins
        t.node_mut(2).value = 0.1;
        assert_eq!(select_frontier(&t, &cfg), Some(5));
        // λ2 entropy bonus: nll of 5's segment is 3.0, of 4's 2.0; with λ1 = 0 the entropy decides
        t.node_mut(2).value = 0.0;
        cfg.frontier.lambda1 = 0.0;
        cfg.frontier.lambda2 = 1.0;
        assert_eq!(select_frontier(&t, &cfg), Some(5));
        cfg.frontier.lambda2 = 0.0;
        cfg.frontier.depth_bonus = DepthBonus::Linear;
        assert_eq!(select_frontier(&t, &cfg), Some(7));
        cfg.frontier.depth_bonus = DepthBonus::Log;
        assert_eq!(select_frontier(&t, &cfg), Some(7));
    }

    #[test]
    fn uct_from_root_descends_and_falls_back() {
        let t0 = Tree::new(Arc::new(vec![]), EntropyKind::Nll);
        let cfg = SearchConfig::default();
        assert_eq!(select_uct_from_root(&t0, &cfg), Some(0));
        let t = frontier_tree();
        // root N = 0: all bonuses 0, Q ties → 1; node 1 N = 1 → ln 1 = 0 → 3; 3 → 7
        assert_eq!(select_uct_from_root(&t, &cfg), Some(7));
        let mut dead = frontier_tree();
        dead.mark_dead(7);
        dead.mark_dead(4);
        // 3's only child is dead → fall back to the frontier: only 5 is left
        assert_eq!(select_uct_from_root(&dead, &cfg), Some(5));
    }
}
