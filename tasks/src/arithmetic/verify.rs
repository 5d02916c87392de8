//! The arithmetic verifier and its prefix check (rules in the module docs of [`super`]).

use super::{Expr, Instance};
use crate::{Problem, Verdict, Verifier};

/// Most candidate next lines [`prefix_is_valid`] enumerates before falling back to a character
/// check (depth ≤ 4 trees stay under it).
const MAX_CANDIDATES: usize = 4096;

/// Verifies arithmetic responses step by step.
#[derive(Clone, Copy, Debug, Default)]
pub struct ArithmeticVerifier;

impl Verifier for ArithmeticVerifier {
    fn verify(&self, problem: &Problem, response: &str) -> Verdict {
        let inst = match Instance::from_problem(problem) {
            Ok(i) => i,
            Err(e) => return Verdict::Error(e.to_string()),
        };
        let parsed: Vec<Option<Expr>> = response
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(Expr::parse)
            .collect();
        if parsed.iter().all(Option::is_none) {
            return Verdict::Unparsable;
        }
        let mut prev = inst.expr.clone();
        for line in parsed {
            let Some(e) = line else { return Verdict::Wrong };
            if e.ops() >= prev.ops() || !prev.is_partial_evaluation(&e) {
                return Verdict::Wrong;
            }
            prev = e;
        }
        match prev {
            Expr::Num(v) if v == inst.value => Verdict::Correct,
            Expr::Num(_) => Verdict::Wrong,
            Expr::Bin(..) => Verdict::Unparsable,
        }
    }
}

/// True when every complete line of `partial` is a legal step and the unfinished last line is
/// a prefix of some legal next line. False for an invalid problem.
pub fn prefix_is_valid(problem: &Problem, partial: &str) -> bool {
    let Ok(inst) = Instance::from_problem(problem) else {
        return false;
    };
    let (complete, tail) = match partial.rfind('\n') {
        Some(i) => (&partial[..i], &partial[i + 1..]),
        None => ("", partial),
    };
    let mut prev = inst.expr;
    for line in complete
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        match Expr::parse(line) {
            Some(e) if e.ops() < prev.ops() && prev.is_partial_evaluation(&e) => prev = e,
            _ => return false,
        }
    }
    let tail: String = tail.chars().filter(|c| !c.is_whitespace()).collect();
    if tail.is_empty() {
        return true;
    }
    if matches!(prev, Expr::Num(_)) {
        return false; // the answer is already written
    }
    match prev.next_lines(MAX_CANDIDATES) {
        Some(lines) => lines.iter().any(|l| l.starts_with(&tail)),
        None => tail.chars().all(|c| super::alphabet().contains(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(expr: &str) -> Problem {
        let e = Expr::parse(expr).unwrap();
        let inst = Instance {
            value: e.eval().unwrap(),
            expr: e,
        };
        Problem::new("t", super::super::TASK, inst.prompt(), inst.answer())
    }

    #[test]
    fn verdicts_table() {
        let p = problem("(3+4)*(12-5)");
        let v = ArithmeticVerifier;
        let cases: &[(&str, Verdict)] = &[
            ("7*(12-5)\n7*7\n49", Verdict::Correct),
            ("(3+4)*7\n49", Verdict::Correct),
            ("7*7\n49", Verdict::Correct), // two reductions in one line is allowed
            ("49", Verdict::Correct),
            (" 7 * 7 \n\n 49 \n", Verdict::Correct),
            ("7*(12-5)\n7*7", Verdict::Unparsable), // no final answer yet
            ("", Verdict::Unparsable),
            ("the answer", Verdict::Unparsable),
            ("48", Verdict::Wrong),
            ("7*(12-5)\n7*8\n56", Verdict::Wrong),
            ("7*(12-5)\n7*(12-5)\n49", Verdict::Wrong), // no progress
            ("7*7\nso\n49", Verdict::Wrong),
            ("7+7\n14", Verdict::Wrong), // operator changed
        ];
        for (resp, want) in cases {
            assert_eq!(&v.verify(&p, resp), want, "{resp:?}");
        }
        assert!(v
            .verify(&Problem::new("x", "arithmetic", "", "[]"), "1")
            .is_error());
    }

    #[test]
    fn prefix_check() {
        let p = problem("(3+4)*(12-5)");
        for ok in [
            "", "7", "7*", "7*(1", "(3+4)*7", "49", "4", "7*7\n", "7*7\n4", "7*7\n49",
        ] {
            assert!(prefix_is_valid(&p, ok), "{ok:?}");
        }
        for bad in [
            "8",
            "7+",
            "7*7\n5",
            "7*7\n49\n1",
            "x",
            "7*8\n",
            "(3+4)*(12-5)\n",
        ] {
            assert!(!prefix_is_valid(&p, bad), "{bad:?}");
        }
    }
}
