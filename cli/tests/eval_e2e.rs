//! End to end `deepsearch eval` (issue #7 item 4) with the real binary. A tiny policy is taught
//! one-step Arithmetic (`a+b` with operands 1..4) by `deepsearch gen --traces` + `deepsearch sft`
//! for a few seconds: enough to answer some problems right and some wrong, so the per-problem
//! counts vary and the pass@k checks below have something to check. Then the JSON of an eval on
//! a `--data` file and of one on generated problems (with search at a token budget) is checked
//! for consistency, against the binomial definition of pass@k computed here independently, and
//! bad inputs are checked for clear errors.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use deepsearch_policy::checkpoint::{PolicyModel, SaveOptions};
use deepsearch_policy::config::Qwen2Config;
use deepsearch_policy::tokenizer::PolicyTokenizer;
use serde_json::Value;

const EASY: &str = r#"{"min_depth":1,"max_depth":1,"min_operand":1,"max_operand":4,"ops":"+"}"#;

/// Runs the binary with a deadline (killed and failed past it); returns its output.
fn deepsearch(args: &[&str], cwd: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deepsearch"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).unwrap();
            buf
        })
    };
    let out = pipe(Box::new(child.stdout.take().unwrap()));
    let err = pipe(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("deepsearch {args:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn ok(args: &[&str], cwd: &Path) -> String {
    let o = deepsearch(args, cwd);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        o.status.success(),
        "deepsearch {args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout.into_owned()
}

/// The stderr of a run that must fail.
fn fails(args: &[&str], cwd: &Path) -> String {
    let o = deepsearch(args, cwd);
    assert!(
        !o.status.success(),
        "deepsearch {args:?} should fail:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// 1 − C(n−c, k)/C(n, k) from exact binomials (n is small here).
fn pass_at_k_exact(n: u64, c: u64, k: u64) -> f64 {
    let binom = |n: u64, k: u64| -> f64 {
        if k > n {
            return 0.0;
        }
        (0..k).fold(1u128, |acc, i| acc * (n - i) as u128 / (i + 1) as u128) as f64
    };
    1.0 - binom(n - c, k) / binom(n, k)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Checks the counts and the pass@k values of an eval JSON; returns the any-correct fraction.
fn check_consistent(v: &Value, samples: u64) -> f64 {
    let ks: Vec<u64> = v["ks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_u64().unwrap())
        .collect();
    assert!(
        ks.windows(2).all(|w| w[0] < w[1]) && *ks.last().unwrap() <= samples,
        "{ks:?}"
    );
    let problems = v["problems"].as_array().unwrap();
    let total = &v["total"];
    assert_eq!(total["problems"].as_u64().unwrap() as usize, problems.len());
    let (mut n_sum, mut c_sum, mut tok_sum, mut any) = (0, 0, 0, 0);
    let mut mean_k = vec![0.0; ks.len()];
    for p in problems {
        let (n, c) = (p["n"].as_u64().unwrap(), p["correct"].as_u64().unwrap());
        assert_eq!(n, samples, "{p}");
        assert!(c <= n, "{p}");
        n_sum += n;
        c_sum += c;
        tok_sum += p["tokens"].as_u64().unwrap();
        any += u64::from(c > 0);
        assert!(close(f(&p["pass1"]), c as f64 / n as f64), "{p}");
        let mut last = 0.0;
        for (i, k) in ks.iter().enumerate() {
            let got = f(&p["pass_at_k"][k.to_string()]);
            assert!(close(got, pass_at_k_exact(n, c, *k)), "pass@{k} of {p}");
            assert!(got >= last - 1e-12, "pass@k not monotone in k: {p}");
            last = got;
            mean_k[i] += got / problems.len() as f64;
        }
    }
    assert_eq!(total["samples"].as_u64().unwrap(), n_sum);
    assert_eq!(total["correct"].as_u64().unwrap(), c_sum);
    assert_eq!(total["tokens"].as_u64().unwrap(), tok_sum);
    let mean_c_over_n = c_sum as f64 / n_sum as f64; // every n is equal
    assert!(close(f(&total["pass1"]), mean_c_over_n), "{total}");
    let any_frac = any as f64 / problems.len() as f64;
    assert!(close(f(&total["any_correct"]), any_frac), "{total}");
    let mut last = 0.0;
    for (i, k) in ks.iter().enumerate() {
        let got = f(&total["pass_at_k"][k.to_string()]);
        assert!(
            close(got, mean_k[i]),
            "total pass@{k}: {got} vs mean {}",
            mean_k[i]
        );
        assert!(got >= last - 1e-12, "total pass@k not monotone: {total}");
        last = got;
        if *k == 1 {
            assert!(close(got, mean_c_over_n), "{total}");
        }
        if *k == samples {
            assert!(
                close(got, any_frac),
                "pass@n must be the any-correct fraction: {total}"
            );
        }
    }
    any_frac
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn eval_reports_consistent_pass_at_k_for_data_and_generated_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(
        &[
            "gen",
            "--task",
            "arithmetic",
            "--count",
            "400",
            "--seed",
            "1",
            "--params",
            EASY,
            "--traces",
            "--out",
            "sft.jsonl",
        ],
        d,
    );
    ok(
        &[
            "sft",
            "--init",
            "arithmetic",
            "--data",
            "sft.jsonl",
            "--out",
            "model",
            "--max-steps",
            "13",
            "--lr",
            "1e-2",
            "--warmup-steps",
            "5",
            "--threads",
            "2",
        ],
        d,
    );

    // --data: every problem of the file, in order, 8 samples each, default k list
    ok(
        &[
            "gen",
            "--task",
            "arithmetic",
            "--count",
            "8",
            "--seed",
            "9",
            "--params",
            EASY,
            "--out",
            "eval.jsonl",
        ],
        d,
    );
    let eval = [
        "eval",
        "--model",
        "model",
        "--task",
        "arithmetic",
        "--data",
        "eval.jsonl",
        "--samples",
        "8",
        "--max-new-tokens",
        "8",
        "--seed",
        "5",
        "--threads",
        "2",
    ];
    let stdout = ok(&[&eval[..], &["--json", "a.json"]].concat(), d);
    let a = read_json(&d.join("a.json"));
    let ids: Vec<&str> = a["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..8).map(|i| format!("arithmetic-9-{i}")).collect();
    assert_eq!(ids, want);
    assert_eq!(a["ks"], serde_json::json!([1, 2, 4, 8]));
    let any = check_consistent(&a, 8);
    let pass1 = f(&a["total"]["pass1"]);
    assert!(
        pass1 > 0.0 && pass1 < 1.0,
        "the taught policy should solve some samples, not all: {stdout}"
    );
    assert!(any > 0.0, "{stdout}");
    // the table: a row per problem (few problems) and the total
    assert!(
        stdout.contains("pass@8") && stdout.contains("total (8)"),
        "{stdout}"
    );
    assert!(
        want.iter().all(|id| stdout.contains(id.as_str())),
        "{stdout}"
    );
    // same seed, same samples
    ok(&[&eval[..], &["--json", "b.json"]].concat(), d);
    let b = read_json(&d.join("b.json"));
    assert_eq!(a["problems"], b["problems"]);

    // generated problems (the same ids `deepsearch gen` gives), chosen k list, search at a budget
    let budget = 48u64;
    let stdout = ok(
        &[
            "eval",
            "--model",
            "model",
            "--task",
            "arithmetic",
            "--count",
            "6",
            "--seed",
            "3",
            "--params",
            EASY,
            "--samples",
            "4",
            "--k",
            "3,1",
            "--max-new-tokens",
            "8",
            "--threads",
            "2",
            "--json",
            "g.json",
            "--search",
            "--token-budget",
            &budget.to_string(),
            "--set",
            "search.segment_tokens=4",
            "--set",
            "search.expansion_width=2",
            "--set",
            "search.overlong.buffer_tokens=8",
        ],
        d,
    );
    let g = read_json(&d.join("g.json"));
    assert_eq!(g["generated"]["seed"], 3);
    let ids: Vec<&str> = g["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        (0..6)
            .map(|i| format!("arithmetic-3-{i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(g["ks"], serde_json::json!([1, 3]));
    check_consistent(&g, 4);
    let s = &g["search"];
    assert_eq!(s["token_budget"].as_u64(), Some(budget));
    let (mut solved, mut tokens) = (0, 0);
    for p in g["problems"].as_array().unwrap() {
        let r = &p["search"];
        let t = r["tokens"].as_u64().unwrap();
        // at most one expansion (width 2 × 4 tokens) past the budget
        assert!(t > 0 && t < budget + 2 * 4, "{r}");
        match r["stop"].as_str() {
            Some("solved") => assert_eq!(r["solved"], true, "{r}"),
            Some("budget") => assert!(r["solved"] == false && t >= budget, "{r}"),
            _ => panic!("unexpected stop: {r}"),
        }
        solved += u64::from(r["solved"] == true);
        tokens += t;
    }
    assert_eq!(s["solved"].as_u64(), Some(solved));
    assert_eq!(s["tokens"].as_u64(), Some(tokens));
    assert!(close(f(&s["solved_fraction"]), solved as f64 / 6.0));
    assert!(
        stdout.contains(&format!(
            "budget {budget} tokens per problem, {tokens} used"
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{solved}/6")), "{stdout}");
}

fn random_model(dir: &Path) -> PathBuf {
    let alphabet = deepsearch_tasks::registry::alphabet("arithmetic").unwrap();
    let tok = PolicyTokenizer::char_level(alphabet).unwrap();
    let cfg = Qwen2Config::tiny(tok.vocab_size() as i64);
    let m = dir.join("random");
    PolicyModel::init_random(&cfg, tok, 1)
        .unwrap()
        .save(&m, &SaveOptions::default())
        .unwrap();
    m
}

#[test]
fn bad_inputs_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    random_model(d);
    ok(
        &[
            "gen",
            "--task",
            "arithmetic",
            "--count",
            "3",
            "--seed",
            "2",
            "--out",
            "good.jsonl",
        ],
        d,
    );
    let good = std::fs::read_to_string(d.join("good.jsonl")).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let base = [
        "eval",
        "--model",
        "random",
        "--task",
        "arithmetic",
        "--max-new-tokens",
        "4",
    ];

    // a line without an answer, after a good one: file and line 2 named
    std::fs::write(
        d.join("bad.jsonl"),
        format!("{}\n{{\"prompt\": \"1+2\\n\"}}\n{}\n", lines[0], lines[1]),
    )
    .unwrap();
    let e = fails(&[&base[..], &["--data", "bad.jsonl"]].concat(), d);
    assert!(
        e.contains("bad.jsonl:line 2") && e.contains("answer"),
        "{e}"
    );
    // a line that is not JSON
    std::fs::write(
        d.join("broken.jsonl"),
        format!("{}\n{}\n{{oops\n", lines[0], lines[1]),
    )
    .unwrap();
    let e = fails(&[&base[..], &["--data", "broken.jsonl"]].concat(), d);
    assert!(
        e.contains("broken.jsonl:line 3") && e.contains("invalid JSON"),
        "{e}"
    );

    // k larger than the samples
    let e = fails(
        &[
            &base[..],
            &["--data", "good.jsonl", "--samples", "8", "--k", "1,16"],
        ]
        .concat(),
        d,
    );
    assert!(e.contains("--k 16") && e.contains("--samples is 8"), "{e}");
    // missing model folder, unknown task, task mismatch with the data
    let e = fails(
        &[
            "eval",
            "--model",
            "no-such-model",
            "--task",
            "arithmetic",
            "--data",
            "good.jsonl",
        ],
        d,
    );
    assert!(
        e.contains("no-such-model") && e.contains("no such folder"),
        "{e}"
    );
    let e = fails(
        &[
            "eval",
            "--model",
            "random",
            "--task",
            "chess",
            "--data",
            "good.jsonl",
        ],
        d,
    );
    assert!(e.contains("unknown task `chess`"), "{e}");
    let e = fails(
        &[
            "eval",
            "--model",
            "random",
            "--task",
            "countdown",
            "--data",
            "good.jsonl",
        ],
        d,
    );
    assert!(e.contains("has task `arithmetic`"), "{e}");
    // --search needs a budget
    let e = fails(
        &[&base[..], &["--data", "good.jsonl", "--search"]].concat(),
        d,
    );
    assert!(e.contains("--token-budget"), "{e}");

    // and the good file runs, with a random model too (the counts stay consistent)
    ok(
        &[
            &base[..],
            &["--data", "good.jsonl", "--samples", "2", "--json", "r.json"],
        ]
        .concat(),
        d,
    );
    check_consistent(&read_json(&d.join("r.json")), 2);
}
