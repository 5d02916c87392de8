//! Problem sources: JSONL and Parquet datasets (design.md, "Formats users already have") with
//! configurable field names, stable ids and deterministic train/eval splits.
//!
//! Every record becomes a JSON value first (a JSONL line, or a Parquet row converted column by
//! column), then one function ([`record_to_problem`]) maps it to a [`Problem`], so both formats
//! accept the same field paths (dotted paths reach nested objects / struct columns, e.g.
//! `reward_model.ground_truth`) and report the same errors. A bad record is reported with file,
//! line (JSONL, 1-based) or row (Parquet, 0-based) and field, and skipped unless `strict`.

mod jsonl;
#[cfg(feature = "parquet")]
mod parquet;
mod split;

pub use jsonl::{jsonl_from_bytes, read_jsonl_values, JsonlReader, JsonlRecord};
pub use split::{split, SplitConfig};

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Problem, TaskError};

/// File format of a source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// By extension: `.parquet` → Parquet, anything else → JSONL.
    #[default]
    Auto,
    Jsonl,
    Parquet,
}

/// Where problems come from and how their fields are named.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// The dataset file (no default).
    pub path: PathBuf,
    /// File format (default "auto").
    pub format: Format,
    /// Fields tried in order for the problem text (default `["problem", "prompt"]`). A chat
    /// list `[{"role": .., "content": ..}]` yields its last user message.
    pub prompt_fields: Vec<String>,
    /// Field of the reference answer; strings and numbers accepted (default "answer").
    pub answer_field: String,
    /// Field of a stable id; when absent or missing in a record the id is the content hash of
    /// prompt and answer (default "id").
    pub id_field: Option<String>,
    /// Task name given to the problems, selecting their verifier (default "math").
    pub task: String,
    /// Fields copied into `Problem::metadata` when present (default none).
    pub metadata_fields: Vec<String>,
    /// Fail on the first bad record instead of skipping and reporting it (default false).
    pub strict: bool,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            path: PathBuf::new(),
            format: Format::Auto,
            prompt_fields: vec!["problem".into(), "prompt".into()],
            answer_field: "answer".into(),
            id_field: Some("id".into()),
            task: "math".into(),
            metadata_fields: Vec::new(),
            strict: false,
        }
    }
}

impl SourceConfig {
    /// Defaults for `path`.
    pub fn for_path(path: impl Into<PathBuf>) -> Self {
        SourceConfig {
            path: path.into(),
            ..Default::default()
        }
    }

    /// The top-level field names a record needs (first segments of all paths).
    #[cfg(feature = "parquet")]
    fn top_level_fields(&self) -> Vec<String> {
        let mut all: Vec<&String> = self
            .prompt_fields
            .iter()
            .chain([&self.answer_field])
            .collect();
        all.extend(self.id_field.iter());
        all.extend(self.metadata_fields.iter());
        let mut out: Vec<String> = all
            .iter()
            .map(|p| p.split('.').next().unwrap_or(p).to_string())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Loaded problems and the records that were skipped (each a [`TaskError::BadRecord`]).
#[derive(Debug, Default)]
pub struct Loaded {
    pub problems: Vec<Problem>,
    pub skipped: Vec<TaskError>,
}

/// Loads all problems of a source. Duplicate ids are skipped (reported) after the first.
pub fn load(config: &SourceConfig) -> Result<Loaded, TaskError> {
    if config.prompt_fields.is_empty() || config.answer_field.is_empty() {
        return Err(TaskError::config(
            "source: prompt_fields and answer_field must be set",
        ));
    }
    let format = match config.format {
        Format::Auto
            if config
                .path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("parquet")) =>
        {
            Format::Parquet
        }
        Format::Auto => Format::Jsonl,
        f => f,
    };
    let mut out = Loaded::default();
    let mut seen = HashSet::new();
    let mut accept = |res: Result<Problem, TaskError>, out: &mut Loaded| -> Result<(), TaskError> {
        let res = res.and_then(|p| {
            if seen.insert(p.id.clone()) {
                Ok(p)
            } else {
                Err(duplicate_error(config, &p))
            }
        });
        match res {
            Ok(p) => out.problems.push(p),
            Err(e) if config.strict => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "skipping bad record");
                out.skipped.push(e);
            }
        }
        Ok(())
    };
    match format {
        Format::Parquet => {
            #[cfg(feature = "parquet")]
            {
                let fields = config.top_level_fields();
                let top = |p: &String| p.split('.').next().unwrap_or(p).to_string();
                let required = vec![
                    config.prompt_fields.iter().map(top).collect(),
                    vec![top(&config.answer_field)],
                ];
                parquet::for_each_row(&config.path, &fields, &required, |row, value| {
                    let res = value.and_then(|v| record_to_problem(config, &v, "row", row));
                    accept(res, &mut out)
                })?;
            }
            #[cfg(not(feature = "parquet"))]
            return Err(TaskError::Unsupported(format!(
                "{}: Parquet support is not compiled in (enable the `parquet` feature)",
                config.path.display()
            )));
        }
        _ => {
            for rec in read_jsonl_values(&config.path)? {
                let res = rec.and_then(|r| record_to_problem(config, &r.value, "line", r.line));
                accept(res, &mut out)?;
            }
        }
    }
    tracing::info!(
        path = %config.path.display(),
        problems = out.problems.len(),
        skipped = out.skipped.len(),
        "loaded problems"
    );
    Ok(out)
}

