//! Seeded, batched next-token sampling (spec §1: expansion samples at temperature 1.0, top_p 1.0;
//! style rule 12: a `Sampler` owns its RNG so any trajectory can be replayed).
//!
//! Determinism without a per-row torch generator: every sample owns a ChaCha stream derived from
//! (request seed, sample index) and draws one uniform `u ∈ [0, 1)` per step on the host. The device
//! turns the row's filtered distribution into a cumulative sum and picks the first token whose
//! cumulative weight exceeds `u · total` (inverse-CDF sampling). Only `B` floats go to the device
//! and `3·B` numbers come back per step, and a row's draw depends only on its own logits and its
//! own stream, so a result replays whatever else was in the batch.
//!
//! Whatever the sampling parameters, the reported log-prob and entropy are those of the
//! *untempered*, unfiltered model distribution (what the learner and the entropy-based terminal
//! choice of spec §3 need).

use crate::error::{PolicyError, Result};
use deepsearch_search::policy::SamplingParams;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// The random stream of one sample: ChaCha8 keyed by the request seed, stream = sample index.
#[derive(Clone, Debug)]
pub struct Sampler {
    rng: ChaCha8Rng,
}

impl Sampler {
    /// The stream of sample `index` of a request seeded with `seed`.
    pub fn for_sample(seed: u64, index: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        Sampler { rng }
    }

    /// The next uniform in `[0, 1)` (one per generated token, drawn even for greedy rows so the
    /// stream position only depends on the number of tokens generated).
    pub fn next_uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }
}

/// Checks one request's sampling parameters; the error names the offending field.
pub fn validate_params(p: &SamplingParams) -> Result<()> {
    let bad = |arg: &str, msg: String| Err(PolicyError::InvalidArgument { arg: arg.into(), msg });
    if p.temperature.is_nan() || p.temperature < 0.0 || !p.temperature.is_finite() {
        return bad("temperature", format!("must be finite and >= 0, got {}", p.temperature));
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return bad("top_p", format!("must be in (0, 1], got {}", p.top_p));
    }
    if p.stop.iter().any(|s| s.is_empty()) {
        return bad("stop", "stop strings must be non-empty".into());
    }
    Ok(())
}

/// Per-row sampling parameters of a batch, kept on the device.
#[derive(Debug)]
pub struct RowParams {
    /// `[B, 1]` f32: 1 / temperature (1 for greedy rows).
    inv_temp: Tensor,
    /// `[B, 1]` i64: top-k (vocab size when off).
    top_k: Tensor,
    /// `[B, 1]` f32.
    top_p: Tensor,
    /// `[B]` bool: temperature 0.
    greedy: Tensor,
    any_top_k: bool,
    any_top_p: bool,
    any_greedy: bool,
    all_greedy: bool,
}

impl RowParams {
    /// Builds the device tensors for rows with the given parameters (validated beforehand).
    pub fn new(rows: &[&SamplingParams], vocab: i64, device: Device) -> Self {
        let b = rows.len() as i64;
        let inv: Vec<f32> =
            rows.iter().map(|p| if p.temperature > 0.0 { 1.0 / p.temperature } else { 1.0 }).collect();
        let k: Vec<i64> = rows
            .iter()
            .map(|p| if p.top_k == 0 { vocab } else { (p.top_k as i64).min(vocab) })
            .collect();
        let tp: Vec<f32> = rows.iter().map(|p| p.top_p).collect();
        let greedy: Vec<bool> = rows.iter().map(|p| p.temperature == 0.0).collect();
        RowParams {
            inv_temp: Tensor::from_slice(&inv).view([b, 1]).to_device(device),
            top_k: Tensor::from_slice(&k).view([b, 1]).to_device(device),
            top_p: Tensor::from_slice(&tp).view([b, 1]).to_device(device),
            greedy: Tensor::from_slice(&greedy).to_device(device),
            any_top_k: k.iter().any(|&k| k < vocab),
            any_top_p: tp.iter().any(|&p| p < 1.0),
            any_greedy: greedy.iter().any(|&g| g),
            all_greedy: greedy.iter().all(|&g| g),
        }
    }

    /// Keeps the given rows (batch compaction), `rows` an i64 index tensor on the device.
    pub fn index_rows(&self, rows: &Tensor) -> Self {
        RowParams {
            inv_temp: self.inv_temp.index_select(0, rows),
            top_k: self.top_k.index_select(0, rows),
            top_p: self.top_p.index_select(0, rows),
            greedy: self.greedy.index_select(0, rows),
            ..*self
        }
    }
}

