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
//!
//! The batch KV is allocated once per call with room for `L0 + min(max budget − 1,
//! kv_reserve_tokens)` columns (doubling if decoding goes past it): cached prefixes are copied
//! into it, the prefill and every decode step append in place, and the fan-out to samples copies
//! each request's prefix into its sample rows once.

use super::{Engine, GenRequest, PrefixKey, Segment};
use crate::engine::cache::CacheHit;
use crate::engine::stop::StopState;
use crate::engine::Finish;
use crate::model::{AttnMask, KvCache};
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
    /// `[R, capacity]` bool: the prefill columns as laid out above, then `true` for every
    /// decode column (a step's mask is its first `len + 1` columns; extended with `true` columns
    /// when decoding outgrows it).
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
        debug_assert_eq!(pre.kv.len(), pre.width);
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
        // the last sampled token of a row is never fed back, so budget − 1 decode columns
        let room = live.iter().map(|l| l.budget as i64).max().unwrap_or(1) - 1;
        let capacity = width + room.min(self.cfg.kv_reserve_tokens as i64);
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
        let mut kv = self.left_padded_past(&hits, cmax, capacity);
        // key k is visible to suffix query j when valid and k <= Cmax + j; padded queries see
        // themselves
        let q = Tensor::arange(smax, (Kind::Int64, dev)).view([1, 1, smax, 1]) + cmax;
        let k = Tensor::arange(width, (Kind::Int64, dev)).view([1, 1, 1, width]);
        let mask = valid
            .view([r_n, 1, 1, width])
            .logical_and(&k.le_tensor(&q))
            .logical_or(&k.eq_tensor(&q));
        let hidden = self.model.forward_into(&ids, &pos, &mut kv, AttnMask::Custom(&mask));
        let decode_cols = Tensor::ones([r_n, capacity - width], (Kind::Bool, dev));
        let valid = Tensor::cat(&[&valid, &decode_cols], 1);
        Prefill { last_hidden: hidden.select(1, smax - 1), kv, valid, cols, width }
    }

    /// The batch KV with room for `capacity` columns, holding each request's cached KV
    /// right-aligned in its first `cmax` columns (zeros to the left and in rows without a hit).
    fn left_padded_past(&self, hits: &[Option<CacheHit>], cmax: i64, capacity: i64) -> KvCache {
        let mut kv = self.model.new_cache(hits.len() as i64, capacity);
        for (row, h) in hits.iter().enumerate() {
            if let Some(h) = h {
                kv.write(row as i64, cmax - h.len as i64, &h.kv);
            }
        }
        kv.set_len(cmax);
        kv
    }

    /// Fans the prefill out to samples and decodes until every row has finished.
    fn decode_rows(&mut self, reqs: &[GenRequest<'_>], live: &[Live], mut pre: Prefill) -> Vec<Vec<Segment>> {
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
        // one sample per request: the rows are already in place
        let identity = rows.len() == live.len();
        let mut kv = if identity { std::mem::take(&mut pre.kv) } else { pre.kv.index_rows(&fan) };
        let mut valid = if identity { pre.valid.shallow_clone() } else { pre.valid.index_select(0, &fan) };
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
            if valid.size()[1] <= kv.len() {
                let more = Tensor::ones([b_n, valid.size()[1]], (Kind::Bool, dev));
                valid = Tensor::cat(&[&valid, &more], 1);
            }
            let mask = valid.narrow(1, 0, kv.len() + 1).view([b_n, 1, 1, -1]);
            let h = self.model.forward_into(&ids, &pos, &mut kv, AttnMask::Custom(&mask));
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
    KvCache::from_layers(
        (0..kv.num_layers())
            .map(|i| {
                let (k, v) = kv.layer(i);
                (k.narrow(0, row, 1).index_select(2, &idx), v.narrow(0, row, 1).index_select(2, &idx))
            })
            .collect(),
    )
}
