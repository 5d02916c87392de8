//! Countdown: reach a target from given numbers, each used at most once. The embedded default's
//! main task (design.md, "Embedded default"): learnable by a ~0.3M-parameter character-level
//! model, and search-heavy at 5–6 numbers.
//!
//! # Text format (compact and regular, for a character vocabulary, see [`alphabet`])
//!
//! Prompt: the numbers separated by single spaces, ` > `, the target, a newline:
//!
//! ```text
//! 3 7 25 50 > 84\n
//! ```
//!
//! Response (solution trace): one step per line, `A<op>B=C` with `op` one of `+ - * /`, no
//! spaces, lines joined by `\n`, no trailing newline (the model ends with EOS after the last line,
//! so with "\n"-delimited segments every line is one search node):
//!
//! ```text
//! 50-25=25
//! 25*3=75
//! 75+7=82
//! ```
//!
//! Rules of a step: `A` and `B` are two distinct entries of the current multiset (the given
//! numbers plus results of earlier steps, minus the operands already consumed), `C` is the exact
//! result, every value is a non-negative integer (subtraction must not go negative, division must
//! be exact, no division by zero). The response is correct when every line is a legal step and
//! the last step's result is the target. An explicit final expression over the given numbers
//! (`(50-25)*3+7=82` or `(50-25)*3+7`) is also accepted as the last line, checked under the same
//! rules (each given number at most once, integer non-negative intermediates); the generated
//! traces do not use it. Spaces around tokens and `x`, `×`, `÷` are tolerated in responses.
//!
//! Verdicts: no line that parses as a step or an expression → `Unparsable`; any illegal line or a
//! final value other than the target → `Wrong`; else `Correct`.
//!
//! # Instances
//!
//! [`generate`] draws, for problem `i`, from a ChaCha8 stream keyed by `(seed, i)`: a count `n` in
//! `min_numbers..=max_numbers`, `n` numbers in `min_number..=max_number`, a target in
//! `min_target..=max_target` that is not one of the numbers; it keeps the draw only if the
//! exhaustive solver ([`solve`]) finds a solution whose intermediates stay within `max_intermediate` and
//! whose shortest solution has at least `min_steps` steps. So every emitted instance is solvable
//! and `generate(c, s, 10)[..5] == generate(c, s, 5)`. The problem's `answer` is the instance as
//! JSON: `{"numbers":[3,7,25,50],"target":84}`; `task` is `"countdown"`.

mod solver;
mod verify;

pub use solver::{shortest_steps, solve};
pub use verify::{prefix_is_valid, CountdownVerifier};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Problem, TaskError};

/// Task name of Countdown problems.
pub const TASK: &str = "countdown";

/// Every character a Countdown prompt or generated trace can contain (for a char-level vocabulary).
pub fn alphabet() -> &'static str {
    "\n *+-/0123456789=>"
}

/// An arithmetic operation of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    /// All operations, in the solver's (deterministic) trial order.
    pub const ALL: [Op; 4] = [Op::Add, Op::Sub, Op::Mul, Op::Div];

    /// `a op b` under the Countdown rules: non-negative, exact division, no overflow.
    pub fn apply(self, a: u64, b: u64) -> Option<u64> {
        match self {
            Op::Add => a.checked_add(b),
            Op::Sub => a.checked_sub(b),
            Op::Mul => a.checked_mul(b),
            Op::Div => (b != 0 && a.is_multiple_of(b)).then(|| a / b),
        }
    }

    /// The operator's character in traces.
    pub fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
        }
    }

    /// Parses an operator character, tolerating `x`, `×`, `÷`, `·` and `−`.
    pub fn from_char(c: char) -> Option<Op> {
        Some(match c {
            '+' => Op::Add,
            '-' | '−' => Op::Sub,
            '*' | 'x' | 'X' | '×' | '·' => Op::Mul,
            '/' | '÷' => Op::Div,
            _ => return None,
        })
    }
}

/// One line of a trace: `a op b = c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub a: u64,
    pub op: Op,
    pub b: u64,
    pub c: u64,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}={}", self.a, self.op.symbol(), self.b, self.c)
    }
}

/// A Countdown instance: the numbers and the target. Serialised as the problem's `answer`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub numbers: Vec<u64>,
    pub target: u64,
}

impl Instance {
    /// The instance encoded in a problem's `answer` field.
    pub fn from_problem(problem: &Problem) -> Result<Instance, TaskError> {
        Instance::from_answer(&problem.answer)
    }

