//! The coordinator's error type and its single mapping to `tonic::Status` (style.md §5).
//!
//! Every error that leaves a handler goes through [`Error::into_status`], which also writes the
//! log line the issue asks for (bad input → the right gRPC status *and* a log line).

use std::path::PathBuf;

/// Errors of the coordinator library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An id (actor, lease, problem) the coordinator does not know.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is well formed but not allowed in the current state.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The embedded database failed.
    #[error("store: {0}")]
    Store(String),
    /// A configuration value is invalid.
    #[error("config: {0}")]
    Config(String),
    /// A problem source could not be loaded.
    #[error("problem source: {0}")]
    Source(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The gRPC transport failed (bind, TLS, serve).
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The core task has stopped (the coordinator is shutting down).
    #[error("coordinator is shutting down")]
    ShuttingDown,
}

impl Error {
    /// Maps to a gRPC status over a small set of codes and logs the rejection with the RPC name.
    pub fn into_status(self, rpc: &'static str) -> tonic::Status {
        use tonic::Status;
        let msg = self.to_string();
        match self {
            Error::InvalidArgument(_) => {
                tracing::warn!(rpc, error = %msg, "rejected request: invalid argument");
                Status::invalid_argument(msg)
            }
            Error::NotFound(_) => {
                tracing::warn!(rpc, error = %msg, "rejected request: not found");
                Status::not_found(msg)
            }
            Error::FailedPrecondition(_) => {
                tracing::warn!(rpc, error = %msg, "rejected request: failed precondition");
                Status::failed_precondition(msg)
            }
            Error::ShuttingDown => {
                tracing::warn!(rpc, "rejected request: shutting down");
                Status::unavailable(msg)
            }
            Error::Store(_)
            | Error::Config(_)
            | Error::Source(_)
            | Error::Io { .. }
            | Error::Transport(_) => {
                tracing::error!(rpc, error = %msg, "request failed");
                Status::internal(msg)
            }
        }
    }
}

macro_rules! store_err {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Store(e.to_string())
            }
        }
    )*};
}
store_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
