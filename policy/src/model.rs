//! Qwen2 decoder (GQA, RoPE, RMSNorm, q/k/v biases, SiLU MLP, tied or untied embeddings), in the
//! manner of candle's `qwen2.rs`: variable paths equal the Hugging Face weight names, so a
//! checkpoint loads without a converter, and the KV cache is an explicit value passed to
//! [`Qwen2::forward`] so a tree node can resume from its parent's prefix (spec §1). The same
//! forward serves the search actors (no grad, with cache) and the learner (with grad, no cache).
//!
//! The cache holds preallocated per-layer buffers that [`Qwen2::forward_into`] appends to in
//! place (growing them geometrically when full), so decoding costs O(new tokens) of cache writes
//! per step rather than a copy of the whole past; masked attention reads the keys and values
//! where they lie, without repeating them per query head (`Qwen2::attend`).

use crate::config::Qwen2Config;
use tch::{nn, Device, Kind, Tensor};

/// Keys and values of one layer, RoPE already applied: `[batch, kv_heads, capacity, head_dim]`
/// buffers of which the first [`KvCache::len`] positions hold data.
#[derive(Debug)]
pub struct LayerKv {
    k: Tensor,
    v: Tensor,
}

/// The KV cache of every layer for a batch of sequences of equal (padded) length.
///
/// The per-layer buffers are preallocated with room for `capacity` positions; appending
/// ([`Qwen2::forward_into`]) writes the new keys and values in place and attention reads the
/// `[.., 0..len, ..]` view, so a decode step costs O(new tokens) of cache traffic instead of
/// re-copying the whole past. When an append does not fit, the buffers grow geometrically
/// (at least doubling). A cache whose buffers are views of another tensor ([`KvCache::narrow`],
/// a prefix-cache hit) has capacity = length, so appending to it reallocates and never writes
/// into storage it shares.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    len: i64,
}

impl KvCache {
    /// An empty cache without buffers (they are taken from the first append).
    pub fn new() -> Self {
        KvCache::default()
    }

    /// An empty cache of `layers` zero-filled buffers `[batch, kv_heads, capacity, head_dim]`.
    pub fn zeros(layers: usize, dims: [i64; 4], options: (Kind, Device)) -> Self {
        let layers = (0..layers)
            .map(|_| LayerKv { k: Tensor::zeros(dims, options), v: Tensor::zeros(dims, options) })
            .collect();
        KvCache { layers, len: 0 }
    }

    /// A cache holding exactly the given per-layer `(k, v)`, each `[batch, kv_heads, len,
    /// head_dim]` with the same `len` (capacity = len; the tensors are not copied).
    pub fn from_layers(layers: Vec<(Tensor, Tensor)>) -> Self {
        let len = layers.first().map(|(k, _)| k.size()[2]).unwrap_or(0);
        debug_assert!(layers.iter().all(|(k, v)| k.size()[2] == len && v.size()[2] == len));
        KvCache { layers: layers.into_iter().map(|(k, v)| LayerKv { k, v }).collect(), len }
    }

    /// Cached sequence length (0 for an empty cache).
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the buffers hold before an append has to grow them.
    pub fn capacity(&self) -> i64 {
        self.layers.first().map(|l| l.k.size()[2]).unwrap_or(0)
    }

    /// Batch size of the cache (0 for a cache without buffers).
    pub fn batch(&self) -> i64 {
        self.layers.first().map(|l| l.k.size()[0]).unwrap_or(0)
    }

    /// Number of layers with buffers (0 before the first append).
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Layer `i`'s cached keys and values, views `[batch, kv_heads, len, head_dim]`.
    pub fn layer(&self, i: usize) -> (Tensor, Tensor) {
        let l = &self.layers[i];
        (l.k.narrow(2, 0, self.len), l.v.narrow(2, 0, self.len))
    }

    /// Sets the length to `len` ≤ capacity: shrinking forgets the tail; growing exposes positions
    /// whose contents are whatever the buffers hold there (zeros in a fresh [`KvCache::zeros`]).
    pub fn set_len(&mut self, len: i64) {
        assert!(
            (0..=self.capacity()).contains(&len),
            "kv cache length {len} outside capacity {}",
            self.capacity()
        );
        self.len = len;
    }

    /// Copies every row of `src` into rows `row..row + src.batch()` at positions
    /// `col..col + src.len()` (the length is not changed; see [`KvCache::set_len`]).
    pub fn write(&mut self, row: i64, col: i64, src: &KvCache) {
        let (b, n) = (src.batch(), src.len());
        assert!(col + n <= self.capacity(), "kv write past capacity");
        for (i, l) in self.layers.iter_mut().enumerate() {
            let (k, v) = src.layer(i);
            l.k.narrow(0, row, b).narrow(2, col, n).copy_(&k);
            l.v.narrow(0, row, b).narrow(2, col, n).copy_(&v);
        }
    }

