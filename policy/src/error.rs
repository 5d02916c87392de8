//! Errors of the policy crate. Every error names the input it is about (file, field, tensor).

use std::path::PathBuf;

/// Everything that can go wrong loading, saving or running a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid JSON: {msg}")]
    Json { path: PathBuf, msg: String },
    #[error("{path}: field `{field}`: {msg}")]
    Config { path: PathBuf, field: String, msg: String },
    #[error("{path}: tensor `{tensor}`: {msg}")]
    Tensor { path: PathBuf, tensor: String, msg: String },
    #[error("{path}: tokenizer: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    #[error("unknown device `{0}` (expected cpu, cuda or cuda:N)")]
    UnknownDevice(String),
    #[error("device `{device}` unavailable: {msg}")]
    DeviceUnavailable { device: String, msg: String },
    #[error("token id {id} out of range for vocabulary of {vocab}")]
    TokenOutOfRange { id: i64, vocab: i64 },
    #[error("sequence of {len} tokens exceeds the context of {max} tokens")]
    ContextOverflow { len: usize, max: usize },
    #[error("invalid argument `{arg}`: {msg}")]
    InvalidArgument { arg: String, msg: String },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = PolicyError> = std::result::Result<T, E>;
