//! The Countdown verifier and the cheap prefix check the search uses to prune invalid lines
//! (design.md: "prune invalid prefixes with the verifier"). Rules are in the module docs of
//! [`super`]. Neither function panics on any input; both are linear in the response length.

use super::{Instance, Op};
use crate::{Problem, Verdict, Verifier};

/// Verifies Countdown responses: `Correct`, `Wrong` or `Unparsable` (and `Error` only when the
/// problem's `answer` is not a valid instance).
#[derive(Clone, Copy, Debug, Default)]
pub struct CountdownVerifier;

impl Verifier for CountdownVerifier {
    fn verify(&self, problem: &Problem, response: &str) -> Verdict {
        match Instance::from_problem(problem) {
            Ok(inst) => judge(&inst, response),
            Err(e) => Verdict::Error(e.to_string()),
        }
    }
}

/// One classified response line.
enum Line {
    Step {
        a: u64,
        op: Op,
        b: u64,
        c: u64,
    },
    /// A final expression's value (already checked against the given numbers), or why it is illegal.
    Expr(Result<u64, ()>),
    Garbage,
}

/// The verdict of `response` on `inst` (see the module docs of [`super`]).
pub fn judge(inst: &Instance, response: &str) -> Verdict {
    let lines: Vec<&str> = response
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let n = lines.len();
    let classified: Vec<Line> = lines
        .iter()
        .enumerate()
        .map(|(k, l)| classify(l, k + 1 == n, &inst.numbers))
        .collect();
    if classified.iter().all(|l| matches!(l, Line::Garbage)) {
        return Verdict::Unparsable;
    }
    let mut pool = inst.numbers.clone();
    let mut last = None;
    for line in classified {
        match line {
            Line::Garbage | Line::Expr(Err(())) => return Verdict::Wrong,
            Line::Expr(Ok(v)) => last = Some(v),
            Line::Step { a, op, b, c } => {
                if !take_pair(&mut pool, a, b) || op.apply(a, b) != Some(c) {
                    return Verdict::Wrong;
                }
                pool.push(c);
                last = Some(c);
            }
        }
    }
    if last == Some(inst.target) {
        Verdict::Correct
    } else {
        Verdict::Wrong
    }
}

fn classify(line: &str, is_last: bool, numbers: &[u64]) -> Line {
    if let Some((a, op, b, c)) = parse_step(line) {
        return Line::Step { a, op, b, c };
    }
    if is_negative_step(line) {
        return Line::Expr(Err(())); // `25-50=-25`: a step, but an illegal one
    }
    if is_last {
        if let Some(r) = eval_final_expression(line, numbers) {
            return Line::Expr(r);
        }
    }
    Line::Garbage
}

/// Removes one `a` and one `b` (distinct entries) from `pool`; false (pool untouched) if absent.
fn take_pair(pool: &mut Vec<u64>, a: u64, b: u64) -> bool {
    let Some(ia) = pool.iter().position(|&v| v == a) else {
        return false;
    };
    let Some(ib) = pool
        .iter()
        .enumerate()
        .position(|(k, &v)| v == b && k != ia)
    else {
        return false;
    };
    let (hi, lo) = if ia > ib { (ia, ib) } else { (ib, ia) };
    pool.swap_remove(hi);
    pool.swap_remove(lo);
    true
}

/// `A op B = C` with optional spaces; `None` if the line does not have exactly that shape.
fn parse_step(line: &str) -> Option<(u64, Op, u64, u64)> {
    let mut s = Scanner::new(line);
    let a = s.number()?;
    let op = s.op()?;
    let b = s.number()?;
    s.expect('=')?;
    let c = s.number()?;
    s.end()?;
    Some((a, op, b, c))
}

/// `A op B = -C`: step-shaped with a negative result.
fn is_negative_step(line: &str) -> bool {
    let mut s = Scanner::new(line);
    (|| {
        s.number()?;
        s.op()?;
        s.number()?;
        s.expect('=')?;
        s.expect('-')?;
        s.number()?;
        s.end()
    })()
    .is_some()
}

