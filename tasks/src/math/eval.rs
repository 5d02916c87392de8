//! Evaluation of [`Node`] trees: exactly over rationals when the expression is rational (no
//! variables, no transcendental constants or functions, perfect roots only), else in `f64` with
//! variables bound to given values. Exact evaluation is bounded (exponents, factorials, result
//! sizes) so no input can make it run away; past the bounds it yields `None` and the caller
//! falls back to floating point.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use super::expr::{Func, Node};

/// Largest |exponent| evaluated exactly.
const MAX_EXACT_EXP: u64 = 4096;
/// Largest result size (bits of numerator + denominator) of an exact power.
const MAX_EXACT_BITS: u64 = 1 << 16;
/// Largest n for an exact factorial or binomial.
const MAX_EXACT_FACT: u64 = 2000;

/// The exact rational value, or `None` if the expression is not (provably) rational or exceeds
/// the bounds.
pub fn exact(n: &Node) -> Option<BigRational> {
    let r = exact_unbounded(n)?;
    (bits(&r) <= 4 * MAX_EXACT_BITS).then_some(r)
}

fn exact_unbounded(n: &Node) -> Option<BigRational> {
    Some(match n {
        Node::Num(r) => r.clone(),
        Node::Var(_) | Node::Pi | Node::E | Node::Inf | Node::Log(..) => return None,
        Node::Neg(a) => -exact(a)?,
        Node::Add(a, b) => exact(a)? + exact(b)?,
        Node::Sub(a, b) => exact(a)? - exact(b)?,
        Node::Mul(a, b) => exact(a)? * exact(b)?,
        Node::Div(a, b) => {
            let d = exact(b)?;
            if d.is_zero() {
                return None;
            }
            exact(a)? / d
        }
        Node::Pow(a, b) => pow_exact(&exact(a)?, &exact(b)?)?,
        Node::Percent(a) => exact(a)? / BigRational::from_integer(BigInt::from(100)),
        Node::Root(k, a) => {
            let k = exact(k)?;
            if !k.is_integer() || k <= BigRational::zero() {
                return None;
            }
            root_exact(&exact(a)?, k.to_integer().to_u32()?)?
        }
        Node::Fact(a) => {
            let v = small_nonneg_int(&exact(a)?)?;
            BigRational::from_integer((1..=v).fold(BigInt::one(), |acc, k| acc * BigInt::from(k)))
        }
        Node::Binom(n, k) => {
            let (n, k) = (small_nonneg_int(&exact(n)?)?, small_nonneg_int(&exact(k)?)?);
            if k > n {
                return Some(BigRational::zero());
            }
            let mut acc = BigInt::one();
            for j in 0..k {
                acc = acc * BigInt::from(n - j) / BigInt::from(j + 1);
            }
            BigRational::from_integer(acc)
        }
        Node::Func(f, a) => {
            let v = exact(a)?;
            match f {
                Func::Sqrt => root_exact(&v, 2)?,
                Func::Abs => v.abs(),
                Func::Floor => BigRational::from_integer(v.floor().to_integer()),
                Func::Ceil => BigRational::from_integer(v.ceil().to_integer()),
                _ => return None,
            }
        }
    })
}

fn small_nonneg_int(v: &BigRational) -> Option<u64> {
    if !v.is_integer() || v.is_negative() {
        return None;
    }
    v.to_integer().to_u64().filter(|&n| n <= MAX_EXACT_FACT)
}

fn bits(r: &BigRational) -> u64 {
    r.numer().bits() + r.denom().bits()
}

/// `base^exp` when it is rational: integer exponents within bounds, or `p/q` exponents of a
/// perfect q-th power.
fn pow_exact(base: &BigRational, exp: &BigRational) -> Option<BigRational> {
    let q = exp.denom().to_u32()?;
    let p = exp.numer();
    let base = if q == 1 {
        base.clone()
    } else {
        root_exact(base, q)?
    };
    let e = p.abs().to_u64()?;
    if e > MAX_EXACT_EXP || bits(&base).saturating_mul(e) > MAX_EXACT_BITS {
        return None;
    }
    if base.is_zero() && p.is_negative() {
        return None;
    }
    let r = num_traits::pow(base, e as usize);
    Some(if p.is_negative() { r.recip() } else { r })
}

