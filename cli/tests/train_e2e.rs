//! End-to-end `deepsearch train` (design.md "Embedded default"): the real binary runs bootstrap
//! SFT, coordinator, one actor and the learner over loopback gRPC for a few seconds and leaves a
//! complete run folder. The budget is far too short for a reliable accuracy gain, so this checks
//! the run's artefacts and that training steps happened, not that reward rises.

use std::process::Command;

#[test]
fn train_writes_a_complete_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cache = tmp.path().join("bootstrap-cache");
    let mut child = Command::new(env!("CARGO_BIN_EXE_deepsearch"))
        .env("RUST_LOG", "warn")
        .args(["train", "--out"])
        .arg(&out)
        .args([
            "--set", "run.time_budget=15s",
            "--set", "bootstrap.max_seconds=8",
            "--set", "bootstrap.count=1000",
            "--set", "data.train_count=300",
            "--set", "data.eval_count=8",
            "--set", "eval.samples=2",
            "--set", "eval.every_steps=5",
            // the 8 s bootstrap rarely solves a problem; this test checks the machinery, so
            // unsolved groups train too (otherwise no step may run in 15 s)
            "--set", "learner.drop_unsolved_groups=false",
        ])
        .args(["--set", &format!("bootstrap.cache_dir={:?}", cache.display().to_string())])
        .spawn()
        .unwrap();
    // Every wait can time out: a run that does not end within 5 minutes is killed and fails.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("deepsearch train did not finish within 300 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(status.success(), "deepsearch train failed: {status}");

    let resolved = std::fs::read_to_string(out.join("config.resolved.toml")).unwrap();
    assert!(resolved.contains("time_budget = \"15s\""), "{resolved}");

    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let evals: Vec<_> = records.iter().filter(|r| r["kind"] == "eval").collect();
    let steps: Vec<_> = records.iter().filter(|r| r["kind"] == "step").collect();
    assert_eq!(evals[0]["step"], 0, "first record is the bootstrap eval");
    assert!(evals.len() >= 2, "bootstrap and final eval expected: {metrics}");
    assert!(!steps.is_empty(), "no learner step in 15s: {metrics}");
    for r in &evals {
        let p = r["pass1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{r}");
    }
    for r in &steps {
        assert!(r["reward_mean"].as_f64().unwrap().is_finite() && r["generated_tokens"].as_u64().unwrap() > 0, "{r}");
    }

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<polyline") && html.contains("Held-out accuracy"), "report has no drawn series");

    let ckpt = out.join("checkpoints").join("final");
    assert!(ckpt.join("config.json").is_file() && ckpt.join("model.safetensors").is_file());
    // the bootstrap model is cached for the next run
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
}