fn duplicate_error(config: &SourceConfig, p: &Problem) -> TaskError {
    TaskError::BadRecord {
        path: config.path.clone(),
        unit: "record",
        line: 0,
        field: config.id_field.clone().unwrap_or_else(|| "id".into()),
        reason: format!("duplicate id {:?}", p.id),
    }
}

/// Stable content id: the first 16 hex digits of SHA-256(prompt ‖ 0x00 ‖ answer).
pub fn content_id(prompt: &str, answer: &str) -> String {
    let mut h = Sha256::new();
    h.update(prompt.as_bytes());
    h.update([0u8]);
    h.update(answer.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// Follows a dotted path (`a.b.c`) through nested objects.
pub fn lookup<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.')
        .try_fold(value, |v, key| v.get(key))
        .filter(|v| !v.is_null())
}

/// Maps one record to a problem (see [`SourceConfig`] for the field rules).
pub fn record_to_problem(
    config: &SourceConfig,
    value: &serde_json::Value,
    unit: &'static str,
    line: u64,
) -> Result<Problem, TaskError> {
    let bad = |field: &str, reason: String| TaskError::BadRecord {
        path: config.path.clone(),
        unit,
        line,
        field: field.to_string(),
        reason,
    };
    if !value.is_object() {
        return Err(bad(
            "<record>",
            format!("expected a JSON object, got {}", kind(value)),
        ));
    }
    let (pfield, pval) = config
        .prompt_fields
        .iter()
        .find_map(|f| lookup(value, f).map(|v| (f.as_str(), v)))
        .ok_or_else(|| bad(&config.prompt_fields.join("|"), "missing".into()))?;
    let prompt = prompt_text(pval).ok_or_else(|| {
        bad(
            pfield,
            format!("expected text or a chat list, got {}", kind(pval)),
        )
    })?;
    let aval = lookup(value, &config.answer_field)
        .ok_or_else(|| bad(&config.answer_field, "missing".into()))?;
    let answer = scalar_text(aval).ok_or_else(|| {
        bad(
            &config.answer_field,
            format!("expected a string or number, got {}", kind(aval)),
        )
    })?;
    if answer.trim().is_empty() {
        return Err(bad(&config.answer_field, "empty".into()));
    }
    let id = match config
        .id_field
        .as_deref()
        .and_then(|f| lookup(value, f).map(|v| (f, v)))
    {
        Some((f, v)) => scalar_text(v)
            .ok_or_else(|| bad(f, format!("expected a string or number, got {}", kind(v))))?,
        None => content_id(&prompt, &answer),
    };
    let mut metadata = BTreeMap::new();
    for f in &config.metadata_fields {
        if let Some(v) = lookup(value, f) {
            metadata.insert(f.clone(), v.clone());
        }
    }
    Ok(Problem {
        id,
        prompt,
        answer,
        task: config.task.clone(),
        metadata,
    })
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A string, or the last user message of a chat list.
fn prompt_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Array(msgs) => msgs
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
            .and_then(|m| m.get("content")?.as_str().map(str::to_string)),
        _ => None,
    }
}

/// Shorthand: the path of a source file, for error messages.
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> TaskError {
    TaskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_mapping() {
        let c = SourceConfig::for_path("x.jsonl");
        let p = record_to_problem(&c, &json!({"problem": "1+1?", "answer": 2}), "line", 1).unwrap();
        assert_eq!(
            (p.prompt.as_str(), p.answer.as_str(), p.task.as_str()),
            ("1+1?", "2", "math")
        );
        assert_eq!(p.id, content_id("1+1?", "2"));
        assert_eq!(p.id.len(), 16);
        let p = record_to_problem(
            &c,
            &json!({"prompt": "q", "answer": "a", "id": 7}),
            "line",
            1,
        )
        .unwrap();
        assert_eq!(p.id, "7");
        let chat = json!({"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "answer": "a"});
        assert_eq!(record_to_problem(&c, &chat, "line", 1).unwrap().prompt, "u");
        let nested = SourceConfig {
            answer_field: "reward_model.ground_truth".into(),
            ..c.clone()
        };
        let p = record_to_problem(
            &nested,
            &json!({"problem": "q", "reward_model": {"ground_truth": "5"}}),
            "line",
            1,
        )
        .unwrap();
        assert_eq!(p.answer, "5");
    }

    #[test]
    fn record_errors_name_file_line_and_field() {
        let c = SourceConfig::for_path("data.jsonl");
        let e = record_to_problem(&c, &json!({"problem": "q"}), "line", 3).unwrap_err();
        assert_eq!(e.to_string(), "data.jsonl:line 3: field `answer`: missing");
        let e =
            record_to_problem(&c, &json!({"problem": "q", "answer": [1]}), "line", 4).unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.jsonl:line 4: field `answer`: expected a string or number, got an array"
        );
        let e = record_to_problem(&c, &json!({"answer": "1"}), "line", 5).unwrap_err();
        assert!(
            e.to_string().contains("field `problem|prompt`: missing"),
            "{e}"
        );
        let e = record_to_problem(&c, &json!([1]), "line", 6).unwrap_err();
        assert!(e.to_string().contains("expected a JSON object"), "{e}");
    }
}
