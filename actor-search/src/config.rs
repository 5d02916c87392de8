//! Every knob of the tree search (spec §1–§6), with the spec's defaults.
//!
//! Where the paper and the released code differ the default follows the released code and the
//! paper's variant is a named option (spec preamble). Each field documents its default; the whole
//! struct deserialises with `deny_unknown_fields` so a typo in a config file is an error that names
//! the field.

use serde::{Deserialize, Serialize};

/// Which per-token uncertainty is averaged into a trajectory's entropy (spec §1, §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntropyKind {
    /// Entropy of the full next-token distribution, as reported by the policy.
    Full,
    /// Negative log-prob of the sampled token (the released code's proxy).
    Nll,
}

/// How a terminal's reward is folded into the values on its path (spec §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    /// q-value constrained backup: a node on a correct path never turns negative.
    Constrained,
    /// The paper's first version: `max(value + w·v, 0)` in the opposite-sign case.
    Vanilla,
}

/// Depth bonus `D(depth)` of the frontier score (spec §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepthBonus {
    /// `sqrt(depth / max_depth)`.
    Sqrt,
    /// `depth`.
    Linear,
    /// `ln(depth + 1)`.
    Log,
}

/// How the next node to expand is chosen after an expansion with terminals (spec §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionKind {
    /// Global frontier selection after a terminal, local UCT dive otherwise (the default).
    Frontier,
    /// Re-select from the root by UCT every iteration (the "vanilla UCT" ablation).
    Uct,
}

/// Which score the tokens of a searched trajectory's intermediate segments get (spec §6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditKind {
    /// Node-level credit, the spec's Tree-GRPO target: segment j scores `tanh(value_j / eps_q) ·
    /// q_max` (the last segment the terminal reward). The default.
    #[default]
    Node,
    /// Outcome credit: every token scores the trajectory's terminal reward, as in GRPO/DAPO, so
    /// the tree only chooses which trajectories are trained on. An ablation of node-level credit:
    /// with the mean-only baseline μ over terminal scores, a tree with few correct leaves gives
    /// the intermediate segments of its wrong paths `tanh(value) − μ > 0` (value ≥ −1, μ near
    /// −1), a positive advantage; outcome credit keeps their sign negative.
    Outcome,
}

/// Terminal rewards (spec §2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// Reward of a verified correct answer. Default 1.0.
    pub correct: f64,
    /// Reward of a wrong answer (or an unparsable answer after EOS). Default −1.0.
    pub wrong: f64,
    /// Reward of a response cut at the depth cap without a parsable answer. Default −1.0.
    pub incomplete: f64,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            correct: 1.0,
            wrong: -1.0,
            incomplete: -1.0,
        }
    }
}

/// DAPO overlong penalty (spec §2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverlongConfig {
    /// Lmax, the maximum response length in tokens. Default `None` = `max_depth × segment_tokens`.
    pub max_response_tokens: Option<usize>,
    /// Buffer B in tokens; 0 switches the penalty off. Default 4096 (of 16384; scale it with the
    /// task).
    pub buffer_tokens: usize,
    /// Penalty factor. Default 1.0.
    pub factor: f64,
}

impl Default for OverlongConfig {
    fn default() -> Self {
        Self {
            max_response_tokens: None,
            buffer_tokens: 4096,
            factor: 1.0,
        }
    }
}

/// Global frontier score weights (spec §5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontierConfig {
    /// λ1, weight of `tanh(Q(parent))`. Default 0.4.
    pub lambda1: f64,
    /// λ2, weight of the node's own segment entropy. Default 0.0 (off).
    pub lambda2: f64,
    /// λ3, weight of the depth bonus. Default 0.01.
    pub lambda3: f64,
    /// λ4, weight of `tanh(Q(node))`. Default 0.0 (off).
    pub lambda4: f64,
    /// Depth bonus kind. Default `sqrt`.
    pub depth_bonus: DepthBonus,
}

