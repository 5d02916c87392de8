//! The search's formulas as pure functions (spec §2–§6), each pinned by hand-computed tests.
//!
//! Nothing here touches a tree: callers pass the numbers in. That keeps every decision testable in
//! isolation and makes the tree code a thin loop over these functions.

use deepsearch_tasks::Verdict;

use crate::config::{BackupKind, DepthBonus, EntropyKind, FrontierConfig, RewardConfig};

/// Mean Q = value / N; 0 when the node was never visited (spec §5).
pub fn q_value(value: f64, visits: u32) -> f64 {
    if visits == 0 {
        0.0
    } else {
        value / visits as f64
    }
}

/// Local UCT of a child (spec §5): `Q(s) + λ·sqrt(ln N(parent) / N(s))`, bonus 0 when a count is
/// 0, `−∞` for a terminal child.
pub fn uct(value: f64, visits: u32, parent_visits: u32, lambda: f64, terminal: bool) -> f64 {
    if terminal {
        return f64::NEG_INFINITY;
    }
    let q = q_value(value, visits);
    if visits == 0 || parent_visits == 0 {
        return q;
    }
    q + lambda * ((parent_visits as f64).ln() / visits as f64).sqrt()
}

/// Depth bonus D(depth) of the frontier score (spec §5).
pub fn depth_bonus(kind: DepthBonus, depth: u32, max_depth: u32) -> f64 {
    let d = depth as f64;
    match kind {
        DepthBonus::Sqrt => (d / max_depth.max(1) as f64).sqrt(),
        DepthBonus::Linear => d,
        DepthBonus::Log => (d + 1.0).ln(),
    }
}

/// Inputs of the frontier score of one candidate node.
#[derive(Clone, Copy, Debug)]
pub struct FrontierInputs {
    /// Q of the candidate's parent.
    pub q_parent: f64,
    /// Mean entropy of the candidate's own segment (NaN is treated as 0 so it never wins or
    /// poisons the comparison).
    pub entropy: f64,
    pub depth: u32,
    /// Q of the candidate itself (only used when λ4 ≠ 0).
    pub q_node: f64,
}

/// Global frontier score (spec §5):
/// `λ1·tanh(Q(parent)) + λ2·H(s) + λ3·D(depth) + λ4·tanh(Q(s))`.
pub fn frontier_score(cfg: &FrontierConfig, max_depth: u32, x: FrontierInputs) -> f64 {
    let h = if x.entropy.is_finite() {
        x.entropy
    } else {
        0.0
    };
    let mut s = cfg.lambda1 * x.q_parent.tanh()
        + cfg.lambda3 * depth_bonus(cfg.depth_bonus, x.depth, max_depth);
    if cfg.lambda2 != 0.0 {
        s += cfg.lambda2 * h;
    }
    if cfg.lambda4 != 0.0 {
        s += cfg.lambda4 * x.q_node.tanh();
    }
    s
}

/// Depth weight of the backup (spec §4): `max((depth + 1) / (L + 1), gamma_min)`.
pub fn backup_weight(depth: u32, leaf_depth: u32, gamma_min: f64) -> f64 {
    ((depth as f64 + 1.0) / (leaf_depth as f64 + 1.0)).max(gamma_min)
}

/// One node's new value after backing up reward `v` with weight `w` (spec §4).
pub fn backup_step(kind: BackupKind, value: f64, w: f64, v: f64) -> f64 {
    if value * v >= 0.0 {
        return value + w * v;
    }
    match kind {
        BackupKind::Constrained if v > 0.0 => w * v,
        BackupKind::Constrained => value,
        BackupKind::Vanilla => (value + w * v).max(0.0),
    }
}

/// DAPO overlong penalty (spec §2): `min(0, −(L − (Lmax − B)) / B × factor)`; 0 when B = 0.
pub fn overlong_penalty(len: usize, max_len: usize, buffer: usize, factor: f64) -> f64 {
    if buffer == 0 {
        return 0.0;
    }
    let over = len as f64 - (max_len as f64 - buffer as f64);
    (-over / buffer as f64 * factor).min(0.0)
}

