//! The seam between the tree search and a language model.
//!
//! The search is pure Rust and never links libtorch: it talks to a model only through [`Policy`].
//! The real implementation (`deepsearch-policy`'s engine, adapted in the `cli` crate) batches every
//! request of one call into one device call and keeps the KV cache of prefixes it has already
//! computed, keyed by [`PrefixKey`], so a node's children never pay the prefill of the root and the
//! ancestors again (spec §1). Test doubles (scripted policies) implement the same trait.

use std::sync::Arc;

/// Identifies one node's full token prefix (prompt ⊕ segments on its path) inside a policy's
/// prefix cache. Unique across all trees a policy serves at once: (tree id, node index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrefixKey {
    pub tree: u64,
    pub node: u32,
}

/// Why a sampled segment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The last token is an end-of-sequence id (it is included in `tokens`).
    Eos,
    /// The token budget `max_new_tokens` was reached.
    Length,
    /// A stop string (e.g. the segment delimiter "\n") was produced; the tokens up to and
    /// including the token that completed it are kept.
    Stop,
}

/// How to sample. Temperature 0 means greedy.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    /// 0 = off.
    pub top_k: usize,
    /// Segment ends right after any of these strings appears in the newly generated text.
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        // spec §1: expansion samples at temperature 1.0, top_p 1.0
        Self { temperature: 1.0, top_p: 1.0, top_k: 0, stop: Vec::new() }
    }
}

/// One expansion: sample `n` continuations of the prefix `tokens`.
#[derive(Clone, Debug)]
pub struct ExpandRequest {
    /// Key of the node being expanded; the policy may cache the KV of `tokens` under it.
    pub key: PrefixKey,
    /// Key of the nearest ancestor whose KV the policy may already hold (usually the parent);
    /// a hint only: the policy must give the same result whether or not it is cached.
    pub reuse: Option<PrefixKey>,
    /// Full prefix: prompt tokens followed by every segment on the path.
    pub tokens: Arc<Vec<u32>>,
    /// Number of independent samples (the expansion width; 1 for direct sampling).
    pub n: usize,
    /// Token budget of each sample.
    pub max_new_tokens: usize,
    pub params: Arc<SamplingParams>,
    /// Seed of this request; sample `i` uses a stream derived from (seed, i), so a result can be
    /// replayed whatever else was in the batch.
    pub seed: u64,
}

/// One sampled continuation with what the search and the learner need per token.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    pub tokens: Vec<u32>,
    /// ln π(token) under the untempered model.
    pub logprobs: Vec<f32>,
    /// Entropy (nats) of the full untempered next-token distribution at each position.
    pub entropies: Vec<f32>,
    pub finish: Option<Finish>,
}

/// Errors a policy can report; the forest counts them and goes on with the other trees.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("prompt of {len} tokens exceeds the model context of {max} tokens")]
    ContextOverflow { len: usize, max: usize },
    #[error("policy failed: {0}")]
    Failed(String),
}

/// A language model that can expand many prefixes in one batched call.
pub trait Policy {
    /// Expand every request; the result has one `Vec<Segment>` of length `req.n` per request, in
    /// order. A per-request failure is reported in place, the other requests still succeed.
    fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>>;
    /// Forget cached prefixes (the node's tree is finished or the node will not be expanded).
    fn release(&mut self, keys: &[PrefixKey]);
    /// Token ids → text (used by the verifier and for dumps).
    fn decode(&self, tokens: &[u32]) -> String;
    /// Maximum sequence length (prompt + response) the model accepts.
    fn max_context(&self) -> usize;
}

/// A policy that meters another: the requests it served, the tokens it generated and the wall
/// time of its batched expansions (the actor's generation time, the token budget of a
/// search-augmented evaluation). Everything else is forwarded.
#[derive(Debug)]
pub struct Metered<'a, P: ?Sized> {
    pub inner: &'a mut P,
    /// Expansion requests served.
    pub requests: u64,
    /// Tokens generated (all segments of all successful requests).
    pub tokens: u64,
    /// Wall time spent in [`Policy::expand`].
    pub expand_time: std::time::Duration,
}

impl<'a, P: ?Sized> Metered<'a, P> {
    pub fn new(inner: &'a mut P) -> Self {
        Metered { inner, requests: 0, tokens: 0, expand_time: std::time::Duration::ZERO }
    }
}

impl<P: Policy + ?Sized> Policy for Metered<'_, P> {
    fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
        let t0 = std::time::Instant::now();
        let out = self.inner.expand(reqs);
        self.expand_time += t0.elapsed();
        self.requests += reqs.len() as u64;
        for segs in out.iter().flatten() {
            self.tokens += segs.iter().map(|s| s.tokens.len() as u64).sum::<u64>();
        }
        out
    }
    fn release(&mut self, keys: &[PrefixKey]) {
        self.inner.release(keys)
    }
    fn decode(&self, tokens: &[u32]) -> String {
        self.inner.decode(tokens)
    }
    fn max_context(&self) -> usize {
        self.inner.max_context()
    }
}