impl Default for FrontierConfig {
    fn default() -> Self {
        Self {
            lambda1: 0.4,
            lambda2: 0.0,
            lambda3: 0.01,
            lambda4: 0.0,
            depth_bonus: DepthBonus::Sqrt,
        }
    }
}

/// Filter of garbled outputs (spec §7, "known gaps"): a wrong terminal whose response repeats one
/// token n-gram more than `max_repeats` times is never backed up as the confident mistake.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GarbledConfig {
    /// Filter on. Default true.
    pub enabled: bool,
    /// n-gram length in tokens. Default 16.
    pub ngram_tokens: usize,
    /// An n-gram occurring more than this many times marks the response garbled. Default 8.
    pub max_repeats: usize,
}

impl Default for GarbledConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ngram_tokens: 16,
            max_repeats: 8,
        }
    }
}

/// The tree search's configuration (spec §1–§6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Token cap of one segment (spec §1). Default 256.
    pub segment_tokens: usize,
    /// Optional delimiter ending a segment early (e.g. "\n\n"), `segment_tokens` stays the cap.
    /// Default `None` (fixed-length segments).
    pub segment_delimiter: Option<String>,
    /// Children sampled per expansion, in one batched request (spec §1). Default 8.
    pub expansion_width: usize,
    /// Depth at which a node is terminal (spec §1). Default 64.
    pub max_depth: u32,
    /// Sampling temperature of expansions (spec §1). Default 1.0.
    pub temperature: f32,
    /// Nucleus top-p of expansions (spec §1). Default 1.0.
    pub top_p: f32,
    /// Terminal rewards (spec §2).
    pub reward: RewardConfig,
    /// Overlong penalty (spec §2).
    pub overlong: OverlongConfig,
    /// Entropy used for the terminal choice and the λ2 term (spec §1, §3). Default `nll` (the
    /// released code's proxy; `full` uses the policy's full-distribution entropy).
    pub entropy: EntropyKind,
    /// Backup variant (spec §4). Default `constrained`.
    pub backup: BackupKind,
    /// Lower bound of the depth weight (spec §4). Default 0.1.
    pub gamma_min: f64,
    /// λ of local UCT (spec §5). Default 2.0.
    pub uct_lambda: f64,
    /// Frontier score weights (spec §5).
    pub frontier: FrontierConfig,
    /// Selection variant (spec §5). Default `frontier`.
    pub selection: SelectionKind,
    /// A tree stops after recording this many trajectories (spec §5). Default 8.
    pub trajectories_per_tree: usize,
    /// Safety cap on expansions per tree; hitting it is counted (spec §5). Default 1024.
    pub max_expansions: usize,
    /// eps_q of the node score target `tanh(value / eps_q) · q_max` (spec §6). Default 1.0.
    pub q_eps: f64,
    /// q_max of the node score target (spec §6). Default 1.0.
    pub q_max: f64,
    /// Score of intermediate segments: `node` (spec §6) or `outcome` (ablation). Default `node`.
    pub credit: CreditKind,
    /// Garbled-output filter (spec §7).
    pub garbled: GarbledConfig,
    /// Mark a child whose text the prefix hook says is already invalid as a wrong terminal at once
    /// (design.md: pruning helps at tiny scale). Needs a hook; default false.
    pub prune_invalid_prefixes: bool,
    /// Consecutive policy errors on one tree before it is abandoned. Default 2.
    pub max_policy_errors: u32,
    /// Run seed; every request seed derives from (seed, problem, salt, expansion). Default 0.
    pub seed: u64,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            segment_tokens: 256,
            segment_delimiter: None,
            expansion_width: 8,
            max_depth: 64,
            temperature: 1.0,
            top_p: 1.0,
            reward: RewardConfig::default(),
            overlong: OverlongConfig::default(),
            entropy: EntropyKind::Nll,
            backup: BackupKind::Constrained,
            gamma_min: 0.1,
            uct_lambda: 2.0,
            frontier: FrontierConfig::default(),
            selection: SelectionKind::Frontier,
            trajectories_per_tree: 8,
            max_expansions: 1024,
            q_eps: 1.0,
            q_max: 1.0,
            credit: CreditKind::Node,
            garbled: GarbledConfig::default(),
            prune_invalid_prefixes: false,
            max_policy_errors: 2,
            seed: 0,
        }
    }
}

