//! Wire ↔ domain conversions of the actor runtime, validated once at the edge (style.md §4).
//!
//! * [`WorkItem`]: a leased `pb::WorkItem` checked into a domain value (`TryFrom`); a malformed
//!   item is reported back as an error instead of being run.
//! * [`WireTrajectory`]: a trajectory with the ids the learner needs (trajectory id
//!   `<lease_id>/<i>`, group id = lease id, group size). `From<WireTrajectory> for pb::Trajectory`
//!   encodes; `TryFrom<pb::Trajectory>` validates every length, score and enum. This is THE
//!   check of a wire trajectory: the learner's ingest (`deepsearch_learner::runtime::ingest`)
//!   calls it too (design.md: "the learner trusts only trajectories that carry a verdict and a
//!   policy version"), adding only what needs the learner's state (version, queue size).

use deepsearch_proto::v1 as pb;
use deepsearch_tasks::{Problem, Verdict};

use crate::output::{Source, Trajectory};
use crate::score::Outcome;

/// A field of a wire message that cannot be used, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {message}.{field}: {reason}")]
pub struct WireError {
    pub message: &'static str,
    pub field: String,
    pub reason: String,
}

fn bad(message: &'static str, field: impl Into<String>, reason: impl Into<String>) -> WireError {
    WireError {
        message,
        field: field.into(),
        reason: reason.into(),
    }
}

/// What to do with a leased problem (spec §7; mirrors `pb::WorkMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkMode {
    /// K direct samples, report the pass fraction (hard-problem filter).
    Filter,
    /// Tree search, stream the trajectories, report solved + verified solutions.
    Search,
    /// Cached solutions + fresh samples as one outcome-scored group.
    Cached,
    /// GRPO/DAPO baseline: k direct samples as one group.
    Sample,
}

impl WorkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkMode::Filter => "filter",
            WorkMode::Search => "search",
            WorkMode::Cached => "cached",
            WorkMode::Sample => "sample",
        }
    }
}

/// A cached verified solution as leased (its tokens and the version that produced them).
#[derive(Clone, Debug, PartialEq)]
pub struct LeasedSolution {
    pub text: String,
    pub tokens: Vec<u32>,
    pub policy_version: u64,
}

/// A validated work item.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkItem {
    pub lease_id: String,
    pub problem: Problem,
    pub mode: WorkMode,
    /// Fresh direct samples to draw (FILTER: K, SAMPLE: group size, CACHED: group − cached).
    pub num_samples: u32,
    pub group_size: u32,
    pub cached: Vec<LeasedSolution>,
    pub deadline_unix_ms: u64,
    pub policy_version: u64,
    pub round: u64,
}

/// Largest sample count accepted from a lease (a guard against a corrupted message).
pub const MAX_SAMPLES: u32 = 4096;

impl TryFrom<pb::WorkItem> for WorkItem {
    type Error = WireError;

    fn try_from(w: pb::WorkItem) -> Result<Self, WireError> {
        const M: &str = "WorkItem";
        if w.lease_id.is_empty() {
            return Err(bad(M, "lease_id", "is empty"));
        }
        let p = w.problem.ok_or_else(|| bad(M, "problem", "is missing"))?;
        let problem = deepsearch_coordinator::convert::problem_from_pb("problem", p)
            .map_err(|e| bad(M, "problem", e.to_string()))?;
        let mode = match pb::WorkMode::try_from(w.mode) {
            Ok(pb::WorkMode::Filter) => WorkMode::Filter,
            Ok(pb::WorkMode::Search) => WorkMode::Search,
            Ok(pb::WorkMode::Cached) => WorkMode::Cached,
            Ok(pb::WorkMode::Sample) => WorkMode::Sample,
            _ => return Err(bad(M, "mode", format!("{} is not a work mode", w.mode))),
        };
        if w.num_samples > MAX_SAMPLES || w.group_size > MAX_SAMPLES {
            return Err(bad(M, "num_samples", format!("more than {MAX_SAMPLES}")));
        }
        if mode != WorkMode::Search && w.num_samples == 0 && w.cached_solutions.is_empty() {
            return Err(bad(
                M,
                "num_samples",
                format!("0 samples asked for a {} item", mode.as_str()),
            ));
        }
        if mode == WorkMode::Cached && w.cached_solutions.iter().any(|s| s.tokens.is_empty()) {
            return Err(bad(
                M,
                "cached_solutions",
                "a cached solution has no tokens",
            ));
        }
        let cached = w
            .cached_solutions
            .into_iter()
            .map(|s| LeasedSolution {
                text: s.text,
                tokens: s.tokens,
                policy_version: s.policy_version,
            })
            .collect();
        Ok(WorkItem {
            lease_id: w.lease_id,
            problem,
            mode,
            num_samples: w.num_samples,
            group_size: w.group_size,
            cached,
            deadline_unix_ms: w.deadline_unix_ms,
            policy_version: w.policy_version,
            round: w.round,
        })
    }
}

