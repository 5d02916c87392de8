//! The error type of the tasks crate: bad input files and records, unknown tasks and bad
//! configurations. Verifier failures are not errors of this type: they are [`crate::Verdict::Error`]
//! (spec §2: a failed verification is dropped and counted, never scored).

use std::path::PathBuf;

/// Everything that can go wrong while loading problems or building a verifier.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// One record (JSONL line or Parquet row) is malformed. `line` is 1-based for JSONL and the
    /// 0-based row index for Parquet (`unit` says which).
    #[error("{path}:{unit} {line}: field `{field}`: {reason}")]
    BadRecord {
        path: PathBuf,
        /// "line" (JSONL, 1-based) or "row" (Parquet, 0-based).
        unit: &'static str,
        line: u64,
        field: String,
        reason: String,
    },
    /// A whole file is unusable (not Parquet, missing column, ...).
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    /// No verifier/generator is registered under this task name.
    #[error("unknown task `{0}` (known: math, countdown, arithmetic)")]
    UnknownTask(String),
    /// A configuration value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Config(String),
    /// A built-in problem's `answer` JSON does not describe a valid instance.
    #[error("invalid {task} instance: {reason}")]
    BadInstance { task: &'static str, reason: String },
    /// Support for this input was compiled out (e.g. Parquet without the `parquet` feature).
    #[error("{0}")]
    Unsupported(String),
}

impl TaskError {
    /// Shorthand for a [`TaskError::Config`].
    pub fn config(msg: impl Into<String>) -> Self {
        TaskError::Config(msg.into())
    }
}
