//! `LearnerConfig`: every knob of the learner (spec §6), with the paper's defaults. Read from the
//! `[learner]` section of a run config (serde, unknown fields rejected); [`LearnerConfig::for_test`]
//! is a small CPU configuration for tests.

use crate::error::{LearnerError, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How advantages are normalised within a prompt group (spec §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvNorm {
    /// `A = score − μ` (default; the paper's mean-only advantage).
    Mean,
    /// `A = (score − μ) / (σ + 1e-6)`, σ the unbiased std of the group's terminal scores
    /// (GRPO's original form; σ = 1 for a group of one).
    MeanStd,
}

/// How per-token losses are aggregated into the mini-batch loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossAgg {
    /// Sum over all valid tokens of the mini-batch / number of valid tokens (default, spec §6).
    TokenMean,
    /// Mean over sequences of each sequence's token mean.
    SeqMeanTokenMean,
    /// Sum over all valid tokens / (sequences × `loss_norm_tokens`) (Dr. GRPO's constant
    /// normaliser; `loss_norm_tokens` 0 = the mini-batch's longest response).
    SeqMeanTokenSumNorm,
}

/// Parameter/compute precision of the training step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in f32 (default; the CPU path).
    Fp32,
    /// Model parameters and activations in bf16, fp32 master weights and AdamW moments in the
    /// optimizer (the GPU path; also runs on CPU, slowly).
    Bf16,
}

/// Every knob of the learner. Defaults follow spec §6 (the paper's run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerConfig {
    /// Peak AdamW learning rate. Default 1e-6.
    pub lr: f64,
    /// Linear warm-up steps (optimizer updates) to `lr`, then constant. Default 10.
    pub warmup_steps: u64,
    /// Decoupled weight decay, applied only to ≥ 2-D weights (not biases or norms). Default 0.1.
    pub weight_decay: f64,
    /// AdamW β1. Default 0.9.
    pub beta1: f64,
    /// AdamW β2. Default 0.999.
    pub beta2: f64,
    /// AdamW ε. Default 1e-8.
    pub adam_eps: f64,
    /// Global gradient-norm clip (0 = off). Default 1.0.
    pub grad_clip: f64,
    /// PPO lower clip ε_low: ρ ≥ 1 − clip_low. Default 0.2.
    pub clip_low: f64,
    /// PPO upper clip ε_high (clip-higher): ρ ≤ 1 + clip_high. Default 0.28.
    pub clip_high: f64,
    /// Dual-clip constant c: for A < 0 the loss is capped at −A·c (0 = off). Default 10.
    pub dual_clip: f64,
    /// Prompts (groups) per step. Default 256.
    pub prompts_per_step: usize,
    /// Trajectories per prompt the actors record (for sizing; groups may be smaller). Default 8.
    pub trajectories_per_prompt: usize,
    /// Optimizer updates per step: the step's prompts split into this many mini-batches. Default 8.
    pub mini_batches: usize,
    /// Sequences per micro-batch (gradient accumulation bounds memory). Default 8.
    pub micro_batch_size: usize,
    /// Also cap a micro-batch at this many padded tokens (sequences × longest); 0 = off. Default 0.
    pub micro_batch_tokens: usize,
    /// Passes over the step's data. Default 1.
    pub epochs: usize,
    /// Advantage normalisation. Default `mean`.
    pub adv_norm: AdvNorm,
    /// Loss aggregation. Default `token-mean`.
    pub loss_agg: LossAgg,
    /// Normaliser of `seq-mean-token-sum-norm` (0 = the mini-batch's longest response). Default 0.
    pub loss_norm_tokens: usize,
    /// Coefficient of the k3 KL to a frozen copy of the initial model (0 = off, no reference
    /// model kept). Default 0.
    pub kl_coef: f64,
    /// Truncated importance sampling against the actors' sampling log-probs: each token's loss is
    /// weighted by min(π_old/π_sampler, cap) (none = off). Default none.
    pub tis_cap: Option<f64>,
    /// Groups whose oldest policy version is more than this many versions behind the learner are
    /// dropped and counted. Default 4.
    pub max_staleness: u64,
    /// Drop (and count) groups in which no trajectory is correct before the step, like DAPO's
    /// dynamic sampling keeps only groups with signal. Default false (spec §6: an unsolved tree
    /// still trains: its intermediate segments score tanh(value) > −1 against μ ≈ −1, so they get
    /// a positive advantage). Small models at a high learning rate reinforce their own wrong
    /// lines that way and collapse; the embedded default sets it.
    pub drop_unsolved_groups: bool,
    /// Skip the optimizer update of a mini-batch whose reduced gradient is exactly zero (every
    /// advantage zero: no signal). AdamW would otherwise keep moving every weight along its
    /// momentum, about ten phantom updates per real one when most groups are all-wrong. Default
    /// true.
    pub skip_zero_grad_updates: bool,
    /// Positions per vocabulary-head chunk in log-prob recomputation. Default 256.
    pub logprob_chunk: i64,
    /// Checkpoints kept (older ones deleted). Default 3.
    pub keep_last: usize,
    /// Seed of the learner's RNG (mini-batch shuffling). Default 0.
    pub seed: u64,
    /// Shuffle prompts before splitting into mini-batches. Default true.
    pub shuffle: bool,
    /// Precision. Default `fp32`.
    pub precision: Precision,
    /// Deadline of every collective operation. Default "300s".
    #[serde(with = "humantime_serde")]
    pub collective_timeout: Duration,
    /// Elements per all-reduce bucket. Default 25M (100 MB of f32).
    pub bucket_elems: usize,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        LearnerConfig {
            lr: 1e-6,
            warmup_steps: 10,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            adam_eps: 1e-8,
            grad_clip: 1.0,
            clip_low: 0.2,
            clip_high: 0.28,
            dual_clip: 10.0,
            prompts_per_step: 256,
            trajectories_per_prompt: 8,
            mini_batches: 8,
            micro_batch_size: 8,
            micro_batch_tokens: 0,
            epochs: 1,
            adv_norm: AdvNorm::Mean,
            loss_agg: LossAgg::TokenMean,
            loss_norm_tokens: 0,
            kl_coef: 0.0,
            tis_cap: None,
            max_staleness: 4,
            drop_unsolved_groups: false,
            skip_zero_grad_updates: true,
            logprob_chunk: 256,
            keep_last: 3,
            seed: 0,
            shuffle: true,
            precision: Precision::Fp32,
            collective_timeout: Duration::from_secs(300),
            bucket_elems: 25_000_000,
        }
    }
}

