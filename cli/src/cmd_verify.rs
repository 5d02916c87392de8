//! `deepsearch verify`: judge responses with a task's verifier (issue #3).
//!
//! One response: `deepsearch verify --task math --answer GOLD --response TEXT` prints
//! `{"verdict": "correct"}` (`correct | wrong | unparsable | error`; an error verdict also carries
//! an `"error"` reason). Batch: `--jsonl FILE` (or `-` for stdin) reads lines
//! `{"response": .., "answer": ..}` (an optional `"task"` overrides `--task` for that line) and
//! prints one verdict line per input line, in order, verifying in parallel on a worker pool with
//! a per-call deadline. For `countdown` and `arithmetic` the answer is the problem instance as
//! JSON (an object, or a string holding it). A malformed line prints an `error` verdict naming the
//! file, line and field, and the run goes on; `--strict` aborts on it instead.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deepsearch_tasks::source::read_jsonl_values;
use deepsearch_tasks::{Pending, PoolConfig, Problem, TaskError, Verdict, VerifierPool};
use serde_json::Value;

/// Verdicts in flight at once in `--jsonl` mode (bounded memory, output order kept).
const WINDOW: usize = 512;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Verifier to use: math | countdown | arithmetic.
    #[arg(long, default_value = "math")]
    pub task: String,
    /// Reference answer (math) or the problem instance as JSON (countdown, arithmetic).
    #[arg(
        long,
        visible_alias = "problem",
        conflicts_with = "jsonl",
        requires = "response"
    )]
    pub answer: Option<String>,
    /// The response to verify.
    #[arg(long, requires = "answer")]
    pub response: Option<String>,
    /// JSONL file of {"response": .., "answer": ..} lines, "-" for stdin.
    #[arg(long, required_unless_present = "answer")]
    pub jsonl: Option<PathBuf>,
    /// Abort on the first malformed input line instead of printing an error verdict for it.
    #[arg(long)]
    pub strict: bool,
    /// Deadline of one verification; past it the verdict is `error`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// Verifier worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    deepsearch_tasks::verifier_for(&args.task)?; // unknown task: fail before reading anything
    let pool_cfg = PoolConfig {
        workers: args.workers,
        deadline: args.deadline,
        ..Default::default()
    };
    let pool = VerifierPool::new(&pool_cfg)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if let (Some(answer), Some(response)) = (&args.answer, &args.response) {
        let problem = Problem::new("cli", &args.task, "", answer.as_str());
        writeln!(out, "{}", verdict_json(&pool.verify(&problem, response)))?;
        return Ok(out.flush()?);
    }
    let path = args
        .jsonl
        .clone()
        .context("either --answer/--response or --jsonl is required")?;
    let counts = verify_jsonl(&pool, &path, &args.task, args.strict, &mut out)?;
    out.flush()?;
    tracing::info!(
        correct = counts[0],
        wrong = counts[1],
        unparsable = counts[2],
        error = counts[3],
        "verified"
    );
    Ok(())
}

/// Verifies every line of a JSONL file, writing one verdict line per input line (in order) to
/// `out`; returns the counts of correct, wrong, unparsable and error verdicts.
pub fn verify_jsonl(
    pool: &VerifierPool,
    path: &std::path::Path,
    task: &str,
    strict: bool,
    out: &mut impl Write,
) -> anyhow::Result<[usize; 4]> {
    let mut window: VecDeque<Pending> = VecDeque::new();
    let mut counts = [0usize; 4];
    for rec in read_jsonl_values(path)? {
        let line = rec.and_then(|r| line_problem(path, r.line, &r.value, task));
        let pending = match line {
            Ok((problem, response)) => pool.submit(Arc::new(problem), response),
            Err(e) if strict => {
                drain(&mut window, out, &mut counts)?;
                return Err(anyhow::Error::new(e).context("malformed input line (--strict)"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "malformed input line");
                Pending::ready(Verdict::Error(e.to_string()))
            }
        };
        window.push_back(pending);
        if window.len() >= WINDOW {
            emit(window.pop_front().expect("nonempty"), out, &mut counts)?;
        }
    }
    drain(&mut window, out, &mut counts)?;
    Ok(counts)
}

/// The problem and response of one JSONL record.
fn line_problem(
    path: &std::path::Path,
    line: u64,
    v: &Value,
    default_task: &str,
) -> Result<(Problem, String), TaskError> {
    let bad = |field: &str, reason: String| TaskError::BadRecord {
        path: path.to_path_buf(),
        unit: "line",
        line,
        field: field.into(),
        reason,
    };
    let response = match v.get("response") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(bad("response", format!("expected a string, got {other}"))),
        None => return Err(bad("response", "missing".into())),
    };
    let answer = match v.get("answer") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => return Err(bad("answer", "missing".into())),
        Some(other) => other.to_string(), // numbers, or a built-in task's instance object
    };
    let task = match v.get("task") {
        Some(Value::String(t)) => t.clone(),
        Some(other) => return Err(bad("task", format!("expected a string, got {other}"))),
        None => default_task.to_string(),
    };
    Ok((
        Problem::new(format!("line-{line}"), task, "", answer),
        response,
    ))
}