/// A trajectory with its wire identity.
#[derive(Clone, Debug, PartialEq)]
pub struct WireTrajectory {
    /// `<lease_id>/<i>`.
    pub trajectory_id: String,
    /// The lease id: one work item is one GRPO group.
    pub group_id: String,
    /// Trajectories in the group.
    pub group_size: u32,
    pub actor_id: String,
    pub trajectory: Trajectory,
}

fn verdict_to_pb(v: &Verdict) -> pb::Verdict {
    match v {
        Verdict::Correct => pb::Verdict::Correct,
        Verdict::Wrong => pb::Verdict::Wrong,
        Verdict::Unparsable => pb::Verdict::Unparsable,
        Verdict::Error(_) => pb::Verdict::Error,
    }
}

fn source_to_pb(s: Source) -> pb::TrajectorySource {
    match s {
        Source::Search => pb::TrajectorySource::Search,
        Source::Direct => pb::TrajectorySource::Direct,
        Source::Cached => pb::TrajectorySource::Cached,
    }
}

/// Encoding: entropies with a NaN or infinite value (allowed inside the search, spec §3) are not
/// sent — they are informational and the learner only accepts finite ones.
impl From<WireTrajectory> for pb::Trajectory {
    fn from(w: WireTrajectory) -> pb::Trajectory {
        let mut t = w.trajectory;
        if t.entropies.iter().any(|h| !h.is_finite()) {
            t.entropies.clear();
        }
        pb::Trajectory {
            trajectory_id: w.trajectory_id,
            problem_id: t.problem_id,
            group_id: w.group_id,
            group_size: w.group_size,
            prompt_tokens: t.prompt_tokens,
            response_tokens: t.tokens,
            segment_ends: t.segment_ends,
            sampling_logprobs: t.logprobs,
            entropies: t.entropies,
            token_scores: t.token_scores,
            terminal_score: t.terminal_score as f32,
            verdict: verdict_to_pb(&t.verdict) as i32,
            source: source_to_pb(t.source) as i32,
            policy_version: t.policy_version,
            actor_id: w.actor_id,
        }
    }
}

/// Decoding a wire trajectory, validated field by field (ids non-empty, group size ≥ 1, prompt
/// and response non-empty, known verdict other than a verifier error and known source, one score,
/// log-prob (except for cached solutions) and entropy (if any) per response token, finite scores,
/// log-probabilities ≤ 0, non-negative entropies, segment ends increasing from > 0 to the response
/// length). The wire has no text, no outcome and no separate overlong penalty. The outcome follows the verdict (`Unparsable` → `Wrong`: whether it ended at a cap is
/// not on the wire; the reward is already inside `terminal_score`), the text is empty and the
/// penalty 0 (it is already inside the scores).
impl TryFrom<pb::Trajectory> for WireTrajectory {
    type Error = WireError;

