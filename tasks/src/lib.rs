//! Problems, problem sources and verifiers. Pure Rust: no libtorch.
use std::collections::BTreeMap;

/// One problem: what the model is asked and what a verifier checks against.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub id: String,
    pub prompt: String,
    pub answer: String,
    pub task: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// A verifier's judgement of one response.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Correct,
    Wrong,
    Unparsable,
    Error(String),
}

/// Judges a response to a problem.
pub trait Verifier: Send + Sync {
    fn verify(&self, problem: &Problem, response: &str) -> Verdict;
}
