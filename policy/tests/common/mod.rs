//! Helpers shared by the policy integration tests: fixture paths, a greedy decoder written
//! directly against `Qwen2::forward` + `KvCache` (independent of the engine), tiny models.
#![allow(dead_code)]

use deepsearch_policy::{AttnMask, KvCache, PolicyModel, PolicyTokenizer, Qwen2, Qwen2Config};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// `policy/tests/fixtures/parity/<name>` (written by gen_parity.py).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(name)
}

/// The fixture's reference.json.
pub fn reference(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn ids_of(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

pub fn floats_of(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Logits `[T, V]` (f32) of one unpadded sequence.
pub fn logits_of(model: &Qwen2, ids: &[i64]) -> Tensor {
    let t = ids.len() as i64;
    let input = Tensor::from_slice(ids).view([1, t]);
    let pos = Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([1, t]);
    tch::no_grad(|| {
        let (h, _) = model.forward(&input, &pos, None, AttnMask::Causal);
        model.logits(&h).squeeze_dim(0).to_kind(Kind::Float)
    })
}

/// Greedy decoding with the KV cache: returns the new tokens and, for each, the
/// log-softmax row it was chosen from (f64, `[n, V]`).
pub fn greedy(model: &Qwen2, prompt: &[i64], n: usize) -> (Vec<i64>, Tensor) {
    tch::no_grad(|| {
        let t = prompt.len() as i64;
        let input = Tensor::from_slice(prompt).view([1, t]);
        let pos = Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([1, t]);
        let (h, mut cache): (Tensor, KvCache) = model.forward(&input, &pos, None, AttnMask::Causal);
        let mut last = model.logits(&h.narrow(1, t - 1, 1)).view([-1]).to_kind(Kind::Double);
        let (mut out, mut rows) = (Vec::new(), Vec::new());
        for step in 0..n {
            let next = last.argmax(0, false).int64_value(&[]);
            rows.push(last.log_softmax(-1, Kind::Double));
            out.push(next);
            if step + 1 == n {
                break;
            }
            let input = Tensor::from_slice(&[next]).view([1, 1]);
            let pos = Tensor::from_slice(&[t + step as i64]).view([1, 1]);
            // in place: the prefill's cache has room for the prompt only, so it grows
            let h = model.forward_into(&input, &pos, &mut cache, AttnMask::Causal);
            last = model.logits(&h).view([-1]).to_kind(Kind::Double);
        }
        (out, Tensor::stack(&rows, 0))
    })
}

/// Left-pads `rows` with `pad` and returns `(ids [B, W], valid [B, W] bool, positions [B, W])`
/// with positions = cumsum(valid) - 1 clamped at 0, as transformers computes them.
pub fn left_pad(rows: &[Vec<i64>], pad: i64) -> (Tensor, Tensor, Tensor) {
    let w = rows.iter().map(|r| r.len()).max().unwrap();
    let mut ids = Vec::new();
    let mut valid = Vec::new();
    for r in rows {
        ids.extend(std::iter::repeat_n(pad, w - r.len()).chain(r.iter().copied()));
        valid.extend(std::iter::repeat_n(false, w - r.len()).chain(std::iter::repeat_n(true, r.len())));
    }
    let b = rows.len() as i64;
    let ids = Tensor::from_slice(&ids).view([b, w as i64]);
    let valid = Tensor::from_slice(&valid).view([b, w as i64]);
    let pos = (valid.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0);
    (ids, valid, pos)
}

/// `[B, 1, Tq, Tk]` mask: causal (query i at absolute key index `offset + i`) and key valid;
/// every query also sees itself so padded rows have a key.
pub fn padded_causal_mask(valid: &Tensor, offset: i64, tq: i64) -> Tensor {
    let tk = valid.size()[1];
    let q = Tensor::arange(tq, (Kind::Int64, Device::Cpu)).view([tq, 1]) + offset;
    let k = Tensor::arange(tk, (Kind::Int64, Device::Cpu)).view([1, tk]);
    let causal = k.le_tensor(&q).view([1, 1, tq, tk]);
    let diag = k.eq_tensor(&q).view([1, 1, tq, tk]);
    let keys = valid.view([valid.size()[0], 1, 1, tk]);
    causal.logical_and(&keys).logical_or(&diag)
}

/// A tiny random model with a char tokenizer (vocab padded above the tokenizer size).
pub fn tiny_model(tied: bool, seed: u64) -> PolicyModel {
    let tok = PolicyTokenizer::char_level("0123456789+-*/=() \nabc×").unwrap();
    let mut cfg = Qwen2Config::tiny(40);
    cfg.tie_word_embeddings = tied;
    cfg.rope_theta = 1e6;
    PolicyModel::init_random(&cfg, tok, seed).unwrap()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}
