//! The generation engine for tree search (spec §1): many children of many prefixes sampled in
//! ONE batched device call, with an explicit KV cache and reuse of prefixes already computed.
//!
//! One call of [`Engine::generate`]:
//! 1. validates each request (a bad one fails alone: context overflow, unknown token, bad
//!    sampling parameters);
//! 2. looks up the longest cached prefix of each request under its `reuse`/`key` hints
//!    ([`cache`]) and prefills only the remaining suffixes, all requests in one left-padded batch
//!    (per-row RoPE positions, a boolean mask hiding padding);
//! 3. stores each request's prefix KV under its key, fans every request out to its `n` samples
//!    (repeated cache rows) and decodes all rows of all requests together, one token per step,
//!    with one host sync per step ([`crate::sampler`]);
//! 4. ends a row at EOS, at a stop string ([`stop`]) or at its budget, caches the row's KV
//!    (prefix ⊕ sample) under the request key for the children, and drops finished rows from the
//!    batch once few are left.
//!
//! Results do not depend on what else is in the batch: every sample has its own seeded stream and
//! padded keys are masked out (up to float rounding of differently shaped kernels).

mod batch;
pub mod cache;
pub mod stop;

pub use cache::{CacheStats, PrefixCache};
pub use deepsearch_search::policy::{Finish, PrefixKey, SamplingParams, Segment};
pub use stop::{StopState, TokenDecoder};

use crate::error::{PolicyError, Result};
use crate::model::Qwen2;
use crate::sampler::validate_params;
use serde::{Deserialize, Serialize};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use tch::Device;

/// Engine knobs (serde, for the run config that embeds them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Byte budget of the prefix cache (KV kept on the model's device). Default 1 GiB;
    /// 0 disables prefix reuse.
    pub prefix_cache_bytes: usize,
    /// Also cache each sample's KV (prefix ⊕ sample) under the expanded node's key, so a child
    /// expansion prefills a single token instead of its segment. Default true.
    pub cache_samples: bool,
    /// Maximum sequence length (prompt + generated tokens). Default 0 = the model's
    /// `max_position_embeddings`.
    pub max_context: usize,
    /// Finished rows are dropped from the decode batch once at most this fraction of its rows is
    /// still running. Default 0.5 (1.0 compacts on every finish, 0 never).
    pub compact_below: f64,
    /// Decode positions the batch KV buffers are allocated with up front, beyond the prefill
    /// (capped by the largest token budget of the call); rows that decode further grow the
    /// buffers by doubling. Bounds the memory reserved for long budgets that end early at EOS.
    /// Default 512.
    pub kv_reserve_tokens: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            prefix_cache_bytes: 1 << 30,
            cache_samples: true,
            max_context: 0,
            compact_below: 0.5,
            kv_reserve_tokens: 512,
        }
    }
}

/// One request: sample `n` continuations of `tokens`.
#[derive(Clone, Debug)]
pub struct GenRequest<'a> {
    /// Cache the prefix (and the samples) under this key; `None` caches nothing.
    pub key: Option<PrefixKey>,
    /// A key whose cached entries may hold a prefix of `tokens` (usually the parent node).
    pub reuse: Option<PrefixKey>,
    pub tokens: &'a [u32],
    pub n: usize,
    pub max_new_tokens: usize,
    pub params: &'a SamplingParams,
    /// Sample `i` draws from the stream (seed, i).
    pub seed: u64,
}

/// Work counters since the engine was created (for logs, tests and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Batched `generate` calls that reached the device.
    pub batches: u64,
    /// Prompt tokens run through the model in prefills.
    pub prefill_tokens: u64,
    /// Prompt tokens whose KV came from the prefix cache instead.
    pub reused_tokens: u64,
    /// Tokens sampled.
    pub generated_tokens: u64,
    /// Decode steps (one batched forward each).
    pub decode_steps: u64,
}

/// The generation engine: a model, its end-of-sequence ids, a tokenizer for stop strings and
/// the prefix cache. Not `Sync`: one thread owns it (style rule 9).
pub struct Engine {
    model: Qwen2,
    device: Device,
    cfg: EngineConfig,
    eos: Vec<u32>,
    decoder: Option<Arc<dyn TokenDecoder>>,
    cache: PrefixCache,
    stats: EngineStats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("device", &self.device)
            .field("cfg", &self.cfg)
            .field("eos", &self.eos)
            .field("cache", &self.cache.stats())
            .finish()
    }
}

