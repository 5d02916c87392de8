//! Arithmetic: evaluate a nested integer expression step by step. A second built-in task, with
//! the same character vocabulary style as [`crate::countdown`]; easier, useful for smoke tests
//! and for curricula (difficulty = depth and operand size).
//!
//! # Text format
//!
//! Prompt: the expression (fewest parentheses, `*` `/` bind tighter than `+` `-`, all
//! left-associative) and a newline: `(3+4)*(12-5)\n`.
//!
//! Response: one line per step, each the previous expression with some subexpressions replaced
//! by their values; the last line is the value. The generated trace reduces the leftmost
//! innermost operation each line, joined by `\n`, no trailing newline:
//!
//! ```text
//! 7*(12-5)
//! 7*7
//! 49
//! ```
//!
//! Values follow the Countdown rules (non-negative integers, exact division), so every
//! intermediate is a plain number. Verdicts: no line parses as an expression → `Unparsable`; a
//! line that does not parse, or is not a partial evaluation of the line before (with at least one
//! operation fewer), or a final number other than the value → `Wrong`; all steps legal but the
//! last line still has an operation → `Unparsable` (no final answer yet); else `Correct`. Writing
//! the value directly is a legal (single) step.
//!
//! # Instances
//!
//! [`generate`]: for problem `i`, a ChaCha8 stream keyed by `(seed, i)` draws a depth in
//! `min_depth..=max_depth` and builds a tree of exactly that depth (the deeper child on a random
//! side, the other of random smaller depth), leaves in `min_operand..=max_operand`, operators from
//! `ops` chosen among those whose result is legal and at most `max_value`. The `answer` is
//! `{"expression":"(3+4)*(12-5)","value":49}`; `task` is `"arithmetic"`.

mod expr;
mod verify;

pub use expr::Expr;
pub use verify::{prefix_is_valid, ArithmeticVerifier};

use rand::{seq::IndexedRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::countdown::Op;
use crate::{Problem, TaskError};

/// Task name of arithmetic problems.
pub const TASK: &str = "arithmetic";

/// Every character an arithmetic prompt or generated trace can contain.
pub fn alphabet() -> &'static str {
    "\n()*+-/0123456789"
}

/// An arithmetic instance, serialised as the problem's `answer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub expr: Expr,
    pub value: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceJson {
    expression: String,
    value: u64,
}

impl Instance {
    /// Parses a problem's `answer`; the recorded value must match the expression's.
    pub fn from_problem(problem: &Problem) -> Result<Instance, TaskError> {
        let bad = |reason: String| TaskError::BadInstance { task: TASK, reason };
        let j: InstanceJson = serde_json::from_str(&problem.answer).map_err(|e| {
            bad(format!(
                "answer is not {{\"expression\":..,\"value\":N}}: {e}"
            ))
        })?;
        let expr = Expr::parse(&j.expression)
            .ok_or_else(|| bad(format!("cannot parse {:?}", j.expression)))?;
        match expr.eval() {
            Some(v) if v == j.value => Ok(Instance { expr, value: v }),
            other => Err(bad(format!(
                "expression evaluates to {other:?}, answer says {}",
                j.value
            ))),
        }
    }

    /// The prompt text, e.g. `"(3+4)*(12-5)\n"`.
    pub fn prompt(&self) -> String {
        format!("{}\n", self.expr)
    }

    /// The JSON answer string.
    pub fn answer(&self) -> String {
        serde_json::json!({"expression": self.expr.to_string(), "value": self.value}).to_string()
    }
}

/// Difficulty and shape of generated arithmetic instances.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArithmeticConfig {
    /// Smallest nesting depth (default 2; 1 = a single operation).
    pub min_depth: usize,
    /// Largest nesting depth (default 3; at most 6).
    pub max_depth: usize,
    /// Smallest operand (default 1).
    pub min_operand: u64,
    /// Largest operand (default 20).
    pub max_operand: u64,
    /// Every intermediate value stays at or below this (default 1000).
    pub max_value: u64,
    /// Operators to draw from, a subset of "+-*/" (default "+-*").
    pub ops: String,
    /// Draws per node before giving up with a config error (default 1000).
    pub max_attempts: usize,
}

impl Default for ArithmeticConfig {
    fn default() -> Self {
        ArithmeticConfig {
            min_depth: 2,
            max_depth: 3,
            min_operand: 1,
            max_operand: 20,
            max_value: 1000,
            ops: "+-*".into(),
            max_attempts: 1000,
        }
    }
}

impl ArithmeticConfig {
    fn parsed_ops(&self) -> Result<Vec<Op>, TaskError> {
        let ops: Vec<Op> = self
            .ops
            .chars()
            .map(|c| match c {
                '+' | '-' | '*' | '/' => Ok(Op::from_char(c).expect("ascii op")),
                _ => Err(TaskError::config(format!(
                    "arithmetic: unknown op {c:?} in ops (use +-*/)"
                ))),
            })
            .collect::<Result<_, _>>()?;
        if ops.is_empty() {
            return Err(TaskError::config("arithmetic: ops is empty"));
        }
        Ok(ops)
    }