    fn try_from(p: pb::Trajectory) -> Result<Self, WireError> {
        const M: &str = "Trajectory";
        for (field, v) in [
            ("trajectory_id", &p.trajectory_id),
            ("group_id", &p.group_id),
            ("problem_id", &p.problem_id),
        ] {
            if v.is_empty() {
                return Err(bad(M, field, "is empty"));
            }
        }
        if p.group_size == 0 {
            return Err(bad(M, "group_size", "is 0"));
        }
        let n = p.response_tokens.len();
        if n == 0 {
            return Err(bad(M, "response_tokens", "is empty"));
        }
        if p.prompt_tokens.is_empty() {
            return Err(bad(M, "prompt_tokens", "is empty"));
        }
        let (verdict, outcome) = match pb::Verdict::try_from(p.verdict) {
            Ok(pb::Verdict::Correct) => (Verdict::Correct, Outcome::Correct),
            Ok(pb::Verdict::Wrong) => (Verdict::Wrong, Outcome::Wrong),
            Ok(pb::Verdict::Unparsable) => (Verdict::Unparsable, Outcome::Wrong),
            Ok(pb::Verdict::Error) => {
                return Err(bad(M, "verdict", "a verifier error carries no reward"))
            }
            _ => return Err(bad(M, "verdict", format!("{} is not a verdict", p.verdict))),
        };
        let source = match pb::TrajectorySource::try_from(p.source) {
            Ok(pb::TrajectorySource::Search) => Source::Search,
            Ok(pb::TrajectorySource::Direct) => Source::Direct,
            Ok(pb::TrajectorySource::Cached) => Source::Cached,
            _ => {
                return Err(bad(
                    M,
                    "source",
                    format!("{} is not a trajectory source", p.source),
                ))
            }
        };
        if p.token_scores.len() != n {
            return Err(bad(
                M,
                "token_scores",
                format!("{} scores for {n} tokens", p.token_scores.len()),
            ));
        }
        if !(p.sampling_logprobs.is_empty() && source == Source::Cached)
            && p.sampling_logprobs.len() != n
        {
            return Err(bad(
                M,
                "sampling_logprobs",
                format!("{} log-probs for {n} tokens", p.sampling_logprobs.len()),
            ));
        }
        if !p.entropies.is_empty() && p.entropies.len() != n {
            return Err(bad(
                M,
                "entropies",
                format!("{} entropies for {n} tokens", p.entropies.len()),
            ));
        }
        if !p.terminal_score.is_finite() {
            return Err(bad(M, "terminal_score", format!("not finite ({})", p.terminal_score)));
        }
        if let Some(i) = p.token_scores.iter().position(|s| !s.is_finite()) {
            return Err(bad(M, "token_scores", format!("not finite at token {i}")));
        }
        if let Some(i) = p
            .sampling_logprobs
            .iter()
            .position(|l| !l.is_finite() || *l > 0.0)
        {
            return Err(bad(
                M,
                "sampling_logprobs",
                format!("not a finite log-probability (<= 0) at token {i}"),
            ));
        }
        if let Some(i) = p.entropies.iter().position(|h| !h.is_finite() || *h < 0.0) {
            return Err(bad(
                M,
                "entropies",
                format!("not a finite non-negative entropy at token {i}"),
            ));
        }
        let increasing = p.segment_ends.windows(2).all(|w| w[0] < w[1]);
        if p.segment_ends.is_empty()
            || !increasing
            || p.segment_ends[0] == 0
            || *p.segment_ends.last().unwrap() as usize != n
        {
            return Err(bad(
                M,
                "segment_ends",
                format!(
                    "must increase from > 0 to the response length {n}: {:?}",
                    p.segment_ends
                ),
            ));
        }
        Ok(WireTrajectory {
            trajectory_id: p.trajectory_id,
            group_id: p.group_id,
            group_size: p.group_size,
            actor_id: p.actor_id,
            trajectory: Trajectory {
                problem_id: p.problem_id,
                prompt_tokens: p.prompt_tokens,
                tokens: p.response_tokens,
                segment_ends: p.segment_ends,
                logprobs: p.sampling_logprobs,
                entropies: p.entropies,
                token_scores: p.token_scores,
                terminal_score: p.terminal_score as f64,
                overlong_penalty: 0.0,
                verdict,
                outcome,
                text: String::new(),
                source,
                policy_version: p.policy_version,
            },
        })
    }
}