/// The exact k-th root of a rational, if it is one (negative radicands only for odd k).
fn root_exact(v: &BigRational, k: u32) -> Option<BigRational> {
    if k == 0 || k > 64 || (v.is_negative() && k.is_multiple_of(2)) {
        return None;
    }
    let root = |x: &BigInt| -> Option<BigInt> {
        let r = x.abs().nth_root(k);
        (num_traits::pow(r.clone(), k as usize) == x.abs()).then(|| {
            if x.is_negative() {
                -r
            } else {
                r
            }
        })
    };
    Some(BigRational::new(root(v.numer())?, root(v.denom())?))
}

/// The `f64` value with variables bound by `env` (NaN when unbound or undefined).
pub fn float(n: &Node, env: &dyn Fn(&str) -> Option<f64>) -> f64 {
    let f = |x: &Node| float(x, env);
    match n {
        Node::Num(r) => r.to_f64().unwrap_or(f64::NAN),
        Node::Var(v) => env(v).unwrap_or(f64::NAN),
        Node::Pi => std::f64::consts::PI,
        Node::E => std::f64::consts::E,
        Node::Inf => f64::INFINITY,
        Node::Neg(a) => -f(a),
        Node::Add(a, b) => f(a) + f(b),
        Node::Sub(a, b) => f(a) - f(b),
        Node::Mul(a, b) => f(a) * f(b),
        Node::Div(a, b) => f(a) / f(b),
        Node::Pow(a, b) => pow_f64(f(a), b, env),
        Node::Percent(a) => f(a) / 100.0,
        Node::Log(b, a) => f(a).ln() / f(b).ln(),
        Node::Root(k, a) => {
            let (k, x) = (f(k), f(a));
            if x < 0.0 && k.fract() == 0.0 && (k as i64) % 2 == 1 {
                -(-x).powf(1.0 / k)
            } else {
                x.powf(1.0 / k)
            }
        }
        Node::Fact(a) => gamma_int(f(a)),
        Node::Binom(a, b) => {
            let (n, k) = (f(a), f(b));
            gamma_int(n) / (gamma_int(k) * gamma_int(n - k))
        }
        Node::Func(func, a) => apply_real(*func, f(a)),
    }
}

/// A unary function on a real argument.
fn apply_real(func: Func, x: f64) -> f64 {
    match func {
        Func::Sin => x.sin(),
        Func::Cos => x.cos(),
        Func::Tan => x.tan(),
        Func::Cot => 1.0 / x.tan(),
        Func::Sec => 1.0 / x.cos(),
        Func::Csc => 1.0 / x.sin(),
        Func::Asin => x.asin(),
        Func::Acos => x.acos(),
        Func::Atan => x.atan(),
        Func::Sinh => x.sinh(),
        Func::Cosh => x.cosh(),
        Func::Tanh => x.tanh(),
        Func::Ln => x.ln(),
        Func::Exp => x.exp(),
        Func::Sqrt => x.sqrt(),
        Func::Abs => x.abs(),
        Func::Floor => x.floor(),
        Func::Ceil => x.ceil(),
    }
}

/// Real powers; a negative base with an exact odd-denominator exponent (cube roots) stays real.
fn pow_f64(base: f64, exp: &Node, env: &dyn Fn(&str) -> Option<f64>) -> f64 {
    let e = float(exp, env);
    if base < 0.0 && e.fract() != 0.0 {
        if let Some(q) = exact(exp) {
            let d = q.denom().to_i64().unwrap_or(2);
            if d % 2 == 1 {
                let mag = (-base).powf(e);
                return if q.numer().is_odd_int() { -mag } else { mag };
            }
        }
    }
    base.powf(e)
}

trait OddInt {
    fn is_odd_int(&self) -> bool;
}
impl OddInt for BigInt {
    fn is_odd_int(&self) -> bool {
        (self % BigInt::from(2)) != BigInt::zero()
    }
}

