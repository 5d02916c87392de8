//! End-to-end `deepsearch train` (design.md "Embedded default"): the real binary runs bootstrap
//! SFT, coordinator, one actor and the learner over loopback gRPC for a few seconds and leaves a
//! complete run folder; Ctrl-C writes a learner checkpoint and `--resume` continues the run; bad
//! input fails with an error naming it. The tests share one cached bootstrap model.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The bootstrap cache shared by the tests here (same settings, so one SFT run serves all).
fn bootstrap_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("train-e2e-bootstrap")
}

/// `deepsearch train` with the short test settings, `--out out` and `extra` args; stdout and
/// stderr piped.
fn train_cmd(out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepsearch"));
    c.env("RUST_LOG", "warn").args(["train", "--out"]).arg(out);
    for kv in [
        "bootstrap.max_seconds=8",
        "bootstrap.count=1000",
        "data.train_count=300",
        "data.eval_count=8",
        "eval.samples=2",
        "eval.every_steps=5",
        // the 8 s bootstrap rarely solves a problem; these tests check the machinery, so
        // unsolved groups train too (otherwise no step may run in a few seconds)
        "learner.drop_unsolved_groups=false",
    ] {
        c.args(["--set", kv]);
    }
    c.args(["--set", &format!("bootstrap.cache_dir={:?}", bootstrap_cache().display().to_string())]);
    c.args(extra).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    c
}

/// Waits for `child` up to `secs` (then kills it and panics): every wait can time out.
fn wait_child(mut child: Child, secs: u64, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn records(out: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn train_writes_a_complete_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let child = train_cmd(&out, &["--set", "run.time_budget=15s"]).spawn().unwrap();
    let o = wait_child(child, 300, "deepsearch train");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "deepsearch train failed: {}\n{stderr}", o.status);

    let resolved = std::fs::read_to_string(out.join("config.resolved.toml")).unwrap();
    assert!(resolved.contains("time_budget = \"15s\""), "{resolved}");

    let records = records(&out);
    let evals: Vec<_> = records.iter().filter(|r| r["kind"] == "eval").collect();
    let steps: Vec<_> = records.iter().filter(|r| r["kind"] == "step").collect();
    let rounds: Vec<_> = records.iter().filter(|r| r["kind"] == "round").collect();
    assert_eq!(evals[0]["step"], 0, "first record is the bootstrap eval");
    assert!(evals.len() >= 2, "bootstrap and final eval expected: {records:?}");
    assert!(!steps.is_empty(), "no learner step in 15s: {records:?}");
    for r in &evals {
        let p = r["pass1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{r}");
    }
    let mut last_tokens = 0;
    for r in &steps {
        assert!(r["reward_mean"].as_f64().unwrap().is_finite(), "{r}");
        let g = r["generated_tokens"].as_u64().unwrap();
        assert!(g > 0 && g >= last_tokens, "generated tokens must grow: {r}");
        last_tokens = g;
        // the time split is cumulative seconds of real work
        for k in ["time_generate_s", "time_verify_s", "time_bookkeeping_s", "time_train_s", "elapsed_s"] {
            assert!(r[k].as_f64().unwrap() >= 0.0, "{k} in {r}");
        }
    }
    let last = steps.last().unwrap();
    assert!(last["time_generate_s"].as_f64().unwrap() > 0.0 && last["time_train_s"].as_f64().unwrap() > 0.0, "{last}");
    // the coordinator's figures: at least the final round record, with the filter's hard set
    assert!(!rounds.is_empty(), "no round record: {records:?}");
    let hard = rounds.last().unwrap()["hard_set"].as_u64().unwrap();
    assert!(hard <= 300, "hard set larger than the training set: {hard}");

    // structured logs in the run folder: JSON lines from every role
    let log = std::fs::read_to_string(out.join("train.log")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().any(|l| l["target"].as_str().unwrap_or("").starts_with("deepsearch_coordinator")), "no coordinator log line");
    assert!(lines.iter().any(|l| l["target"].as_str().unwrap_or("").starts_with("deepsearch_learner")), "no learner log line");

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("data-series-points"), "report has no drawn series");

    let ckpt = out.join("checkpoints").join("final");
    assert!(ckpt.join("config.json").is_file() && ckpt.join("model.safetensors").is_file());
    assert!(out.join("solution_cache.jsonl").is_file());
    // the admin token of the run's coordinator, for its owner only
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(out.join("admin.token")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o077, 0, "admin.token readable by others");
        assert!(std::fs::read_to_string(out.join("admin.token")).unwrap().trim().len() >= 32);
    }
    assert!(stderr.contains("deepsearch admin --coordinator"), "no admin hint: {stderr}");
    // the bootstrap model is cached for the next run
    assert!(std::fs::read_dir(bootstrap_cache()).unwrap().any(|e| e.unwrap().path().join("model.safetensors").is_file()));

    // a second fresh run into the same folder is refused, naming the folder and --resume
    let o = train_cmd(&out, &["--set", "run.time_budget=15s"]).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("--resume") && e.contains(&out.display().to_string()), "{e}");
}