/// The wire trajectories of one work item's group: ids `<lease_id>/<i>`, group id = lease id.
pub fn wire_group(
    lease_id: &str,
    actor_id: &str,
    trajectories: Vec<Trajectory>,
) -> Vec<pb::Trajectory> {
    let size = trajectories.len() as u32;
    trajectories
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            pb::Trajectory::from(WireTrajectory {
                trajectory_id: format!("{lease_id}/{i}"),
                group_id: lease_id.to_string(),
                group_size: size,
                actor_id: actor_id.to_string(),
                trajectory: t,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traj() -> Trajectory {
        Trajectory {
            problem_id: "p".into(),
            prompt_tokens: vec![9, 9],
            tokens: vec![1, 2, 3],
            segment_ends: vec![2, 3],
            logprobs: vec![-0.5; 3],
            entropies: vec![],
            token_scores: vec![0.25, 0.25, 1.0],
            terminal_score: 1.0,
            overlong_penalty: 0.0,
            verdict: Verdict::Correct,
            outcome: Outcome::Correct,
            text: "abc".into(),
            source: Source::Search,
            policy_version: 3,
        }
    }

    #[test]
    fn trajectories_round_trip_and_bad_ones_name_the_field() {
        let wire = wire_group("L1", "a1", vec![traj(), traj()]);
        assert_eq!(wire[1].trajectory_id, "L1/1");
        assert_eq!((wire[1].group_id.as_str(), wire[1].group_size), ("L1", 2));
        let back = WireTrajectory::try_from(wire[0].clone()).unwrap();
        let mut want = traj();
        want.text = String::new();
        assert_eq!(back.trajectory, want);
        let mut b = wire[0].clone();
        b.segment_ends = vec![2, 2];
        assert_eq!(
            WireTrajectory::try_from(b).unwrap_err().field,
            "segment_ends"
        );
        let mut b = wire[0].clone();
        b.token_scores.pop();
        assert_eq!(
            WireTrajectory::try_from(b).unwrap_err().field,
            "token_scores"
        );
        let mut b = wire[0].clone();
        b.verdict = 0;
        assert_eq!(WireTrajectory::try_from(b).unwrap_err().field, "verdict");
        let mut nan = traj();
        nan.entropies = vec![0.5, f32::NAN, 0.1];
        assert!(wire_group("L", "a", vec![nan])[0].entropies.is_empty());
        type Edit = fn(&mut pb::Trajectory);
        let cases: [(&str, Edit); 6] = [
            ("token_scores", |t| t.token_scores[0] = f32::NAN),
            ("terminal_score", |t| t.terminal_score = f32::INFINITY),
            ("sampling_logprobs", |t| t.sampling_logprobs[1] = 0.5),
            ("entropies", |t| t.entropies = vec![0.1, -0.2, 0.3]),
            ("entropies", |t| t.entropies = vec![0.1, 0.2]),
            ("problem_id", |t| t.problem_id.clear()),
        ];
        for (field, edit) in cases {
            let mut b = wire[0].clone();
            edit(&mut b);
            assert_eq!(WireTrajectory::try_from(b).unwrap_err().field, field);
        }
    }

    #[test]
    fn work_items_are_validated() {
        let item = pb::WorkItem {
            lease_id: "L".into(),
            problem: Some(pb::Problem {
                id: "p".into(),
                task: "countdown".into(),
                ..Default::default()
            }),
            mode: pb::WorkMode::Filter as i32,
            num_samples: 4,
            group_size: 8,
            ..Default::default()
        };
        let w = WorkItem::try_from(item.clone()).unwrap();
        assert_eq!(
            (w.mode, w.num_samples, w.problem.id.as_str()),
            (WorkMode::Filter, 4, "p")
        );
        let e = WorkItem::try_from(pb::WorkItem {
            mode: 9,
            ..item.clone()
        })
        .unwrap_err();
        assert_eq!(e.field, "mode");
        let e = WorkItem::try_from(pb::WorkItem {
            problem: None,
            ..item.clone()
        })
        .unwrap_err();
        assert_eq!(e.field, "problem");
        let e = WorkItem::try_from(pb::WorkItem {
            num_samples: 0,
            ..item
        })
        .unwrap_err();
        assert_eq!(e.field, "num_samples");
    }
}
