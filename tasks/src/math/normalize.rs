//! String normalisation of an extracted answer, after Minerva's `normalize_final_answer`
//! (Lewkowycz et al. 2022, appendix D) with the usual additions: math delimiters, `\left`/
//! `\right` and sizing commands, `\dfrac`/`\tfrac`, spacing commands, `\text{}` wrappers and
//! unit words, degrees, dollar signs, thousands separators, trailing dots, unicode symbols.
//! The result feeds the structural parser ([`super::answer`]) and is also the last-resort string
//! comparison. Linear passes only.

/// Unit words dropped when they follow a quantity (Minerva's list plus common ones).
const UNITS: &[&str] = &[
    "square",
    "ways",
    "integers",
    "dollars",
    "dollar",
    "mph",
    "inches",
    "inch",
    "ft",
    "feet",
    "foot",
    "hours",
    "hour",
    "km",
    "units",
    "unit",
    "sue",
    "points",
    "point",
    "minutes",
    "minute",
    "seconds",
    "second",
    "digits",
    "cents",
    "cent",
    "degrees",
    "degree",
    "cm",
    "gm",
    "pounds",
    "pound",
    "meters",
    "meter",
    "meals",
    "edges",
    "students",
    "childrentickets",
    "multiples",
    "mm",
    "m",
    "kg",
    "g",
    "s",
    "sq",
    "cubic",
    "yards",
    "yard",
    "miles",
    "mile",
    "days",
    "day",
    "years",
    "year",
    "people",
    "times",
    "percent",
    "liters",
    "l",
    "ml",
    "hrs",
    "min",
    "sec",
];

/// Normalises an answer string (see the module docs). Keeps `\%` as `%` and `\\` (matrix rows).
pub fn normalize(s: &str) -> String {
    // Protect matrix row separators `\\` from the single-backslash rules below.
    let mut s = s.trim().replace("\\\\", ROW_SEP);
    s = replace_unicode(&s);
    s = strip_delimiters(&s);
    for (from, to) in [
        ("\\displaystyle", ""),
        ("\\left.", ""),
        ("\\right.", ""),
        ("\\varnothing", "\\emptyset"),
        ("\\mp", "\\pm"),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\cfrac", "\\frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("\\bigl", ""),
        ("\\bigr", ""),
        ("\\Bigl", ""),
        ("\\Bigr", ""),
        ("\\biggl", ""),
        ("\\biggr", ""),
        ("\\Big", ""),
        ("\\big", ""),
        ("\\mbox", "\\text"),
        ("\\textbf", "\\text"),
        ("\\textit", "\\text"),
        ("\\textrm", "\\text"),
        ("\\mathrm", "\\text"),
        ("\\mathbf", "\\text"),
        ("\\mathit", "\\text"),
        ("\\operatorname", "\\text"),
        ("\\qquad", " "),
        ("\\quad", " "),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\ ", " "),
        ("~", " "),
        ("{,}", ""),
        ("\\$", ""),
        ("$", ""),
        ("\\%", "%"),
        ("\\ldots", ""),
        ("\\cdots", ""),
        ("\\dots", ""),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("\\circ", ""),
        ("\\degree", ""),
        ("\\lvert", "|"),
        ("\\rvert", "|"),
        ("\\vert", "|"),
        ("\\lbrace", "\\{"),
        ("\\rbrace", "\\}"),
        ("\\lbrack", "["),
        ("\\rbrack", "]"),
        ("\\langle", "("),
        ("\\rangle", ")"),
        ("\\leqslant", "\\le"),
        ("\\geqslant", "\\ge"),
        ("\\neq", "\\ne"),
        ("\\leq", "\\le"),
        ("\\geq", "\\ge"),
    ] {
        if s.contains(from) {
            s = s.replace(from, to);
        }
    }
    // `\right.` / `\left.` leave a lone "." in front of a closing/after an opening; drop it.
    s = s.replace(".)", ")").replace(".]", "]");
    s = unwrap_text(&s);
    s = join_digit_spaces(&s);
    s = s
        .trim()
        .trim_end_matches(['.', ',', ';'])
        .trim()
        .to_string();
    s = strip_trailing_units(&s);
    if is_thousands_number(&s) {
        s.retain(|c| c != ',');
    }
    s.replace(ROW_SEP, "\\\\")
}

/// Placeholder for `\\` while single-backslash rules run (a control character never in answers).
const ROW_SEP: &str = "\u{1}";

fn replace_unicode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '−' | '–' | '—' => out.push('-'),
            '×' => out.push_str("\\times "),
            '÷' => out.push_str("\\div "),
            '·' | '⋅' => out.push_str("\\cdot "),
            'π' => out.push_str("\\pi "),
            '√' => out.push_str("\\sqrt"),
            '∞' => out.push_str("\\infty "),
            '≤' => out.push_str("\\le "),
            '≥' => out.push_str("\\ge "),
            '≠' => out.push_str("\\ne "),
            '∪' => out.push_str("\\cup "),
            '°' => {}
            '\u{a0}' | '\u{2009}' | '\u{202f}' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// Removes `$..$`, `\(..\)`, `\[..\]` wrappers around the whole answer.
