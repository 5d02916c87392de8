//! Qwen2 decoder (GQA, RoPE, RMSNorm, q/k/v biases, SiLU MLP, tied or untied embeddings), in the
//! manner of candle's `qwen2.rs`: variable paths equal the Hugging Face weight names, so a
//! checkpoint loads without a converter, and the KV cache is an explicit value passed to
//! [`Qwen2::forward`] so a tree node can resume from its parent's prefix (spec §1). The same
//! forward serves the search actors (no grad, with cache) and the learner (with grad, no cache).

use crate::config::Qwen2Config;
use tch::{nn, Kind, Tensor};

/// Keys and values of one layer, RoPE already applied: `[batch, kv_heads, len, head_dim]`.
#[derive(Debug)]
pub struct LayerKv {
    pub k: Tensor,
    pub v: Tensor,
}

/// The KV cache of every layer for a batch of sequences of equal (padded) length.
#[derive(Debug, Default)]
pub struct KvCache {
    pub layers: Vec<LayerKv>,
}

impl KvCache {
    /// Cached sequence length (0 for an empty cache).
    pub fn len(&self) -> i64 {
        self.layers.first().map(|l| l.k.size()[2]).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batch size of the cache (0 for an empty cache).
    pub fn batch(&self) -> i64 {
        self.layers.first().map(|l| l.k.size()[0]).unwrap_or(0)
    }

    /// Keeps only the given batch rows (in that order; a row may repeat, e.g. to fan one prefix
    /// out to several samples).
    pub fn index_rows(&self, rows: &Tensor) -> KvCache {
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|l| LayerKv { k: l.k.index_select(0, rows), v: l.v.index_select(0, rows) })
                .collect(),
        }
    }

    /// Positions `[start, start + len)` of the sequence axis.
    pub fn narrow(&self, start: i64, len: i64) -> KvCache {
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|l| LayerKv { k: l.k.narrow(2, start, len), v: l.v.narrow(2, start, len) })
                .collect(),
        }
    }

    /// A deep copy that shares no storage with `self`.
    pub fn detach_copy(&self) -> KvCache {
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|l| LayerKv { k: l.k.detach().copy(), v: l.v.detach().copy() })
                .collect(),
        }
    }

    /// Bytes held by the cache.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.numel() + l.v.numel()) * l.k.kind().elt_size_in_bytes())
            .sum()
    }
}

/// Which attention pattern the new tokens use.
#[derive(Debug)]
pub enum AttnMask<'a> {
    /// Causal over past ⊕ new tokens, no padding: new token i sees every past token and new
    /// tokens 0..=i.
    Causal,
    /// A boolean mask `[batch, 1, new_len, past_len + new_len]`, true = may attend. Every query
    /// row must allow at least one key (padded rows: let them attend to themselves).
    Custom(&'a Tensor),
}

#[derive(Debug)]
struct Attention {
    q_w: Tensor,
    q_b: Tensor,
    k_w: Tensor,
    k_b: Tensor,
    v_w: Tensor,
    v_b: Tensor,
    o_w: Tensor,
}