/// n! for integer 0 ≤ n ≤ 170 (NaN otherwise).
fn gamma_int(n: f64) -> f64 {
    if n < 0.0 || n.fract() != 0.0 || n > 170.0 {
        return f64::NAN;
    }
    (1..=n as u64).fold(1.0, |acc, k| acc * k as f64)
}

/// A complex number for answers with the imaginary unit `i`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct C {
    pub re: f64,
    pub im: f64,
}

impl C {
    const fn real(re: f64) -> C {
        C { re, im: 0.0 }
    }
    fn add(self, o: C) -> C {
        C {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    fn sub(self, o: C) -> C {
        C {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
    fn mul(self, o: C) -> C {
        C {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    fn div(self, o: C) -> C {
        let d = o.re * o.re + o.im * o.im;
        C {
            re: (self.re * o.re + self.im * o.im) / d,
            im: (self.im * o.re - self.re * o.im) / d,
        }
    }
    fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn ln(self) -> C {
        C {
            re: self.abs().ln(),
            im: self.im.atan2(self.re),
        }
    }
    fn exp(self) -> C {
        let m = self.re.exp();
        C {
            re: m * self.im.cos(),
            im: m * self.im.sin(),
        }
    }
    /// Principal power; integer exponents by repeated squaring (so `i^2` is exactly -1).
    fn pow(self, e: C, exact_int: Option<i64>) -> C {
        if let Some(k) = exact_int.filter(|k| k.unsigned_abs() <= 1024) {
            let (mut acc, mut base, mut n) = (C::real(1.0), self, k.unsigned_abs());
            while n > 0 {
                if n & 1 == 1 {
                    acc = acc.mul(base);
                }
                base = base.mul(base);
                n >>= 1;
            }
            return if k < 0 { C::real(1.0).div(acc) } else { acc };
        }
        if self.im == 0.0 && e.im == 0.0 && (self.re >= 0.0 || e.re.fract() == 0.0) {
            return C::real(self.re.powf(e.re));
        }
        e.mul(self.ln()).exp()
    }
}

/// The complex value with `i` as the imaginary unit and other variables bound by `env` (real).
/// Functions other than sqrt/exp/ln/sin/cos/tan/abs need a real argument (else NaN).
pub fn complex(n: &Node, env: &dyn Fn(&str) -> Option<f64>) -> C {
    let c = |x: &Node| complex(x, env);
    let nan = C::real(f64::NAN);
    match n {
        Node::Var(v) if v == "i" => C { re: 0.0, im: 1.0 },
        Node::Num(_) | Node::Var(_) | Node::Pi | Node::E | Node::Inf => C::real(float(n, env)),
        Node::Neg(a) => C::real(0.0).sub(c(a)),
        Node::Add(a, b) => c(a).add(c(b)),
        Node::Sub(a, b) => c(a).sub(c(b)),
        Node::Mul(a, b) => c(a).mul(c(b)),
        Node::Div(a, b) => c(a).div(c(b)),
        Node::Pow(a, b) => {
            let k = exact(b)
                .filter(|q| q.is_integer())
                .and_then(|q| q.to_integer().to_i64());
            c(a).pow(c(b), k)
        }
        Node::Percent(a) => c(a).div(C::real(100.0)),
        Node::Log(b, a) => c(a).ln().div(c(b).ln()),
        Node::Root(k, a) => {
            let (k, x) = (c(k), c(a));
            if x.im == 0.0 && k.im == 0.0 {
                let odd = k.re.fract() == 0.0 && (k.re as i64) % 2 == 1;
                C::real(if x.re < 0.0 && odd {
                    -(-x.re).powf(1.0 / k.re)
                } else {
                    x.re.powf(1.0 / k.re)
                })
            } else {
                x.pow(C::real(1.0).div(k), None)
            }
        }
        Node::Func(f, a) => {
            let z = c(a);
            match f {
                Func::Sqrt if z.im == 0.0 && z.re >= 0.0 => C::real(z.re.sqrt()),
                Func::Sqrt => z.pow(C::real(0.5), None),
                Func::Exp => z.exp(),
                Func::Ln => z.ln(),
                Func::Abs => C::real(z.abs()),
                Func::Sin => C {
                    re: z.re.sin() * z.im.cosh(),
                    im: z.re.cos() * z.im.sinh(),
                },
                Func::Cos => C {
                    re: z.re.cos() * z.im.cosh(),
                    im: -z.re.sin() * z.im.sinh(),
                },
                Func::Tan => complex(&Node::Func(Func::Sin, a.clone()), env)
                    .div(complex(&Node::Func(Func::Cos, a.clone()), env)),
                _ if z.im == 0.0 => C::real(apply_real(*f, z.re)),
                _ => nan,
            }
        }
        Node::Fact(_) | Node::Binom(..) => C::real(float(n, env)),
    }
}

/// Variables appearing in `n`, sorted and deduplicated.
pub fn variables(n: &Node) -> Vec<String> {
    let mut out = Vec::new();
    collect_vars(n, &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect_vars(n: &Node, out: &mut Vec<String>) {
    match n {
        Node::Var(v) => out.push(v.clone()),
        Node::Num(_) | Node::Pi | Node::E | Node::Inf => {}
        Node::Neg(a) | Node::Func(_, a) | Node::Fact(a) | Node::Percent(a) => collect_vars(a, out),
        Node::Add(a, b)
        | Node::Sub(a, b)
        | Node::Mul(a, b)
        | Node::Div(a, b)
        | Node::Pow(a, b)
        | Node::Log(a, b)
        | Node::Root(a, b)
        | Node::Binom(a, b) => {
            collect_vars(a, out);
            collect_vars(b, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::expr::parse;
    use super::*;

    fn ex(s: &str) -> Option<BigRational> {
        exact(&parse(s).unwrap())
    }
    fn q(n: i64, d: i64) -> Option<BigRational> {
        Some(BigRational::new(n.into(), d.into()))
    }

    #[test]
    fn exact_values() {
        assert_eq!(ex(r"\frac{1}{2}+\frac{1}{3}"), q(5, 6));
        assert_eq!(ex("2^{10}"), q(1024, 1));
        assert_eq!(ex("2^{-2}"), q(1, 4));
        assert_eq!(ex(r"\sqrt{\frac{9}{4}}"), q(3, 2));
        assert_eq!(ex(r"\sqrt[3]{-27}"), q(-3, 1));
        assert_eq!(ex("8^{2/3}"), q(4, 1));
        assert_eq!(ex("5!"), q(120, 1));
        assert_eq!(ex(r"\binom{5}{2}"), q(10, 1));
        assert_eq!(ex("50%"), q(1, 2));
        assert_eq!(ex(r"1.5\times10^{3}"), q(1500, 1));
        assert_eq!(ex(r"\sqrt{2}"), None);
        assert_eq!(ex("1/0"), None);
        assert_eq!(ex("2^{100000}"), None); // past the bound: float fallback
        assert_eq!(ex("10000!"), None);
    }

    #[test]
    fn float_values() {
        let env = |v: &str| (v == "x").then_some(2.0);
        let f = |s: &str| float(&parse(s).unwrap(), &env);
        assert!((f(r"\sqrt{2}") - std::f64::consts::SQRT_2).abs() < 1e-15);
        assert!((f("x^2+1") - 5.0).abs() < 1e-15);
        assert!((f(r"\log_2 8") - 3.0).abs() < 1e-12);
        assert!((f(r"(-8)^{1/3}") + 2.0).abs() < 1e-12);
        assert!((f(r"\sin\frac{\pi}{6}") - 0.5).abs() < 1e-12);
        assert!(f("y").is_nan());
        assert_eq!(variables(&parse("x^2+y_1 x+e").unwrap()), vec!["x", "y_1"]);
        let c = |s: &str| complex(&parse(s).unwrap(), &env);
        assert_eq!(c("i^2"), C { re: -1.0, im: 0.0 });
        assert_eq!(c("(1+i)(1-i)"), C { re: 2.0, im: 0.0 });
        let z = c(r"e^{i\pi}");
        assert!((z.re + 1.0).abs() < 1e-15 && z.im.abs() < 1e-15);
        let z = c(r"\sqrt{-4}");
        assert!(z.re.abs() < 1e-15 && (z.im - 2.0).abs() < 1e-15);
    }
}
