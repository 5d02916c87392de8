//! A small parser for LaTeX-ish math expressions: numbers (decimals and scientific notation kept
//! exact), variables (single letters with subscripts, Greek letters), `\pi`, `e`, `\infty`,
//! `+ - * / ^`, `\cdot` `\times` `\div`, implicit multiplication (`2x`, `3\sqrt{2}`, `(x+1)(x-1)`),
//! mixed numbers (`3\frac{1}{2}` = 7/2), `\frac`, `\sqrt[n]{}`, `\binom`, `!`, `%`, `|x|`,
//! floor/ceil, and the functions sin cos tan cot sec csc (and inverses, `\sin^{-1}`), sinh cosh
//! tanh, ln, log (natural; `\log_b`), exp. LaTeX argument rules apply: `\frac12` = 1/2,
//! `x^23` = x²·3. Recursion is bounded ([`MAX_DEPTH`]) so no input can overflow the stack.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Zero};

/// Most nested groups/unary operators the parser follows before giving up.
pub const MAX_DEPTH: usize = 100;

/// An expression tree. Numbers are exact rationals.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Num(BigRational),
    Var(String),
    Pi,
    E,
    Inf,
    Neg(Box<Node>),
    Add(Box<Node>, Box<Node>),
    Sub(Box<Node>, Box<Node>),
    Mul(Box<Node>, Box<Node>),
    Div(Box<Node>, Box<Node>),
    Pow(Box<Node>, Box<Node>),
    Func(Func, Box<Node>),
    /// `log_base(x)`.
    Log(Box<Node>, Box<Node>),
    /// `index`-th root of `x`.
    Root(Box<Node>, Box<Node>),
    Fact(Box<Node>),
    Binom(Box<Node>, Box<Node>),
    /// `x%`, i.e. x/100 (kept apart so "50%" can also match "50").
    Percent(Box<Node>),
}

/// Unary functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Sin,
    Cos,
    Tan,
    Cot,
    Sec,
    Csc,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Ln,
    Exp,
    Sqrt,
    Abs,
    Floor,
    Ceil,
}

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tan" => Func::Tan,
            "cot" => Func::Cot,
            "sec" => Func::Sec,
            "csc" => Func::Csc,
            "arcsin" | "asin" => Func::Asin,
            "arccos" | "acos" => Func::Acos,
            "arctan" | "atan" => Func::Atan,
            "sinh" => Func::Sinh,
            "cosh" => Func::Cosh,
            "tanh" => Func::Tanh,
            "ln" | "log" => Func::Ln,
            "exp" => Func::Exp,
            "sqrt" => Func::Sqrt,
            "abs" => Func::Abs,
            _ => return None,
        })
    }

    fn inverse(self) -> Option<Func> {
        Some(match self {
            Func::Sin => Func::Asin,
            Func::Cos => Func::Acos,
            Func::Tan => Func::Atan,
            _ => return None,
        })
    }
}

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
];

/// Function names recognised without a backslash (longest first).
const BARE_FUNCS: &[&str] = &[
    "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "sqrt", "sin", "cos", "tan", "cot",
    "sec", "csc", "log", "exp", "ln",
];

/// Parses a whole expression; `None` if any input is left over or something is not understood.
pub fn parse(s: &str) -> Option<Node> {
    let mut p = Parser {
        c: s.chars().collect(),
        i: 0,
        depth: 0,
        abs_depth: 0,
    };
    let n = p.expr()?;
    p.skip_ws();
    (p.i == p.c.len()).then_some(n)
}

fn bx(n: Node) -> Box<Node> {
    Box::new(n)
}

fn int(v: i64) -> Node {
    Node::Num(BigRational::from_integer(BigInt::from(v)))
}

struct Parser {
    c: Vec<char>,
    i: usize,
    depth: usize,
    abs_depth: usize,
}

