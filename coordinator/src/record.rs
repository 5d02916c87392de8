//! Domain types of the coordinator: per-problem records, leases and validated outcomes.
//!
//! These are what the store persists (serde JSON values) and what the pure decisions in
//! [`crate::decide`] take. Wire messages are validated into them once, at the edge
//! ([`crate::convert`]); nothing inside the coordinator touches raw protobuf fields.

use deepsearch_tasks::{Problem, Verdict};
use serde::{Deserialize, Serialize};

/// Where a problem stands (spec §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not yet filtered with any policy.
    Unfiltered,
    /// Pass1@K ≤ δ at its last filter: gets tree search.
    Hard,
    /// The policy solves it (Pass1@K > δ): no more work.
    Retired,
    /// In the solution cache: skips search, its group replays cached solutions.
    Cached,
}

impl Status {
    /// Every status, in display order.
    pub const ALL: [Status; 4] = [Status::Unfiltered, Status::Hard, Status::Retired, Status::Cached];

    /// Lowercase name used on the wire, in metrics and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unfiltered => "unfiltered",
            Status::Hard => "hard",
            Status::Retired => "retired",
            Status::Cached => "cached",
        }
    }
}

/// What an actor does with a leased problem (mirrors `deepsearch.v1.WorkMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// K direct samples for the hard-problem filter.
    Filter,
    /// Tree search.
    Search,
    /// Replay cached solutions plus fresh samples.
    Cached,
    /// GRPO baseline: a directly sampled group.
    Sample,
}

impl Mode {
    /// Every mode, in display order.
    pub const ALL: [Mode; 4] = [Mode::Filter, Mode::Search, Mode::Cached, Mode::Sample];

    /// Lowercase name used in metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Filter => "filter",
            Mode::Search => "search",
            Mode::Cached => "cached",
            Mode::Sample => "sample",
        }
    }
}

/// A verified solution kept in a problem's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SolutionRecord {
    pub text: String,
    #[serde(default)]
    pub tokens: Vec<u32>,
    /// Policy version that produced its oldest token.
    pub policy_version: u64,
    pub verdict: Verdict,
}

/// One Pass1@K measurement (spec §7: the mean accuracy of K direct samples).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PassAtK {
    /// Version the actor sampled with.
    pub policy_version: u64,
    pub round: u64,
    /// Verified samples (verifier errors excluded).
    pub samples: u32,
    pub correct: u32,
    pub recorded_unix_ms: u64,
}

impl PassAtK {
    /// correct / samples (0 when there are no samples).
    pub fn pass1(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            f64::from(self.correct) / f64::from(self.samples)
        }
    }
}

/// The durable record of one problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProblemRecord {
    pub problem: Problem,
    pub status: Status,
    /// Pass1@K measurements, oldest first.
    #[serde(default)]
    pub history: Vec<PassAtK>,
    /// Leases issued for it.
    pub attempts: u64,
    /// Results accepted for it.
    pub results: u64,
    /// Verified correct solutions (the cache entry when `status == Cached`), at most
    /// `cache.max_solutions`.
    #[serde(default)]
    pub solutions: Vec<SolutionRecord>,
    /// Why it entered the cache (rule and numbers).
    pub cache_reason: Option<String>,
    /// Newest policy version when it entered the cache.
    pub admitted_policy_version: Option<u64>,
    pub last_error: Option<String>,
    /// Round of its last accepted filter result.
    pub filtered_round: Option<u64>,
    /// Newest policy version at the lease time of its last accepted filter result.
    pub filtered_policy_version: Option<u64>,
    /// Round of its last accepted search / cached / sample result.
    pub worked_round: Option<u64>,
    /// When it was last leased (fair ordering: least recently leased first).
    pub last_leased_unix_ms: u64,
}

impl ProblemRecord {
    /// A fresh, unfiltered record.
    pub fn new(problem: Problem) -> Self {
        ProblemRecord {
            problem,
            status: Status::Unfiltered,
            history: Vec::new(),
            attempts: 0,
            results: 0,
            solutions: Vec::new(),
            cache_reason: None,
            admitted_policy_version: None,
            last_error: None,
            filtered_round: None,
            filtered_policy_version: None,
            worked_round: None,
            last_leased_unix_ms: 0,
        }
    }

    /// Pass1@K of the latest filter measurement.
    pub fn latest_pass1(&self) -> Option<f64> {
        self.history.last().map(PassAtK::pass1)
    }

    /// Adds correct solutions not already kept (same text), up to `max` in total.
    pub fn merge_solutions(&mut self, new: &[SolutionRecord], max: usize) {
        for s in new {
            if self.solutions.len() >= max {
                break;
            }
            if s.verdict.is_correct() && !self.solutions.iter().any(|k| k.text == s.text) {
                self.solutions.push(s.clone());
            }
        }
    }
}

/// Lifecycle of a lease. Accepted leases leave the lease table (their id moves to the accepted
/// set); expired ones stay a while so a late report is answered "expired".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    Live,
    Expired { at_unix_ms: u64 },
}

/// One lease of one work item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    pub problem_id: String,
    pub actor_id: String,
    pub mode: Mode,
    pub round: u64,
    /// Newest policy version when issued.
    pub policy_version: u64,
    /// Direct samples asked for (see `WorkItem.num_samples`).
    pub num_samples: u32,
    pub issued_unix_ms: u64,
    pub deadline_unix_ms: u64,
    pub state: LeaseState,
}

/// A validated `ReportOutcomeRequest`.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub actor_id: String,
    pub lease_id: String,
    pub policy_version: u64,
    pub samples: u32,
    pub correct: u32,
    pub verifier_errors: u32,
    pub solved: bool,
    pub solutions: Vec<SolutionRecord>,
    pub generated_tokens: u64,
    /// The actor could not complete the item.
    pub error: Option<String>,
}

/// What the coordinator did with a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    Accepted,
    Duplicate,
    Expired,
    Failed,
}

/// Scheduling state (pause / drain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedState {
    Running,
    Paused,
    Draining,
}

/// Coordinator-wide durable state besides the per-problem records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub round: u64,
    /// Newest policy version published by the learner.
    pub policy_version: u64,
    pub state: SchedState,
    /// Filter settings changed live through the admin API; they win over the config file.
    pub filter_override: Option<FilterOverride>,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            round: 0,
            policy_version: 0,
            state: SchedState::Running,
            filter_override: None,
        }
    }
}

/// Live filter settings (the part of `FilterConfig` that admin can change).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterOverride {
    pub k: u32,
    pub delta: f64,
    pub strict: bool,
}
