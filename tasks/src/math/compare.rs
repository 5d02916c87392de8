//! Equivalence of parsed answers. Expressions: structurally equal, else exactly equal as
//! rationals, else numerically equal (relative tolerance) — with variables, at a fixed set of
//! pseudo-random points in ±[0.5, 3] (deterministic, so verdicts are reproducible); an `i` is the
//! imaginary unit there (complex evaluation). Percentages
//! match either the number or its hundredth ("50%" = 50 = 0.5). Equations match side by side,
//! swapped, or as proportional differences (`y = 2x+3` ≡ `2x - y + 3 = 0`); `x = 5` matches `5`.
//! Tuples and matrices are ordered, sets/bare lists/unions order-free, intervals compare ends and
//! closedness, a 2-tuple equals the open interval with the same ends.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::answer::{Ans, Interval};
use super::eval::{complex, exact, float, variables};
use super::expr::Node;

/// Comparison settings (from [`super::MathConfig`]).
#[derive(Clone, Debug)]
pub struct Comparator {
    rel_tol: f64,
    /// Per point, values for variables by index (wraps around).
    points: Vec<[f64; 8]>,
}

impl Comparator {
    /// `points` evaluation points for expressions with variables, relative tolerance `rel_tol`.
    pub fn new(rel_tol: f64, points: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(0x6d61_7468);
        // About a third of the points negative, so `sqrt(x^2)` and `x` differ.
        let points = (0..points.max(1))
            .map(|k| {
                std::array::from_fn(|_| {
                    rng.random_range(0.5..3.0) * if k % 3 == 2 { -1.0 } else { 1.0 }
                })
            })
            .collect();
        Comparator { rel_tol, points }
    }

    /// Are the two answers equivalent?
    pub fn equiv(&self, g: &Ans, r: &Ans) -> bool {
        use Ans::*;
        match (g, r) {
            (Expr(a), Expr(b)) => self.expr(a, b),
            (Eq(l1, r1), Eq(l2, r2)) => self.equation(l1, r1, l2, r2),
            (Eq(l, rhs), Expr(e)) | (Expr(e), Eq(l, rhs)) => match (l, rhs) {
                (Node::Var(_), v) | (v, Node::Var(_)) => self.expr(v, e),
                _ => false,
            },
            (Eq(l, rhs), other) | (other, Eq(l, rhs)) if matches!(l, Node::Var(_)) => {
                self.equiv(&Expr(rhs.clone()), other)
            }
            (Tuple(a), Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| self.equiv(x, y))
            }
            (Set(a), Set(b)) | (Union(a), Union(b)) => self.unordered(a, b),
            (Set(a), x) | (x, Set(a)) if a.len() == 1 => self.equiv(&a[0], x),
            (Union(a), x) | (x, Union(a)) if a.len() == 1 => self.equiv(&a[0], x),
            (Interval(a), Interval(b)) => self.interval(a, b),
            (Tuple(t), Interval(i)) | (Interval(i), Tuple(t)) => {
                t.len() == 2
                    && !i.lo_closed
                    && !i.hi_closed
                    && self.equiv(&t[0], &Expr(i.lo.clone()))
                    && self.equiv(&t[1], &Expr(i.hi.clone()))
            }
            (Matrix(a), Matrix(b)) => {
                a.len() == b.len()
                    && a.iter().zip(b).all(|(ra, rb)| {
                        ra.len() == rb.len() && ra.iter().zip(rb).all(|(x, y)| self.equiv(x, y))
                    })
            }
            (Matrix(m), Tuple(t)) | (Tuple(t), Matrix(m)) => {
                let flat: Vec<&Ans> = m.iter().flatten().collect();
                let is_vector = m.len() == 1 || m.iter().all(|row| row.len() == 1);
                is_vector
                    && flat.len() == t.len()
                    && flat.iter().zip(t).all(|(x, y)| self.equiv(x, y))
            }
            (Choice(a), Choice(b)) => a == b,
            (Text(a), Text(b)) => a == b,
            _ => false,
        }
    }

    /// Order-free matching (greedy; equivalence is transitive in practice).
    fn unordered(&self, a: &[Ans], b: &[Ans]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut used = vec![false; b.len()];
        a.iter().all(|x| {
            let hit = (0..b.len()).find(|&j| !used[j] && self.equiv(x, &b[j]));
            hit.map(|j| used[j] = true).is_some()
        })
    }

    fn interval(&self, a: &Interval, b: &Interval) -> bool {
        a.lo_closed == b.lo_closed
            && a.hi_closed == b.hi_closed
            && self.expr(&a.lo, &b.lo)
            && self.expr(&a.hi, &b.hi)
    }

    /// Expression equivalence, with the percent leniency.
    pub fn expr(&self, a: &Node, b: &Node) -> bool {
        if self.expr_strict(a, b) {
            return true;
        }
        match (a, b) {
            (Node::Percent(x), _) => self.expr_strict(x, b),
            (_, Node::Percent(y)) => self.expr_strict(a, y),
            _ => false,
        }
    }

    fn expr_strict(&self, a: &Node, b: &Node) -> bool {
        if a == b {
            return true;
        }
        let mut vars = variables(a);
        vars.extend(variables(b));
        vars.sort();
        vars.dedup();
        if vars.is_empty() {
            if let (Some(x), Some(y)) = (exact(a), exact(b)) {
                return x == y;
            }
            let no_env = |_: &str| None;
            return self.close(float(a, &no_env), float(b, &no_env));
        }
        let imaginary = vars.iter().any(|v| v == "i");
        let mut valid = 0;
        for p in &self.points {
            let env = |v: &str| vars.iter().position(|x| x == v).map(|i| p[i % p.len()]);
            let ((x, xi), (y, yi)) = if imaginary {
                // `i` is the imaginary unit: compare real and imaginary parts.
                let (u, w) = (complex(a, &env), complex(b, &env));
                ((u.re, u.im), (w.re, w.im))
            } else {
                ((float(a, &env), 0.0), (float(b, &env), 0.0))
            };
            if (x.is_nan() || xi.is_nan()) && (y.is_nan() || yi.is_nan()) {
                continue; // outside both domains (e.g. ln of a negative point)
            }
            let scale = x.abs().max(xi.abs()).max(y.abs()).max(yi.abs());
            if !self.close_scaled(x, y, scale) || !self.close_scaled(xi, yi, scale) {
                return false;
            }
            valid += 1;
        }
        valid >= 2
    }

    /// Like [`Comparator::close`], with the relative tolerance taken against `scale`.
    fn close_scaled(&self, x: f64, y: f64, scale: f64) -> bool {
        if x.is_infinite() || y.is_infinite() {
            return x == y;
        }
        x.is_finite()
            && y.is_finite()
            && ((x - y).abs() <= self.rel_tol * scale || (x - y).abs() <= 1e-12)
    }

    fn close(&self, x: f64, y: f64) -> bool {
        if x.is_infinite() || y.is_infinite() {
            return x == y;
        }
        if !x.is_finite() || !y.is_finite() {
            return false;
        }
        let d = (x - y).abs();
        d <= self.rel_tol * x.abs().max(y.abs()) || d <= 1e-12
    }

    /// `l1 = r1` vs `l2 = r2`.
    fn equation(&self, l1: &Node, r1: &Node, l2: &Node, r2: &Node) -> bool {
        if (self.expr(l1, l2) && self.expr(r1, r2)) || (self.expr(l1, r2) && self.expr(r1, l2)) {
            return true;
        }
        let d1 = Node::Sub(Box::new(l1.clone()), Box::new(r1.clone()));
        let d2 = Node::Sub(Box::new(l2.clone()), Box::new(r2.clone()));
        let mut vars = variables(&d1);
        vars.extend(variables(&d2));
        vars.sort();
        vars.dedup();
        if vars.is_empty() {
            return false;
        }
        // Proportional differences: d1 / d2 is the same nonzero constant at every point.
        let mut ratio: Option<f64> = None;
        let mut valid = 0;
        for p in &self.points {
            let env = |v: &str| vars.iter().position(|x| x == v).map(|i| p[i % p.len()]);
            let (x, y) = (float(&d1, &env), float(&d2, &env));
            if !x.is_finite() || !y.is_finite() {
                continue;
            }
            if x.abs() < 1e-12 && y.abs() < 1e-12 {
                continue;
            }
            if y.abs() < 1e-12 || x.abs() < 1e-12 {
                return false;
            }
            let q = x / y;
            match ratio {
                None => ratio = Some(q),
                Some(r0) if self.close(r0, q) => {}
                Some(_) => return false,
            }
            valid += 1;
        }
        valid >= 2
    }
}