fn strip_delimiters(s: &str) -> String {
    let mut t = s.trim();
    for (open, close) in [("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(inner) = t.strip_prefix(open).and_then(|x| x.strip_suffix(close)) {
            t = inner.trim();
        }
    }
    t.to_string()
}

/// `\text{...}`: unit words and empty text vanish, "and"/"or" become commas, anything else is
/// kept as plain content (a word answer such as `\text{Monday}` → `Monday`).
fn unwrap_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\text") {
        out.push_str(&rest[..i]);
        let after = rest[i + 5..].trim_start();
        let Some(body) = after.strip_prefix('{') else {
            rest = after;
            continue;
        };
        let Some(close) = matching_brace(body) else {
            out.push_str(body);
            rest = "";
            break;
        };
        let inner = body[..close].trim();
        let word = inner
            .trim_matches(|c: char| c == '.' || c.is_whitespace())
            .to_ascii_lowercase();
        if word == "and" || word == "or" || word == "," {
            out.push(',');
        } else if !word.split_whitespace().all(|w| UNITS.contains(&w)) && !inner.is_empty() {
            out.push_str(inner);
        } else if !out.is_empty() {
            out.push(' ');
        }
        rest = &body[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Index of the `}` closing a group whose `{` was just consumed.
pub fn matching_brace(body: &str) -> Option<usize> {
    let b = body.as_bytes();
    let mut depth = 1usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// "1 000 000" → "1000000": spaces between digits are thousands separators.
fn join_digit_spaces(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &ch) in c.iter().enumerate() {
        if ch == ' ' {
            let prev = out.chars().last();
            let next = c[i + 1..].iter().find(|x| **x != ' ');
            if prev.is_some_and(|p| p.is_ascii_digit()) && next.is_some_and(|n| n.is_ascii_digit())
            {
                // "3 1/2" is a mixed number, not 31/2: keep that space.
                let tail: String = c[i + 1..].iter().take(40).collect();
                if c.len() - i > 40 || !is_simple_fraction(tail.trim()) {
                    continue;
                }
            }
        }
        out.push(ch);
    }
    out
}

fn is_simple_fraction(s: &str) -> bool {
    s.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

/// "5 cm", "12 dollars", "3 square units" → the quantity alone (only after a digit or `}`).
fn strip_trailing_units(s: &str) -> String {
    let mut t = s.trim_end().to_string();
    loop {
        let Some((sp, ch)) = t
            .char_indices()
            .rev()
            .find(|(_, c)| !c.is_ascii_alphabetic())
        else {
            return t;
        };
        let end = sp + ch.len_utf8();
        let word = &t[end..];
        let head = t[..end].trim_end();
        if word.is_empty() || !UNITS.contains(&word.to_ascii_lowercase().as_str()) || word.len() < 2
        {
            return t;
        }
        // Only a separate word after a quantity (a digit, `}` or `)`): "5 cm" but not "x cm".
        if ch != ' ' || !head.ends_with(|c: char| c.is_ascii_digit() || c == '}' || c == ')') {
            return t;
        }
        t = head.to_string();
    }
}

/// `-?d{1,3}(,ddd)+(.d+)?` — a plain number with comma thousands separators.
fn is_thousands_number(s: &str) -> bool {
    let t = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let groups: Vec<&str> = int.split(',').collect();
    groups.len() >= 2
        && (1..=3).contains(&groups[0].len())
        && groups.iter().all(|g| g.bytes().all(|c| c.is_ascii_digit()))
        && groups[1..].iter().all(|g| g.len() == 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minerva_style_rules() {
        let cases = [
            (r"\$1,000", "1000"),
            (r"1{,}000", "1000"),
            (r"1\,000\,000", "1000000"),
            ("1 000 000", "1000000"),
            (r"5 \text{ cm}", "5"),
            (r"12 dollars", "12"),
            (r"30^\circ", "30"),
            (r"30^{\circ}", "30"),
            ("30°", "30"),
            (r"\left( 1, 2 \right)", "( 1, 2 )"),
            (r"\dfrac{1}{2}", r"\frac{1}{2}"),
            (r"50\%", "50%"),
            ("7.", "7"),
            (r"\text{Monday}", "Monday"),
            (r"x=1 \text{ and } x=2", "x=1 , x=2"),
            (r"\textbf{(B)}", "(B)"),
            (r"\(x+1\)", "x+1"),
            ("3 1/2", "3 1/2"),
            (r"\left\{1,2\right\}", r"\{1,2\}"),
            ("1,2", "1,2"),
            ("−3", "-3"),
            (r"4 \mbox{ inches}", "4"),
            (r"\text{}", ""),
            (
                r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}",
                r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "{input:?}");
        }
    }

    #[test]
    fn survives_unbalanced_input() {
        assert_eq!(normalize(r"\text{abc"), "abc");
        assert_eq!(normalize(r"\text"), "");
        assert_eq!(normalize(""), "");
    }
}
