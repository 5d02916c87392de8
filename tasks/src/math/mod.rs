//! The math answer checker (issue #3, spec §2 terminal reward). Written from scratch in Rust:
//! no computer-algebra system, no signals, bounded work per call.
//!
//! Pipeline for `verify(problem, response)`:
//! 1. Gold: the last `\boxed{}` of `problem.answer` if it has one, else the whole field. Empty →
//!    `Verdict::Error` (a broken reference is not the response's fault).
//! 2. Extraction ([`extract`]): last complete `\boxed{}`/`\fbox{}` (nested braces), else the text
//!    after the last configured phrase ("answer is", ...), else optionally the last number.
//!    Nothing found, or an empty box → `Unparsable`.
//! 3. Normalisation ([`normalize`], Minerva-style): delimiters, `\left`/`\right`, `\dfrac`,
//!    spacing, `\text{}` and unit words, degrees, `\$`, thousands separators, trailing dots.
//!    Equal normalised strings → `Correct`.
//! 4. Structure ([`answer`]) and equivalence ([`compare`]): exact rationals (integers, decimals,
//!    fractions, mixed numbers, percentages, scientific notation), symbolic expressions compared
//!    numerically at fixed random points (sqrt, pi, powers, trig/log/exp, variables), tuples,
//!    intervals, sets, unions, equations, inequalities, matrices, multiple-choice letters, text.
//!    Anything that fails to parse falls back to comparing normalised text. Different → `Wrong`.
//!
//! Every stage is linear or bounded (answers longer than `max_answer_chars` are compared as text
//! only; parser recursion and exact arithmetic are capped), so a verification takes microseconds
//! and cannot hang; the [`crate::pool::VerifierPool`] deadline is the second line of defence.

pub mod answer;
pub mod cases;
pub mod compare;
pub mod eval;
pub mod expr;
pub mod extract;
pub mod normalize;

use crate::{Problem, Verdict, Verifier};

/// Task name of math problems.
pub const TASK: &str = "math";

/// Settings of the math verifier.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MathConfig {
    /// When there is no `\boxed{}`, the text after the last of these (case-insensitive) phrases
    /// is the answer (default `["final answer is", "answer is", "answer:"]`; empty disables).
    pub fallback_phrases: Vec<String>,
    /// As a last resort take the last number in the response (default false: a response without
    /// a marked answer is `unparsable`).
    pub last_number_fallback: bool,
    /// Relative tolerance of floating-point comparisons (default 1e-9).
    pub rel_tol: f64,
    /// Evaluation points for expressions with variables, a third of them negative (default 9).
    pub eval_points: usize,
    /// Extracted answers longer than this many bytes are compared as text only (default 1000).
    pub max_answer_chars: usize,
}

impl Default for MathConfig {
    fn default() -> Self {
        MathConfig {
            fallback_phrases: vec![
                "final answer is".into(),
                "answer is".into(),
                "answer:".into(),
            ],
            last_number_fallback: false,
            rel_tol: 1e-9,
            eval_points: 9,
            max_answer_chars: 1000,
        }
    }
}

/// The math verifier (see the module docs).
#[derive(Clone, Debug)]
pub struct MathVerifier {
    config: MathConfig,
    cmp: compare::Comparator,
}

impl Default for MathVerifier {
    fn default() -> Self {
        MathVerifier::new(MathConfig::default())
    }
}

impl MathVerifier {
    /// A verifier with the given settings.
    pub fn new(config: MathConfig) -> Self {
        let cmp = compare::Comparator::new(config.rel_tol, config.eval_points);
        MathVerifier { config, cmp }
    }

    /// The settings.
    pub fn config(&self) -> &MathConfig {
        &self.config
    }

    /// Verdict of `response` against the reference answer text `gold`.
    pub fn verify_answer(&self, gold: &str, response: &str) -> Verdict {
        let gold = extract::extract_gold(gold);
        if gold.is_empty() {
            return Verdict::Error("empty reference answer".into());
        }
        let Some((answer, _source)) = extract::extract_answer(
            response,
            &self.config.fallback_phrases,
            self.config.last_number_fallback,
        ) else {
            return Verdict::Unparsable;
        };
        if answer.trim().is_empty() {
            return Verdict::Unparsable;
        }
        if self.equivalent(gold, answer) {
            Verdict::Correct
        } else {
            Verdict::Wrong
        }
    }

    /// Are two extracted answers equivalent (gold first)?
    pub fn equivalent(&self, gold: &str, answer: &str) -> bool {
        let limit = self.config.max_answer_chars;
        if gold.len() > 4 * limit || answer.len() > 4 * limit {
            // Far too long for an answer: only an exact match counts (keeps the work bounded).
            return gold.trim() == answer.trim();
        }
        let (g, a) = (normalize::normalize(gold), normalize::normalize(answer));
        if g == a {
            return true;
        }
        let (gk, ak) = (answer::text_key(&g), answer::text_key(&a));
        if gk == ak {
            return true;
        }
        if g.len() > self.config.max_answer_chars || a.len() > self.config.max_answer_chars {
            return false;
        }
        let gold_ans = answer::parse_answer(&g);
        if let Some(letter) = answer::choice(&g) {
            // Multiple choice: the response may add the option's content ("(B) 42").
            return answer::choice(&a) == Some(letter);
        }
        let resp_ans = answer::parse_answer(&a);
        self.cmp.equiv(&gold_ans, &resp_ans)
    }
}

impl Verifier for MathVerifier {
    fn verify(&self, problem: &Problem, response: &str) -> Verdict {
        self.verify_answer(&problem.answer, response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_to_end_verdicts() {
        let v = MathVerifier::default();
        assert_eq!(v.verify_answer("5", r"so \boxed{5}"), Verdict::Correct);
        assert_eq!(v.verify_answer("5", r"so \boxed{6}"), Verdict::Wrong);
        assert_eq!(v.verify_answer("5", "I give up"), Verdict::Unparsable);
        assert_eq!(v.verify_answer("5", r"\boxed{}"), Verdict::Unparsable);
        assert_eq!(v.verify_answer("5", "The answer is 5."), Verdict::Correct);
        assert!(v.verify_answer("", r"\boxed{5}").is_error());
        assert_eq!(
            v.verify_answer(r"\boxed{\frac{1}{2}}", r"\boxed{0.5}"),
            Verdict::Correct
        );
        assert_eq!(v.verify_answer("B", r"\boxed{(B) 42}"), Verdict::Correct);
        assert_eq!(v.verify_answer("(B)", r"\boxed{C}"), Verdict::Wrong);
        let strict = MathVerifier::new(MathConfig {
            fallback_phrases: vec![],
            ..Default::default()
        });
        assert_eq!(
            strict.verify_answer("5", "The answer is 5."),
            Verdict::Unparsable
        );
        let lenient = MathVerifier::new(MathConfig {
            last_number_fallback: true,
            ..Default::default()
        });
        assert_eq!(lenient.verify_answer("5", "so x = 5"), Verdict::Correct);
    }
}
