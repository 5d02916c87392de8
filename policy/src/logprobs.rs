//! Per-token log-probabilities (and entropies) of given sequences, for training (spec §5/§6: the
//! learner needs ln π_θ(token) with gradients, and the old policy's values without).
//!
//! The decoder runs once over the whole `[B, T]` batch; the vocabulary head (lm_head, f32
//! log-softmax, gather) runs over chunks of `chunk_len` positions, so the `[B, T, V]` logits are
//! never materialised at once in the forward pass. Gradients flow through every chunk. Autograd
//! still keeps each chunk's `[B, chunk, V]` log-softmax output for the backward pass (tch has no
//! activation checkpointing), so chunking bounds the forward peak, not the saved activations.

use crate::error::{PolicyError, Result};
use crate::model::{AttnMask, Qwen2};
use tch::{Kind, Tensor};

/// How to compute token log-probs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogprobOptions {
    /// Positions per vocabulary-head chunk (≥ 1). Default 256.
    pub chunk_len: i64,
    /// Also return the entropy of the full next-token distribution. Default false.
    pub entropy: bool,
}

impl Default for LogprobOptions {
    fn default() -> Self {
        LogprobOptions { chunk_len: 256, entropy: false }
    }
}

/// Result of [`token_logprobs`]; both `[B, T-1]` f32, zero where the target is padding.
#[derive(Debug)]
pub struct TokenLogprobs {
    /// `logprobs[b, t] = ln π(ids[b, t+1] | ids[b, ..=t])`.
    pub logprobs: Tensor,
    /// Entropy (nats) of π(· | ids[b, ..=t]); present when asked for.
    pub entropies: Option<Tensor>,
}

/// Log-probs of `ids` `[B, T]` (right-padded; `mask` `[B, T]`, nonzero = real token) under
/// `model`, with gradients when grad mode is on.
pub fn token_logprobs(model: &Qwen2, ids: &Tensor, mask: &Tensor, opts: LogprobOptions) -> Result<TokenLogprobs> {
    let (b, t) = ids.size2().map_err(|_| shape_err("ids", "must be [batch, len]", ids))?;
    if mask.size() != [b, t] {
        return Err(shape_err("mask", "must have the shape of ids", mask));
    }
    if t < 2 {
        return Err(shape_err("ids", "needs at least 2 positions", ids));
    }
    if opts.chunk_len < 1 {
        return Err(PolicyError::InvalidArgument {
            arg: "chunk_len".into(),
            msg: format!("must be >= 1, got {}", opts.chunk_len),
        });
    }
    let mask = mask.to_kind(Kind::Bool);
    // padding ids may be anything (e.g. -100): embed id 0 there; right padding is never
    // attended to by real tokens under the causal mask
    let ids = ids.where_self(&mask, &ids.zeros_like());
    let positions = Tensor::arange(t, (Kind::Int64, ids.device())).view([1, t]).expand([b, t], false);
    let (hidden, _) = model.forward(&ids, &positions, None, AttnMask::Causal);
    let targets = ids.narrow(1, 1, t - 1);
    let target_mask = mask.narrow(1, 1, t - 1).to_kind(Kind::Float);
    let mut lps = Vec::new();
    let mut ents = Vec::new();
    let mut start = 0;
    while start < t - 1 {
        let len = opts.chunk_len.min(t - 1 - start);
        let logits = model.logits(&hidden.narrow(1, start, len)).to_kind(Kind::Float);
        let logp = logits.log_softmax(-1, Kind::Float);
        let tgt = targets.narrow(1, start, len).unsqueeze(-1);
        lps.push(logp.gather(-1, &tgt, false).squeeze_dim(-1));
        if opts.entropy {
            ents.push(-(logp.exp() * &logp).sum_dim_intlist(-1, false, Kind::Float));
        }
        start += len;
    }
    let logprobs = Tensor::cat(&lps, 1) * &target_mask;
    let entropies = opts.entropy.then(|| Tensor::cat(&ents, 1) * &target_mask);
    Ok(TokenLogprobs { logprobs, entropies })
}

