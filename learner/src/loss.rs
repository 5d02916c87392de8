//! The Tree-GRPO / GRPO objective as small pure pieces (spec §6). Host-side pieces work on slices
//! (advantages, aggregation weights); tensor pieces work on `[B, T]` tensors of any device and
//! never sync with the host.
//!
//! - advantage: `A_t = score_t − μ_x`, μ_x the mean terminal score of the prompt's group
//!   (option: divide by σ + 1e-6); a group of one has μ = 0.
//! - ratio: `ρ = exp(logπθ − logπold)`, π_old recomputed by the learner before the update.
//! - PPO with clip-higher and dual-clip:
//!   `L = max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high))`; if A < 0: `L = min(L, −A·c)`.
//! - optional k3 KL to a frozen reference: `exp(ref − logπθ) − (ref − logπθ) − 1`.
//! - optional truncated importance sampling (engine mismatch): weight `min(π_old / π_sampler, cap)`
//!   (detached), 1 for tokens without sampling log-probs (cached solutions).
//! - aggregation: the mini-batch loss is `Σ_t w_t · ℓ_t` with per-token weights `w_t` computed from
//!   GLOBAL counts (whole mini-batch, all ranks), so summing gradients over micro-batches and ranks
//!   gives exactly the gradient of the mini-batch loss.

use crate::config::{AdvNorm, LossAgg};
use tch::{Kind, Tensor};

/// Epsilon added to σ under `adv_norm = mean_std`.
pub const ADV_STD_EPS: f64 = 1e-6;

/// (μ, scale) of a group from its trajectories' terminal scores: `A = (score − μ) / scale`.
/// A group of one has μ = 0 and scale 1 (spec §6).
pub fn group_baseline(terminal_scores: &[f64], norm: AdvNorm) -> (f64, f64) {
    let n = terminal_scores.len();
    if n <= 1 {
        return (0.0, 1.0);
    }
    let mu = terminal_scores.iter().sum::<f64>() / n as f64;
    match norm {
        AdvNorm::Mean => (mu, 1.0),
        AdvNorm::MeanStd => {
            let var = terminal_scores.iter().map(|s| (s - mu).powi(2)).sum::<f64>() / (n - 1) as f64;
            (mu, var.sqrt() + ADV_STD_EPS)
        }
    }
}

/// Per-token advantages of one trajectory.
pub fn token_advantages(token_scores: &[f32], mu: f64, scale: f64) -> Vec<f32> {
    token_scores.iter().map(|&s| ((s as f64 - mu) / scale) as f32).collect()
}

/// Global counts of one mini-batch (all ranks) that fix the aggregation weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AggCounts {
    /// Valid (response) tokens in the mini-batch.
    pub tokens: usize,
    /// Sequences in the mini-batch.
    pub sequences: usize,
    /// Longest response of the mini-batch (the default `seq-mean-token-sum-norm` normaliser).
    pub max_len: usize,
}

impl AggCounts {
    /// Counts of a mini-batch from its response lengths.
    pub fn of(lens: &[usize]) -> Self {
        AggCounts {
            tokens: lens.iter().sum(),
            sequences: lens.len(),
            max_len: lens.iter().copied().max().unwrap_or(0),
        }
    }
}

/// The weight of every token of a response of `len` tokens under `agg`; the mini-batch loss is
/// `Σ w · ℓ` over all its tokens. `norm_tokens` is `seq-mean-token-sum-norm`'s constant (0 = the
/// mini-batch's longest response).
pub fn token_weight(agg: LossAgg, len: usize, counts: AggCounts, norm_tokens: usize) -> f64 {
    if len == 0 || counts.tokens == 0 {
        return 0.0;
    }
    match agg {
        LossAgg::TokenMean => 1.0 / counts.tokens as f64,
        LossAgg::SeqMeanTokenMean => 1.0 / (len as f64 * counts.sequences as f64),
        LossAgg::SeqMeanTokenSumNorm => {
            let norm = if norm_tokens > 0 { norm_tokens } else { counts.max_len };
            1.0 / (norm as f64 * counts.sequences as f64)
        }
    }
}

/// PPO clip parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipParams {
    pub low: f64,
    pub high: f64,
    /// 0 = off.
    pub dual: f64,
}

/// Per-token PPO loss with clip-higher and dual-clip (same shape as the inputs).
pub fn ppo_token_loss(logp: &Tensor, old_logp: &Tensor, adv: &Tensor, clip: ClipParams) -> Tensor {
    let ratio = (logp - old_logp).exp();
    let unclipped = -adv * &ratio;
    let clipped = -adv * ratio.clamp(1.0 - clip.low, 1.0 + clip.high);
    let loss = unclipped.maximum(&clipped);
    if clip.dual > 0.0 {
        // for A < 0 the loss is capped at −A·c (bounded push-down on very large ratios)
        let cap = -adv * clip.dual;
        let capped = loss.minimum(&cap);
        capped.where_self(&adv.lt(0.0), &loss)
    } else {
        loss
    }
}

/// k3 estimator of KL(πθ ‖ π_ref) per token: `exp(ref − logp) − (ref − logp) − 1` (≥ 0).
pub fn k3_kl(logp: &Tensor, ref_logp: &Tensor) -> Tensor {
    let d = ref_logp - logp;
    d.exp() - &d - 1.0
}

/// Truncated importance weights `min(exp(old − sampling), cap)`, 1 where `has_sampling` is 0.
/// Detached: a weight, not a gradient path.
pub fn tis_weights(old_logp: &Tensor, sampling_logp: &Tensor, has_sampling: &Tensor, cap: f64) -> Tensor {
    let w = (old_logp - sampling_logp).exp().clamp_max(cap).detach();
    w.where_self(&has_sampling.to_kind(Kind::Bool), &w.ones_like())
}

