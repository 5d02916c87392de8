//! Deterministic train/eval split by hashing each problem's id with a seed: a problem's side
//! does not depend on file order or on the other problems, so adding data never moves an
//! existing eval problem into training.

use sha2::{Digest, Sha256};

use crate::{Problem, TaskError};

/// How to split a problem set.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// Fraction of problems (in expectation) that go to eval, in [0, 1] (default 0.1).
    pub eval_fraction: f64,
    /// Seed mixed into the hash (default 0).
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            eval_fraction: 0.1,
            seed: 0,
        }
    }
}

/// `(train, eval)`, each in input order.
pub fn split(
    problems: Vec<Problem>,
    config: &SplitConfig,
) -> Result<(Vec<Problem>, Vec<Problem>), TaskError> {
    if !(0.0..=1.0).contains(&config.eval_fraction) {
        return Err(TaskError::config(format!(
            "split: eval_fraction {} not in [0, 1]",
            config.eval_fraction
        )));
    }
    Ok(problems.into_iter().partition(|p| !is_eval(&p.id, config)))
}

/// Whether the problem with this id belongs to the eval side.
pub fn is_eval(id: &str, config: &SplitConfig) -> bool {
    let mut h = Sha256::new();
    h.update(config.seed.to_le_bytes());
    h.update(id.as_bytes());
    let d = h.finalize();
    let x = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
    // Top 53 bits as a uniform fraction in [0, 1).
    ((x >> 11) as f64 / (1u64 << 53) as f64) < config.eval_fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(n: usize) -> Vec<Problem> {
        (0..n)
            .map(|i| Problem::new(format!("p{i}"), "math", "q", "a"))
            .collect()
    }

    #[test]
    fn deterministic_and_order_free() {
        let c = SplitConfig {
            eval_fraction: 0.2,
            seed: 3,
        };
        let (train, eval) = split(probs(1000), &c).unwrap();
        assert_eq!(train.len() + eval.len(), 1000);
        // Binomial(1000, 0.2): mean 200, sd ~12.6; 5 sd bounds.
        assert!((137..=263).contains(&eval.len()), "{}", eval.len());
        let mut rev = probs(1000);
        rev.reverse();
        let (_, eval2) = split(rev, &c).unwrap();
        let mut a: Vec<_> = eval.iter().map(|p| p.id.clone()).collect();
        let mut b: Vec<_> = eval2.iter().map(|p| p.id.clone()).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(
            split(
                probs(10),
                &SplitConfig {
                    eval_fraction: 0.0,
                    seed: 0
                }
            )
            .unwrap()
            .1
            .len(),
            0
        );
        assert_eq!(
            split(
                probs(10),
                &SplitConfig {
                    eval_fraction: 1.0,
                    seed: 0
                }
            )
            .unwrap()
            .0
            .len(),
            0
        );
        assert!(split(
            probs(1),
            &SplitConfig {
                eval_fraction: 1.5,
                seed: 0
            }
        )
        .is_err());
    }
}