impl Parser {
    fn skip_ws(&mut self) {
        while self.c.get(self.i).is_some_and(|c| c.is_whitespace()) {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.c.get(self.i).copied()
    }
    fn eat(&mut self, ch: char) -> bool {
        if self.peek() == Some(ch) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// The command name at the cursor (`\frac` → "frac"), without consuming it.
    fn peek_cmd(&mut self) -> Option<String> {
        if self.peek()? != '\\' {
            return None;
        }
        let name: String = self.c[self.i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        (!name.is_empty()).then_some(name)
    }
    fn eat_cmd(&mut self, names: &[&str]) -> bool {
        match self.peek_cmd() {
            Some(n) if names.contains(&n.as_str()) => {
                self.i += 1 + n.len();
                true
            }
            _ => false,
        }
    }
    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn expr(&mut self) -> Option<Node> {
        self.enter()?;
        let mut lhs = self.term()?;
        loop {
            if self.eat('+') {
                lhs = Node::Add(bx(lhs), bx(self.term()?));
            } else if self.eat('-') {
                lhs = Node::Sub(bx(lhs), bx(self.term()?));
            } else {
                break;
            }
        }
        self.depth -= 1;
        Some(lhs)
    }

    fn term(&mut self) -> Option<Node> {
        let mut lhs = self.unary()?;
        loop {
            if self.eat('*') || self.eat_cmd(&["cdot", "times", "ast"]) {
                lhs = Node::Mul(bx(lhs), bx(self.unary()?));
            } else if self.eat('/') || self.eat_cmd(&["div"]) {
                lhs = Node::Div(bx(lhs), bx(self.unary()?));
            } else if self.starts_factor() {
                let rhs = self.power()?;
                lhs = match (&lhs, &rhs) {
                    (Node::Num(w), Node::Div(a, b)) if is_mixed_number(w, a, b) => {
                        Node::Add(bx(lhs), bx(rhs))
                    }
                    _ => Node::Mul(bx(lhs), bx(rhs)),
                };
            } else {
                break;
            }
        }
        Some(lhs)
    }

    /// Can an implicit multiplication operand start here?
    fn starts_factor(&mut self) -> bool {
        match self.peek() {
            Some(c)
                if c.is_ascii_digit()
                    || c.is_ascii_alphabetic()
                    || c == '('
                    || c == '{'
                    || c == '.' =>
            {
                true
            }
            Some('|') => self.abs_depth == 0,
            Some('\\') => self.peek_cmd().is_some_and(|n| {
                matches!(
                    n.as_str(),
                    "frac"
                        | "sqrt"
                        | "pi"
                        | "infty"
                        | "binom"
                        | "dbinom"
                        | "tbinom"
                        | "log"
                        | "ln"
                        | "exp"
                        | "lfloor"
                        | "lceil"
                ) || Func::from_name(&n).is_some()
                    || GREEK.contains(&n.as_str())
            }),
            _ => false,
        }
    }

    fn unary(&mut self) -> Option<Node> {
        self.enter()?;
        let n = if self.eat('-') {
            Node::Neg(bx(self.unary()?))
        } else if self.eat('+') {
            self.unary()?
        } else {
            self.power()?
        };
        self.depth -= 1;
        Some(n)
    }

    fn power(&mut self) -> Option<Node> {
        let base = self.postfix()?;
        if self.eat('^') {
            let exp = self.script()?;
            let mut n = Node::Pow(bx(base), bx(exp));
            while self.eat('!') {
                n = Node::Fact(bx(n));
            }
            return Some(n);
        }
        Some(base)
    }

    /// The argument of `^` or `_`: a braced group, or one character / command (with a sign).
    fn script(&mut self) -> Option<Node> {
        self.enter()?;
        let n = match self.peek()? {
            '{' => {
                self.i += 1;
                let e = self.expr()?;
                self.eat('}').then_some(e)?
            }
            '-' => {
                self.i += 1;
                Node::Neg(bx(self.script()?))
            }
            c if c.is_ascii_digit() => {
                self.i += 1;
                int(i64::from(c.to_digit(10)?))
            }
            '(' => self.primary()?,
            _ => self.single_token()?,
        };
        self.depth -= 1;
        Some(n)
    }

    /// A LaTeX macro argument: `{...}` or one character/command (`\frac12`, `\sqrt2`, `\frac\pi2`).
    fn arg(&mut self) -> Option<Node> {
        match self.peek()? {
            '{' => {
                self.enter()?;
                self.i += 1;
                let e = self.expr()?;
                self.depth -= 1;
                self.eat('}').then_some(e)
            }
            c if c.is_ascii_digit() => {
                self.i += 1;
                Some(int(i64::from(c.to_digit(10)?)))
            }
            _ => self.single_token(),
        }
    }

    fn single_token(&mut self) -> Option<Node> {
        match self.peek()? {
            c if c.is_ascii_alphabetic() => {
                self.i += 1;
                Some(letter(c))
            }
            '\\' => self.command(),
            _ => None,
        }
    }

    fn postfix(&mut self) -> Option<Node> {
        let mut n = self.primary()?;
        loop {
            if self.eat('!') {
                n = Node::Fact(bx(n));
            } else if self.eat('%') {
                n = Node::Percent(bx(n));
            } else {
                return Some(n);
            }
        }
    }

    fn primary(&mut self) -> Option<Node> {
        let c = self.peek()?;
        match c {
            '0'..='9' | '.' => self.number(),
            '(' | '[' | '{' => {
                self.enter()?;
                self.i += 1;
                let e = self.expr()?;
                let close = match c {
                    '(' => ')',
                    '[' => ']',
                    _ => '}',
                };
                self.depth -= 1;
                self.eat(close).then_some(e)
            }
            '|' if self.abs_depth == 0 => {
                self.enter()?;
                self.i += 1;
                self.abs_depth += 1;
                let e = self.expr()?;
                self.abs_depth -= 1;
                self.depth -= 1;
                self.eat('|').then(|| Node::Func(Func::Abs, bx(e)))
            }
            '\\' => self.command(),
            c if c.is_ascii_alphabetic() => self.word(),
            _ => None,
        }
    }

    /// A run of letters: a bare function name, `pi`, or one variable letter (the rest of the run
    /// is left for implicit multiplication). Runs of 3+ letters that are not names are words,
    /// not math: `None`.
    fn word(&mut self) -> Option<Node> {
        let run: String = self.c[self.i..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        for f in BARE_FUNCS {
            if run.starts_with(f) {
                self.i += f.len();
                return self.apply_func(f);
            }
        }
        if run.starts_with("pi") {
            self.i += 2;
            return Some(Node::Pi);
        }
        if run == "infinity" || run == "inf" || run == "oo" {
            self.i += run.len();
            return Some(Node::Inf);
        }
        if run.len() >= 3 {
            return None;
        }
        let ch = self.c[self.i];
        self.i += 1;
        let mut v = letter(ch);
        if let Node::Var(name) = &mut v {
            if let Some(sub) = self.subscript()? {
                name.push('_');
                name.push_str(&sub);
            }
        }
        Some(v)
    }

    /// `_x` / `_{12}` after a variable, as text (`Some(None)` when absent).
    fn subscript(&mut self) -> Option<Option<String>> {
        if self.c.get(self.i) != Some(&'_') {
            return Some(None);
        }
        self.i += 1;
        if self.c.get(self.i) == Some(&'{') {
            let start = self.i + 1;
            let len = self.c[start..].iter().position(|&c| c == '}')?;
            self.i = start + len + 1;
            return Some(Some(
                self.c[start..start + len]
                    .iter()
                    .filter(|c| !c.is_whitespace())
                    .collect(),
            ));
        }
        let ch = *self.c.get(self.i)?;
        self.i += 1;
        ch.is_ascii_alphanumeric().then(|| Some(ch.to_string()))
    }

    fn command(&mut self) -> Option<Node> {
        let name = self.peek_cmd()?;
        self.i += 1 + name.len();
        match name.as_str() {
            "frac" => Some(Node::Div(bx(self.arg()?), bx(self.arg()?))),
            "binom" | "dbinom" | "tbinom" => Some(Node::Binom(bx(self.arg()?), bx(self.arg()?))),
            "sqrt" => {
                if self.eat('[') {
                    self.enter()?;
                    let idx = self.expr()?;
                    self.depth -= 1;
                    if !self.eat(']') {
                        return None;
                    }
                    return Some(Node::Root(bx(idx), bx(self.arg()?)));
                }
                Some(Node::Func(Func::Sqrt, bx(self.arg()?)))
            }
            "pi" => Some(Node::Pi),
            "infty" | "infin" => Some(Node::Inf),
            "lfloor" | "lceil" => {
                self.enter()?;
                let e = self.expr()?;
                self.depth -= 1;
                let (close, f) = if name == "lfloor" {
                    ("rfloor", Func::Floor)
                } else {
                    ("rceil", Func::Ceil)
                };
                self.eat_cmd(&[close]).then(|| Node::Func(f, bx(e)))
            }
            "log" if self.c.get(self.i) == Some(&'_') => {
                self.i += 1;
                let base = self.script()?;
                Some(Node::Log(bx(base), bx(self.func_arg()?)))
            }
            n if GREEK.contains(&n) => Some(Node::Var(n.to_string())),
            n => self.apply_func(n),
        }
    }

    /// After a function name: optional `^k` (`^{-1}` = inverse), then its argument.
    fn apply_func(&mut self, name: &str) -> Option<Node> {
        let mut f = Func::from_name(name)?;
        let mut power = None;
        if self.eat('^') {
            let p = self.script()?;
            match (&p, f.inverse()) {
                (Node::Neg(one), Some(inv)) if **one == int(1) => f = inv,
                _ => power = Some(p),
            }
        }
        let applied = Node::Func(f, bx(self.func_arg()?));
        Some(match power {
            Some(p) => Node::Pow(bx(applied), bx(p)),
            None => applied,
        })
    }

    /// `\sin(x)`, `\sin{x}`, or `\sin 2x` (implicit product of plain factors).
    fn func_arg(&mut self) -> Option<Node> {
        self.enter()?;
        let n = match self.peek()? {
            '(' | '{' | '[' => self.primary()?,
            _ => {
                let mut a = self.power()?;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric())
                    || self
                        .peek_cmd()
                        .is_some_and(|n| n == "pi" || GREEK.contains(&n.as_str()))
                {
                    a = Node::Mul(bx(a), bx(self.power()?));
                }
                a
            }
        };
        self.depth -= 1;
        Some(n)
    }

    /// Decimal number with optional fraction and exponent (`1.5e-3`), as an exact rational.
    fn number(&mut self) -> Option<Node> {
        let start = self.i;
        let digits = |p: &mut Parser| {
            let s = p.i;
            while p.c.get(p.i).is_some_and(|c| c.is_ascii_digit()) {
                p.i += 1;
            }
            p.c[s..p.i].iter().collect::<String>()
        };
        let int_part = digits(self);
        let mut frac = String::new();
        if self.c.get(self.i) == Some(&'.')
            && self.c.get(self.i + 1).is_some_and(|c| c.is_ascii_digit())
        {
            self.i += 1;
            frac = digits(self);
        }
        if int_part.is_empty() && frac.is_empty() {
            self.i = start;
            return None;
        }
        let mut exp: i64 = 0;
        if matches!(self.c.get(self.i), Some('e' | 'E')) {
            let save = self.i;
            self.i += 1;
            let neg = match self.c.get(self.i) {
                Some('-') => {
                    self.i += 1;
                    true
                }
                Some('+') => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let e = digits(self);
            if e.is_empty() || e.len() > 4 {
                self.i = save; // `2e` is 2·e, not scientific notation
            } else {
                exp = e.parse::<i64>().ok()? * if neg { -1 } else { 1 };
            }
        }
        let mantissa: BigInt = format!("{int_part}{frac}").parse().ok()?;
        let scale = exp - frac.len() as i64;
        let ten = BigInt::from(10);
        let p = num_traits::pow(ten, scale.unsigned_abs() as usize);
        Some(Node::Num(if scale >= 0 {
            BigRational::from_integer(mantissa * p)
        } else {
            BigRational::new(mantissa, p)
        }))
    }
}

fn letter(c: char) -> Node {
    if c == 'e' {
        Node::E
    } else {
        Node::Var(c.to_string())
    }
}

/// `w a/b` with integer w ≥ 0 and 0 < a < b integers: a mixed number.
fn is_mixed_number(w: &BigRational, a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Num(a), Node::Num(b)) => {
            w.is_integer()
                && a.is_integer()
                && b.is_integer()
                && *a > BigRational::zero()
                && a < b
                && b > &BigRational::one()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: i64, d: i64) -> Node {
        Node::Num(BigRational::new(n.into(), d.into()))
    }

    #[test]
    fn parses_numbers_exactly() {
        assert_eq!(parse("0.25"), Some(r(1, 4)));
        assert_eq!(parse(".5"), Some(r(1, 2)));
        assert_eq!(parse("1.5e3"), Some(r(1500, 1)));
        assert_eq!(parse("2E-2"), Some(r(1, 50)));
        assert_eq!(parse("2e"), Some(Node::Mul(bx(r(2, 1)), bx(Node::E))));
    }

    #[test]
    fn latex_argument_rules() {
        assert_eq!(parse(r"\frac12"), Some(Node::Div(bx(int(1)), bx(int(2)))));
        assert_eq!(parse(r"\sqrt2"), Some(Node::Func(Func::Sqrt, bx(int(2)))));
        assert_eq!(
            parse(r"\frac{\pi}{2}"),
            Some(Node::Div(bx(Node::Pi), bx(int(2))))
        );
        // x^23 is x^2 * 3 in LaTeX.
        assert_eq!(
            parse("x^23"),
            Some(Node::Mul(
                bx(Node::Pow(bx(Node::Var("x".into())), bx(int(2)))),
                bx(int(3))
            ))
        );
        // 3\frac{1}{2} is a mixed number.
        assert_eq!(
            parse(r"3\frac{1}{2}"),
            Some(Node::Add(bx(int(3)), bx(Node::Div(bx(int(1)), bx(int(2))))))
        );
        assert!(matches!(
            parse(r"\sin^{-1} x"),
            Some(Node::Func(Func::Asin, _))
        ));
        assert!(matches!(parse(r"\log_2 8"), Some(Node::Log(_, _))));
        assert!(matches!(parse("|x-1|"), Some(Node::Func(Func::Abs, _))));
        assert!(matches!(parse("x_{12}y"), Some(Node::Mul(..))));
    }

    #[test]
    fn rejects_words_and_garbage() {
        for bad in ["Monday", "1+", "(1", r"\foo", "x]", "", "1 2 ) ("] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
        let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(parse(&deep).is_none());
        let minus = format!("{}1", "-".repeat(100_000));
        assert!(parse(&minus).is_none());
        let braces = format!("{}1{}", "{".repeat(10_000), "}".repeat(10_000));
        assert!(parse(&braces).is_none());
    }
}
