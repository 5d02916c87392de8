//! Errors of the learner crate. Every error names what it is about (config field, file, tensor,
//! collective and rank), so a bad input or a stuck peer is a clear message, never a panic or a hang.

use std::path::PathBuf;

/// Everything that can go wrong in the learner.
#[derive(Debug, thiserror::Error)]
pub enum LearnerError {
    #[error("config field `{field}`: {msg}")]
    Config { field: String, msg: String },
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error("{path}: field `{field}`: {msg}")]
    Format { path: PathBuf, field: String, msg: String },
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("collective `{op}` on rank {rank}: {msg}")]
    Collective { op: String, rank: usize, msg: String },
    #[error("collective `{op}` on rank {rank}: deadline of {waited_ms} ms passed ({msg})")]
    CollectiveTimeout {
        op: String,
        rank: usize,
        waited_ms: u64,
        msg: String,
    },
    #[error("weights: {0}")]
    Weights(String),
    #[error("non-finite {what} at optimizer step {step}: the update was skipped")]
    NonFinite { what: String, step: u64 },
    #[error("invalid argument `{arg}`: {msg}")]
    InvalidArgument { arg: String, msg: String },
    /// Every group of a step was dropped by a signal filter (`drop_unsolved_groups`): nothing to
    /// train on, no new version; not a failure.
    #[error("no group with signal in the step ({unsolved} unsolved groups dropped)")]
    NoSignal { unsolved: usize },
    #[error("policy: {0}")]
    Policy(#[from] deepsearch_policy::PolicyError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl LearnerError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        LearnerError::Io {
            path: path.into(),
            msg: e.to_string(),
        }
    }

    pub(crate) fn config(field: &str, msg: impl Into<String>) -> Self {
        LearnerError::Config {
            field: field.into(),
            msg: msg.into(),
        }
    }
}

pub type Result<T, E = LearnerError> = std::result::Result<T, E>;
