//! Problem sources on real files: JSONL with good, malformed and invalid-UTF-8 lines, strict
//! mode, custom fields, deterministic splits. (The Parquet file test lives in
//! `src/source/parquet.rs`, which can reach the optional arrow/parquet dependencies.)

use std::io::Write;
use std::path::PathBuf;

use deepsearch_tasks::source::{self, split, SourceConfig, SplitConfig};
use deepsearch_tasks::TaskError;

fn jsonl_file(dir: &tempfile::TempDir, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join("data.jsonl");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

#[test]
fn jsonl_bad_lines_are_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Vec::new();
    data.extend_from_slice(b"{\"problem\": \"1+1?\", \"answer\": \"2\", \"id\": \"a\"}\n");
    data.extend_from_slice(b"{\"problem\": \"no answer\"}\n");
    data.extend_from_slice(b"not json\n");
    data.extend_from_slice(b"{\"prompt\": \"\xff bad utf8\", \"answer\": \"1\"}\n");
    data.extend_from_slice(b"\n");
    data.extend_from_slice(b"{\"prompt\": \"2+2?\", \"answer\": 4}\n");
    data.extend_from_slice(b"{\"problem\": \"dup\", \"answer\": \"9\", \"id\": \"a\"}\n");
    let path = jsonl_file(&dir, &data);
    let loaded = source::load(&SourceConfig::for_path(&path)).unwrap();
    assert_eq!(loaded.problems.len(), 2);
    assert_eq!(loaded.problems[0].id, "a");
    assert_eq!(loaded.problems[1].answer, "4");
    assert_eq!(loaded.problems[1].id, source::content_id("2+2?", "4"));
    let msgs: Vec<String> = loaded.skipped.iter().map(|e| e.to_string()).collect();
    let p = path.display();
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    assert_eq!(msgs[0], format!("{p}:line 2: field `answer`: missing"));
    assert!(
        msgs[1].starts_with(&format!("{p}:line 3: field `<line>`: invalid JSON")),
        "{}",
        msgs[1]
    );
    assert_eq!(
        msgs[2],
        format!("{p}:line 4: field `<line>`: invalid UTF-8 at byte 12")
    );
    assert!(msgs[3].contains("duplicate id \"a\""), "{}", msgs[3]);

    let strict = SourceConfig {
        strict: true,
        ..SourceConfig::for_path(&path)
    };
    let err = source::load(&strict).unwrap_err();
    assert!(matches!(err, TaskError::BadRecord { line: 2, .. }), "{err}");
}

#[test]
fn custom_field_names_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = jsonl_file(
        &dir,
        b"{\"question\": \"q\", \"gt\": {\"value\": \"7\"}, \"uid\": 3, \"level\": 5}\n",
    );
    let cfg = SourceConfig {
        prompt_fields: vec!["question".into()],
        answer_field: "gt.value".into(),
        id_field: Some("uid".into()),
        metadata_fields: vec!["level".into()],
        task: "math".into(),
        ..SourceConfig::for_path(&path)
    };
    let p = source::load(&cfg).unwrap().problems.remove(0);
    assert_eq!(
        (p.id.as_str(), p.prompt.as_str(), p.answer.as_str()),
        ("3", "q", "7")
    );
    assert_eq!(p.metadata["level"], serde_json::json!(5));
    let missing = source::load(&SourceConfig::for_path(dir.path().join("nope.jsonl"))).unwrap_err();
    assert!(matches!(missing, TaskError::Io { .. }) && missing.to_string().contains("nope.jsonl"));
}

#[test]
fn split_is_stable_under_reordering() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..200)
        .map(|i| format!("{{\"problem\": \"p{i}\", \"answer\": \"{i}\"}}\n"))
        .collect();
    let path = jsonl_file(&dir, lines.as_bytes());
    let problems = source::load(&SourceConfig::for_path(&path))
        .unwrap()
        .problems;
    let cfg = SplitConfig {
        eval_fraction: 0.25,
        seed: 9,
    };
    let (train, eval) = split(problems.clone(), &cfg).unwrap();
    assert_eq!(train.len() + eval.len(), 200);
    assert!(!eval.is_empty() && !train.is_empty());
    let mut reversed = problems;
    reversed.reverse();
    let (_, eval2) = split(reversed, &cfg).unwrap();
    let mut a: Vec<_> = eval.iter().map(|p| &p.id).collect();
    let mut b: Vec<_> = eval2.iter().map(|p| &p.id).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}