    /// Makes room for `extra` more positions (growing to at least twice the capacity when the
    /// buffers must be reallocated) and returns the write offset (the current length).
    fn reserve(&mut self, extra: i64) -> i64 {
        let need = self.len + extra;
        let cap = self.capacity();
        if need > cap {
            let new_cap = need.max(2 * cap);
            for l in &mut self.layers {
                let len = self.len;
                let grow = |t: &Tensor| {
                    let mut dims = t.size();
                    dims[2] = new_cap;
                    let buf = Tensor::zeros(dims.as_slice(), (t.kind(), t.device()));
                    buf.narrow(2, 0, len).copy_(&t.narrow(2, 0, len));
                    buf
                };
                *l = LayerKv { k: grow(&l.k), v: grow(&l.v) };
            }
        }
        self.len
    }

    /// Keeps only the given batch rows (in that order; a row may repeat, e.g. to fan one prefix
    /// out to several samples). The copy keeps the capacity, so the rows can go on decoding in
    /// place.
    pub fn index_rows(&self, rows: &Tensor) -> KvCache {
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|l| LayerKv { k: l.k.index_select(0, rows), v: l.v.index_select(0, rows) })
                .collect(),
            len: self.len,
        }
    }

    /// Positions `[start, start + len)` of the sequence axis, as views (capacity = `len`).
    pub fn narrow(&self, start: i64, len: i64) -> KvCache {
        assert!(start >= 0 && start + len <= self.len, "kv narrow outside the cached length");
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|l| LayerKv { k: l.k.narrow(2, start, len), v: l.v.narrow(2, start, len) })
                .collect(),
            len,
        }
    }

    /// A deep copy of the cached positions that shares no storage with `self`, with room for
    /// `extra` more positions.
    pub fn copy_with_room(&self, extra: i64) -> KvCache {
        let mut out = KvCache { layers: Vec::with_capacity(self.layers.len()), len: self.len };
        for (i, l) in self.layers.iter().enumerate() {
            let (k, v) = self.layer(i);
            let mut dims = l.k.size();
            dims[2] = self.len + extra;
            let options = (k.kind(), k.device());
            let (kb, vb) = (Tensor::zeros(dims.as_slice(), options), Tensor::zeros(dims.as_slice(), options));
            kb.narrow(2, 0, self.len).copy_(&k.detach());
            vb.narrow(2, 0, self.len).copy_(&v.detach());
            out.layers.push(LayerKv { k: kb, v: vb });
        }
        out
    }

    /// A deep copy that shares no storage with `self` (no spare capacity).
    pub fn detach_copy(&self) -> KvCache {
        self.copy_with_room(0)
    }

    /// Bytes held by the cache's buffers (its capacity, not only its length).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.numel() + l.v.numel()) * l.k.kind().elt_size_in_bytes())
            .sum()
    }

    /// Appends layer `i`'s new keys and values `[batch, kv_heads, t, head_dim]` at `offset`
    /// (from [`KvCache::reserve`]; an empty cache adopts them as its buffers) and returns the
    /// views of the whole sequence `0..offset + t`.
    fn append(&mut self, i: usize, offset: i64, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        let t = k.size()[2];
        if i == self.layers.len() {
            debug_assert_eq!(offset, 0);
            self.layers.push(LayerKv { k, v });
        } else {
            let l = &self.layers[i];
            debug_assert_eq!(l.k.size()[0], k.size()[0], "kv cache batch differs from the input's");
            l.k.narrow(2, offset, t).copy_(&k);
            l.v.narrow(2, offset, t).copy_(&v);
        }
        let l = &self.layers[i];
        (l.k.narrow(2, 0, offset + t), l.v.narrow(2, 0, offset + t))
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
    ///
    /// `past` is left untouched, so a non-empty past is copied once into the returned cache;
    /// decoding loops should use [`Qwen2::forward_into`], which appends in place.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        past: Option<&KvCache>,
        mask: AttnMask<'_>,
    ) -> (Tensor, KvCache) {
        let t = input_ids.size().get(1).copied().unwrap_or(0);
        let mut cache = match past {
            Some(p) if !p.is_empty() => p.copy_with_room(t),
            _ => KvCache::new(),
        };
        let hidden = self.forward_into(input_ids, positions, &mut cache, mask);
        (hidden, cache)
    }

    /// [`Qwen2::forward`] that appends the new keys and values to `cache` in place (growing its
    /// buffers only when they are full) and returns the final-norm hidden states `[B, T, hidden]`.
    /// The cache's batch must equal the input's.
    pub fn forward_into(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        cache: &mut KvCache,
        mask: AttnMask<'_>,
    ) -> Tensor {
        let (b, t) = input_ids.size2().expect("input_ids must be [batch, len]");
        let past_len = cache.len();
        assert!(
            cache.num_layers() == 0 || cache.batch() == b,
            "kv cache batch {} differs from the input batch {b}",
            cache.batch()
        );
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
        let mask_t = mask_t.map(|m| self.prepare_mask(m, dtype, is_causal));
        let offset = cache.reserve(t);
        for (i, layer) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.input_norm, self.cfg.rms_norm_eps);
            let (q, k, v) = self.qkv(&layer.attn, &h, (b, t), &cos, &sin);
            let (k, v) = cache.append(i, offset, k, v);
            let attn_out = self.attend(&layer.attn, &q, &k, &v, (b, t), mask_t.as_ref(), is_causal);
            x = x + attn_out;
            let h = rms_norm(&x, &layer.post_norm, self.cfg.rms_norm_eps);
            let m = &layer.mlp;
            let act = h.linear::<Tensor>(&m.gate, None).silu() * h.linear::<Tensor>(&m.up, None);
            x = x + act.linear::<Tensor>(&m.down, None);
        }
        cache.len = offset + t;
        rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)
    }

    /// An empty cache for `batch` rows with room for `capacity` positions, in the model's dtype
    /// and on its device.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> KvCache {
        let dims = [batch, self.cfg.num_key_value_heads, capacity, self.cfg.head_dim()];
        KvCache::zeros(self.layers.len(), dims, (self.embed.kind(), self.embed.device()))
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

    /// Queries, keys and values of the new tokens, RoPE applied: `[B, heads, T, head_dim]`.
    fn qkv(&self, a: &Attention, x: &Tensor, (b, t): (i64, i64), cos: &Tensor, sin: &Tensor) -> (Tensor, Tensor, Tensor) {
        let d = self.cfg.head_dim();
        let (nh, nkv) = (self.cfg.num_attention_heads, self.cfg.num_key_value_heads);
        let q = x.linear(&a.q_w, Some(&a.q_b)).view([b, t, nh, d]).transpose(1, 2);
        let k = x.linear(&a.k_w, Some(&a.k_b)).view([b, t, nkv, d]).transpose(1, 2);
        let v = x.linear(&a.v_w, Some(&a.v_b)).view([b, t, nkv, d]).transpose(1, 2);
        (apply_rope(&q, cos, sin), apply_rope(&k, cos, sin), v)
    }

    /// Whether [`Qwen2::attend`] folds query-head groups into the query axis (see there).
    fn folds_groups(&self, is_causal: bool) -> bool {
        !is_causal && self.cfg.num_attention_heads != self.cfg.num_key_value_heads
    }

    /// The attention mask as SDPA gets it in every layer, built once per forward: additive
    /// (0 / −∞, in the activations' dtype) instead of boolean, which SDPA would convert in each
    /// layer, and with its query rows tiled per query-head group when [`Qwen2::attend`] folds
    /// the groups (a single query row broadcasts instead).
    fn prepare_mask(&self, m: &Tensor, dtype: Kind, is_causal: bool) -> Tensor {
        let group = self.cfg.num_attention_heads / self.cfg.num_key_value_heads;
        let m = if self.folds_groups(is_causal) && m.size()[2] != 1 {
            m.repeat([1, 1, group, 1])
        } else {
            m.shallow_clone()
        };
        if m.kind() == Kind::Bool {
            Tensor::zeros(m.size(), (dtype, m.device())).masked_fill(&m.logical_not(), f64::NEG_INFINITY)
        } else {
            m
        }
    }

    /// Attention of the new queries over keys/values `[B, kv_heads, P + T, head_dim]`, then the
    /// output projection; `mask` from [`Qwen2::prepare_mask`].
    ///
    /// Without SDPA's causal flag (every decode step and cached prefill), grouped-query
    /// attention folds each KV head's group of query heads into the query axis
    /// (`[B, kv_heads, group·T, head_dim]`) so the keys and values are read where they lie;
    /// SDPA's `enable_gqa` path repeats them per query head instead (a copy of the whole past
    /// every layer and step on CPU). The causal no-past path (prefill, training) keeps SDPA's
    /// own causal kernel.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        a: &Attention,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        (b, t): (i64, i64),
        mask: Option<&Tensor>,
        is_causal: bool,
    ) -> Tensor {
        let d = self.cfg.head_dim();
        let (nh, nkv) = (self.cfg.num_attention_heads, self.cfg.num_key_value_heads);
        let out = if self.folds_groups(is_causal) {
            // query row g·T + i of KV head j is query head j·group + g at token i
            let qf = q.reshape([b, nkv, nh / nkv * t, d]);
            Tensor::scaled_dot_product_attention(&qf, k, v, mask, 0.0, false, None::<f64>, false)
                .reshape([b, nh, t, d])
        } else {
            Tensor::scaled_dot_product_attention(q, k, v, mask, 0.0, is_causal, None::<f64>, nh != nkv)
        };
        let out = out.transpose(1, 2).reshape([b, t, nh * d]);
        out.linear::<Tensor>(&a.o_w, None)
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

    /// Decoding in place into a cache that starts too small (capacity 2, grown geometrically
    /// several times) gives the full forward's hidden states; a cache with room for everything
    /// never reallocates; `narrow` views are copied on append, not written through.
    #[test]
    fn in_place_cache_grown_past_its_capacity_matches_full_forward() {
        let (_vs, m) = tiny();
        let _g = tch::no_grad_guard();
        let n = 13;
        let ids = Tensor::from_slice(&(0..n).map(|i| (i * 7 + 3) % 50).collect::<Vec<i64>>()).view([1, n]);
        let pos = Tensor::arange(n, (Kind::Int64, tch::Device::Cpu)).view([1, n]);
        let (full, _) = m.forward(&ids, &pos, None, AttnMask::Causal);
        for cap in [2, n] {
            let mut cache = m.new_cache(1, cap);
            let h0 = m.forward_into(&ids.narrow(1, 0, 3), &pos.narrow(1, 0, 3), &mut cache, AttnMask::Causal);
            let mut parts = vec![h0];
            let mut caps = vec![cache.capacity()];
            for i in 3..n {
                let h = m.forward_into(&ids.narrow(1, i, 1), &pos.narrow(1, i, 1), &mut cache, AttnMask::Causal);
                parts.push(h);
                caps.push(cache.capacity());
            }
            let diff = (&full - Tensor::cat(&parts, 1)).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "capacity {cap}: max diff {diff}");
            assert_eq!(cache.len(), n);
            if cap == 2 {
                // 3 tokens into room for 2 → 4, then 8, then 16
                caps.dedup();
                assert_eq!(caps, vec![4, 8, 16]);
            } else {
                assert!(caps.iter().all(|&c| c == n), "{caps:?}");
            }
        }
        // a prefix view: appending to it must not touch the cache it was cut from
        let mut base = m.new_cache(1, n);
        let _ = m.forward_into(&ids, &pos, &mut base, AttnMask::Causal);
        let (k_before, _) = base.layer(0);
        let k_before = k_before.copy();
        let mut view = base.narrow(0, 5);
        assert_eq!(view.capacity(), 5);
        let h = m.forward_into(&ids.narrow(1, 7, 1), &pos.narrow(1, 5, 1), &mut view, AttnMask::Causal);
        assert_eq!(h.size(), vec![1, 1, m.cfg.hidden_size]);
        let (k_after, _) = base.layer(0);
        assert_eq!((k_after - k_before).abs().max().double_value(&[]), 0.0);
    }

    /// Grouped-query attention with a mask (the folded-query path) equals the causal SDPA path
    /// for a multi-token chunk after a past.
    #[test]
    fn masked_chunk_after_past_matches_causal_forward() {
        let (_vs, m) = tiny();
        assert_ne!(m.cfg.num_attention_heads, m.cfg.num_key_value_heads, "tiny config must use GQA");
        let _g = tch::no_grad_guard();
        let ids = Tensor::from_slice(&[5i64, 8, 13, 21, 34, 4, 9, 16]).view([2, 4]);
        let pos = Tensor::arange(4, (Kind::Int64, tch::Device::Cpu)).view([1, 4]).repeat([2, 1]);
        let (full, _) = m.forward(&ids, &pos, None, AttnMask::Causal);
        let mut cache = m.new_cache(2, 4);
        let _ = m.forward_into(&ids.narrow(1, 0, 1), &pos.narrow(1, 0, 1), &mut cache, AttnMask::Causal);
        let q = Tensor::arange(3, (Kind::Int64, tch::Device::Cpu)).view([3, 1]) + 1;
        let k = Tensor::arange(4, (Kind::Int64, tch::Device::Cpu)).view([1, 4]);
        let mask = k.le_tensor(&q).view([1, 1, 3, 4]).repeat([2, 1, 1, 1]);
        let h = m.forward_into(&ids.narrow(1, 1, 3), &pos.narrow(1, 1, 3), &mut cache, AttnMask::Custom(&mask));
        let diff = (full.narrow(1, 1, 3) - h).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max diff {diff}");
    }
}
