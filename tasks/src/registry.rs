//! Task name → verifier, generator helpers and character set. The one place that knows the
//! built-in task names, so the search, the actors and the CLI dispatch on `Problem::task`.

use std::sync::Arc;

use crate::math::{MathConfig, MathVerifier};
use crate::{arithmetic, countdown, math, Problem, TaskError, Verifier};

/// Names of the built-in tasks.
pub const TASKS: &[&str] = &[math::TASK, countdown::TASK, arithmetic::TASK];

/// The default verifier of `task` ("math", "countdown", "arithmetic").
pub fn verifier_for(task: &str) -> Result<Arc<dyn Verifier>, TaskError> {
    verifier_with(task, &MathConfig::default())
}

/// The verifier of `task`, with `math` settings for the math verifier.
pub fn verifier_with(task: &str, math: &MathConfig) -> Result<Arc<dyn Verifier>, TaskError> {
    match task {
        math::TASK => Ok(Arc::new(MathVerifier::new(math.clone()))),
        countdown::TASK => Ok(Arc::new(countdown::CountdownVerifier)),
        arithmetic::TASK => Ok(Arc::new(arithmetic::ArithmeticVerifier)),
        other => Err(TaskError::UnknownTask(other.to_string())),
    }
}

/// Problems `0..count` of `task`'s built-in generator with `seed`; `params` is a JSON object of
/// its config's fields (omitted ones keep their defaults). Errors: [`TaskError::UnknownTask`]
/// for a task without a generator ("math" or an unknown name), [`TaskError::Config`] for bad
/// `params` or a config the generator rejects.
pub fn generate(task: &str, params: &str, seed: u64, count: usize) -> Result<Vec<Problem>, TaskError> {
    let bad = |e: serde_json::Error| TaskError::config(format!("generator params {params}: {e}"));
    match task {
        countdown::TASK => countdown::generate(&serde_json::from_str(params).map_err(bad)?, seed, count),
        arithmetic::TASK => arithmetic::generate(&serde_json::from_str(params).map_err(bad)?, seed, count),
        other => Err(TaskError::UnknownTask(other.to_string())),
    }
}

/// The character set of a built-in generated task (`None` for "math": it is open text).
pub fn alphabet(task: &str) -> Option<&'static str> {
    match task {
        countdown::TASK => Some(countdown::alphabet()),
        arithmetic::TASK => Some(arithmetic::alphabet()),
        _ => None,
    }
}

/// A supervised solution trace for a generated problem (`None` for other tasks).
pub fn solution_trace(problem: &Problem) -> Option<String> {
    match problem.task.as_str() {
        countdown::TASK => countdown::solution_trace(problem),
        arithmetic::TASK => arithmetic::solution_trace(problem),
        _ => None,
    }
}

/// Cheap prefix check for pruning during search: false only when `partial` can no longer
/// become a correct response. Always true for tasks without a line grammar (math).
pub fn prefix_is_valid(problem: &Problem, partial: &str) -> bool {
    match problem.task.as_str() {
        countdown::TASK => countdown::prefix_is_valid(problem, partial),
        arithmetic::TASK => arithmetic::prefix_is_valid(problem, partial),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;

    #[test]
    fn generate_dispatches_and_names_bad_params() {
        let a = generate(countdown::TASK, r#"{"min_numbers":3,"max_numbers":3}"#, 5, 4).unwrap();
        let b = countdown::generate(
            &countdown::CountdownConfig { min_numbers: 3, max_numbers: 3, ..Default::default() },
            5,
            4,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(generate(arithmetic::TASK, "{}", 1, 3).unwrap(), arithmetic::generate(&Default::default(), 1, 3).unwrap());
        assert!(matches!(generate(math::TASK, "{}", 0, 1), Err(TaskError::UnknownTask(t)) if t == "math"));
        let e = generate(countdown::TASK, r#"{"min_numbrs":3}"#, 0, 1).unwrap_err().to_string();
        assert!(e.contains("min_numbrs"), "{e}");
    }

    #[test]
    fn dispatch() {
        for t in TASKS {
            assert!(verifier_for(t).is_ok());
        }
        assert!(matches!(
            verifier_for("chess"),
            Err(TaskError::UnknownTask(_))
        ));
        let p = Problem::new("p", "math", "1+1?", "2");
        assert_eq!(
            verifier_for("math").unwrap().verify(&p, r"\boxed{2}"),
            Verdict::Correct
        );
        assert!(prefix_is_valid(&p, "anything"));
        assert_eq!(alphabet("countdown"), Some(countdown::alphabet()));
        assert_eq!(alphabet("math"), None);
        assert_eq!(solution_trace(&p), None);
    }
}
