//! Problems, problem sources and verifiers. Pure Rust: no libtorch.
//!
//! The core contract used by the search, the actors and the CLI is [`Problem`], [`Verdict`] and
//! [`Verifier`]; everything else in this crate produces or implements them:
//!
//! - [`source`]: JSONL and Parquet datasets with configurable field names, stable ids and
//!   deterministic train/eval splits; [`prompt`] applies the prompt template (spec §1: the root is
//!   the prompt with the chat template applied).
//! - [`countdown`] and [`arithmetic`]: seeded built-in generators with a difficulty knob, a
//!   verifier, solution traces for supervised bootstrapping and a cheap prefix check the search
//!   uses to prune invalid lines.
//! - [`math`]: the math answer checker (boxed-answer extraction, Minerva-style normalisation,
//!   exact rational / symbolic-numeric equivalence, tuples, intervals, sets, matrices, ...).
//! - [`passk`]: the unbiased pass@k estimator used by the evaluations.
//! - [`registry`] maps a task name to its verifier; [`pool`] runs verifications on worker threads
//!   with a per-call deadline, so a slow verification becomes [`Verdict::Error`], never a hang or a
//!   silent −1 (spec §2, design "what users complain about" #5).

use std::collections::BTreeMap;

pub mod arithmetic;
pub mod countdown;
mod error;
pub mod math;
pub mod passk;
pub mod pool;
pub mod prompt;
pub mod registry;
pub mod source;

pub use error::TaskError;
pub use pool::{Pending, PoolConfig, VerifierPool};
pub use registry::verifier_for;

/// One problem: what the model is asked and what a verifier checks against.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// Stable id: a given id field, else a content hash of prompt and answer.
    pub id: String,
    /// The problem statement (before any chat template).
    pub prompt: String,
    /// Reference answer. For built-in tasks this may be a JSON encoding of the instance.
    pub answer: String,
    /// Task name ("math", "countdown", "arithmetic", ...): selects the verifier.
    pub task: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

impl Problem {
    /// A problem with an explicit id and no metadata.
    pub fn new(
        id: impl Into<String>,
        task: impl Into<String>,
        prompt: impl Into<String>,
        answer: impl Into<String>,
    ) -> Self {
        Problem {
            id: id.into(),
            prompt: prompt.into(),
            answer: answer.into(),
            task: task.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// A problem whose id is the content hash of its prompt and answer ([`source::content_id`]).
    pub fn with_content_id(
        task: impl Into<String>,
        prompt: impl Into<String>,
        answer: impl Into<String>,
    ) -> Self {
        let (prompt, answer) = (prompt.into(), answer.into());
        let id = source::content_id(&prompt, &answer);
        Problem::new(id, task, prompt, answer)
    }
}

/// A verifier's judgement of one response. `Error` (verifier failure or timeout) is never a
/// wrong answer: the caller drops that response and counts it (spec §2).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Correct,
    Wrong,
    /// No final answer could be found in the response.
    Unparsable,
    /// The verifier failed or ran past its deadline; the reason is kept for logs.
    Error(String),
}

impl Verdict {
    /// The verdict's name as printed by `deepsearch verify`: correct | wrong | unparsable | error.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Correct => "correct",
            Verdict::Wrong => "wrong",
            Verdict::Unparsable => "unparsable",
            Verdict::Error(_) => "error",
        }
    }

    /// True only for [`Verdict::Correct`].
    pub fn is_correct(&self) -> bool {
        matches!(self, Verdict::Correct)
    }

    /// True for [`Verdict::Error`]: the response must be dropped, not scored.
    pub fn is_error(&self) -> bool {
        matches!(self, Verdict::Error(_))
    }
}

/// Judges a response to a problem. Implementations must not panic on any input.
pub trait Verifier: Send + Sync {
    fn verify(&self, problem: &Problem, response: &str) -> Verdict;
}

/// Runs `verifier` and turns a panic into [`Verdict::Error`]: the last line of defence for the
/// "never panic" contract (used by the pool and the CLI).
pub fn verify_catching(verifier: &dyn Verifier, problem: &Problem, response: &str) -> Verdict {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        verifier.verify(problem, response)
    })) {
        Ok(v) => v,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Verdict::Error(format!("verifier panicked: {msg}"))
        }
    }
}