/// Inputs of [`policy_loss`], all `[B, T]` (padding positions have weight 0).
#[derive(Debug)]
pub struct LossInputs<'a> {
    pub logp: &'a Tensor,
    pub old_logp: &'a Tensor,
    pub adv: &'a Tensor,
    /// Aggregation weight per token ([`token_weight`]); 0 on padding.
    pub weight: &'a Tensor,
    pub ref_logp: Option<&'a Tensor>,
    /// (sampling log-probs, has-sampling mask) for truncated importance sampling.
    pub sampling: Option<(&'a Tensor, &'a Tensor)>,
}

/// Loss options of [`policy_loss`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossParams {
    pub clip: ClipParams,
    pub kl_coef: f64,
    pub tis_cap: Option<f64>,
}

/// The micro-batch's share of the mini-batch loss (a scalar with gradients) and the clipped
/// token count (a device scalar, summed by the caller without a sync).
pub fn policy_loss(x: &LossInputs<'_>, p: LossParams) -> (Tensor, Tensor) {
    let mut per_token = ppo_token_loss(x.logp, x.old_logp, x.adv, p.clip);
    if let (Some(cap), Some((samp, has))) = (p.tis_cap, x.sampling) {
        per_token *= tis_weights(x.old_logp, samp, has, cap);
    }
    if let (true, Some(r)) = (p.kl_coef > 0.0, x.ref_logp) {
        per_token += k3_kl(x.logp, r) * p.kl_coef;
    }
    let loss = (per_token * x.weight).sum(Kind::Float);
    let ratio = (x.logp - x.old_logp).exp().detach();
    let outside = ratio.lt(1.0 - p.clip.low).logical_or(&ratio.gt(1.0 + p.clip.high));
    let clipped = (outside.to_kind(Kind::Float) * x.weight.gt(0.0).to_kind(Kind::Float)).sum(Kind::Float);
    (loss, clipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    fn vals(x: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(x).unwrap()
    }

    #[test]
    fn baseline_by_hand() {
        // scores +1, -1, -1, +1.5 → μ = 0.125; unbiased σ² = (0.765625+1.265625+1.265625+1.890625)/3
        let s = [1.0, -1.0, -1.0, 1.5];
        let (mu, scale) = group_baseline(&s, AdvNorm::Mean);
        assert_eq!((mu, scale), (0.125, 1.0));
        let (_, sd) = group_baseline(&s, AdvNorm::MeanStd);
        assert!((sd - (5.1875f64 / 3.0).sqrt() - ADV_STD_EPS).abs() < 1e-12);
        assert_eq!(group_baseline(&[0.7], AdvNorm::MeanStd), (0.0, 1.0));
        assert_eq!(token_advantages(&[0.5, 1.0], 0.25, 1.0), vec![0.25, 0.75]);
    }

    #[test]
    fn ppo_clip_higher_and_dual_clip_by_hand() {
        let clip = ClipParams {
            low: 0.2,
            high: 0.28,
            dual: 10.0,
        };
        // ρ = e^{ln 2} = 2 with A = +1: clipped at 1.28 → L = max(−2, −1.28) = −1.28
        // ρ = 0.5 with A = +1: L = max(−0.5, −0.8) = −0.5
        // ρ = 20 with A = −1: max(20, 1.28) = 20 → dual-clip min(20, 10) = 10
        // ρ = 0.5 with A = −1: max(0.5, 0.8) = 0.8
        let logp = t(&[2f32.ln(), 0.5f32.ln(), 20f32.ln(), 0.5f32.ln()]);
        let old = t(&[0.0, 0.0, 0.0, 0.0]);
        let adv = t(&[1.0, 1.0, -1.0, -1.0]);
        let l = vals(&ppo_token_loss(&logp, &old, &adv, clip));
        for (a, b) in l.iter().zip([-1.28f32, -0.5, 10.0, 0.8]) {
            assert!((a - b).abs() < 1e-5, "{l:?}");
        }
        let no_dual = vals(&ppo_token_loss(&logp, &old, &adv, ClipParams { dual: 0.0, ..clip }));
        assert!((no_dual[2] - 20.0).abs() < 1e-4);
    }

    #[test]
    fn kl_tis_and_weights_by_hand() {
        // k3 with ref − logp = ln 2: 2 − ln 2 − 1
        let kl = vals(&k3_kl(&t(&[0.0]), &t(&[2f32.ln()])));
        assert!((kl[0] - (1.0 - 2f32.ln())).abs() < 1e-6);
        let w = vals(&tis_weights(
            &t(&[0.0, 0.0, 0.0]),
            &t(&[-1.0, 1.0, -5.0]),
            &t(&[1.0, 1.0, 0.0]),
            2.0,
        ));
        assert!((w[0] - 2.0).abs() < 1e-6 && (w[1] - (-1f32).exp()).abs() < 1e-6 && w[2] == 1.0);
        let c = AggCounts::of(&[2, 4]);
        assert_eq!(token_weight(LossAgg::TokenMean, 2, c, 0), 1.0 / 6.0);
        assert_eq!(token_weight(LossAgg::SeqMeanTokenMean, 2, c, 0), 1.0 / 4.0);
        assert_eq!(token_weight(LossAgg::SeqMeanTokenSumNorm, 2, c, 0), 1.0 / 8.0);
        assert_eq!(token_weight(LossAgg::SeqMeanTokenSumNorm, 2, c, 10), 1.0 / 20.0);
        assert_eq!(token_weight(LossAgg::TokenMean, 0, c, 0), 0.0);
    }
}