    /// Checks ranges; the generator calls it first.
    pub fn validate(&self) -> Result<(), TaskError> {
        self.parsed_ops()?;
        if self.min_depth < 1 || self.min_depth > self.max_depth || self.max_depth > 6 {
            return Err(TaskError::config(format!(
                "arithmetic: need 1 <= min_depth <= max_depth <= 6, got {}..={}",
                self.min_depth, self.max_depth
            )));
        }
        if self.min_operand > self.max_operand
            || self.max_operand > self.max_value
            || self.max_attempts == 0
        {
            return Err(TaskError::config(format!(
                "arithmetic: need min_operand <= max_operand <= max_value and max_attempts > 0, got {}..={} (max {})",
                self.min_operand, self.max_operand, self.max_value
            )));
        }
        Ok(())
    }
}

/// `count` instances, deterministic in `(config, seed)`; problem `i` depends only on
/// `(config, seed, i)`. Ids are `arithmetic-<seed>-<i>`; metadata holds `depth` and `ops`.
pub fn generate(
    config: &ArithmeticConfig,
    seed: u64,
    count: usize,
) -> Result<Vec<Problem>, TaskError> {
    config.validate()?;
    let ops = config.parsed_ops()?;
    (0..count as u64)
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i);
            let depth = rng.random_range(config.min_depth..=config.max_depth);
            let expr = gen_tree(config, &ops, depth, &mut rng).ok_or_else(|| {
                TaskError::config(format!(
                    "arithmetic: no legal expression of depth {depth} in {} draws; widen max_value or ops",
                    config.max_attempts
                ))
            })?;
            let value = expr.eval().expect("generated trees are legal");
            let inst = Instance { expr, value };
            let mut p = Problem::new(format!("{TASK}-{seed}-{i}"), TASK, inst.prompt(), inst.answer());
            p.metadata.insert("depth".into(), depth.into());
            p.metadata.insert("ops".into(), inst.expr.ops().into());
            Ok(p)
        })
        .collect()
}

/// A legal tree of exactly `depth` (every value within `max_value`), or `None` after
/// `max_attempts` draws at this node.
fn gen_tree(c: &ArithmeticConfig, ops: &[Op], depth: usize, rng: &mut ChaCha8Rng) -> Option<Expr> {
    if depth == 0 {
        return Some(Expr::Num(rng.random_range(c.min_operand..=c.max_operand)));
    }
    for _ in 0..c.max_attempts {
        let deep = gen_tree(c, ops, depth - 1, rng)?;
        let other_depth = rng.random_range(0..depth);
        let other = gen_tree(c, ops, other_depth, rng)?;
        let (l, r) = if rng.random_bool(0.5) {
            (deep, other)
        } else {
            (other, deep)
        };
        let (lv, rv) = (l.eval()?, r.eval()?);
        let legal: Vec<Op> = ops
            .iter()
            .copied()
            .filter(|op| op.apply(lv, rv).is_some_and(|v| v <= c.max_value))
            .collect();
        if let Some(&op) = legal.choose(rng) {
            return Some(Expr::bin(l, op, r));
        }
    }
    None
}

/// The step-by-step trace (leftmost innermost operation first), e.g. `"7*(12-5)\n7*7\n49"`.
/// `None` if the problem is not a valid arithmetic instance.
pub fn solution_trace(problem: &Problem) -> Option<String> {
    let inst = Instance::from_problem(problem).ok()?;
    let mut lines = Vec::new();
    let mut e = inst.expr;
    while let Some(next) = e.reduce_once() {
        lines.push(next.to_string());
        e = next;
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Verdict, Verifier};

    #[test]
    fn format_and_trace() {
        let expr = Expr::parse("(3+4)*(12-5)").unwrap();
        let inst = Instance { value: 49, expr };
        let p = Problem::new("a", TASK, inst.prompt(), inst.answer());
        assert_eq!(p.prompt, "(3+4)*(12-5)\n");
        assert_eq!(p.answer, r#"{"expression":"(3+4)*(12-5)","value":49}"#);
        assert_eq!(solution_trace(&p).unwrap(), "7*(12-5)\n7*7\n49");
        let bad = Problem::new("b", TASK, "", r#"{"expression":"1+1","value":3}"#);
        assert!(Instance::from_problem(&bad).is_err());
    }

    #[test]
    fn generation_is_deterministic_legal_and_verifies() {
        let c = ArithmeticConfig {
            max_depth: 4,
            ops: "+-*/".into(),
            ..Default::default()
        };
        let a = generate(&c, 11, 40).unwrap();
        assert_eq!(a, generate(&c, 11, 40).unwrap());
        assert_eq!(generate(&c, 11, 3).unwrap()[..], a[..3]);
        for p in &a {
            let inst = Instance::from_problem(p).unwrap();
            let d = inst.expr.depth();
            assert!((2..=4).contains(&d), "depth {d}");
            assert!(inst.expr.max_value().unwrap() <= 1000);
            let t = solution_trace(p).unwrap();
            assert_eq!(
                ArithmeticVerifier.verify(p, &t),
                Verdict::Correct,
                "{} {t}",
                p.prompt
            );
            assert!(p
                .prompt
                .chars()
                .chain(t.chars())
                .all(|ch| alphabet().contains(ch)));
        }
    }

    #[test]
    fn config_validation() {
        assert!(ArithmeticConfig::default().validate().is_ok());
        assert!(ArithmeticConfig {
            ops: "+^".into(),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(ArithmeticConfig {
            min_depth: 0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(ArithmeticConfig {
            max_operand: 5000,
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