fn emit(p: Pending, out: &mut impl Write, counts: &mut [usize; 4]) -> anyhow::Result<()> {
    let v = p.wait();
    counts[match v {
        Verdict::Correct => 0,
        Verdict::Wrong => 1,
        Verdict::Unparsable => 2,
        Verdict::Error(_) => 3,
    }] += 1;
    writeln!(out, "{}", verdict_json(&v))?;
    Ok(())
}

fn drain(
    window: &mut VecDeque<Pending>,
    out: &mut impl Write,
    counts: &mut [usize; 4],
) -> anyhow::Result<()> {
    while let Some(p) = window.pop_front() {
        emit(p, out, counts)?;
    }
    Ok(())
}

/// `{"verdict": "..."}`, plus `"error"` with the reason for error verdicts.
pub fn verdict_json(v: &Verdict) -> String {
    // Built by hand so "verdict" always comes first, whatever serde_json's map ordering.
    match v {
        Verdict::Error(reason) => {
            format!(
                r#"{{"verdict":"{}","error":{}}}"#,
                v.as_str(),
                Value::String(reason.clone())
            )
        }
        _ => format!(r#"{{"verdict":"{}"}}"#, v.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_lines(
        input: &[u8],
        task: &str,
        strict: bool,
    ) -> (anyhow::Result<[usize; 4]>, Vec<Value>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, input).unwrap();
        let pool = VerifierPool::new(&PoolConfig::default()).unwrap();
        let mut out = Vec::new();
        let res = verify_jsonl(&pool, &path, task, strict, &mut out);
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (res, lines)
    }

    #[test]
    fn jsonl_verdicts_in_order_with_bad_lines_reported() {
        let input = concat!(
            r#"{"response": "so \\boxed{5}", "answer": "5"}"#,
            "\n",
            r#"{"response": "\\boxed{0.5}", "answer": "\\frac{1}{2}"}"#,
            "\n",
            "not json\n",
            r#"{"response": "I don't know", "answer": 3}"#,
            "\n",
            r#"{"answer": "3"}"#,
            "\n",
            r#"{"response": "25*3=75\n75+7=82", "answer": {"numbers": [3, 7, 25, 50], "target": 82}, "task": "countdown"}"#,
            "\n",
            r#"{"response": "4", "answer": "2"}"#,
            "\n",
        );
        let (res, lines) = run_lines(input.as_bytes(), "math", false);
        let verdicts: Vec<&str> = lines
            .iter()
            .map(|l| l["verdict"].as_str().unwrap())
            .collect();
        assert_eq!(
            verdicts,
            [
                "correct",
                "correct",
                "error",
                "unparsable",
                "error",
                "correct",
                "unparsable"
            ]
        );
        let err = lines[4]["error"].as_str().unwrap();
        assert!(
            err.ends_with("in.jsonl:line 5: field `response`: missing"),
            "{err}"
        );
        assert!(lines[2]["error"]
            .as_str()
            .unwrap()
            .contains("line 3: field `<line>`: invalid JSON"));
        assert_eq!(res.unwrap(), [3, 0, 2, 2]);
    }

    #[test]
    fn strict_mode_aborts_on_a_bad_line() {
        let (res, lines) = run_lines(
            b"{\"response\": \"\\\\boxed{1}\", \"answer\": \"1\"}\n\xff\n",
            "math",
            true,
        );
        let e = format!("{:#}", res.unwrap_err());
        assert!(e.contains("line 2: field `<line>`: invalid UTF-8"), "{e}");
        assert_eq!(
            lines.len(),
            1,
            "verdicts before the bad line are still printed"
        );
    }

    #[test]
    fn verdict_json_shape() {
        assert_eq!(verdict_json(&Verdict::Correct), r#"{"verdict":"correct"}"#);
        assert_eq!(
            verdict_json(&Verdict::Error("timeout".into())),
            r#"{"verdict":"error","error":"timeout"}"#
        );
    }
}