/// [`token_logprobs`] without building a graph (the sampling policy's "old" log-probs).
pub fn token_logprobs_no_grad(
    model: &Qwen2,
    ids: &Tensor,
    mask: &Tensor,
    opts: LogprobOptions,
) -> Result<TokenLogprobs> {
    let _guard = tch::no_grad_guard();
    token_logprobs(model, ids, mask, opts)
}

fn shape_err(arg: &str, msg: &str, t: &Tensor) -> PolicyError {
    PolicyError::InvalidArgument { arg: arg.into(), msg: format!("{msg}, got shape {:?}", t.size()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Qwen2Config;
    use tch::nn;

    fn batch() -> (Tensor, Tensor) {
        let ids = Tensor::from_slice(&[3i64, 7, 1, 9, 4, 4, 2, 5, 11, 6, -100, -100, -100, -100])
            .view([2, 7]);
        let mask = ids.ge(0);
        (ids, mask)
    }

    #[test]
    fn chunked_equals_unchunked_values_and_gradients() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let m = Qwen2::new(&vs.root(), &Qwen2Config::tiny(40));
        let (ids, mask) = batch();
        let run = |chunk: i64| {
            for mut v in vs.trainable_variables() {
                v.zero_grad();
            }
            let opts = LogprobOptions { chunk_len: chunk, entropy: true };
            let out = token_logprobs(&m, &ids, &mask, opts).unwrap();
            let ent = out.entropies.unwrap();
            (out.logprobs.sum(Kind::Float) + ent.sum(Kind::Float) * 0.1).backward();
            let grads: Vec<Tensor> = vs.trainable_variables().iter().map(|v| v.grad().copy()).collect();
            (out.logprobs.detach(), ent.detach(), grads)
        };
        let (lp1, e1, g1) = run(1000);
        let (lp2, e2, g2) = run(2);
        assert!((lp1.shallow_clone() - lp2).abs().max().double_value(&[]) < 1e-6);
        assert!((e1 - e2).abs().max().double_value(&[]) < 1e-6);
        for (a, b) in g1.iter().zip(&g2) {
            assert!((a - b).abs().max().double_value(&[]) < 1e-6);
        }
        // padding targets are zero, real ones negative
        assert_eq!(lp1.double_value(&[1, 5]), 0.0);
        assert_eq!(lp1.double_value(&[1, 2]), 0.0);
        assert!(lp1.double_value(&[1, 1]) < 0.0);
    }

    #[test]
    fn matches_a_plain_forward_and_no_grad_has_no_graph() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let m = Qwen2::new(&vs.root(), &Qwen2Config::tiny(40));
        let (ids, mask) = batch();
        let out = token_logprobs_no_grad(&m, &ids, &mask, LogprobOptions::default()).unwrap();
        assert!(!out.logprobs.requires_grad());
        let row = ids.narrow(0, 0, 1);
        let pos = Tensor::arange(7, (Kind::Int64, tch::Device::Cpu)).view([1, 7]);
        let (h, _) = m.forward(&row, &pos, None, AttnMask::Causal);
        let logp = m.logits(&h).log_softmax(-1, Kind::Float);
        for t in 0..6 {
            let want = logp.double_value(&[0, t, ids.int64_value(&[0, t + 1])]);
            assert!((out.logprobs.double_value(&[0, t]) - want).abs() < 1e-5);
        }
        let e = token_logprobs(&m, &ids, &mask.narrow(1, 0, 3), LogprobOptions::default());
        assert!(e.unwrap_err().to_string().contains("mask"));
        let e = token_logprobs(&m, &ids.narrow(1, 0, 1), &mask.narrow(1, 0, 1), LogprobOptions::default());
        assert!(e.unwrap_err().to_string().contains("ids"));
    }
}
