//! Backing a chosen terminal up its path (spec §4): depth-weighted, q-value constrained.
//!
//! The per-node rule is [`crate::score::backup_step`]; this module only walks the path. The
//! invariant of the constrained variant — a node that was ever on a backed-up correct path keeps a
//! value ≥ 0 — is property-tested in `tests/properties.rs`.

use crate::config::BackupKind;
use crate::score::{backup_step, backup_weight};
use crate::tree::{NodeId, Tree};

/// Back up reward `v` from `leaf` to the root inclusive: `N += 1` and the value update of §4 with
/// `w_i = max((depth_i + 1) / (L + 1), gamma_min)`.
pub fn backup(tree: &mut Tree, leaf: NodeId, v: f64, kind: BackupKind, gamma_min: f64) {
    let leaf_depth = tree.node(leaf).depth;
    let mut cur = Some(leaf);
    while let Some(id) = cur {
        let n = tree.node_mut(id);
        let w = backup_weight(n.depth, leaf_depth, gamma_min);
        n.visits += 1;
        n.value = backup_step(kind, n.value, w, v);
        cur = n.parent;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::EntropyKind;
    use crate::tree::{NewChild, TerminalKind};

    fn kid(terminal: bool) -> NewChild {
        NewChild {
            tokens: vec![1],
            logprobs: vec![-1.0],
            entropies: Vec::new(),
            finish: None,
            terminal: terminal.then_some(TerminalKind::Eos),
        }
    }

    /// root 0 → {1, 2}; 1 → {3, 4T}; 3 → {5T, 6T}; 2 → {7T, 8}; 8 → {9T}
    fn scripted() -> Tree {
        let mut t = Tree::new(Arc::new(vec![7]), EntropyKind::Nll);
        t.add_children(0, vec![kid(false), kid(false)]);
        t.add_children(1, vec![kid(false), kid(true)]);
        t.add_children(3, vec![kid(true), kid(true)]);
        t.add_children(2, vec![kid(true), kid(false)]);
        t.add_children(8, vec![kid(true)]);
        t
    }

    fn check(t: &Tree, want: &[(NodeId, f64, u32)]) {
        for &(id, value, visits) in want {
            let n = t.node(id);
            assert!(
                (n.value - value).abs() < 1e-9,
                "node {id}: value {} want {value}",
                n.value
            );
            assert_eq!(n.visits, visits, "node {id} visits");
        }
    }

    #[test]
    fn constrained_backup_sequence_by_hand() {
        let mut t = scripted();
        let k = BackupKind::Constrained;
        // wrong at 4 (depth 2): weights 1/3, 2/3, 1
        backup(&mut t, 4, -1.0, k, 0.1);
        check(
            &t,
            &[
                (0, -1.0 / 3.0, 1),
                (1, -2.0 / 3.0, 2),
                (4, -1.0, 1),
                (3, 0.0, 1),
            ],
        );
        // correct at 5 (depth 3): weights .25 .5 .75 1; negatives are overwritten
        backup(&mut t, 5, 1.0, k, 0.1);
        check(&t, &[(0, 0.25, 2), (1, 0.5, 3), (3, 0.75, 2), (5, 1.0, 1)]);
        // wrong at 6: positive ancestors ignore it, the leaf takes −1
        backup(&mut t, 6, -1.0, k, 0.1);
        check(
            &t,
            &[
                (0, 0.25, 3),
                (1, 0.5, 4),
                (3, 0.75, 3),
                (6, -1.0, 1),
                (5, 1.0, 1),
            ],
        );
        // wrong at 7 (depth 2): the root ignores it, node 2 (value 0) accumulates −2/3
        backup(&mut t, 7, -1.0, k, 0.1);
        check(
            &t,
            &[(0, 0.25, 4), (2, -2.0 / 3.0, 2), (7, -1.0, 1), (8, 0.0, 1)],
        );
        // correct at 9 (depth 3): root accumulates, node 2 is overwritten
        backup(&mut t, 9, 1.0, k, 0.1);
        check(&t, &[(0, 0.5, 5), (2, 0.5, 3), (8, 0.75, 2), (9, 1.0, 1)]);
        // untouched siblings keep their initial state
        check(&t, &[(4, -1.0, 1), (6, -1.0, 1), (7, -1.0, 1)]);
    }

    #[test]
    fn constrained_backup_correct_first_then_wrong() {
        let mut t = scripted();
        let k = BackupKind::Constrained;
        backup(&mut t, 9, 1.0, k, 0.1);
        check(&t, &[(0, 0.25, 1), (2, 0.5, 2), (8, 0.75, 2), (9, 1.0, 1)]);
        backup(&mut t, 7, -1.0, k, 0.1);
        check(&t, &[(0, 0.25, 2), (2, 0.5, 3), (7, -1.0, 1)]);
        backup(&mut t, 4, -1.0, k, 0.1);
        check(&t, &[(0, 0.25, 3), (1, -2.0 / 3.0, 2), (4, -1.0, 1)]);
        backup(&mut t, 6, -1.0, k, 0.1);
        check(
            &t,
            &[
                (0, 0.25, 4),
                (1, -2.0 / 3.0 - 0.5, 3),
                (3, -0.75, 2),
                (6, -1.0, 1),
            ],
        );
    }

    #[test]
    fn vanilla_backup_sequence_by_hand() {
        let mut t = scripted();
        let k = BackupKind::Vanilla;
        backup(&mut t, 4, -1.0, k, 0.1);
        backup(&mut t, 5, 1.0, k, 0.1);
        // max(−1/3 + 1/4, 0) = 0; max(−2/3 + 1/2, 0) = 0
        check(&t, &[(0, 0.0, 2), (1, 0.0, 3), (3, 0.75, 2), (5, 1.0, 1)]);
        backup(&mut t, 6, -1.0, k, 0.1);
        // zero accumulates the negative; 3: max(0.75 − 0.75, 0) = 0
        check(
            &t,
            &[(0, -0.25, 3), (1, -0.5, 4), (3, 0.0, 3), (6, -1.0, 1)],
        );
        backup(&mut t, 7, -1.0, k, 0.1);
        check(&t, &[(0, -0.25 - 1.0 / 3.0, 4), (2, -2.0 / 3.0, 2)]);
        backup(&mut t, 9, 1.0, k, 0.1);
        check(&t, &[(0, 0.0, 5), (2, 0.0, 3), (8, 0.75, 2), (9, 1.0, 1)]);
    }

    #[test]
    fn gamma_min_floors_shallow_weights() {
        // a chain of depth 19: the root's weight 1/20 is floored at 0.1
        let mut t = Tree::new(Arc::new(vec![]), EntropyKind::Nll);
        let mut cur = 0;
        for d in 1..=19 {
            let r = t.add_children(cur, vec![kid(d == 19)]);
            cur = r.start;
        }
        backup(&mut t, cur, -1.0, BackupKind::Constrained, 0.1);
        assert!((t.node(0).value + 0.1).abs() < 1e-12);
        assert!((t.node(1).value + 0.1).abs() < 1e-12); // 2/20 = 0.1
        assert!((t.node(2).value + 0.15).abs() < 1e-12); // 3/20
        assert_eq!(t.node(cur).value, -1.0);
    }
}
