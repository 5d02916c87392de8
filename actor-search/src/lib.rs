//! DeepSearch tree search (spec §1–§6) and the search-actor runtime.
pub mod policy;