impl Engine {
    /// An engine over `model` (whose weights live on `device`); generation stops at any of
    /// `eos_token_ids` (config.json ∪ generation_config.json).
    pub fn new(model: Qwen2, device: Device, eos_token_ids: &[i64], cfg: EngineConfig) -> Self {
        let mut eos: Vec<u32> = eos_token_ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
        eos.sort_unstable();
        eos.dedup();
        let cache = PrefixCache::new(cfg.prefix_cache_bytes);
        Engine { model, device, cfg, eos, decoder: None, cache, stats: EngineStats::default() }
    }

    /// Sets the detokenizer used for stop strings and [`Engine::decode`].
    pub fn with_decoder(mut self, decoder: Arc<dyn TokenDecoder>) -> Self {
        self.decoder = Some(decoder);
        self
    }

    pub fn model(&self) -> &Qwen2 {
        &self.model
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos
    }

    /// Maximum sequence length (prompt + generated).
    pub fn max_context(&self) -> usize {
        match self.cfg.max_context {
            0 => self.model.cfg.max_position_embeddings as usize,
            n => n,
        }
    }

    /// Token ids → text with the engine's decoder (`None` without one).
    pub fn decode(&self, tokens: &[u32]) -> Option<String> {
        self.decoder.as_ref().map(|d| d.decode(tokens))
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Forgets every cached prefix stored under the keys.
    pub fn release(&mut self, keys: &[PrefixKey]) {
        self.cache.release(keys);
    }

    /// Runs every request in one batch; one result (of `n` segments) per request, in order. A
    /// request that is invalid fails alone; a device failure fails the whole batch.
    pub fn generate(&mut self, reqs: &[GenRequest<'_>]) -> Vec<Result<Vec<Segment>>> {
        let mut results: Vec<Option<Result<Vec<Segment>>>> =
            reqs.iter().map(|r| self.check(r).err().map(Err)).collect();
        let mut live = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            let budget = r.max_new_tokens.min(self.max_context() - r.tokens.len());
            if r.n == 0 {
                results[i] = Some(Ok(Vec::new()));
            } else if budget == 0 {
                let empty = Segment { finish: Some(Finish::Length), ..Default::default() };
                results[i] = Some(Ok(vec![empty; r.n]));
            } else {
                live.push(batch::Live { req: i, budget });
            }
        }
        if !live.is_empty() {
            let run = catch_unwind(AssertUnwindSafe(|| self.run_batch(reqs, &live)));
            match run {
                Ok(segments) => {
                    for (l, s) in live.iter().zip(segments) {
                        results[l.req] = Some(Ok(s));
                    }
                }
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!(error = %msg, requests = live.len(), "generation batch failed");
                    for l in &live {
                        results[l.req] = Some(Err(PolicyError::Torch(tch::TchError::Torch(msg.clone()))));
                    }
                }
            }
        }
        results.into_iter().map(|r| r.expect("every request has a result")).collect()
    }

    /// Validates one request; the error names what is wrong with it.
    fn check(&self, r: &GenRequest<'_>) -> Result<()> {
        if r.tokens.is_empty() {
            return Err(PolicyError::InvalidArgument {
                arg: "tokens".into(),
                msg: "a request needs at least one prompt token".into(),
            });
        }
        let max = self.max_context();
        if r.tokens.len() >= max {
            return Err(PolicyError::ContextOverflow { len: r.tokens.len(), max });
        }
        let vocab = self.model.cfg.vocab_size;
        if let Some(&id) = r.tokens.iter().find(|&&t| t as i64 >= vocab) {
            return Err(PolicyError::TokenOutOfRange { id: id as i64, vocab });
        }
        validate_params(r.params)?;
        if !r.params.stop.is_empty() && self.decoder.is_none() {
            return Err(PolicyError::InvalidArgument {
                arg: "stop".into(),
                msg: "stop strings need a tokenizer; the engine has none".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: EngineConfig = serde_json::from_str(r#"{"cache_samples": false}"#).unwrap();
        assert_eq!(c, EngineConfig { cache_samples: false, ..EngineConfig::default() });
        let e = serde_json::from_str::<EngineConfig>(r#"{"prefix_cache": 1}"#).unwrap_err().to_string();
        assert!(e.contains("prefix_cache"), "{e}");
    }
}
