//! Property tests (issue #3 "must show"): generators only emit solvable instances whose traces
//! verify and whose every prefix passes the prune check; verifiers never panic on arbitrary or
//! adversarial strings and stay fast on them.

use std::time::{Duration, Instant};

use deepsearch_tasks::arithmetic::{self, ArithmeticConfig};
use deepsearch_tasks::countdown::{self, CountdownConfig};
use deepsearch_tasks::math::MathVerifier;
use deepsearch_tasks::{registry, Problem, Verdict, Verifier};
use proptest::prelude::*;

/// 256 cases per property by default; `PROPTEST_CASES=50000` for a long fuzzing run.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Every prefix (char by char) of a correct trace must pass the prune check.
fn all_prefixes_valid(p: &Problem, trace: &str) -> Result<(), String> {
    for (i, _) in trace
        .char_indices()
        .chain(std::iter::once((trace.len(), ' ')))
    {
        if !registry::prefix_is_valid(p, &trace[..i]) {
            return Err(format!(
                "prefix {:?} of {:?} rejected for {:?}",
                &trace[..i],
                trace,
                p.prompt
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn countdown_instances_are_solvable_and_traces_verify(
        seed in any::<u64>(),
        n in 2usize..=6,
        max_number in 5u64..=50,
    ) {
        let c = CountdownConfig { min_numbers: n, max_numbers: n, max_number, ..Default::default() };
        for p in countdown::generate(&c, seed, 3).unwrap() {
            let inst = countdown::Instance::from_problem(&p).unwrap();
            prop_assert_eq!(inst.numbers.len(), n);
            prop_assert!(inst.numbers.iter().all(|&x| (1..=max_number).contains(&x)));
            prop_assert!((10..=100).contains(&inst.target));
            let trace = countdown::solution_trace(&p).expect("generated instances are solvable");
            prop_assert_eq!(countdown::CountdownVerifier.verify(&p, &trace), Verdict::Correct);
            prop_assert!(trace.lines().all(|l| l.split(['+', '-', '*', '/', '=']).all(|v| v.parse::<u64>().is_ok_and(|v| v <= 100))));
            all_prefixes_valid(&p, &trace).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn arithmetic_instances_have_verifying_traces(seed in any::<u64>(), depth in 1usize..=4, ops in "[+*/-]{1,4}") {
        let c = ArithmeticConfig { min_depth: depth, max_depth: depth, ops, ..Default::default() };
        let Ok(problems) = arithmetic::generate(&c, seed, 3) else {
            // e.g. ops "/" alone at depth 4 can be infeasible: must be a clean config error.
            return Ok(());
        };
        for p in problems {
            let trace = arithmetic::solution_trace(&p).unwrap();
            prop_assert_eq!(arithmetic::ArithmeticVerifier.verify(&p, &trace), Verdict::Correct);
            all_prefixes_valid(&p, &trace).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn verifiers_never_panic_on_arbitrary_strings(gold in any::<String>(), response in any::<String>()) {
        let math = MathVerifier::default();
        let _ = math.verify_answer(&gold, &response);
        let _ = math.verify_answer(&response, &gold);
        let cd = countdown::generate(&CountdownConfig::default(), 1, 1).unwrap().remove(0);
        let _ = countdown::CountdownVerifier.verify(&cd, &response);
        let _ = countdown::prefix_is_valid(&cd, &response);
        let ar = arithmetic::generate(&ArithmeticConfig::default(), 1, 1).unwrap().remove(0);
        let _ = arithmetic::ArithmeticVerifier.verify(&ar, &response);
        let _ = arithmetic::prefix_is_valid(&ar, &response);
        // Garbage as the instance itself is an Error verdict, never a panic.
        let junk = Problem::new("j", "countdown", "", gold.clone());
        prop_assert!(countdown::CountdownVerifier.verify(&junk, &response).is_error() || serde_json::from_str::<serde_json::Value>(&gold).is_ok());
    }

    #[test]
    fn verifiers_never_panic_on_latex_soup(
        g in proptest::collection::vec(0usize..TOKENS.len(), 0..40),
        r in proptest::collection::vec(0usize..TOKENS.len(), 0..60),
    ) {
        let gold: String = g.iter().map(|&i| TOKENS[i]).collect();
        let resp: String = r.iter().map(|&i| TOKENS[i]).collect();
        let math = MathVerifier::default();
        let _ = math.verify_answer(&gold, &format!("\\boxed{{{resp}}}"));
        let _ = math.verify_answer(&resp, &format!("\\boxed{{{gold}}}"));
        let _ = math.verify_answer(&gold, &resp);
        let cd = countdown::generate(&CountdownConfig::default(), 2, 1).unwrap().remove(0);
        let _ = countdown::CountdownVerifier.verify(&cd, &resp);
        let _ = countdown::prefix_is_valid(&cd, &resp);
    }
}

const TOKENS: &[&str] = &[
    "\\boxed{",
    "\\fbox{",
    "{",
    "}",
    "\\{",
    "\\}",
    "\\frac",
    "\\dfrac",
    "\\sqrt",
    "[",
    "]",
    "(",
    ")",
    "^",
    "_",
    ",",
    "=",
    "\\le",
    "<",
    ">",
    "x",
    "y",
    "e",
    "E",
    "i",
    "1",
    "2",
    "0",
    "9",
    ".",
    "-",
    "+",
    "*",
    "/",
    "\\pi",
    "\\infty",
    "\\cup",
    "\\text{",
    "\\left",
    "\\right",
    "\\pm",
    "\\begin{pmatrix}",
    "\\end{pmatrix}",
    "&",
    "\\\\",
    "%",
    "\\%",
    "!",
    "|",
    " ",
    "\n",
    "\\sin",
    "\\log_",
    "\\binom",
    "\\cdot",
    "\\$",
    "B",
    "(B)",
    "answer is",
    "1,000",
    "°",
    "−",
    "\\in",
    "=",
    "50-25=25\n",
    "25*3=75",
    "7*(12-5)",
    "\u{0}",
    "é",
    "\\lfloor",
    "\\rfloor",
];

/// Runs `f` and checks it finishes well under a second (the verifiers are bounded).
fn fast<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let out = f();
    let dt = t0.elapsed();
    assert!(dt < Duration::from_secs(2), "{what} took {dt:?}");
    out
}

#[test]
fn adversarial_inputs_are_cheap_and_do_not_panic() {
    let v = MathVerifier::default();
    let nested = format!("\\boxed{{{}1{}}}", "{".repeat(10_000), "}".repeat(10_000));
    fast("10k nested braces", || v.verify_answer("1", &nested));
    let parens = format!("\\boxed{{{}1{}}}", "(".repeat(450), ")".repeat(450));
    fast("450 nested parens", || v.verify_answer("1", &parens));
    let minus = format!("\\boxed{{{}1}}", "-".repeat(900));
    fast("900 unary minus", || v.verify_answer("1", &minus));
    let sum = format!("\\boxed{{{}1}}", "1+".repeat(499));
    assert_eq!(
        fast("long sum", || v.verify_answer("500", &sum)),
        Verdict::Correct
    );
    let tower = "\\boxed{9^{9^{9^{9^{9}}}}}";
    fast("power tower", || v.verify_answer("1", tower));
    fast("huge factorial", || {
        v.verify_answer("1", "\\boxed{99999999!}")
    });
    fast("huge binomial", || {
        v.verify_answer("1", "\\boxed{\\binom{100000}{50000}}")
    });
    fast("many sqrt", || {
        v.verify_answer(
            "1",
            &format!("\\boxed{{{}2{}}}", "\\sqrt{".repeat(90), "}".repeat(90)),
        )
    });
    let mb = format!(
        "{}\\boxed{{42}}",
        "lorem ipsum dolor sit amet ".repeat(40_000)
    );
    assert!(mb.len() > 1_000_000);
    assert_eq!(
        fast("1 MB response", || v.verify_answer("42", &mb)),
        Verdict::Correct
    );
    let many_boxes = "\\boxed{".repeat(200_000);
    assert_eq!(
        fast("200k unterminated boxes", || v
            .verify_answer("1", &many_boxes)),
        Verdict::Unparsable
    );
    let big_answer = format!("\\boxed{{{}}}", "x".repeat(1_000_000));
    assert_eq!(
        fast("1 MB boxed answer", || v.verify_answer("1", &big_answer)),
        Verdict::Wrong
    );
    let cd = countdown::generate(&CountdownConfig::default(), 3, 1)
        .unwrap()
        .remove(0);
    let steps = "1+1=2\n".repeat(200_000);
    fast("1 MB countdown response", || {
        countdown::CountdownVerifier.verify(&cd, &steps)
    });
    fast("1 MB countdown prefix", || {
        countdown::prefix_is_valid(&cd, &steps)
    });
    let ar = arithmetic::generate(&ArithmeticConfig::default(), 3, 1)
        .unwrap()
        .remove(0);
    fast("1 MB arithmetic response", || {
        arithmetic::ArithmeticVerifier.verify(&ar, &steps)
    });
    let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    fast("deep arithmetic line", || {
        arithmetic::ArithmeticVerifier.verify(&ar, &deep)
    });
    fast("deep countdown line", || {
        countdown::CountdownVerifier.verify(&cd, &deep)
    });
}
