//! Validation of wire messages into domain types, and encoding back (style.md §4).
//!
//! Every request field is checked once here; anything malformed becomes
//! [`Error::InvalidArgument`] naming the field, so the core only ever sees valid values.

use std::collections::BTreeMap;

use deepsearch_proto::v1 as pb;
use deepsearch_tasks::{Problem, Verdict};

use crate::error::{Error, Result};
use crate::record::{Mode, Outcome, PassAtK, ProblemRecord, SchedState, SolutionRecord};

/// Upper bound on free-text fields (ids, error messages) accepted from clients.
pub const MAX_ID_LEN: usize = 256;
/// Longest error message kept from an actor (longer ones are cut).
pub const MAX_ERROR_LEN: usize = 4096;

/// Checks an id field: non-empty, at most [`MAX_ID_LEN`] bytes.
pub fn id_field(field: &str, v: &str) -> Result<String> {
    if v.is_empty() {
        return Err(Error::InvalidArgument(format!("{field} is empty")));
    }
    if v.len() > MAX_ID_LEN {
        return Err(Error::InvalidArgument(format!(
            "{field} is {} bytes, more than {MAX_ID_LEN}",
            v.len()
        )));
    }
    Ok(v.to_string())
}

/// Wire verdict → domain verdict.
pub fn verdict_from_pb(v: i32) -> Result<Verdict> {
    match pb::Verdict::try_from(v) {
        Ok(pb::Verdict::Correct) => Ok(Verdict::Correct),
        Ok(pb::Verdict::Wrong) => Ok(Verdict::Wrong),
        Ok(pb::Verdict::Unparsable) => Ok(Verdict::Unparsable),
        Ok(pb::Verdict::Error) => Ok(Verdict::Error(String::new())),
        _ => Err(Error::InvalidArgument(format!("verdict {v} is not a valid Verdict"))),
    }
}

/// Domain verdict → wire verdict.
pub fn verdict_to_pb(v: &Verdict) -> pb::Verdict {
    match v {
        Verdict::Correct => pb::Verdict::Correct,
        Verdict::Wrong => pb::Verdict::Wrong,
        Verdict::Unparsable => pb::Verdict::Unparsable,
        Verdict::Error(_) => pb::Verdict::Error,
    }
}

/// Wire solution → domain solution; `correct_only` rejects any other verdict.
pub fn solution_from_pb(field: &str, s: pb::Solution, correct_only: bool) -> Result<SolutionRecord> {
    let verdict = verdict_from_pb(s.verdict)
        .map_err(|e| Error::InvalidArgument(format!("{field}: {e}")))?;
    if correct_only && verdict != Verdict::Correct {
        return Err(Error::InvalidArgument(format!(
            "{field}: verdict {} is not VERDICT_CORRECT",
            verdict.as_str()
        )));
    }
    Ok(SolutionRecord { text: s.text, tokens: s.tokens, policy_version: s.policy_version, verdict })
}

/// Domain solution → wire solution.
pub fn solution_to_pb(s: &SolutionRecord) -> pb::Solution {
    pb::Solution {
        text: s.text.clone(),
        tokens: s.tokens.clone(),
        policy_version: s.policy_version,
        verdict: verdict_to_pb(&s.verdict) as i32,
    }
}

/// Domain problem → wire problem (metadata as a JSON object string).
pub fn problem_to_pb(p: &Problem) -> pb::Problem {
    pb::Problem {
        id: p.id.clone(),
        prompt: p.prompt.clone(),
        answer: p.answer.clone(),
        task: p.task.clone(),
        metadata_json: if p.metadata.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&p.metadata).unwrap_or_default()
        },
    }
}

/// Wire problem → domain problem.
pub fn problem_from_pb(field: &str, p: pb::Problem) -> Result<Problem> {
    let id = id_field(&format!("{field}.id"), &p.id)?;
    let metadata: BTreeMap<String, serde_json::Value> = if p.metadata_json.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_str(&p.metadata_json).map_err(|e| {
            Error::InvalidArgument(format!("{field}.metadata_json is not a JSON object: {e}"))
        })?
    };
    Ok(Problem { id, prompt: p.prompt, answer: p.answer, task: p.task, metadata })
}

/// Domain mode → wire mode.
pub fn mode_to_pb(m: Mode) -> pb::WorkMode {
    match m {
        Mode::Filter => pb::WorkMode::Filter,
        Mode::Search => pb::WorkMode::Search,
        Mode::Cached => pb::WorkMode::Cached,
        Mode::Sample => pb::WorkMode::Sample,
    }
}

/// Domain scheduling state → wire state.
pub fn state_to_pb(s: SchedState) -> pb::SchedulingState {
    match s {
        SchedState::Running => pb::SchedulingState::Running,
        SchedState::Paused => pb::SchedulingState::Paused,
        SchedState::Draining => pb::SchedulingState::Draining,
    }
}

