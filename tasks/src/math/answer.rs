//! Structure of a normalised answer: multiple-choice letter, matrix, union of intervals, bare
//! list (order-free), set `\{..\}` (order-free), tuple `(a, b)` (ordered), interval with open or
//! closed ends, equation `x = 5`, inequality (turned into an interval), expression, or text.
//! Bracket-aware splitting only; expressions go to [`super::expr::parse`].

use super::expr::{self, Node};

/// A parsed answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Ans {
    Expr(Node),
    /// `lhs = rhs`.
    Eq(Node, Node),
    /// Ordered: `(a, b, c)`.
    Tuple(Vec<Ans>),
    /// Order-free: `\{a, b\}` or a bare list `a, b`.
    Set(Vec<Ans>),
    Interval(Interval),
    /// Union of intervals/sets (order-free).
    Union(Vec<Ans>),
    /// Rows of cells.
    Matrix(Vec<Vec<Ans>>),
    /// Multiple-choice letter, uppercase.
    Choice(char),
    /// Anything else: lowercase, whitespace removed.
    Text(String),
}

/// An interval; infinite ends are `Node::Inf` / `Neg(Inf)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Interval {
    pub lo: Node,
    pub hi: Node,
    pub lo_closed: bool,
    pub hi_closed: bool,
}

/// The choice letter of `s` if it is one: `B`, `(B)`, `B)`, `(b)`, `B.`, `(B) 42`, `B: ...`.
/// Lowercase letters count only with a bracket.
pub fn choice(s: &str) -> Option<char> {
    let t = s.trim();
    let (bracketed, rest) = match t.strip_prefix('(') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let mut it = rest.chars();
    let c = it.next()?;
    let after: String = it.collect();
    let after = after.trim_start();
    let upper = c.to_ascii_uppercase();
    if !('A'..='E').contains(&upper) || (c.is_ascii_lowercase() && !bracketed) {
        return None;
    }
    let closed = after.starts_with(')');
    let tail = after.strip_prefix(')').unwrap_or(after).trim_start();
    let ok = match (bracketed, closed) {
        (true, true) => true,
        (true, false) => false,
        (false, _) => tail.is_empty() || after.starts_with([')', '.', ':']),
    };
    ok.then_some(upper)
}

/// Parses a normalised answer string.
pub fn parse_answer(s: &str) -> Ans {
    let s = s.trim();
    if let Some(m) = matrix(s) {
        return m;
    }
    // `a \pm b` is the two answers a + b and a - b.
    if s.match_indices("\\pm")
        .filter(|(i, _)| !s[i + 3..].starts_with(|c: char| c.is_ascii_alphabetic()))
        .count()
        == 1
        && !s.contains("\\pmatrix")
    {
        return Ans::Set(vec![
            parse_answer(&s.replace("\\pm", "+")),
            parse_answer(&s.replace("\\pm", "-")),
        ]);
    }
    let union = split_top(s, |rest| {
        if rest.starts_with("\\cup") {
            Some(4)
        } else {
            None
        }
    });
    if union.len() > 1 {
        return Ans::Union(union.iter().map(|p| item(p)).collect());
    }
    let parts = split_top(s, |rest| rest.starts_with(',').then_some(1));
    if parts.len() > 1 {
        return Ans::Set(parts.iter().map(|p| item(p)).collect());
    }
    item(s)
}

/// One element: relation, braced set, bracketed tuple/interval, expression or text.
fn item(s: &str) -> Ans {
    let s = s.trim();
    let s = strip_membership(s);
    if let Some(a) = relation(s) {
        return a;
    }
    if let Some(inner) = s.strip_prefix("\\{").and_then(|x| x.strip_suffix("\\}")) {
        let parts = split_top(inner, |r| r.starts_with(',').then_some(1));
        return Ans::Set(
            parts
                .iter()
                .filter(|p| !p.trim().is_empty())
                .map(|p| item(p))
                .collect(),
        );
    }
    if let Some(a) = bracketed(s) {
        return a;
    }
    expression(s)
}

/// `x \in (0, 1)` → `(0, 1)`.
fn strip_membership(s: &str) -> &str {
    match s.find("\\in") {
        Some(i) if i > 0 && !s[i + 3..].starts_with(|c: char| c.is_ascii_alphabetic()) => {
            let lhs = s[..i].trim();
            if expr::parse(lhs).is_some_and(|n| matches!(n, Node::Var(_))) {
                return s[i + 3..].trim();
            }
            s
        }
        _ => s,
    }
}