/// A final expression line `EXPR` or `EXPR=N`: `None` if it is not expression-shaped,
/// `Some(Err)` if it breaks a rule (unknown or reused number, inexact or negative value, `=N`
/// not its value), `Some(Ok(value))` otherwise.
fn eval_final_expression(line: &str, numbers: &[u64]) -> Option<Result<u64, ()>> {
    if !line.contains(['(', '+', '-', '*', '/', 'x', '×', '÷']) {
        return None;
    }
    let (expr, claimed) = match line.split_once('=') {
        Some((e, c)) => (e, Some(c.trim().parse::<u64>().ok()?)),
        None => (line, None),
    };
    let mut p = ExprParser {
        s: Scanner::new(expr),
        available: numbers.to_vec(),
        illegal: false,
        depth: 0,
    };
    let v = p.sum()?;
    p.s.end()?;
    if p.illegal || claimed.is_some_and(|c| c != v) {
        return Some(Err(()));
    }
    Some(Ok(v))
}

/// Byte-level scanner over a line, skipping spaces.
struct Scanner<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl<'a> Scanner<'a> {
    fn new(s: &'a str) -> Self {
        Scanner {
            chars: s.chars().peekable(),
        }
    }
    fn skip_ws(&mut self) {
        while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
            self.chars.next();
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.chars.peek().copied()
    }
    fn number(&mut self) -> Option<u64> {
        self.skip_ws();
        let mut v: u64 = 0;
        let mut any = false;
        while let Some(d) = self.chars.peek().and_then(|c| c.to_digit(10)) {
            v = v.checked_mul(10)?.checked_add(d as u64)?;
            any = true;
            self.chars.next();
        }
        any.then_some(v)
    }
    fn op(&mut self) -> Option<Op> {
        let op = Op::from_char(self.peek()?)?;
        self.chars.next();
        Some(op)
    }
    fn expect(&mut self, c: char) -> Option<()> {
        (self.peek()? == c).then(|| {
            self.chars.next();
        })
    }
    fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }
}

/// Recursive-descent evaluator of a final expression; consumes given numbers as it reads them.
struct ExprParser<'a> {
    s: Scanner<'a>,
    available: Vec<u64>,
    /// A rule was broken (the expression is well-formed but illegal).
    illegal: bool,
    depth: usize,
}

impl ExprParser<'_> {
    fn sum(&mut self) -> Option<u64> {
        let mut v = self.product()?;
        while let Some(op @ (Op::Add | Op::Sub)) = self.s.peek().and_then(Op::from_char) {
            self.s.chars.next();
            let r = self.product()?;
            v = self.combine(v, op, r);
        }
        Some(v)
    }
    fn product(&mut self) -> Option<u64> {
        let mut v = self.atom()?;
        while let Some(op @ (Op::Mul | Op::Div)) = self.s.peek().and_then(Op::from_char) {
            self.s.chars.next();
            let r = self.atom()?;
            v = self.combine(v, op, r);
        }
        Some(v)
    }
    fn atom(&mut self) -> Option<u64> {
        if self.s.peek()? == '(' {
            self.depth += 1;
            if self.depth > 64 {
                return None;
            }
            self.s.chars.next();
            let v = self.sum()?;
            self.s.expect(')')?;
            self.depth -= 1;
            return Some(v);
        }
        let n = self.s.number()?;
        match self.available.iter().position(|&x| x == n) {
            Some(i) => {
                self.available.swap_remove(i);
            }
            None => self.illegal = true,
        }
        Some(n)
    }
    fn combine(&mut self, a: u64, op: Op, b: u64) -> u64 {
        op.apply(a, b).unwrap_or_else(|| {
            self.illegal = true;
            0
        })
    }
}

