//! The policy engine: the only crate that links libtorch (through `tch`).
//!
//! - [`config`]: HF `config.json` / `generation_config.json`.
//! - [`model`]: the Qwen2 forward with an explicit KV cache.
//! - [`device`]: `cpu` / `cuda:N` parsing (loads libtorch_cuda on demand).
pub mod config;
pub mod device;
pub mod error;
pub mod model;

pub use config::{GenerationConfig, Qwen2Config};
pub use error::{PolicyError, Result};
pub use model::{AttnMask, KvCache, LayerKv, Qwen2};
