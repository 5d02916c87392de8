//! The batched device work of one [`Engine::generate`] call: prefill of the uncached suffixes,
//! fan-out to samples, step-by-step decoding of every row.
//!
//! Column layout of the batch KV (`L0 = Cmax + Smax` prefill columns, then one per step):
//!
//! ```text
//! | pad | cached prefix (c_i) | pad | suffix (s_i) | decoded tokens ... |
//! 0     Cmax-c_i              Cmax  Cmax+Smax-s_i  L0
//! ```
//!
//! `valid [B, L]` marks each row's real keys; the attention mask is `valid` (and, in prefill,
//! causal over the suffix). A padded query attends to itself only, so no softmax row is empty.

use super::{Engine, GenRequest, PrefixKey, Segment};
use crate::engine::cache::CacheHit;
use crate::engine::stop::StopState;
use crate::engine::Finish;
use crate::model::{AttnMask, KvCache, LayerKv};
use crate::sampler::{sample_step, RowParams, Sampler};
use tch::{Kind, Tensor};

/// A request that generates: its index in the call and its token budget (≥ 1).
#[derive(Debug)]
pub(super) struct Live {
    pub req: usize,
    pub budget: usize,
}

/// The prefill of every live request (one row each).
struct Prefill {
    /// `[R, hidden]`: final hidden state at each request's last prompt token.
    last_hidden: Tensor,
    kv: KvCache,
    /// `[R, L0]` bool.
    valid: Tensor,
    /// Per request, the KV columns of its prompt tokens, in order.
    cols: Vec<Vec<i64>>,
    width: i64,
}

/// One generated row (a sample of a request).
struct Row {
    slot: usize,
    sampler: Sampler,
    seg: Segment,
    stop: StopState,
    budget: usize,
    prompt_len: usize,
}