/// Validates a `ReportOutcomeRequest`. `max_solutions` bounds the solutions list.
pub fn outcome_from_pb(r: pb::ReportOutcomeRequest, max_solutions: usize) -> Result<Outcome> {
    let actor_id = id_field("actor_id", &r.actor_id)?;
    let lease_id = id_field("lease_id", &r.lease_id)?;
    if r.correct > r.samples {
        return Err(Error::InvalidArgument(format!(
            "correct ({}) > samples ({})",
            r.correct, r.samples
        )));
    }
    if r.solutions.len() > max_solutions {
        return Err(Error::InvalidArgument(format!(
            "{} solutions, more than the {max_solutions} the cache keeps",
            r.solutions.len()
        )));
    }
    let solutions = r
        .solutions
        .into_iter()
        .enumerate()
        .map(|(i, s)| solution_from_pb(&format!("solutions[{i}]"), s, true))
        .collect::<Result<Vec<_>>>()?;
    let error = if r.error.is_empty() {
        None
    } else {
        let mut e = r.error;
        if e.len() > MAX_ERROR_LEN {
            let mut cut = MAX_ERROR_LEN;
            while !e.is_char_boundary(cut) {
                cut -= 1;
            }
            e.truncate(cut);
        }
        Some(e)
    };
    Ok(Outcome {
        actor_id,
        lease_id,
        policy_version: r.policy_version,
        samples: r.samples,
        correct: r.correct,
        verifier_errors: r.verifier_errors,
        solved: r.solved,
        solutions,
        generated_tokens: r.generated_tokens,
        error,
    })
}

/// Domain Pass1@K → wire record.
pub fn pass_to_pb(p: &PassAtK) -> pb::PassAtKRecord {
    pb::PassAtKRecord {
        policy_version: p.policy_version,
        round: p.round,
        samples: p.samples,
        correct: p.correct,
        pass1: p.pass1(),
        recorded_unix_ms: p.recorded_unix_ms,
    }
}

/// A cached record → its cache entry.
pub fn cache_entry_to_pb(r: &ProblemRecord) -> pb::CacheEntry {
    pb::CacheEntry {
        problem_id: r.problem.id.clone(),
        problem: Some(problem_to_pb(&r.problem)),
        solutions: r.solutions.iter().map(solution_to_pb).collect(),
        admitted_policy_version: r.admitted_policy_version.unwrap_or(0),
        reason: r.cache_reason.clone().unwrap_or_default(),
    }
}

/// A validated cache entry to import.
#[derive(Clone, Debug)]
pub struct ImportEntry {
    pub problem_id: String,
    pub problem: Option<Problem>,
    pub solutions: Vec<SolutionRecord>,
    pub admitted_policy_version: u64,
    pub reason: String,
}

/// Validates a wire cache entry for import.
pub fn import_entry_from_pb(e: pb::CacheEntry) -> Result<ImportEntry> {
    let problem_id = id_field("entry.problem_id", &e.problem_id)?;
    let problem = e.problem.map(|p| problem_from_pb("entry.problem", p)).transpose()?;
    if let Some(p) = &problem {
        if p.id != problem_id {
            return Err(Error::InvalidArgument(format!(
                "entry.problem.id {:?} differs from entry.problem_id {problem_id:?}",
                p.id
            )));
        }
    }
    let solutions = e
        .solutions
        .into_iter()
        .enumerate()
        .map(|(i, s)| solution_from_pb(&format!("entry.solutions[{i}]"), s, false))
        .collect::<Result<Vec<_>>>()?;
    Ok(ImportEntry {
        problem_id,
        problem,
        solutions,
        admitted_policy_version: e.admitted_policy_version,
        reason: e.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> pb::ReportOutcomeRequest {
        pb::ReportOutcomeRequest {
            actor_id: "a".into(),
            lease_id: "l".into(),
            samples: 4,
            correct: 1,
            ..Default::default()
        }
    }

    #[test]
    fn outcome_validation_names_the_field() {
        assert!(outcome_from_pb(req(), 8).is_ok());
        let e = outcome_from_pb(pb::ReportOutcomeRequest { lease_id: String::new(), ..req() }, 8).unwrap_err();
        assert!(e.to_string().contains("lease_id"), "{e}");
        let e = outcome_from_pb(pb::ReportOutcomeRequest { correct: 5, ..req() }, 8).unwrap_err();
        assert!(e.to_string().contains("correct (5) > samples (4)"), "{e}");
        let wrong = pb::Solution { text: "x".into(), verdict: pb::Verdict::Wrong as i32, ..Default::default() };
        let e = outcome_from_pb(pb::ReportOutcomeRequest { solutions: vec![wrong], ..req() }, 8).unwrap_err();
        assert!(e.to_string().contains("solutions[0]"), "{e}");
    }

    #[test]
    fn problem_round_trips_with_metadata() {
        let mut p = Problem::new("p1", "countdown", "q", "a");
        p.metadata.insert("n".into(), serde_json::json!(5));
        let back = problem_from_pb("problem", problem_to_pb(&p)).unwrap();
        assert_eq!(back, p);
        let bad = pb::Problem { id: "x".into(), metadata_json: "[1]".into(), ..Default::default() };
        assert!(problem_from_pb("problem", bad).is_err());
    }
}
