//! The policy engine: the only crate that links libtorch (through `tch`).
//!
//! - [`config`]: HF `config.json` / `generation_config.json`.
//! - [`model`]: the Qwen2 forward with an explicit KV cache.
//! - [`engine`]: batched generation with a prefix KV cache; [`sampler`]: seeded sampling;
//!   [`search_policy`]: the engine as the tree search's `Policy`.
//! - [`logprobs`]: chunked per-token log-probs for training.
//! - [`device`]: `cpu` / `cuda:N` parsing (loads libtorch_cuda on demand).
//! - [`checkpoint`]: HF folders in and out ([`PolicyModel`]); [`weights`]: safetensors I/O;
//!   [`tokenizer`]: `tokenizer.json` + char-level builder; [`chat`]: chat templates.
pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod engine;
pub mod error;
pub mod logprobs;
pub mod model;
pub mod sampler;
pub mod search_policy;
pub mod tokenizer;
pub mod weights;

pub use checkpoint::{PolicyModel, SaveOptions};
pub use config::{GenerationConfig, Qwen2Config};
pub use error::{PolicyError, Result};
pub use model::{AttnMask, KvCache, LayerKv, Qwen2};
pub use tokenizer::{build_char_tokenizer, PolicyTokenizer};