/// Ctrl-C (SIGINT) stops the run cleanly with a learner checkpoint; `--resume` continues it:
/// steps and generated tokens go on from where they were, records are appended.
#[test]
fn interrupted_run_resumes_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let child = train_cmd(&out, &["--set", "run.time_budget=10m", "--set", "eval.every_steps=0"]).spawn().unwrap();
    // interrupt once two steps are recorded
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let n = std::fs::read_to_string(out.join("metrics.jsonl")).map(|t| t.matches("\"kind\":\"step\"").count()).unwrap_or(0);
        if n >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no two learner steps within 240 s");
        std::thread::sleep(Duration::from_millis(300));
    }
    let st = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let o = wait_child(child, 180, "the interrupted run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "interrupted run failed: {stderr}");
    assert!(stderr.contains("--resume"), "no resume hint: {stderr}");
    let before = records(&out);
    let steps_before: Vec<u64> = before.iter().filter(|r| r["kind"] == "step").map(|r| r["step"].as_u64().unwrap()).collect();
    let last_before = *steps_before.iter().max().unwrap();
    let tokens_before = before.iter().filter_map(|r| r["generated_tokens"].as_u64()).max().unwrap();
    let ckpts: Vec<_> = std::fs::read_dir(out.join("checkpoints").join("learner")).unwrap().collect();
    assert!(!ckpts.is_empty(), "no learner checkpoint after Ctrl-C");

    // resume with a budget that leaves a few seconds (the first session used some of it)
    let spent = before.iter().filter_map(|r| r["elapsed_s"].as_f64()).fold(0.0, f64::max);
    let budget = format!("run.time_budget={}s", spent.ceil() as u64 + 12);
    let child = train_cmd(&out, &["--resume", "--set", &budget]).spawn().unwrap();
    let o = wait_child(child, 300, "the resumed run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "resumed run failed: {stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");
    let after = records(&out);
    assert!(after.len() > before.len() && after[..before.len()] == before[..], "records must be appended");
    let new_steps: Vec<u64> = after[before.len()..].iter().filter(|r| r["kind"] == "step").map(|r| r["step"].as_u64().unwrap()).collect();
    assert!(!new_steps.is_empty(), "no step after resuming: {stderr}");
    assert!(new_steps.iter().all(|&s| s > last_before), "steps restart instead of continuing: {last_before} then {new_steps:?}");
    let new_tokens = after[before.len()..].iter().filter_map(|r| r["generated_tokens"].as_u64()).max().unwrap();
    assert!(new_tokens > tokens_before, "generated tokens restart: {tokens_before} then {new_tokens}");
    assert_eq!(after.iter().filter(|r| r["kind"] == "eval" && r["step"] == 0).count(), 1, "the resumed run must not redo the step-0 eval");
    assert!(out.join("checkpoints").join("final").join("model.safetensors").is_file());
}

/// Bad input fails fast with an error naming it: an unknown key (in a file and in --set), a bad
/// value, an unwritable run folder, --resume of a folder holding no run.
#[test]
fn bad_train_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_deepsearch")).arg("train").args(args).output().unwrap();
        assert!(!o.status.success(), "deepsearch train {args:?} succeeded");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "[run]\ntime_budget = \"5s\"\n\n[learner]\nlrr = 1e-3\n").unwrap();
    let e = run(&["--config", cfg.to_str().unwrap()]);
    assert!(e.contains("bad.toml") && e.contains("lrr"), "{e}");
    let e = run(&["--set", "run.tme_budget=5s"]);
    assert!(e.contains("tme_budget"), "{e}");
    let e = run(&["--set", "learner.lr=fast"]);
    assert!(e.contains("lr"), "{e}");
    let e = run(&["--set", "run.time_budget=soon"]);
    assert!(e.contains("time_budget") && e.contains("soon"), "{e}");
    // a run folder under a regular file cannot be created
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let bad_out = file.join("run");
    let e = run(&["--out", bad_out.to_str().unwrap()]);
    assert!(e.contains(&bad_out.display().to_string()), "{e}");
    let e = run(&["--resume", "--out", tmp.path().join("nothing").to_str().unwrap()]);
    assert!(e.contains("no run to continue"), "{e}");
}