impl LearnerConfig {
    /// A small CPU configuration: 4 prompts per step, 2 mini-batches, lr 1e-3, 1 warm-up step.
    pub fn for_test() -> Self {
        LearnerConfig {
            lr: 1e-3,
            warmup_steps: 1,
            prompts_per_step: 4,
            trajectories_per_prompt: 4,
            mini_batches: 2,
            micro_batch_size: 4,
            logprob_chunk: 16,
            keep_last: 2,
            collective_timeout: Duration::from_secs(20),
            bucket_elems: 4096,
            ..Default::default()
        }
    }

    /// Checks ranges; every entry point calls it.
    pub fn validate(&self) -> Result<()> {
        let pos = |field: &str, ok: bool, msg: &str| -> Result<()> {
            if ok {
                Ok(())
            } else {
                Err(LearnerError::config(field, msg))
            }
        };
        pos("lr", self.lr.is_finite() && self.lr > 0.0, "must be a positive number")?;
        pos(
            "weight_decay",
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "must be >= 0",
        )?;
        pos("beta1", (0.0..1.0).contains(&self.beta1), "must be in [0, 1)")?;
        pos("beta2", (0.0..1.0).contains(&self.beta2), "must be in [0, 1)")?;
        pos("adam_eps", self.adam_eps > 0.0, "must be positive")?;
        pos("grad_clip", self.grad_clip >= 0.0, "must be >= 0")?;
        pos("clip_low", (0.0..1.0).contains(&self.clip_low), "must be in [0, 1)")?;
        pos("clip_high", self.clip_high >= 0.0, "must be >= 0")?;
        pos(
            "dual_clip",
            self.dual_clip == 0.0 || self.dual_clip > 1.0,
            "must be 0 (off) or > 1",
        )?;
        pos("prompts_per_step", self.prompts_per_step > 0, "must be positive")?;
        pos("mini_batches", self.mini_batches > 0, "must be positive")?;
        pos("micro_batch_size", self.micro_batch_size > 0, "must be positive")?;
        pos("epochs", self.epochs > 0, "must be positive")?;
        pos("kl_coef", self.kl_coef >= 0.0, "must be >= 0")?;
        if let Some(c) = self.tis_cap {
            pos("tis_cap", c.is_finite() && c > 0.0, "must be positive")?;
        }
        pos("logprob_chunk", self.logprob_chunk > 0, "must be positive")?;
        pos("keep_last", self.keep_last > 0, "must be positive")?;
        pos("bucket_elems", self.bucket_elems > 0, "must be positive")?;
        pos(
            "collective_timeout",
            !self.collective_timeout.is_zero(),
            "must be positive",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_spec_and_unknown_fields_are_rejected() {
        let c = LearnerConfig::default();
        assert_eq!(
            (c.lr, c.warmup_steps, c.weight_decay, c.grad_clip),
            (1e-6, 10, 0.1, 1.0)
        );
        assert_eq!((c.clip_low, c.clip_high, c.dual_clip), (0.2, 0.28, 10.0));
        assert_eq!((c.prompts_per_step, c.mini_batches, c.epochs), (256, 8, 1));
        assert_eq!(c.kl_coef, 0.0);
        c.validate().unwrap();
        LearnerConfig::for_test().validate().unwrap();
        let v: LearnerConfig = serde_json::from_str(
            r#"{"lr": 2e-6, "loss_agg": "seq-mean-token-mean", "adv_norm": "mean_std", "collective_timeout": "5s"}"#,
        )
        .unwrap();
        assert_eq!(v.loss_agg, LossAgg::SeqMeanTokenMean);
        assert_eq!(v.collective_timeout, Duration::from_secs(5));
        let err = serde_json::from_str::<LearnerConfig>(r#"{"lrr": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lrr"), "{err}");
        let bad = LearnerConfig {
            clip_low: 1.5,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("clip_low"));
    }
}
