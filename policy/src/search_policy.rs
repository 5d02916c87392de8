//! The tree search's [`Policy`] implemented by the generation [`Engine`] (spec §1): one
//! `expand` call is one batched engine call; the node key is the cache key, the parent key the
//! reuse hint.

use crate::engine::{Engine, GenRequest};
use crate::error::PolicyError as EngineError;
use deepsearch_search::policy::{ExpandRequest, Policy, PolicyError, PrefixKey, Segment};

/// An [`Engine`] seen as a search [`Policy`].
#[derive(Debug)]
pub struct EnginePolicy {
    engine: Engine,
}

impl EnginePolicy {
    pub fn new(engine: Engine) -> Self {
        EnginePolicy { engine }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn into_engine(self) -> Engine {
        self.engine
    }
}

fn to_search_error(e: EngineError) -> PolicyError {
    match e {
        EngineError::ContextOverflow { len, max } => PolicyError::ContextOverflow { len, max },
        other => PolicyError::Failed(other.to_string()),
    }
}

impl Policy for EnginePolicy {
    fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
        let gen: Vec<GenRequest<'_>> = reqs
            .iter()
            .map(|r| GenRequest {
                key: Some(r.key),
                reuse: r.reuse,
                tokens: r.tokens.as_slice(),
                n: r.n,
                max_new_tokens: r.max_new_tokens,
                params: &r.params,
                seed: r.seed,
            })
            .collect();
        self.engine.generate(&gen).into_iter().map(|r| r.map_err(to_search_error)).collect()
    }

    fn release(&mut self, keys: &[PrefixKey]) {
        self.engine.release(keys);
    }

    fn decode(&self, tokens: &[u32]) -> String {
        // without a tokenizer, ids are shown as numbers so dumps stay readable
        self.engine.decode(tokens).unwrap_or_else(|| {
            tokens.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ")
        })
    }

    fn max_context(&self) -> usize {
        self.engine.max_context()
    }
}
