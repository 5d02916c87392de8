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