#[derive(Debug)]
struct Mlp {
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

#[derive(Debug)]
struct Layer {
    attn: Attention,
    mlp: Mlp,
    input_norm: Tensor,
    post_norm: Tensor,
}

/// A Qwen2 causal language model whose weights live in a `VarStore`.
#[derive(Debug)]
pub struct Qwen2 {
    pub cfg: Qwen2Config,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    inv_freq: Tensor,
}

fn linear_weight(p: &nn::Path, out_dim: i64, in_dim: i64, std: f64) -> Tensor {
    p.var("weight", &[out_dim, in_dim], nn::Init::Randn { mean: 0.0, stdev: std })
}

impl Qwen2 {
    /// Creates the variables under `root` (randomly initialised as HF does: normal(0, init
    /// range), norms at 1, biases at 0); load a checkpoint into the VarStore afterwards.
    pub fn new(root: &nn::Path, cfg: &Qwen2Config) -> Self {
        let std = cfg.initializer_range;
        let (h, d) = (cfg.hidden_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let model = root / "model";
        let embed = (&model / "embed_tokens").var(
            "weight",
            &[cfg.vocab_size, h],
            nn::Init::Randn { mean: 0.0, stdev: std },
        );
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let lp = &model / "layers" / i;
                let ap = &lp / "self_attn";
                let bias = |p: nn::Path, n: i64| p.var("bias", &[n], nn::Init::Const(0.0));
                let attn = Attention {
                    q_w: linear_weight(&(&ap / "q_proj"), nh * d, h, std),
                    q_b: bias(&ap / "q_proj", nh * d),
                    k_w: linear_weight(&(&ap / "k_proj"), nkv * d, h, std),
                    k_b: bias(&ap / "k_proj", nkv * d),
                    v_w: linear_weight(&(&ap / "v_proj"), nkv * d, h, std),
                    v_b: bias(&ap / "v_proj", nkv * d),
                    o_w: linear_weight(&(&ap / "o_proj"), h, nh * d, std),
                };
                let mp = &lp / "mlp";
                let i_dim = cfg.intermediate_size;
                let mlp = Mlp {
                    gate: linear_weight(&(&mp / "gate_proj"), i_dim, h, std),
                    up: linear_weight(&(&mp / "up_proj"), i_dim, h, std),
                    down: linear_weight(&(&mp / "down_proj"), h, i_dim, std),
                };
                let norm = |name: &str| (&lp / name).var("weight", &[h], nn::Init::Const(1.0));
                Layer {
                    attn,
                    mlp,
                    input_norm: norm("input_layernorm"),
                    post_norm: norm("post_attention_layernorm"),
                }
            })
            .collect();
        let norm = (&model / "norm").var("weight", &[h], nn::Init::Const(1.0));
        let lm_head = (!cfg.tie_word_embeddings)
            .then(|| linear_weight(&(root / "lm_head"), cfg.vocab_size, h, std));
        // inv_freq[i] = theta^(-2i/d), kept in f32 on the model's device (HF computes it in f32).
        let exps = Tensor::arange_start_step(0, d, 2, (Kind::Float, root.device())) / (d as f64);
        let inv_freq = (exps * (-cfg.rope_theta.ln())).exp();
        Qwen2 { cfg: cfg.clone(), embed, layers, norm, lm_head, inv_freq }
    }

    /// Runs the decoder on `input_ids` `[B, T]` at `positions` `[B, T]` (RoPE positions; with a
    /// left-padded batch they differ per row), after the cached `past` (len P, may be empty).
    /// Returns the final-norm hidden states `[B, T, hidden]` and the cache extended to P + T.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        past: Option<&KvCache>,
        mask: AttnMask<'_>,
    ) -> (Tensor, KvCache) {
        let (b, t) = input_ids.size2().expect("input_ids must be [batch, len]");
        let past_len = past.map(|p| p.len()).unwrap_or(0);
        let mut x = Tensor::embedding(&self.embed, input_ids, -1, false, false);
        let dtype = x.kind();
        let (cos, sin) = self.rope_tables(positions, dtype);
        // Causal with a past must be spelled out: SDPA's is_causal aligns top-left.
        let built_mask;
        let (mask_t, is_causal) = match mask {
            AttnMask::Causal if past_len == 0 => (None, t > 1),
            AttnMask::Causal => {
                let q = Tensor::arange(t, (Kind::Int64, x.device())).unsqueeze(1) + past_len;
                let k = Tensor::arange(past_len + t, (Kind::Int64, x.device())).unsqueeze(0);
                built_mask = k.le_tensor(&q).view([1, 1, t, past_len + t]);
                (Some(&built_mask), false)
            }
            AttnMask::Custom(m) => (Some(m), false),
        };
        let mut new_cache = KvCache { layers: Vec::with_capacity(self.layers.len()) };
        for (i, layer) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.input_norm, self.cfg.rms_norm_eps);
            let layer_past = past.and_then(|p| p.layers.get(i));
            let (attn_out, kv) =
                self.attention(&layer.attn, &h, (b, t), &cos, &sin, layer_past, mask_t, is_causal);
            x = x + attn_out;
            let h = rms_norm(&x, &layer.post_norm, self.cfg.rms_norm_eps);
            let m = &layer.mlp;
            let act = h.linear::<Tensor>(&m.gate, None).silu() * h.linear::<Tensor>(&m.up, None);
            x = x + act.linear::<Tensor>(&m.down, None);
            new_cache.layers.push(kv);
        }
        (rms_norm(&x, &self.norm, self.cfg.rms_norm_eps), new_cache)
    }

    /// Vocabulary logits for hidden states `[.., hidden]` → `[.., vocab]`.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden.linear::<Tensor>(self.lm_head.as_ref().unwrap_or(&self.embed), None)
    }

    /// `cos`, `sin` of shape `[B, 1, T, head_dim]` (HF's rotate-half layout: the frequency
    /// table concatenated with itself).
    fn rope_tables(&self, positions: &Tensor, dtype: Kind) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        (emb.cos().to_kind(dtype), emb.sin().to_kind(dtype))
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        a: &Attention,
        x: &Tensor,
        (b, t): (i64, i64),
        cos: &Tensor,
        sin: &Tensor,
        past: Option<&LayerKv>,
        mask: Option<&Tensor>,
        is_causal: bool,
    ) -> (Tensor, LayerKv) {
        let d = self.cfg.head_dim();
        let (nh, nkv) = (self.cfg.num_attention_heads, self.cfg.num_key_value_heads);
        let q = x.linear(&a.q_w, Some(&a.q_b)).view([b, t, nh, d]).transpose(1, 2);
        let k = x.linear(&a.k_w, Some(&a.k_b)).view([b, t, nkv, d]).transpose(1, 2);
        let v = x.linear(&a.v_w, Some(&a.v_b)).view([b, t, nkv, d]).transpose(1, 2);
        let q = apply_rope(&q, cos, sin);
        let k = apply_rope(&k, cos, sin);
        let (k, v) = match past {
            Some(p) => (Tensor::cat(&[&p.k, &k], 2), Tensor::cat(&[&p.v, &v], 2)),
            None => (k, v),
        };
        let out = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            mask,
            0.0,
            is_causal,
            None::<f64>,
            nh != nkv,
        );
        let out = out.transpose(1, 2).reshape([b, t, nh * d]);
        (out.linear::<Tensor>(&a.o_w, None), LayerKv { k, v })
    }
}