/// A config value that cannot work, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("invalid search config field `{field}`: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl SearchConfig {
    /// Small, fast settings for tests: 8-token segments, width 4, depth 8, 4 trajectories.
    pub fn for_test() -> Self {
        Self {
            segment_tokens: 8,
            expansion_width: 4,
            max_depth: 8,
            trajectories_per_tree: 4,
            max_expansions: 64,
            overlong: OverlongConfig {
                max_response_tokens: None,
                buffer_tokens: 16,
                factor: 1.0,
            },
            garbled: GarbledConfig {
                enabled: true,
                ngram_tokens: 4,
                max_repeats: 6,
            },
            ..Self::default()
        }
    }

    /// Lmax: the configured maximum response length, else `max_depth × segment_tokens` (spec §2).
    pub fn max_response_tokens(&self) -> usize {
        self.overlong
            .max_response_tokens
            .unwrap_or(self.max_depth as usize * self.segment_tokens)
    }

    /// Check values a search cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.to_string(),
            })
        };
        if self.segment_tokens == 0 {
            return err("segment_tokens", "must be at least 1");
        }
        if self.expansion_width == 0 {
            return err("expansion_width", "must be at least 1");
        }
        if self.max_depth == 0 {
            return err("max_depth", "must be at least 1");
        }
        if self.trajectories_per_tree == 0 {
            return err("trajectories_per_tree", "must be at least 1");
        }
        if self.max_expansions == 0 {
            return err("max_expansions", "must be at least 1");
        }
        if self.max_response_tokens() == 0 {
            return err("overlong.max_response_tokens", "must be at least 1");
        }
        if self.overlong.buffer_tokens > self.max_response_tokens() {
            return err(
                "overlong.buffer_tokens",
                "must not exceed the maximum response length Lmax",
            );
        }
        if self.q_eps.is_nan() || self.q_eps <= 0.0 {
            return err("q_eps", "must be > 0");
        }
        if !(0.0..=1.0).contains(&self.gamma_min) {
            return err("gamma_min", "must be in [0, 1]");
        }
        if self.garbled.enabled && self.garbled.ngram_tokens == 0 {
            return err("garbled.ngram_tokens", "must be at least 1");
        }
        if matches!(&self.segment_delimiter, Some(d) if d.is_empty()) {
            return err(
                "segment_delimiter",
                "must not be empty (omit it for fixed-length segments)",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_spec() {
        let c = SearchConfig::default();
        assert_eq!(
            (c.segment_tokens, c.expansion_width, c.max_depth),
            (256, 8, 64)
        );
        assert_eq!(c.max_response_tokens(), 16384);
        assert_eq!(c.overlong.buffer_tokens, 4096);
        assert_eq!(
            (c.frontier.lambda1, c.frontier.lambda2, c.frontier.lambda3),
            (0.4, 0.0, 0.01)
        );
        assert_eq!(
            (c.gamma_min, c.uct_lambda, c.trajectories_per_tree),
            (0.1, 2.0, 8)
        );
        assert!(c.validate().is_ok());
        assert!(SearchConfig::for_test().validate().is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected_and_partial_configs_fill_defaults() {
        let c: SearchConfig =
            serde_json::from_str(r#"{"segment_tokens": 32, "frontier": {"depth_bonus": "log"}}"#)
                .unwrap();
        assert_eq!(c.segment_tokens, 32);
        assert_eq!(c.frontier.depth_bonus, DepthBonus::Log);
        assert_eq!(c.frontier.lambda1, 0.4);
        let e = serde_json::from_str::<SearchConfig>(r#"{"segment_tokenz": 32}"#).unwrap_err();
        assert!(e.to_string().contains("segment_tokenz"), "{e}");
    }

    #[test]
    fn validate_names_the_field() {
        let c = SearchConfig {
            expansion_width: 0,
            ..SearchConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "expansion_width");
    }
}