#[cfg(test)]
mod tests {
    use super::super::answer::parse_answer;
    use super::*;

    fn eq(a: &str, b: &str) -> bool {
        Comparator::new(1e-9, 6).equiv(&parse_answer(a), &parse_answer(b))
    }

    #[test]
    fn expressions() {
        assert!(eq(r"\frac{1}{2}", "0.5"));
        assert!(eq(r"2\sqrt{2}", r"\sqrt{8}"));
        assert!(eq("(x+1)^2", "x^2+2x+1"));
        assert!(!eq("(x+1)^2", "x^2+1"));
        assert!(eq("50%", "0.5") && eq("50%", "50"));
        assert!(!eq("x", "y"));
        assert!(!eq(r"\sqrt{2}", "1.414"));
        assert!(eq("(1+i)^2", "2i") && eq("i^2", "-1") && !eq("3+4i", "3-4i"));
    }

    #[test]
    fn structures() {
        assert!(eq("x=5", "5") && eq("5", "x = 5"));
        assert!(eq("y=2x+3", "2x-y+3=0"));
        assert!(!eq("y=2x+3", "y=2x+4"));
        assert!(eq(r"\{1,2,3\}", "3, 2, 1"));
        assert!(!eq("(1,2)", "(2,1)"));
        assert!(eq("(1,2)", "(1,2)"));
        assert!(eq("[1,2)", r"[1, 2)"));
        assert!(!eq("[1,2)", "[1,2]"));
        assert!(eq(
            r"(-\infty, 0)\cup(1,\infty)",
            r"(1,\infty)\cup(-\infty,0)"
        ));
        assert!(eq(r"x > 3", r"(3, \infty)"));
        assert!(eq(r"\begin{pmatrix}1\\2\end{pmatrix}", "(1, 2)"));
    }
}