/// Score target of an intermediate node (spec §6): `tanh(value / eps_q) · q_max`.
pub fn node_score_target(value: f64, q_eps: f64, q_max: f64) -> f64 {
    (value / q_eps).tanh() * q_max
}

/// Per-token uncertainty of one token under `kind` (spec §1): the full entropy, or −log-prob.
/// A missing full entropy is NaN.
pub fn token_uncertainty(kind: EntropyKind, logprob: f32, entropy: Option<f32>) -> f64 {
    match kind {
        EntropyKind::Full => entropy.map_or(f64::NAN, f64::from),
        EntropyKind::Nll => -(logprob as f64),
    }
}

/// Running sum for a mean entropy over many segments (spec §3: mean over all response tokens).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EntropySum {
    pub sum: f64,
    pub count: usize,
}

impl EntropySum {
    /// Add one segment's tokens. `entropies` may be empty (then `full` gives NaN).
    pub fn add_segment(&mut self, kind: EntropyKind, logprobs: &[f32], entropies: &[f32]) {
        for (i, &lp) in logprobs.iter().enumerate() {
            self.sum += token_uncertainty(kind, lp, entropies.get(i).copied());
        }
        self.count += logprobs.len();
    }

    /// The mean; NaN for zero tokens.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.sum / self.count as f64
        }
    }
}

/// How a terminal counts for the reward and the choice of §3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Correct,
    Wrong,
    /// Cut at the depth (or context) cap without a parsable answer.
    Incomplete,
}

/// How a verdict counts (spec §2): `Unparsable` after EOS is a wrong answer, at a depth or length
/// cap an incomplete one; `Error` is no reward at all (`None`: dropped and counted).
pub fn outcome_of(verdict: &Verdict, ended_with_eos: bool) -> Option<Outcome> {
    match verdict {
        Verdict::Correct => Some(Outcome::Correct),
        Verdict::Wrong => Some(Outcome::Wrong),
        Verdict::Unparsable if ended_with_eos => Some(Outcome::Wrong),
        Verdict::Unparsable => Some(Outcome::Incomplete),
        Verdict::Error(_) => None,
    }
}

/// The terminal reward of an outcome (spec §2).
pub fn reward_of(cfg: &RewardConfig, outcome: Outcome) -> f64 {
    match outcome {
        Outcome::Correct => cfg.correct,
        Outcome::Wrong => cfg.wrong,
        Outcome::Incomplete => cfg.incomplete,
    }
}

/// One terminal of an expansion batch, as the terminal choice sees it.
#[derive(Clone, Copy, Debug)]
pub struct TerminalCandidate {
    pub outcome: Outcome,
    /// Mean trajectory entropy; NaN sorts last.
    pub entropy: f64,
    /// The response repeats an n-gram excessively (only matters for wrong terminals).
    pub garbled: bool,
}

/// Which terminal of a batch is backed up (spec §3): the pool is the correct terminals, else the
/// non-garbled wrong ones, else the incomplete ones; pick the lowest entropy, NaN last, ties →
/// first. `None` when no candidate qualifies.
pub fn choose_terminal(cands: &[TerminalCandidate]) -> Option<usize> {
    let pools: [&dyn Fn(&TerminalCandidate) -> bool; 3] = [
        &|c| c.outcome == Outcome::Correct,
        &|c| c.outcome == Outcome::Wrong && !c.garbled,
        &|c| c.outcome == Outcome::Incomplete,
    ];
    for in_pool in pools {
        let mut best: Option<(usize, f64)> = None;
        for (i, c) in cands.iter().enumerate().filter(|(_, c)| in_pool(c)) {
            let better = match best {
                None => true,
                Some((_, b)) => entropy_less(c.entropy, b),
            };
            if better {
                best = Some((i, c.entropy));
            }
        }
        if let Some((i, _)) = best {
            return Some(i);
        }
    }
    None
}

