//! Pieces of `deepsearch train` (see `cmd_train`): config resolution, bootstrap and held-out eval.

pub mod config;
pub mod eval;