impl Engine {
    pub(super) fn run_batch(&mut self, reqs: &[GenRequest<'_>], live: &[Live]) -> Vec<Vec<Segment>> {
        let _no_grad = tch::no_grad_guard();
        let hits: Vec<Option<CacheHit>> = live
            .iter()
            .map(|l| {
                let r = &reqs[l.req];
                if !self.cache.enabled() {
                    return None;
                }
                let keys: Vec<PrefixKey> = r.reuse.iter().chain(r.key.iter()).copied().collect();
                self.cache.lookup(&keys, r.tokens, r.tokens.len() - 1)
            })
            .collect();
        let cached: Vec<usize> = hits.iter().map(|h| h.as_ref().map_or(0, |h| h.len)).collect();
        let reused = cached.iter().sum::<usize>();
        let total: usize = live.iter().map(|l| reqs[l.req].tokens.len()).sum();
        self.stats.batches += 1;
        self.stats.reused_tokens += reused as u64;
        self.stats.prefill_tokens += (total - reused) as u64;
        tracing::debug!(requests = live.len(), reused, prefill = total - reused, "prefill");
        let pre = self.prefill(reqs, live, hits);
        if self.cache.enabled() {
            for (slot, l) in live.iter().enumerate() {
                if let Some(key) = reqs[l.req].key {
                    let kv = extract_row(&pre.kv, slot as i64, &pre.cols[slot], self.device);
                    self.cache.insert(key, reqs[l.req].tokens.to_vec(), kv);
                }
            }
        }
        self.decode_rows(reqs, live, pre)
    }

    /// Prefills every request's uncached suffix in one left-padded batch.
    fn prefill(&self, reqs: &[GenRequest<'_>], live: &[Live], hits: Vec<Option<CacheHit>>) -> Prefill {
        let r_n = live.len() as i64;
        let c: Vec<i64> = hits.iter().map(|h| h.as_ref().map_or(0, |h| h.len as i64)).collect();
        let s: Vec<i64> =
            live.iter().zip(&c).map(|(l, &c)| reqs[l.req].tokens.len() as i64 - c).collect();
        let cmax = c.iter().copied().max().unwrap_or(0);
        let smax = s.iter().copied().max().unwrap_or(1);
        let width = cmax + smax;
        let mut ids = vec![0i64; (r_n * smax) as usize];
        let mut pos = vec![0i64; (r_n * smax) as usize];
        let mut valid = vec![false; (r_n * width) as usize];
        let mut cols = Vec::with_capacity(live.len());
        for (i, l) in live.iter().enumerate() {
            let toks = reqs[l.req].tokens;
            let (ci, si, pad) = (c[i], s[i], smax - s[i]);
            for j in 0..si {
                let at = i * smax as usize + (pad + j) as usize;
                ids[at] = toks[(ci + j) as usize] as i64;
                pos[at] = ci + j;
            }
            let row_cols: Vec<i64> = (cmax - ci..cmax).chain(cmax + pad..width).collect();
            for &k in &row_cols {
                valid[i * width as usize + k as usize] = true;
            }
            cols.push(row_cols);
        }
        let dev = self.device;
        let ids = Tensor::from_slice(&ids).view([r_n, smax]).to_device(dev);
        let pos = Tensor::from_slice(&pos).view([r_n, smax]).to_device(dev);
        let valid = Tensor::from_slice(&valid).view([r_n, width]).to_device(dev);
        let past = (cmax > 0).then(|| self.left_padded_past(&hits, cmax));
        // key k is visible to suffix query j when valid and k <= Cmax + j; padded queries see
        // themselves
        let q = Tensor::arange(smax, (Kind::Int64, dev)).view([1, 1, smax, 1]) + cmax;
        let k = Tensor::arange(width, (Kind::Int64, dev)).view([1, 1, 1, width]);
        let mask = valid
            .view([r_n, 1, 1, width])
            .logical_and(&k.le_tensor(&q))
            .logical_or(&k.eq_tensor(&q));
        let (hidden, kv) = self.model.forward(&ids, &pos, past.as_ref(), AttnMask::Custom(&mask));
        Prefill { last_hidden: hidden.select(1, smax - 1), kv, valid, cols, width }
    }

    /// Cached KV rows left-padded with zeros to `cmax` columns, one row per request.
    fn left_padded_past(&self, hits: &[Option<CacheHit>], cmax: i64) -> KvCache {
        let cfg = &self.model.cfg;
        let (nkv, d) = (cfg.num_key_value_heads, cfg.head_dim());
        let kind = hits
            .iter()
            .flatten()
            .next()
            .map(|h| h.kv.layers[0].k.kind())
            .expect("cmax > 0 implies a hit");
        let zeros = |n: i64| Tensor::zeros([1, nkv, n, d], (kind, self.device));
        let pad = |t: &Tensor| {
            let n = cmax - t.size()[2];
            if n == 0 {
                t.shallow_clone()
            } else {
                Tensor::cat(&[&zeros(n), t], 2)
            }
        };
        let layers = (0..cfg.num_hidden_layers as usize)
            .map(|li| {
                let (ks, vs): (Vec<Tensor>, Vec<Tensor>) = hits
                    .iter()
                    .map(|h| match h {
                        Some(h) => (pad(&h.kv.layers[li].k), pad(&h.kv.layers[li].v)),
                        None => (zeros(cmax), zeros(cmax)),
                    })
                    .unzip();
                LayerKv { k: Tensor::cat(&ks, 0), v: Tensor::cat(&vs, 0) }
            })
            .collect();
        KvCache { layers }
    }

    /// Fans the prefill out to samples and decodes until every row has finished.
    fn decode_rows(&mut self, reqs: &[GenRequest<'_>], live: &[Live], pre: Prefill) -> Vec<Vec<Segment>> {
        let mut rows = Vec::new();
        for (slot, l) in live.iter().enumerate() {
            let r = &reqs[l.req];
            for i in 0..r.n {
                rows.push(Row {
                    slot,
                    sampler: Sampler::for_sample(r.seed, i as u64),
                    seg: Segment::default(),
                    stop: StopState::default(),
                    budget: l.budget,
                    prompt_len: r.tokens.len(),
                });
            }
        }
        let dev = self.device;
        let mut batch: Vec<usize> = (0..rows.len()).collect();
        let fan: Vec<i64> = rows.iter().map(|r| r.slot as i64).collect();
        let fan = Tensor::from_slice(&fan).to_device(dev);
        let mut kv = pre.kv.index_rows(&fan);
        let mut valid = pre.valid.index_select(0, &fan);
        let mut hidden = pre.last_hidden.index_select(0, &fan);
        let params: Vec<_> = rows.iter().map(|r| reqs[live[r.slot].req].params).collect();
        let mut params = RowParams::new(&params, self.model.cfg.vocab_size, dev);
        let mut running = rows.len();
        loop {
            let logits = self.model.logits(&hidden);
            let uniforms: Vec<f64> = batch.iter().map(|&r| rows[r].sampler.next_uniform()).collect();
            let out = sample_step(&logits, &params, &uniforms);
            self.stats.decode_steps += 1;
            self.stats.generated_tokens += running as u64;
            for (b, &ri) in batch.iter().enumerate() {
                let row = &mut rows[ri];
                if row.seg.finish.is_some() {
                    continue;
                }
                let req = &reqs[live[row.slot].req];
                let tok = out.tokens[b];
                row.seg.tokens.push(tok);
                row.seg.logprobs.push(out.logprobs[b]);
                row.seg.entropies.push(out.entropies[b]);
                row.seg.finish = if self.eos.binary_search(&tok).is_ok() {
                    Some(Finish::Eos)
                } else if !req.params.stop.is_empty()
                    && row.stop.push(&row.seg.tokens, &req.params.stop, self.decoder.as_ref().expect("checked"))
                {
                    Some(Finish::Stop)
                } else if row.seg.tokens.len() >= row.budget {
                    Some(Finish::Length)
                } else {
                    None
                };
                if row.seg.finish.is_some() {
                    running -= 1;
                    if self.cfg.cache_samples && self.cache.enabled() {
                        if let Some(key) = req.key {
                            let g = row.seg.tokens.len();
                            let cols: Vec<i64> = pre.cols[row.slot]
                                .iter()
                                .copied()
                                .chain(pre.width..pre.width + g as i64 - 1)
                                .collect();
                            let row_kv = extract_row(&kv, b as i64, &cols, dev);
                            let toks: Vec<u32> =
                                req.tokens.iter().chain(&row.seg.tokens[..g - 1]).copied().collect();
                            self.cache.insert(key, toks, row_kv);
                        }
                    }
                }
            }
            if running == 0 {
                break;
            }
            if (running as f64) <= self.cfg.compact_below * batch.len() as f64 {
                let keep: Vec<i64> = (0..batch.len() as i64)
                    .filter(|&b| rows[batch[b as usize]].seg.finish.is_none())
                    .collect();
                let keep_t = Tensor::from_slice(&keep).to_device(dev);
                kv = kv.index_rows(&keep_t);
                valid = valid.index_select(0, &keep_t);
                params = params.index_rows(&keep_t);
                batch = keep.iter().map(|&b| batch[b as usize]).collect();
            }
            let b_n = batch.len() as i64;
            let ids: Vec<i64> = batch.iter().map(|&r| *rows[r].seg.tokens.last().unwrap() as i64).collect();
            let pos: Vec<i64> = batch
                .iter()
                .map(|&r| (rows[r].prompt_len + rows[r].seg.tokens.len() - 1) as i64)
                .collect();
            let ids = Tensor::from_slice(&ids).view([b_n, 1]).to_device(dev);
            let pos = Tensor::from_slice(&pos).view([b_n, 1]).to_device(dev);
            valid = Tensor::cat(&[&valid, &Tensor::ones([b_n, 1], (Kind::Bool, dev))], 1);
            let mask = valid.view([b_n, 1, 1, -1]);
            let (h, next) = self.model.forward(&ids, &pos, Some(&kv), AttnMask::Custom(&mask));
            kv = next;
            hidden = h.squeeze_dim(1);
        }
        let mut out: Vec<Vec<Segment>> = live.iter().map(|_| Vec::new()).collect();
        for row in rows {
            out[row.slot].push(row.seg);
        }
        out
    }
}

/// Row `row`'s KV at columns `cols`, copied into `[1, kv, cols.len(), d]` tensors.
fn extract_row(kv: &KvCache, row: i64, cols: &[i64], dev: tch::Device) -> KvCache {
    let idx = Tensor::from_slice(cols).to_device(dev);
    KvCache {
        layers: kv
            .layers
            .iter()
            .map(|l| LayerKv {
                k: l.k.narrow(0, row, 1).index_select(2, &idx),
                v: l.v.narrow(0, row, 1).index_select(2, &idx),
            })
            .collect(),
    }
}