/// Strict order on entropies with NaN after every number (so ties keep the first).
fn entropy_less(a: f64, b: f64) -> bool {
    match (a.is_nan(), b.is_nan()) {
        (false, true) => true,
        (true, _) => false,
        (false, false) => a < b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn uct_matches_hand_numbers() {
        // Q = 0.5/2 = 0.25; bonus = 2·sqrt(ln 4 / 2) = 2·0.8325546 = 1.6651092
        assert!(close(uct(0.5, 2, 4, 2.0, false), 1.9151092));
        // N(parent) = 1: ln 1 = 0, no bonus
        assert!(close(uct(-0.3, 1, 1, 2.0, false), -0.3));
        // zero counts: bonus 0, Q = 0
        assert_eq!(uct(0.0, 0, 5, 2.0, false), 0.0);
        assert_eq!(uct(0.7, 3, 0, 2.0, false), 0.7 / 3.0);
        assert_eq!(uct(1.0, 1, 9, 2.0, true), f64::NEG_INFINITY);
    }

    #[test]
    fn depth_bonus_kinds() {
        assert!(close(depth_bonus(DepthBonus::Sqrt, 16, 64), 0.5));
        assert!(close(depth_bonus(DepthBonus::Linear, 16, 64), 16.0));
        assert!(close(depth_bonus(DepthBonus::Log, 16, 64), 2.8332133)); // ln 17
        assert_eq!(depth_bonus(DepthBonus::Log, 0, 64), 0.0);
    }

    #[test]
    fn frontier_score_for_each_depth_bonus() {
        let x = FrontierInputs {
            q_parent: 0.5,
            entropy: 2.0,
            depth: 16,
            q_node: -1.0,
        };
        let mut cfg = FrontierConfig::default();
        // 0.4·tanh(0.5) = 0.4·0.46211716 = 0.18484686; + 0.01·0.5
        assert!(close(frontier_score(&cfg, 64, x), 0.18984686));
        cfg.depth_bonus = DepthBonus::Linear; // + 0.01·16
        assert!(close(frontier_score(&cfg, 64, x), 0.34484686));
        cfg.depth_bonus = DepthBonus::Log; // + 0.01·2.8332133
        assert!(close(frontier_score(&cfg, 64, x), 0.21317899));
        cfg.lambda2 = 0.1; // + 0.1·2.0
        cfg.lambda4 = 0.5; // + 0.5·tanh(−1) = −0.38079708
        assert!(close(
            frontier_score(&cfg, 64, x),
            0.21317899 + 0.2 - 0.38079708
        ));
        // a NaN entropy contributes 0
        let nan = FrontierInputs {
            entropy: f64::NAN,
            ..x
        };
        assert!(close(
            frontier_score(&cfg, 64, nan),
            0.21317899 - 0.38079708
        ));
    }

    #[test]
    fn backup_weights_and_steps() {
        // leaf depth 3: root 1/4, then 2/4, 3/4, leaf 1
        let w: Vec<f64> = (0..=3).map(|d| backup_weight(d, 3, 0.1)).collect();
        assert_eq!(w, vec![0.25, 0.5, 0.75, 1.0]);
        // leaf depth 19: root 1/20 = 0.05 → gamma_min 0.1
        assert_eq!(backup_weight(0, 19, 0.1), 0.1);
        let c = BackupKind::Constrained;
        assert_eq!(backup_step(c, 0.0, 0.5, -1.0), -0.5); // zero: accumulate
        assert_eq!(backup_step(c, 0.25, 0.5, 1.0), 0.75); // same sign: accumulate
        assert_eq!(backup_step(c, -0.75, 0.5, 1.0), 0.5); // negative, now correct: overwrite
        assert_eq!(backup_step(c, 0.3, 0.5, -1.0), 0.3); // positive: ignore the negative
        let v = BackupKind::Vanilla;
        assert_eq!(backup_step(v, -0.75, 0.5, 1.0), 0.0); // max(−0.25, 0)
        assert_eq!(backup_step(v, -0.25, 0.5, 1.0), 0.25);
        assert_eq!(backup_step(v, 0.3, 0.5, -1.0), 0.0); // max(−0.2, 0)
        assert_eq!(backup_step(v, 0.75, 0.5, -1.0), 0.25);
    }

    #[test]
    fn overlong_penalty_and_score_targets() {
        assert_eq!(overlong_penalty(100, 16384, 4096, 1.0), 0.0);
        assert_eq!(overlong_penalty(12288, 16384, 4096, 1.0), 0.0);
        assert_eq!(overlong_penalty(14336, 16384, 4096, 1.0), -0.5);
        assert_eq!(overlong_penalty(16384, 16384, 4096, 1.0), -1.0);
        assert_eq!(overlong_penalty(14336, 16384, 4096, 0.5), -0.25);
        assert_eq!(overlong_penalty(16384, 16384, 0, 1.0), 0.0);
        assert!(close(node_score_target(0.5, 1.0, 1.0), 0.46211716));
        assert!(close(node_score_target(1.0, 2.0, 0.5), 0.23105858));
        assert!(close(node_score_target(-3.0, 1.0, 1.0), -0.99505475));
    }

    #[test]
    fn entropy_sums() {
        let mut e = EntropySum::default();
        e.add_segment(EntropyKind::Nll, &[-1.0, -2.0], &[]);
        e.add_segment(EntropyKind::Nll, &[-3.0], &[0.5]);
        assert_eq!(e.mean(), 2.0);
        let mut f = EntropySum::default();
        f.add_segment(EntropyKind::Full, &[-1.0, -2.0], &[0.5, 1.5]);
        assert_eq!(f.mean(), 1.0);
        f.add_segment(EntropyKind::Full, &[-1.0], &[]);
        assert!(f.mean().is_nan());
        assert!(EntropySum::default().mean().is_nan());
    }

    #[test]
    fn verdicts_map_to_outcomes_and_rewards() {
        assert_eq!(outcome_of(&Verdict::Correct, false), Some(Outcome::Correct));
        assert_eq!(outcome_of(&Verdict::Wrong, false), Some(Outcome::Wrong));
        assert_eq!(outcome_of(&Verdict::Unparsable, true), Some(Outcome::Wrong));
        assert_eq!(
            outcome_of(&Verdict::Unparsable, false),
            Some(Outcome::Incomplete)
        );
        assert_eq!(outcome_of(&Verdict::Error("timeout".into()), true), None);
        let r = RewardConfig {
            correct: 1.0,
            wrong: -1.0,
            incomplete: -0.5,
        };
        assert_eq!(reward_of(&r, Outcome::Incomplete), -0.5);
        assert_eq!(reward_of(&r, Outcome::Correct), 1.0);
    }

    fn cand(outcome: Outcome, entropy: f64) -> TerminalCandidate {
        TerminalCandidate {
            outcome,
            entropy,
            garbled: false,
        }
    }

    #[test]
    fn terminal_choice_pools_ties_and_nan() {
        use Outcome::*;
        // correct beats a more confident wrong
        assert_eq!(
            choose_terminal(&[cand(Wrong, 0.1), cand(Correct, 2.0)]),
            Some(1)
        );
        // lowest entropy among the correct ones; ties → first
        let c = [cand(Correct, 1.0), cand(Correct, 0.5), cand(Correct, 0.5)];
        assert_eq!(choose_terminal(&c), Some(1));
        // NaN sorts last, even before a larger number
        let c = [
            cand(Wrong, f64::NAN),
            cand(Wrong, 3.0),
            cand(Wrong, f64::NAN),
        ];
        assert_eq!(choose_terminal(&c), Some(1));
        // all NaN: the first
        assert_eq!(
            choose_terminal(&[cand(Wrong, f64::NAN), cand(Wrong, f64::NAN)]),
            Some(0)
        );
        // wrong beats incomplete, incomplete used when nothing else
        assert_eq!(
            choose_terminal(&[cand(Incomplete, 0.0), cand(Wrong, 9.0)]),
            Some(1)
        );
        assert_eq!(
            choose_terminal(&[cand(Incomplete, 2.0), cand(Incomplete, 1.0)]),
            Some(1)
        );
        // a garbled wrong answer is never the confident mistake: falls through to incomplete
        let g = TerminalCandidate {
            outcome: Wrong,
            entropy: 0.0,
            garbled: true,
        };
        assert_eq!(choose_terminal(&[g, cand(Wrong, 1.0)]), Some(1));
        assert_eq!(choose_terminal(&[g, cand(Incomplete, 1.0)]), Some(1));
        assert_eq!(choose_terminal(&[g]), None);
        assert_eq!(choose_terminal(&[]), None);
    }
}