/// True when every complete line of `partial` (a response being generated) is a legal step and
/// the unfinished last line can still become one (or a final expression over unused given
/// numbers). Blank lines are allowed. Cheap: no search. False for an invalid problem.
pub fn prefix_is_valid(problem: &Problem, partial: &str) -> bool {
    let Ok(inst) = Instance::from_problem(problem) else {
        return false;
    };
    let mut pool = inst.numbers.clone();
    let (complete, tail) = match partial.rfind('\n') {
        Some(i) => (&partial[..i], &partial[i + 1..]),
        None => ("", partial),
    };
    let complete_lines: Vec<&str> = complete
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    for (k, line) in complete_lines.iter().enumerate() {
        match parse_step(line) {
            Some((a, op, b, c)) if op.apply(a, b) == Some(c) && take_pair(&mut pool, a, b) => {
                pool.push(c)
            }
            _ => {
                // A final expression may only be the last non-blank line.
                let last = k + 1 == complete_lines.len() && tail.trim().is_empty();
                return last && matches!(eval_final_expression(line, &inst.numbers), Some(Ok(_)));
            }
        }
    }
    tail_is_viable(tail.trim(), &pool, &inst.numbers)
}

/// Can `tail` (no newline) still be completed into a legal step over `pool`?
fn tail_is_viable(tail: &str, pool: &[u64], numbers: &[u64]) -> bool {
    if tail.is_empty() {
        return true;
    }
    if tail.contains('(') || tail.chars().filter(|&c| Op::from_char(c).is_some()).count() > 1 {
        return expression_prefix_viable(tail, numbers);
    }
    let is_prefix_of_any =
        |s: &str, pool: &[u64]| pool.iter().any(|v| v.to_string().starts_with(s));
    let s: String = tail.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match s.split_once('=') {
        Some((l, r)) => (l, Some(r)),
        None => (s.as_str(), None),
    };
    let op_pos = lhs
        .char_indices()
        .find(|&(_, c)| Op::from_char(c).is_some());
    let Some((i, opc)) = op_pos else {
        // Still writing A (no '=' possible before an operator).
        return rhs.is_none()
            && lhs.chars().all(|c| c.is_ascii_digit())
            && is_prefix_of_any(lhs, pool);
    };
    let (a_str, b_str) = (&lhs[..i], &lhs[i + opc.len_utf8()..]);
    let Ok(a) = a_str.parse::<u64>() else {
        return false;
    };
    let mut rest = pool.to_vec();
    let Some(ia) = rest.iter().position(|&v| v == a) else {
        return false;
    };
    rest.swap_remove(ia);
    if !b_str.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let Some(r) = rhs else {
        return b_str.is_empty() || is_prefix_of_any(b_str, &rest);
    };
    let Ok(b) = b_str.parse::<u64>() else {
        return false;
    };
    let Some(op) = Op::from_char(opc) else {
        return false;
    };
    let Some(c) = op.apply(a, b) else {
        return false;
    };
    rest.contains(&b) && r.chars().all(|ch| ch.is_ascii_digit()) && c.to_string().starts_with(r)
}