    /// Parses `{"numbers":[...],"target":N}`; at least one number, at most 16.
    pub fn from_answer(answer: &str) -> Result<Instance, TaskError> {
        let inst: Instance = serde_json::from_str(answer).map_err(|e| TaskError::BadInstance {
            task: TASK,
            reason: format!("answer is not {{\"numbers\":[..],\"target\":N}}: {e}"),
        })?;
        if inst.numbers.is_empty() || inst.numbers.len() > 16 {
            return Err(TaskError::BadInstance {
                task: TASK,
                reason: format!("{} numbers (expected 1..=16)", inst.numbers.len()),
            });
        }
        Ok(inst)
    }

    /// The prompt text, e.g. `"3 7 25 50 > 84\n"`.
    pub fn prompt(&self) -> String {
        let nums: Vec<String> = self.numbers.iter().map(|n| n.to_string()).collect();
        format!("{} > {}\n", nums.join(" "), self.target)
    }

    /// The JSON answer string.
    pub fn answer(&self) -> String {
        serde_json::json!({"numbers": self.numbers, "target": self.target}).to_string()
    }
}

/// Difficulty and shape of generated Countdown instances.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CountdownConfig {
    /// Fewest given numbers per instance (default 3; at least 2).
    pub min_numbers: usize,
    /// Most given numbers per instance (default 5; at most 7, the solver is exhaustive).
    pub max_numbers: usize,
    /// Smallest given number (default 1).
    pub min_number: u64,
    /// Largest given number (default 25).
    pub max_number: u64,
    /// Smallest target (default 10).
    pub min_target: u64,
    /// Largest target (default 100).
    pub max_target: u64,
    /// Intermediate values of the guaranteed solution stay at or below this (default 100).
    pub max_intermediate: u64,
    /// The shortest solution needs at least this many steps (default 1; raise for harder sets).
    pub min_steps: usize,
    /// Draws per problem before giving up with a config error (default 10000).
    pub max_attempts: usize,
}

impl Default for CountdownConfig {
    fn default() -> Self {
        CountdownConfig {
            min_numbers: 3,
            max_numbers: 5,
            min_number: 1,
            max_number: 25,
            min_target: 10,
            max_target: 100,
            max_intermediate: 100,
            min_steps: 1,
            max_attempts: 10_000,
        }
    }
}

impl CountdownConfig {
    /// The default with exactly `n` numbers per instance.
    pub fn with_numbers(n: usize) -> Self {
        CountdownConfig {
            min_numbers: n,
            max_numbers: n,
            ..Default::default()
        }
    }

    /// Checks ranges; the generator calls it first.
    pub fn validate(&self) -> Result<(), TaskError> {
        let c = self;
        if c.min_numbers < 2 || c.min_numbers > c.max_numbers || c.max_numbers > 7 {
            return Err(TaskError::config(format!(
                "countdown: need 2 <= min_numbers <= max_numbers <= 7, got {}..={}",
                c.min_numbers, c.max_numbers
            )));
        }
        if c.min_number < 1 || c.min_number > c.max_number || c.max_number > c.max_intermediate {
            return Err(TaskError::config(format!(
                "countdown: need 1 <= min_number <= max_number <= max_intermediate, got {}..={} (cap {})",
                c.min_number, c.max_number, c.max_intermediate
            )));
        }
        if c.min_target > c.max_target || c.max_target > c.max_intermediate {
            return Err(TaskError::config(format!(
                "countdown: need min_target <= max_target <= max_intermediate, got {}..={} (cap {})",
                c.min_target, c.max_target, c.max_intermediate
            )));
        }
        if c.min_steps >= c.max_numbers.max(2) || c.max_attempts == 0 {
            return Err(TaskError::config(format!(
                "countdown: min_steps {} must be < max_numbers {} and max_attempts > 0",
                c.min_steps, c.max_numbers
            )));
        }
        Ok(())
    }
}

/// `count` solvable instances, deterministic in `(config, seed)`; problem `i` depends only on
/// `(config, seed, i)`. Ids are `countdown-<seed>-<i>`; metadata holds `n_numbers` and the
/// shortest solution's `min_steps`.
pub fn generate(
    config: &CountdownConfig,
    seed: u64,
    count: usize,
) -> Result<Vec<Problem>, TaskError> {
    config.validate()?;
    (0..count)
        .map(|i| generate_one(config, seed, i as u64))
        .collect()
}