/// RMSNorm computed in f32 and cast back, as HF Qwen2 does.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    let dtype = x.kind();
    let xf = x.to_kind(Kind::Float);
    let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
    let normed = (xf * (var + eps).rsqrt()).to_kind(dtype);
    normed * weight
}

fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size().last().copied().unwrap_or(0) / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    Tensor::cat(&[&x2.neg(), &x1], -1)
}

fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    x * cos + rotate_half(x) * sin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (nn::VarStore, Qwen2) {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let m = Qwen2::new(&vs.root(), &Qwen2Config::tiny(50));
        (vs, m)
    }

    #[test]
    fn incremental_decoding_matches_full_forward() {
        let (_vs, m) = tiny();
        let ids = Tensor::from_slice(&[3i64, 7, 1, 9, 4, 4, 2]).view([1, 7]);
        let pos = Tensor::arange(7, (Kind::Int64, tch::Device::Cpu)).view([1, 7]);
        let (full, _) = m.forward(&ids, &pos, None, AttnMask::Causal);
        // prefix of 4, then 3 single tokens
        let (h0, mut cache) = m.forward(&ids.narrow(1, 0, 4), &pos.narrow(1, 0, 4), None, AttnMask::Causal);
        let mut parts = vec![h0];
        for i in 4..7 {
            let (h, c) = m.forward(&ids.narrow(1, i, 1), &pos.narrow(1, i, 1), Some(&cache), AttnMask::Causal);
            parts.push(h);
            cache = c;
        }
        let inc = Tensor::cat(&parts, 1);
        let diff = (full - inc).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max diff {diff}");
        assert_eq!(cache.len(), 7);
        // a chunk of 2 after a past of 5 (causal with offset)
        let (_, c5) = m.forward(&ids.narrow(1, 0, 5), &pos.narrow(1, 0, 5), None, AttnMask::Causal);
        let (h2, _) = m.forward(&ids.narrow(1, 5, 2), &pos.narrow(1, 5, 2), Some(&c5), AttnMask::Causal);
        let (full2, _) = m.forward(&ids, &pos, None, AttnMask::Causal);
        let diff = (full2.narrow(1, 5, 2) - h2).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max diff {diff}");
    }
}
