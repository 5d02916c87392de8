//! Final-answer extraction from a free-form response: the content of the last complete
//! `\boxed{...}` / `\fbox{...}` (nested braces, escaped `\{` `\}` skipped), else the text after the
//! last configured phrase such as "answer is", else (optionally) the last number. Linear time,
//! no recursion, so adversarial inputs (10k nested braces, megabyte responses) are cheap.

/// Where the answer was found (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Boxed,
    Phrase,
    LastNumber,
}

/// The answer text of `response`, or `None` when there is none.
pub fn extract_answer<'a>(
    response: &'a str,
    phrases: &[String],
    last_number: bool,
) -> Option<(&'a str, Source)> {
    if let Some(b) = last_boxed(response) {
        return Some((b, Source::Boxed));
    }
    if let Some(p) = after_last_phrase(response, phrases) {
        return Some((p, Source::Phrase));
    }
    if last_number {
        return find_last_number(response).map(|n| (n, Source::LastNumber));
    }
    None
}

/// The reference answer: the last boxed content when the gold text has one, else all of it.
pub fn extract_gold(gold: &str) -> &str {
    last_boxed(gold).unwrap_or(gold).trim()
}

/// Content of the last complete `\boxed{..}` / `\fbox{..}` (or `\boxed X` without braces).
/// One linear pass: braces are matched with a stack, so even 10^5 unterminated boxes are cheap.
pub fn last_boxed(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    // (keyword start, position after the keyword) of every box, in order.
    let mut boxes: Vec<(usize, usize)> = s
        .match_indices("\\boxed")
        .map(|(i, k)| (i, i + k.len()))
        .chain(s.match_indices("\\fbox").map(|(i, k)| (i, i + k.len())))
        .collect();
    if boxes.is_empty() {
        return None;
    }
    boxes.sort_unstable();
    // Where each box's `{` is (if its argument is braced).
    let open_at: Vec<Option<usize>> = boxes
        .iter()
        .map(|&(_, after)| {
            let skip = b[after..]
                .iter()
                .take_while(|&&c| c == b' ' || c == b'\t')
                .count();
            (b.get(after + skip) == Some(&b'{')).then_some(after + skip)
        })
        .collect();
    let wanted: std::collections::HashSet<usize> = open_at.iter().flatten().copied().collect();
    let mut close_of = std::collections::HashMap::new();
    let mut stack = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1, // skip the escaped character (\{ \} \\)
            b'{' => stack.push(i),
            b'}' => {
                if let Some(o) = stack.pop() {
                    if wanted.contains(&o) {
                        close_of.insert(o, i);
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    for (k, &(_, after)) in boxes.iter().enumerate().rev() {
        match open_at[k] {
            Some(o) => {
                if let Some(&c) = close_of.get(&o) {
                    return Some(&s[o + 1..c]);
                }
            }
            None => {
                // `\boxed 5`: a space, then a token up to whitespace or `$`.
                let rest = &s[after..];
                let trimmed = rest.trim_start_matches([' ', '\t']);
                if trimmed.len() < rest.len() {
                    let end = trimmed
                        .find(|c: char| c.is_whitespace() || c == '$')
                        .unwrap_or(trimmed.len());
                    if end > 0 {
                        return Some(&trimmed[..end]);
                    }
                }
            }
        }
    }
    None
}

/// Text after the last (case-insensitive) occurrence of any phrase, to the end of its line,
/// stripped of math delimiters, bold markers and a trailing period.
fn after_last_phrase<'a>(s: &'a str, phrases: &[String]) -> Option<&'a str> {
    if phrases.is_empty() {
        return None;
    }
    // ASCII lowercase keeps byte offsets identical to `s`.
    let lower = s.to_ascii_lowercase();
    let mut best: Option<usize> = None;
    for p in phrases.iter().filter(|p| !p.is_empty()) {
        if let Some(i) = lower.rfind(&p.to_ascii_lowercase()) {
            let end = i + p.len();
            if best.is_none_or(|b| end > b) {
                best = Some(end);
            }
        }
    }
    let start = best?;
    let rest = &s[start..];
    let line = rest.split('\n').next().unwrap_or("");
    let cleaned = clean_inline(line);
    (!cleaned.is_empty()).then_some(cleaned)
}

/// Strips `:`, `$`, `\(`, `\)`, `\[`, `\]`, `**` and trailing `.` around an inline answer.
fn clean_inline(mut s: &str) -> &str {
    loop {
        let before = s.len();
        s = s.trim();
        s = s.trim_start_matches([':', '*']).trim_end_matches(['*']);
        for (open, close) in [("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")] {
            if let Some(inner) = s.strip_prefix(open) {
                s = inner.strip_suffix(close).unwrap_or(inner);
            }
            s = s.strip_suffix(close).unwrap_or(s);
        }
        if s.ends_with('.') && !s.ends_with("..") {
            s = &s[..s.len() - 1];
        }
        if s.len() == before {
            return s;
        }
    }
}

/// The last decimal number (optional sign, decimal point, `/` fraction) in `s`.
fn find_last_number(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let mut i = b.len();
    while i > 0 && !b[i - 1].is_ascii_digit() {
        i -= 1;
    }
    if i == 0 {
        return None;
    }
    let end = i;
    while i > 0
        && (b[i - 1].is_ascii_digit() || b[i - 1] == b'.' || b[i - 1] == b'/' || b[i - 1] == b',')
    {
        i -= 1;
    }
    if i > 0 && b[i - 1] == b'-' {
        i -= 1;
    }
    let num = s[i..end].trim_start_matches(['.', '/', ',']);
    (!num.is_empty()).then_some(num)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phrases() -> Vec<String> {
        ["final answer is", "answer is", "answer:"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn boxed_extraction() {
        assert_eq!(last_boxed(r"so \boxed{5}."), Some("5"));
        assert_eq!(
            last_boxed(r"\boxed{1} then \boxed{\frac{1}{2}}"),
            Some(r"\frac{1}{2}")
        );
        assert_eq!(last_boxed(r"\boxed{\{1,2\}}"), Some(r"\{1,2\}"));
        assert_eq!(last_boxed(r"\fbox{7}"), Some("7"));
        assert_eq!(last_boxed(r"$\boxed 5$"), Some("5"));
        assert_eq!(last_boxed(r"\boxed{3} and later \boxed{4"), Some("3")); // truncated last
        assert_eq!(last_boxed(r"\boxed{"), None);
        assert_eq!(last_boxed(r"\boxedx"), None);
        assert_eq!(last_boxed("no box"), None);
        let deep = format!("\\boxed{}{}", "{".repeat(10_000), "}".repeat(10_000));
        assert_eq!(last_boxed(&deep).map(str::len), Some(20_000 - 2));
    }

    #[test]
    fn phrase_and_number_fallbacks() {
        let p = phrases();
        assert_eq!(
            extract_answer("The answer is $42$.", &p, false),
            Some(("42", Source::Phrase))
        );
        assert_eq!(
            extract_answer("Final Answer: **7**", &p, false),
            Some(("7", Source::Phrase))
        );
        assert_eq!(extract_answer("so x = 3", &p, false), None);
        assert_eq!(
            extract_answer("so x = 3.5.", &p, true),
            Some(("3.5", Source::LastNumber))
        );
        assert_eq!(
            extract_answer("it is -12", &p, true),
            Some(("-12", Source::LastNumber))
        );
        assert_eq!(
            extract_answer(r"answer is 1 \boxed{2}", &p, true),
            Some(("2", Source::Boxed))
        );
        assert_eq!(extract_gold(r"$\boxed{\frac12}$"), r"\frac12");
        assert_eq!(extract_gold(" 3 "), "3");
    }
}