fn generate_one(c: &CountdownConfig, seed: u64, index: u64) -> Result<Problem, TaskError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    for _ in 0..c.max_attempts {
        let n = rng.random_range(c.min_numbers..=c.max_numbers);
        let numbers: Vec<u64> = (0..n)
            .map(|_| rng.random_range(c.min_number..=c.max_number))
            .collect();
        let target = rng.random_range(c.min_target..=c.max_target);
        if numbers.contains(&target) {
            continue;
        }
        let Some(steps) = solve(&numbers, target, c.max_intermediate) else {
            continue;
        };
        if steps.len() < c.min_steps {
            continue;
        }
        let inst = Instance { numbers, target };
        let mut p = Problem::new(
            format!("{TASK}-{seed}-{index}"),
            TASK,
            inst.prompt(),
            inst.answer(),
        );
        p.metadata.insert("n_numbers".into(), n.into());
        p.metadata.insert("min_steps".into(), steps.len().into());
        p.metadata
            .insert("max_intermediate".into(), c.max_intermediate.into());
        return Ok(p);
    }
    Err(TaskError::config(format!(
        "countdown: no solvable instance in {} draws (seed {seed}, index {index}); widen the ranges",
        c.max_attempts
    )))
}

/// One valid trace for `problem` (fewest steps, larger operand first), for supervised
/// bootstrapping. Intermediates stay within the problem's `max_intermediate` metadata when set
/// (generated problems), else within 10^12. `None` if the instance is invalid or unsolvable.
pub fn solution_trace(problem: &Problem) -> Option<String> {
    let inst = Instance::from_problem(problem).ok()?;
    let cap = problem
        .metadata
        .get("max_intermediate")
        .and_then(|v| v.as_u64())
        .unwrap_or(1_000_000_000_000);
    let steps = solve(&inst.numbers, inst.target, cap)?;
    if steps.is_empty() {
        return None; // the target is a given number: no step to write
    }
    Some(
        steps
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verifier;

    #[test]
    fn prompt_and_answer_format() {
        let inst = Instance {
            numbers: vec![3, 7, 25, 50],
            target: 84,
        };
        assert_eq!(inst.prompt(), "3 7 25 50 > 84\n");
        assert_eq!(inst.answer(), r#"{"numbers":[3,7,25,50],"target":84}"#);
        assert_eq!(Instance::from_answer(&inst.answer()).unwrap(), inst);
        assert!(Instance::from_answer("{\"numbers\":[],\"target\":1}").is_err());
        assert!(Instance::from_answer("nope").is_err());
    }

    #[test]
    fn generation_is_deterministic_and_prefix_stable() {
        let c = CountdownConfig::default();
        let a = generate(&c, 7, 20).unwrap();
        let b = generate(&c, 7, 20).unwrap();
        assert_eq!(a, b);
        assert_eq!(generate(&c, 7, 5).unwrap()[..], a[..5]);
        assert_ne!(generate(&c, 8, 20).unwrap(), a);
    }

    #[test]
    fn generated_traces_verify_and_use_alphabet() {
        let c = CountdownConfig {
            min_numbers: 3,
            max_numbers: 6,
            ..Default::default()
        };
        let v = CountdownVerifier;
        for p in generate(&c, 1, 50).unwrap() {
            let t = solution_trace(&p).expect("solvable");
            assert_eq!(v.verify(&p, &t), Verdict::Correct, "{} / {t}", p.prompt);
            for ch in p.prompt.chars().chain(t.chars()) {
                assert!(alphabet().contains(ch), "{ch:?} not in alphabet");
            }
        }
    }

    #[test]
    fn min_steps_knob_makes_instances_harder() {
        let c = CountdownConfig {
            min_numbers: 5,
            max_numbers: 5,
            min_steps: 3,
            ..Default::default()
        };
        for p in generate(&c, 3, 10).unwrap() {
            let inst = Instance::from_problem(&p).unwrap();
            assert!(shortest_steps(&inst.numbers, inst.target, 100).unwrap() >= 3);
        }
    }

    #[test]
    fn config_validation() {
        assert!(CountdownConfig::default().validate().is_ok());
        let bad = CountdownConfig {
            min_numbers: 1,
            ..Default::default()
        };
        assert!(generate(&bad, 0, 1).is_err());
        let bad = CountdownConfig {
            max_target: 1000,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = CountdownConfig {
            min_steps: 5,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    use crate::Verdict;
}