fn expression(s: &str) -> Ans {
    // "3 1/2" (space kept by the normaliser) is a mixed number.
    if let Some((w, f)) = s.split_once(' ') {
        if w.bytes().all(|c| c.is_ascii_digit()) && !w.is_empty() {
            if let Some(n) = expr::parse(&format!("{w}+{}", f.trim())) {
                return Ans::Expr(n);
            }
        }
    }
    match expr::parse(s) {
        Some(n) => Ans::Expr(n),
        None => Ans::Text(text_key(s)),
    }
}

/// The text comparison key: lowercase, no whitespace.
pub fn text_key(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// `(a, b)`, `[a, b)`, ... whose first bracket closes at the very end.
fn bracketed(s: &str) -> Option<Ans> {
    let open = s.chars().next()?;
    let close = s.chars().last()?;
    if !matches!(open, '(' | '[') || !matches!(close, ')' | ']') || s.len() < 2 {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    // The opening bracket must match the final one (not "(1)+(2)").
    if depth_goes_negative(inner) {
        return None;
    }
    let parts = split_top(inner, |r| r.starts_with(',').then_some(1));
    if parts.len() < 2 {
        return None;
    }
    let interval_like =
        open == '[' || close == ']' || inner.contains("\\infty") || inner.contains("infty");
    if parts.len() == 2 && interval_like {
        let (lo, hi) = (expr::parse(parts[0].trim())?, expr::parse(parts[1].trim())?);
        return Some(Ans::Interval(Interval {
            lo,
            hi,
            lo_closed: open == '[',
            hi_closed: close == ']',
        }));
    }
    (open == '(' && close == ')').then(|| Ans::Tuple(parts.iter().map(|p| item(p)).collect()))
}

fn depth_goes_negative(s: &str) -> bool {
    let mut d = 0i64;
    for c in s.chars() {
        match c {
            '(' | '[' | '{' => d += 1,
            ')' | ']' | '}' => {
                d -= 1;
                if d < 0 {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Relation operators, longest first: (text, kind) with kind '=' '<' '>' 'l' (≤) 'g' (≥) 'n' (≠).
const RELATIONS: &[(&str, char)] = &[
    ("\\le", 'l'),
    ("\\ge", 'g'),
    ("\\lt", '<'),
    ("\\gt", '>'),
    ("\\ne", 'n'),
    ("<=", 'l'),
    (">=", 'g'),
    ("=", '='),
    ("<", '<'),
    (">", '>'),
];

fn relation(s: &str) -> Option<Ans> {
    let mut ops = Vec::new();
    let parts = split_top(s, |rest| {
        for (text, kind) in RELATIONS {
            if rest.starts_with(text)
                && !rest[text.len()..]
                    .starts_with(|c: char| c.is_ascii_alphabetic() && text.starts_with('\\'))
            {
                ops.push(*kind);
                return Some(text.len());
            }
        }
        None
    });
    if ops.is_empty() {
        return None;
    }
    let nodes: Option<Vec<Node>> = parts.iter().map(|p| expr::parse(p.trim())).collect();
    let Some(nodes) = nodes else {
        // `x = \{1, 2\}` style: compare what follows the last '=' structurally.
        return (ops.iter().all(|&k| k == '='))
            .then(|| item(parts.last().expect("split yields parts")));
    };
    if ops.iter().all(|&k| k == '=') {
        return Some(match nodes.len() {
            2 => Ans::Eq(nodes[0].clone(), nodes[1].clone()),
            _ => Ans::Expr(nodes.last().expect("nonempty").clone()), // a = b = c: the final value
        });
    }
    inequality(&nodes, &ops).or_else(|| Some(Ans::Text(text_key(s))))
}

/// `x < a`, `a \le x`, `a < x \le b` → intervals.
fn inequality(nodes: &[Node], ops: &[char]) -> Option<Ans> {
    let is_var = |n: &Node| matches!(n, Node::Var(_));
    let inf = || Node::Inf;
    let ninf = || Node::Neg(Box::new(Node::Inf));
    let lower = |k: char| matches!(k, '<' | 'l'); // a OP x means x is above a
    let closed = |k: char| matches!(k, 'l' | 'g');
    match (nodes, ops) {
        ([a, b], [k]) if is_var(a) && !is_var(b) => Some(if lower(*k) {
            Ans::Interval(Interval {
                lo: ninf(),
                hi: b.clone(),
                lo_closed: false,
                hi_closed: closed(*k),
            })
        } else {
            Ans::Interval(Interval {
                lo: b.clone(),
                hi: inf(),
                lo_closed: closed(*k),
                hi_closed: false,
            })
        }),
        ([a, b], [k]) if is_var(b) && !is_var(a) => {
            let flipped = match k {
                '<' => '>',
                '>' => '<',
                'l' => 'g',
                'g' => 'l',
                _ => return None,
            };
            inequality(&[b.clone(), a.clone()], &[flipped])
        }
        ([a, x, b], [k1, k2]) if is_var(x) && lower(*k1) && lower(*k2) => {
            Some(Ans::Interval(Interval {
                lo: a.clone(),
                hi: b.clone(),
                lo_closed: closed(*k1),
                hi_closed: closed(*k2),
            }))
        }
        ([a, x, b], [k1, k2])
            if is_var(x) && !lower(*k1) && !lower(*k2) && *k1 != 'n' && *k2 != 'n' =>
        {
            Some(Ans::Interval(Interval {
                lo: b.clone(),
                hi: a.clone(),
                lo_closed: closed(*k2),
                hi_closed: closed(*k1),
            }))
        }
        _ => None,
    }
}

/// `\begin{pmatrix} a & b \\ c & d \end{pmatrix}` (any *matrix environment).
fn matrix(s: &str) -> Option<Ans> {
    let rest = s.strip_prefix("\\begin{")?;
    let env_end = rest.find('}')?;
    let env = &rest[..env_end];
    if !env.ends_with("matrix") && env != "array" {
        return None;
    }
    let mut body = &rest[env_end + 1..];
    body = body.strip_suffix(&format!("\\end{{{env}}}"))?;
    if env == "array" {
        // Skip the column spec `{cc}`.
        body = body
            .trim_start()
            .strip_prefix('{')
            .and_then(|b| b.split_once('}').map(|x| x.1))?;
    }
    let rows: Vec<Vec<Ans>> = body
        .split("\\\\")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.split('&').map(item).collect())
        .collect();
    (!rows.is_empty()).then_some(Ans::Matrix(rows))
}

/// Splits `s` at top level (outside (), [], {}, \{\}) wherever `sep` matches, returning the
/// pieces; `sep` gets the remaining text and returns the separator's byte length.
pub fn split_top(s: &str, mut sep: impl FnMut(&str) -> Option<usize>) -> Vec<&str> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let (mut depth, mut start, mut i) = (0i64, 0usize, 0usize);
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() && (b[i + 1] == b'{' || b[i + 1] == b'}') {
            depth += if b[i + 1] == b'{' { 1 } else { -1 };
            i += 2;
            continue;
        }
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && s.is_char_boundary(i) {
            if let Some(len) = sep(&s[i..]) {
                parts.push(&s[start..i]);
                i += len;
                start = i;
                continue;
            }
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_interval(a: &Ans, lo_closed: bool, hi_closed: bool) -> bool {
        matches!(a, Ans::Interval(i) if i.lo_closed == lo_closed && i.hi_closed == hi_closed)
    }

    #[test]
    fn structures() {
        assert!(matches!(parse_answer("(1, 2)"), Ans::Tuple(v) if v.len() == 2));
        assert!(is_interval(&parse_answer("[1, 2)"), true, false));
        assert!(is_interval(&parse_answer(r"(-\infty, 3]"), false, true));
        assert!(matches!(parse_answer("1, 2, 3"), Ans::Set(v) if v.len() == 3));
        assert!(matches!(parse_answer(r"\{3, 1\}"), Ans::Set(v) if v.len() == 2));
        assert!(matches!(parse_answer(r"(0,1)\cup(2,3]"), Ans::Union(v) if v.len() == 2));
        assert!(matches!(parse_answer("x = 5"), Ans::Eq(..)));
        assert!(is_interval(&parse_answer(r"x \ge 3"), true, false));
        assert!(is_interval(&parse_answer("1 < x < 2"), false, false));
        assert!(is_interval(&parse_answer(r"x \in [0, 1]"), true, true));
        assert!(
            matches!(parse_answer(r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}"), Ans::Matrix(r) if r.len() == 2 && r[0].len() == 2)
        );
        assert!(matches!(parse_answer("(1+2)*(3)"), Ans::Expr(_)));
        assert!(matches!(parse_answer("Monday"), Ans::Text(t) if t == "monday"));
        assert!(matches!(parse_answer("3 1/2"), Ans::Expr(_)));
        assert!(matches!(parse_answer(r"x = \{1, 2\}"), Ans::Set(_)));
    }

    #[test]
    fn choices() {
        for (s, want) in [
            ("B", Some('B')),
            ("(c)", Some('C')),
            ("(B) 42", Some('B')),
            ("B.", Some('B')),
        ] {
            assert_eq!(choice(s), want, "{s}");
        }
        for s in ["F", "b", "Bob", "(B", "x"] {
            assert_eq!(choice(s), None, "{s}");
        }
    }

    #[test]
    fn top_level_split() {
        assert_eq!(
            split_top("(1,2),[3,4)", |r| r.starts_with(',').then_some(1)),
            vec!["(1,2)", "[3,4)"]
        );
        assert_eq!(
            split_top(r"\{1,2\},3", |r| r.starts_with(',').then_some(1)),
            vec![r"\{1,2\}", "3"]
        );
    }
}
