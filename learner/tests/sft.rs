//! SFT bootstrapping: the loss falls on a small learnable mapping, bad JSONL names file and line.

mod common;

use deepsearch_learner::sft::{read_examples, train_sft, SftConfig};

#[test]
fn sft_learns_a_mapping_and_bad_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("traces.jsonl");
    // response = the prompt reversed: learnable by a tiny model in a few dozen updates
    let words = ["abc", "bcd", "cde", "def", "efg", "fgh", "ghi", "hij"];
    let lines: Vec<String> = words
        .iter()
        .map(|w| serde_json::json!({"prompt": w, "response": w.chars().rev().collect::<String>()}).to_string())
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let mut model = common::tiny_model(2);
    let examples = read_examples(&data, &model).unwrap();
    assert_eq!(examples.len(), 8);
    assert_eq!(examples[0].response.len(), 4); // 3 characters + EOS
    let cfg = SftConfig {
        lr: 1e-2,
        warmup_steps: 5,
        batch_size: 8,
        epochs: 80,
        ..Default::default()
    };
    let mut losses = Vec::new();
    let rep = train_sft(&mut model, &examples, &cfg, |_, l| losses.push(l)).unwrap();
    assert_eq!(rep.updates, 80);
    assert!(rep.first_loss > 2.5 && rep.last_loss < 0.3 * rep.first_loss, "{rep:?}");

    std::fs::write(&data, format!("{}\n{{\"prompt\": \"ab\"}}\n", lines[0])).unwrap();
    let err = read_examples(&data, &model).unwrap_err().to_string();
    assert!(
        err.contains("traces.jsonl") && err.contains("line 2") && err.contains("response"),
        "{err}"
    );
}