/// What one decoding step produced for every row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepOutput {
    pub tokens: Vec<u32>,
    /// ln π(token) under the untempered model.
    pub logprobs: Vec<f32>,
    /// Entropy (nats) of the untempered next-token distribution.
    pub entropies: Vec<f32>,
}

/// Samples one token per row from `logits` `[B, V]` (any float dtype) with one uniform per row.
/// One host sync: the `[B, 3]` result.
pub fn sample_step(logits: &Tensor, params: &RowParams, uniforms: &[f64]) -> StepOutput {
    let (b, v) = logits.size2().expect("logits must be [batch, vocab]");
    debug_assert_eq!(uniforms.len() as i64, b);
    let device = logits.device();
    let logits = logits.to_kind(Kind::Float);
    let logp = logits.log_softmax(-1, Kind::Float);
    let entropy = -(logp.exp() * &logp).sum_dim_intlist(-1, false, Kind::Float);
    let greedy_tok = if params.any_greedy { Some(logits.argmax(-1, false)) } else { None };
    let tokens = if params.all_greedy {
        greedy_tok.expect("all greedy rows have an argmax")
    } else {
        let u = Tensor::from_slice(uniforms).to_kind(Kind::Float).view([b, 1]).to_device(device);
        let z = &logits * &params.inv_temp;
        let sampled = if params.any_top_k || params.any_top_p {
            let (sorted, order) = z.sort(-1, true);
            let probs = sorted.softmax(-1, Kind::Float);
            let mut weights = probs.shallow_clone();
            if params.any_top_k {
                let rank = Tensor::arange(v, (Kind::Int64, device)).view([1, v]);
                weights *= rank.lt_tensor(&params.top_k).to_kind(Kind::Float);
            }
            if params.any_top_p {
                // keep a token while the mass strictly before it is below top_p (the first
                // token is always kept)
                let before = probs.cumsum(-1, Kind::Float) - &probs;
                weights *= before.lt_tensor(&params.top_p).to_kind(Kind::Float);
            }
            let pick = inverse_cdf(&weights, &u, v);
            order.gather(-1, &pick.unsqueeze(-1), false).squeeze_dim(-1)
        } else {
            inverse_cdf(&z.softmax(-1, Kind::Float), &u, v)
        };
        match greedy_tok {
            Some(g) => g.where_self(&params.greedy, &sampled),
            None => sampled,
        }
    };
    let token_logp = logp.gather(-1, &tokens.unsqueeze(-1), false).squeeze_dim(-1);
    let packed = Tensor::stack(
        &[tokens.to_kind(Kind::Double), token_logp.to_kind(Kind::Double), entropy.to_kind(Kind::Double)],
        1,
    )
    .to_device(Device::Cpu); // host sync: one per step
    let flat = Vec::<f64>::try_from(packed.view([-1])).expect("packed step output is f64");
    let mut out = StepOutput::default();
    for row in flat.chunks_exact(3) {
        out.tokens.push(row[0] as u32);
        out.logprobs.push(row[1] as f32);
        out.entropies.push(row[2] as f32);
    }
    out
}

