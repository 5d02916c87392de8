//! Every hand-labelled case of `tests/data/math_cases.tsv` (at least 300, in all answer
//! families of issue #3) must get its label from the math verifier.

use std::collections::BTreeMap;

use deepsearch_tasks::math::cases::{parse_tsv, MathCase};
use deepsearch_tasks::math::MathVerifier;

fn cases() -> Vec<MathCase> {
    parse_tsv(include_str!("data/math_cases.tsv")).expect("case table parses")
}

#[test]
fn table_is_large_and_covers_every_family() {
    let cases = cases();
    assert!(cases.len() >= 300, "{} cases", cases.len());
    let mut per_family: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &cases {
        *per_family.entry(c.family.as_str()).or_default() += 1;
    }
    for family in [
        "integer",
        "decimal",
        "fraction",
        "mixed",
        "percent",
        "scientific",
        "thousands",
        "units",
        "degrees",
        "formatting",
        "radical",
        "pi",
        "power",
        "function",
        "variable",
        "tuple",
        "interval",
        "set",
        "equation",
        "choice",
        "matrix",
        "text",
        "extraction",
        "sign",
    ] {
        assert!(
            per_family.get(family).copied().unwrap_or(0) >= 4,
            "family {family}: {per_family:?}"
        );
    }
    for verdict in ["correct", "wrong", "unparsable", "error"] {
        assert!(
            cases.iter().any(|c| c.expected == verdict),
            "no {verdict} case"
        );
    }
}

#[test]
fn every_case_gets_its_hand_label() {
    let v = MathVerifier::default();
    let mut failures = Vec::new();
    for c in cases() {
        let got = v.verify_answer(&c.gold, &c.response);
        if (got.as_str() != c.expected) != c.known_gap {
            failures.push(format!(
                "line {} [{}] gold {:?} response {:?}: expected {}{}, got {:?}",
                c.line,
                c.family,
                c.gold,
                c.response,
                if c.known_gap { "a miss of " } else { "" },
                c.expected,
                got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
