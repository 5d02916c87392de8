//! The solution cache as JSONL (issue #6 item 5: "cache export to JSONL and import").
//!
//! One cache entry per line:
//! `{"problem_id": .., "problem": {id, prompt, answer, task, metadata}, "solutions": [{text,
//! tokens, policy_version, verdict}], "admitted_policy_version": .., "reason": ..}`.
//! The problem is included so the file can seed a coordinator that lacks it (spec §7 "known gaps":
//! the reference passed the cache between rounds as files by hand; here it is an export).

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use deepsearch_proto::v1 as pb;
use deepsearch_tasks::Problem;
use serde::{Deserialize, Serialize};

use crate::convert;
use crate::error::{Error, Result};
use crate::record::SolutionRecord;

/// One line of a cache file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheLine {
    pub problem_id: String,
    #[serde(default)]
    pub problem: Option<Problem>,
    pub solutions: Vec<SolutionRecord>,
    #[serde(default)]
    pub admitted_policy_version: u64,
    #[serde(default)]
    pub reason: String,
}

impl CacheLine {
    /// From a wire entry (validated).
    pub fn from_pb(e: pb::CacheEntry) -> Result<CacheLine> {
        let v = convert::import_entry_from_pb(e)?;
        Ok(CacheLine {
            problem_id: v.problem_id,
            problem: v.problem,
            solutions: v.solutions,
            admitted_policy_version: v.admitted_policy_version,
            reason: v.reason,
        })
    }

    /// To a wire entry.
    pub fn to_pb(&self) -> pb::CacheEntry {
        pb::CacheEntry {
            problem_id: self.problem_id.clone(),
            problem: self.problem.as_ref().map(convert::problem_to_pb),
            solutions: self.solutions.iter().map(convert::solution_to_pb).collect(),
            admitted_policy_version: self.admitted_policy_version,
            reason: self.reason.clone(),
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Writes entries as JSONL (one per line); returns how many.
pub fn write_jsonl(path: &Path, entries: Vec<pb::CacheEntry>) -> Result<usize> {
    let mut w = BufWriter::new(std::fs::File::create(path).map_err(io(path))?);
    let n = entries.len();
    for e in entries {
        let line = serde_json::to_string(&CacheLine::from_pb(e)?)
            .map_err(|e| Error::Store(format!("encode cache line: {e}")))?;
        writeln!(w, "{line}").map_err(io(path))?;
    }
    w.flush().map_err(io(path))?;
    Ok(n)
}

/// Reads a JSONL cache file; errors name the file and line. Blank lines are skipped.
pub fn read_jsonl(path: &Path) -> Result<Vec<pb::CacheEntry>> {
    let r = std::io::BufReader::new(std::fs::File::open(path).map_err(io(path))?);
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: CacheLine = serde_json::from_str(&line).map_err(|e| {
            Error::InvalidArgument(format!("{}:{}: not a cache entry: {e}", path.display(), i + 1))
        })?;
        out.push(parsed.to_pb());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_round_trip_and_line_numbers_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.jsonl");
        let entry = pb::CacheEntry {
            problem_id: "p1".into(),
            problem: Some(pb::Problem { id: "p1".into(), prompt: "q".into(), answer: "a".into(), task: "math".into(), metadata_json: String::new() }),
            solutions: vec![pb::Solution { text: "s".into(), tokens: vec![5, 6], policy_version: 3, verdict: pb::Verdict::Correct as i32 }],
            admitted_policy_version: 3,
            reason: "released rule".into(),
        };
        assert_eq!(write_jsonl(&path, vec![entry.clone()]).unwrap(), 1);
        assert_eq!(read_jsonl(&path).unwrap(), vec![entry]);

        std::fs::write(&path, "\n{\"problem_id\": \"x\", \"solutions\": []}\n{\"nope\": 1}\n").unwrap();
        let e = read_jsonl(&path).unwrap_err().to_string();
        assert!(e.contains("cache.jsonl:3"), "{e}");
    }
}