/// Index of the first entry whose cumulative weight exceeds `u · total` per row. Zero-weight
/// entries are never chosen: their cumulative sum equals their predecessor's.
fn inverse_cdf(weights: &Tensor, u: &Tensor, v: i64) -> Tensor {
    let cdf = weights.cumsum(-1, Kind::Float);
    let total = cdf.narrow(-1, v - 1, 1);
    let threshold = u * total;
    cdf.le_tensor(&threshold).sum_dim_intlist(-1, false, Kind::Int64).clamp_max(v - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32, p: f32, k: usize) -> SamplingParams {
        SamplingParams { temperature: t, top_p: p, top_k: k, stop: vec![] }
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<f64> = (0..4).map(|_| Sampler::for_sample(7, 0).next_uniform()).collect();
        assert!(a.iter().all(|x| *x == a[0]));
        let mut s0 = Sampler::for_sample(7, 0);
        let mut s1 = Sampler::for_sample(7, 1);
        assert_ne!(s0.next_uniform(), s1.next_uniform());
    }

    #[test]
    fn inverse_cdf_picks_by_cumulative_mass() {
        // probabilities 0.1, 0.0, 0.6, 0.3: cdf 0.1, 0.1, 0.7, 1.0
        let logits = Tensor::from_slice(&[0.1f32, 0.0, 0.6, 0.3]).log().view([1, 4]);
        let rp = RowParams::new(&[&params(1.0, 1.0, 0)], 4, Device::Cpu);
        let pick = |u: f64| sample_step(&logits, &rp, &[u]).tokens[0];
        assert_eq!(pick(0.0), 0);
        assert_eq!(pick(0.05), 0);
        assert_eq!(pick(0.1), 2); // 0.1 is not > 0.1; the zero-mass token 1 is skipped
        assert_eq!(pick(0.69), 2);
        assert_eq!(pick(0.71), 3);
        assert_eq!(pick(0.9999), 3);
    }

    #[test]
    fn logprob_and_entropy_are_untempered() {
        // p = (0.5, 0.25, 0.25): H = 0.5 ln 2 + 2 * 0.25 ln 4 = 1.5 ln 2
        let logits = Tensor::from_slice(&[0.5f32, 0.25, 0.25]).log().view([1, 3]);
        let rp = RowParams::new(&[&params(0.3, 1.0, 0)], 3, Device::Cpu);
        let out = sample_step(&logits, &rp, &[0.0]);
        assert_eq!(out.tokens, vec![0]);
        assert!((out.logprobs[0] - 0.5f32.ln()).abs() < 1e-6);
        assert!((out.entropies[0] - 1.5 * 2f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn greedy_top_k_and_top_p_restrict_support() {
        // p = (0.1, 0.5, 0.15, 0.25)
        let logits = Tensor::from_slice(&[0.1f32, 0.5, 0.15, 0.25]).log().view([1, 4]);
        let greedy = RowParams::new(&[&params(0.0, 1.0, 0)], 4, Device::Cpu);
        let top2 = RowParams::new(&[&params(1.0, 1.0, 2)], 4, Device::Cpu);
        // sorted: 0.5 (1), 0.25 (3), 0.15 (2), 0.1 (0); mass before: 0, .5, .75, .9
        let topp = RowParams::new(&[&params(1.0, 0.7, 0)], 4, Device::Cpu);
        for i in 0..200 {
            let u = i as f64 / 200.0;
            assert_eq!(sample_step(&logits, &greedy, &[u]).tokens[0], 1);
            let t = sample_step(&logits, &top2, &[u]).tokens[0];
            assert!(t == 1 || t == 3, "top-k 2 sampled {t}");
            let t = sample_step(&logits, &topp, &[u]).tokens[0];
            assert!(t == 1 || t == 3, "top-p 0.7 sampled {t}");
        }
        // with u just under 2/3 of the renormalised top-2 mass the first token is taken
        assert_eq!(sample_step(&logits, &top2, &[0.66]).tokens[0], 1);
        assert_eq!(sample_step(&logits, &top2, &[0.67]).tokens[0], 3);
    }

    #[test]
    fn mixed_rows_keep_their_own_parameters() {
        let row = Tensor::from_slice(&[0.1f32, 0.5, 0.15, 0.25]).log().view([1, 4]);
        let logits = Tensor::cat(&[&row, &row], 0);
        let (g, s) = (params(0.0, 1.0, 0), params(1.0, 1.0, 0));
        let rp = RowParams::new(&[&s, &g], 4, Device::Cpu);
        // row 0 samples (cdf .1 .6 .75 1), row 1 is greedy
        let out = sample_step(&logits, &rp, &[0.99, 0.99]);
        assert_eq!(out.tokens, vec![3, 1]);
        let out = sample_step(&logits, &rp, &[0.5, 0.5]);
        assert_eq!(out.tokens, vec![1, 1]);
        // compaction keeps each row's parameters: the greedy row alone still takes the argmax
        let sub = rp.index_rows(&Tensor::from_slice(&[1i64]));
        assert_eq!(sample_step(&row, &sub, &[0.99]).tokens, vec![1]);
    }

    #[test]
    fn invalid_params_are_named() {
        let e = validate_params(&params(-1.0, 1.0, 0)).unwrap_err().to_string();
        assert!(e.contains("temperature"), "{e}");
        let e = validate_params(&params(1.0, 0.0, 0)).unwrap_err().to_string();
        assert!(e.contains("top_p"), "{e}");
    }
}
