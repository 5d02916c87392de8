//! Integer expression trees of the arithmetic task: parsing with standard precedence (`*` `/`
//! bind tighter than `+` `-`, all left-associative), printing with the fewest parentheses that
//! round-trip to the same tree, evaluation under the Countdown value rules (non-negative
//! integers, exact division), and the "partial evaluation" relation the verifier checks.

use crate::countdown::Op;

/// Most nested parentheses the parser follows (bounded recursion, no stack overflow).
const MAX_PARSE_DEPTH: usize = 64;

/// A binary expression over non-negative integers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Num(u64),
    Bin(Box<Expr>, Op, Box<Expr>),
}

fn prec(op: Op) -> u8 {
    match op {
        Op::Add | Op::Sub => 1,
        Op::Mul | Op::Div => 2,
    }
}

impl Expr {
    /// `l op r`.
    pub fn bin(l: Expr, op: Op, r: Expr) -> Expr {
        Expr::Bin(Box::new(l), op, Box::new(r))
    }

    /// The value, or `None` if some operation is illegal (negative, inexact division, overflow).
    pub fn eval(&self) -> Option<u64> {
        match self {
            Expr::Num(v) => Some(*v),
            Expr::Bin(l, op, r) => op.apply(l.eval()?, r.eval()?),
        }
    }

    /// The largest value of any subexpression (or `None` if illegal).
    pub fn max_value(&self) -> Option<u64> {
        match self {
            Expr::Num(v) => Some(*v),
            Expr::Bin(l, _, r) => {
                let v = self.eval()?;
                Some(v.max(l.max_value()?).max(r.max_value()?))
            }
        }
    }

    /// Number of operations.
    pub fn ops(&self) -> usize {
        match self {
            Expr::Num(_) => 0,
            Expr::Bin(l, _, r) => 1 + l.ops() + r.ops(),
        }
    }

    /// Nesting depth: 0 for a number.
    pub fn depth(&self) -> usize {
        match self {
            Expr::Num(_) => 0,
            Expr::Bin(l, _, r) => 1 + l.depth().max(r.depth()),
        }
    }

    /// Replaces the leftmost innermost operation (both operands numbers) by its value.
    /// `None` for a number or an illegal operation.
    pub fn reduce_once(&self) -> Option<Expr> {
        match self {
            Expr::Num(_) => None,
            Expr::Bin(l, op, r) => match (&**l, &**r) {
                (Expr::Num(a), Expr::Num(b)) => op.apply(*a, *b).map(Expr::Num),
                (Expr::Num(_), _) => Some(Expr::Bin(l.clone(), *op, Box::new(r.reduce_once()?))),
                _ => Some(Expr::Bin(Box::new(l.reduce_once()?), *op, r.clone())),
            },
        }
    }

    /// True when `next` is `self` with zero or more subexpressions replaced by their values.
    pub fn is_partial_evaluation(&self, next: &Expr) -> bool {
        match (self, next) {
            (_, Expr::Num(v)) => self.eval() == Some(*v),
            (Expr::Bin(l1, o1, r1), Expr::Bin(l2, o2, r2)) => {
                o1 == o2 && l1.is_partial_evaluation(l2) && r1.is_partial_evaluation(r2)
            }
            _ => false,
        }
    }

    /// Every proper partial evaluation of `self` (see [`Expr::is_partial_evaluation`]), printed;
    /// `None` if there would be more than `limit`.
    pub fn next_lines(&self, limit: usize) -> Option<Vec<String>> {
        let mut all = self.partial_evaluations(limit)?;
        all.retain(|e| e != self);
        Some(all.iter().map(|e| e.to_string()).collect())
    }

    fn partial_evaluations(&self, limit: usize) -> Option<Vec<Expr>> {
        match self {
            Expr::Num(_) => Some(vec![self.clone()]),
            Expr::Bin(l, op, r) => {
                let ls = l.partial_evaluations(limit)?;
                let rs = r.partial_evaluations(limit)?;
                if ls.len().saturating_mul(rs.len()) + 1 > limit {
                    return None;
                }
                let mut out = vec![Expr::Num(self.eval()?)];
                for a in &ls {
                    for b in &rs {
                        out.push(Expr::bin(a.clone(), *op, b.clone()));
                    }
                }
                Some(out)
            }
        }
    }

    /// Parses a whole line (spaces allowed); `None` if it is not exactly one expression.
    pub fn parse(s: &str) -> Option<Expr> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
            depth: 0,
        };
        let e = p.sum()?;
        p.skip_ws();
        (p.i == p.b.len()).then_some(e)
    }
}

impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expr::Num(v) => write!(f, "{v}"),
            Expr::Bin(l, op, r) => {
                let lp = matches!(&**l, Expr::Bin(_, lo, _) if prec(*lo) < prec(*op));
                let rp = matches!(&**r, Expr::Bin(_, ro, _) if prec(*ro) <= prec(*op));
                let wrap = |f: &mut std::fmt::Formatter<'_>, e: &Expr, p: bool| {
                    if p {
                        write!(f, "({e})")
                    } else {
                        write!(f, "{e}")
                    }
                };
                wrap(f, l, lp)?;
                write!(f, "{}", op.symbol())?;
                wrap(f, r, rp)
            }
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek_op(&mut self, ops: &[Op]) -> Option<Op> {
        self.skip_ws();
        let c = *self.b.get(self.i)?;
        let op = if c.is_ascii() {
            Op::from_char(c as char)?
        } else {
            return None;
        };
        ops.contains(&op).then_some(op)
    }
    fn sum(&mut self) -> Option<Expr> {
        let mut e = self.product()?;
        while let Some(op) = self.peek_op(&[Op::Add, Op::Sub]) {
            self.i += 1;
            e = Expr::bin(e, op, self.product()?);
        }
        Some(e)
    }
    fn product(&mut self) -> Option<Expr> {
        let mut e = self.atom()?;
        while let Some(op) = self.peek_op(&[Op::Mul, Op::Div]) {
            self.i += 1;
            e = Expr::bin(e, op, self.atom()?);
        }
        Some(e)
    }
    fn atom(&mut self) -> Option<Expr> {
        self.skip_ws();
        match *self.b.get(self.i)? {
            b'(' => {
                self.depth += 1;
                if self.depth > MAX_PARSE_DEPTH {
                    return None;
                }
                self.i += 1;
                let e = self.sum()?;
                self.skip_ws();
                (self.b.get(self.i) == Some(&b')')).then_some(())?;
                self.i += 1;
                self.depth -= 1;
                Some(e)
            }
            b'0'..=b'9' => {
                let mut v: u64 = 0;
                while let Some(d) = self.b.get(self.i).filter(|c| c.is_ascii_digit()) {
                    v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
                    self.i += 1;
                }
                Some(Expr::Num(v))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print_round_trip() {
        for s in [
            "1+2*3",
            "(1+2)*3",
            "1-(2-3)",
            "1-2-3",
            "8/(4/2)",
            "8/4/2",
            "2*(3+4)-5",
            "7",
        ] {
            let e = Expr::parse(s).unwrap();
            assert_eq!(e.to_string(), s);
        }
        assert_eq!(
            Expr::parse(" ( 3 + 4 ) * 2 ").unwrap().to_string(),
            "(3+4)*2"
        );
        assert_eq!(Expr::parse("((1+2))").unwrap().to_string(), "1+2");
        for bad in [
            "",
            "1+",
            "(1+2",
            "1 2",
            "-3",
            "a",
            "1+2)",
            "99999999999999999999999",
        ] {
            assert!(Expr::parse(bad).is_none(), "{bad:?}");
        }
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(Expr::parse(&deep).is_none());
    }

    #[test]
    fn evaluation_and_reduction() {
        let e = Expr::parse("(3+4)*(12-5)").unwrap();
        assert_eq!(e.eval(), Some(49));
        assert_eq!(e.ops(), 3);
        assert_eq!(e.depth(), 2);
        let r1 = e.reduce_once().unwrap();
        assert_eq!(r1.to_string(), "7*(12-5)");
        assert_eq!(r1.reduce_once().unwrap().to_string(), "7*7");
        assert_eq!(Expr::parse("3-4").unwrap().eval(), None);
        assert_eq!(Expr::parse("7/2").unwrap().eval(), None);
        assert!(e.is_partial_evaluation(&Expr::parse("(3+4)*7").unwrap()));
        assert!(e.is_partial_evaluation(&Expr::parse("49").unwrap()));
        assert!(!e.is_partial_evaluation(&Expr::parse("7+7").unwrap()));
        assert!(!e.is_partial_evaluation(&Expr::parse("8*7").unwrap()));
        // 1+2+3 is (1+2)+3: replacing 2+3 is not a partial evaluation of it.
        assert!(!Expr::parse("1+2+3")
            .unwrap()
            .is_partial_evaluation(&Expr::parse("1+5").unwrap()));
        let lines = e.next_lines(100).unwrap();
        // {7, 3+4} x {7, 12-5} minus identity, plus the full value: 4 - 1 + 1 = 4.
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines.contains(&"49".to_string()) && lines.contains(&"7*7".to_string()));
    }
}