/// Loose check for a final expression being written: valid characters and every complete number
/// an unused given number.
fn expression_prefix_viable(tail: &str, numbers: &[u64]) -> bool {
    let mut avail = numbers.to_vec();
    let mut cur = String::new();
    let flush = |cur: &mut String, avail: &mut Vec<u64>| -> bool {
        if cur.is_empty() {
            return true;
        }
        let ok = cur
            .parse::<u64>()
            .ok()
            .and_then(|n| avail.iter().position(|&x| x == n))
            .map(|i| {
                avail.swap_remove(i);
            });
        cur.clear();
        ok.is_some()
    };
    let (expr, after_eq) = match tail.split_once('=') {
        Some((e, r)) => (e, Some(r)),
        None => (tail, None),
    };
    for ch in expr.chars() {
        if ch.is_ascii_digit() {
            cur.push(ch);
        } else if ch == '(' || ch == ')' || ch.is_whitespace() || Op::from_char(ch).is_some() {
            if !flush(&mut cur, &mut avail) {
                return false;
            }
        } else {
            return false;
        }
    }
    // An unfinished trailing number must be a prefix of an unused given number.
    let tail_ok = if after_eq.is_some() {
        flush(&mut cur, &mut avail)
    } else {
        cur.is_empty()
            || avail
                .iter()
                .any(|v| v.to_string().starts_with(cur.as_str()))
    };
    tail_ok && after_eq.is_none_or(|r| r.trim().chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(numbers: &[u64], target: u64) -> Problem {
        let inst = Instance {
            numbers: numbers.to_vec(),
            target,
        };
        Problem::new("t", super::super::TASK, inst.prompt(), inst.answer())
    }

    #[test]
    fn verdicts_table() {
        let p = problem(&[3, 7, 25, 50], 84);
        let v = CountdownVerifier;
        let cases: &[(&str, Verdict)] = &[
            ("", Verdict::Unparsable),
            ("I think the answer is 84", Verdict::Unparsable),
            ("50-25=25\n25*3=75", Verdict::Wrong), // legal, but ends at 75
            ("50-25=24", Verdict::Wrong),          // bad arithmetic
            ("25-50=-25", Verdict::Wrong),         // not a step (negative) and not legal
            ("50-25=25\n25-25=0", Verdict::Wrong), // 25 used twice (only one 25 left)
            ("7/3=2", Verdict::Wrong),             // inexact division
            ("9+3=12", Verdict::Wrong),            // 9 not available
        ];
        for (resp, want) in cases {
            assert_eq!(&v.verify(&p, resp), want, "{resp:?}");
        }
        // 82 = 25*3 + 7, hand-checked.
        let p82 = problem(&[3, 7, 25, 50], 82);
        assert_eq!(v.verify(&p82, "25*3=75\n75+7=82"), Verdict::Correct);
        assert_eq!(
            v.verify(&p82, " 25 x 3 = 75 \n\n75 + 7 = 82\n"),
            Verdict::Correct
        );
        assert_eq!(v.verify(&p82, "25*3+7=82"), Verdict::Correct); // final expression
        assert_eq!(v.verify(&p82, "(25*3)+7"), Verdict::Correct);
        assert_eq!(v.verify(&p82, "25*3=75\n(25*3)+7=82"), Verdict::Correct);
        assert_eq!(v.verify(&p82, "25*3+7=83"), Verdict::Wrong); // claimed value wrong
        assert_eq!(v.verify(&p82, "25*3+7+7"), Verdict::Wrong); // 7 used twice
        assert_eq!(v.verify(&p82, "hello\n25*3=75\n75+7=82"), Verdict::Wrong); // garbage line
        assert_eq!(v.verify(&p82, "25*3+7=82\n1+1=2"), Verdict::Wrong); // 1 not available
        let bad = Problem::new("b", "countdown", "", "{}");
        assert!(v.verify(&bad, "1+1=2").is_error());
    }

    #[test]
    fn duplicate_numbers_can_each_be_used_once() {
        let p = problem(&[5, 5, 2], 20);
        let v = CountdownVerifier;
        assert_eq!(v.verify(&p, "5+5=10\n10*2=20"), Verdict::Correct);
        assert_eq!(v.verify(&p, "5*2=10\n10+5=15\n15+5=20"), Verdict::Wrong);
    }

    #[test]
    fn prefix_check() {
        let p = problem(&[3, 7, 25, 50], 82);
        for ok in [
            "",
            "2",
            "25",
            "25*",
            "25*3",
            "25*3=",
            "25*3=7",
            "25*3=75",
            "25*3=75\n",
            "25*3=75\n7",
            "25*3=75\n75+7=8",
            "25*3=75\n75+7=82",
            "(25",
            "(25*3)+",
            "25*3+7=8",
            "25*3+7=82",
            "25*3=75\n75+7=82\n",
        ] {
            assert!(prefix_is_valid(&p, ok), "{ok:?} should be viable");
        }
        for bad in [
            "4",
            "9",
            "25*3=76",
            "25*3=74",
            "25*3=75\n76",
            "25*25",
            "25*3=75\n25",
            "a",
            "7/3=",
            "3-7=",
            "(9",
            "25*3=75\nxyz\n",
            "7*7",
        ] {
            assert!(!prefix_is_valid(&p, bad), "{bad:?} should be rejected");
        }
    }
}
