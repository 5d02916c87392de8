//! The format of the hand-labelled verifier case table (`tasks/tests/data/math_cases.tsv`):
//! one case per line, `family<TAB>expected<TAB>gold<TAB>response[<TAB>gap]`, `#` comments,
//! `<NL>` in a response for a newline. A fifth field `gap` marks a known limitation: the label is
//! still the right verdict, and the test asserts that the verifier does NOT give it yet (so a fix
//! shows up as a test to update, and the gap is counted as an error in every agreement number). The table is the single source for the unit test that checks every
//! label, the throughput benchmark and the comparison against Python `math-verify`
//! (`bench/verify/`), so all three judge exactly the same inputs.

/// One labelled case.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MathCase {
    /// 1-based line in the table.
    pub line: usize,
    /// Answer family (integer, fraction, interval, ...).
    pub family: String,
    /// Expected verdict: correct | wrong | unparsable | error.
    pub expected: String,
    pub gold: String,
    pub response: String,
    /// A known gap: the verifier is expected to miss this label.
    pub known_gap: bool,
}

/// Parses the table; a malformed line is an error naming its line number.
pub fn parse_tsv(text: &str) -> Result<Vec<MathCase>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = raw.splitn(5, '\t').collect();
        if f.len() < 4 || f.get(4).is_some_and(|g| *g != "gap") {
            return Err(format!(
                "line {}: expected 4 tab-separated fields (and optionally `gap`), got {:?}",
                i + 1,
                f
            ));
        }
        if !matches!(f[1], "correct" | "wrong" | "unparsable" | "error") {
            return Err(format!("line {}: bad expected verdict {:?}", i + 1, f[1]));
        }
        out.push(MathCase {
            line: i + 1,
            family: f[0].to_string(),
            expected: f[1].to_string(),
            gold: f[2].to_string(),
            response: f[3].replace("<NL>", "\n"),
            known_gap: f.len() == 5,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let t = "# c\nint\tcorrect\t5\ta<NL>\\boxed{5}\n\nint\twrong\t5\t\nx\tcorrect\t1\t1\tgap\n";
        let c = parse_tsv(t).unwrap();
        assert_eq!(c.len(), 3);
        assert!(!c[0].known_gap && c[2].known_gap);
        assert!(parse_tsv("x\tcorrect\t1\t1\tmaybe").is_err());
        assert_eq!(c[0].response, "a\n\\boxed{5}");
        assert_eq!((c[1].line, c[1].response.as_str()), (4, ""));
        assert!(parse_tsv("int\tcorrect\t5").is_err());
        assert!(parse_tsv("int\tmaybe\t5\tx").is_err());
    }
}
