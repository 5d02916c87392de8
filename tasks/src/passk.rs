//! The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on
//! Code", §2.1): with `n` samples of a problem of which `c` are correct,
//!
//! ```text
//! pass@k = 1 − C(n−c, k) / C(n, k)
//! ```
//!
//! is the probability that `k` samples drawn without replacement from the `n` contain a correct
//! one. The binomials overflow long before `n` gets interesting, so it is computed as the product
//! `1 − Π_{i=n−c+1..=n} (1 − k/i)` (the paper's numerically stable form): every factor is in
//! [0, 1], there is no cancellation between large numbers and the cost is `c` multiplications.
//! The score of a set of problems is the mean over problems ([`mean_pass_at_k`]).
//!
//! Shared by `deepsearch eval` and the held-out evaluation of `deepsearch train`.

/// Inputs the estimator is not defined for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PassAtKError {
    #[error("pass@k needs k >= 1")]
    ZeroK,
    #[error("pass@{k} needs at least {k} samples per problem, got {n}")]
    TooFewSamples { n: u64, k: u64 },
    #[error("{c} correct out of {n} samples is impossible")]
    MoreCorrectThanSamples { n: u64, c: u64 },
    #[error("pass@k of an empty problem set is undefined")]
    NoProblems,
}

/// Unbiased pass@k of one problem with `c` correct among `n` samples.
///
/// Errors when `k == 0`, when `n < k` (fewer samples than drawn: the estimator is undefined, so
/// this is refused rather than silently clamped) or when `c > n`. `c == 0` gives exactly 0 and
/// `n − c < k` (every draw of `k` holds a correct sample) exactly 1; `k == 1` equals `c / n` up
/// to rounding.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> Result<f64, PassAtKError> {
    if k == 0 {
        return Err(PassAtKError::ZeroK);
    }
    if n < k {
        return Err(PassAtKError::TooFewSamples { n, k });
    }
    if c > n {
        return Err(PassAtKError::MoreCorrectThanSamples { n, c });
    }
    if n - c < k {
        return Ok(1.0);
    }
    // C(n−c, k) / C(n, k) = Π_{i=n−c+1..=n} (i − k) / i
    let kf = k as f64;
    let miss: f64 = (n - c + 1..=n).map(|i| 1.0 - kf / i as f64).product();
    Ok(1.0 - miss)
}

/// Mean pass@k over problems, each given as `(n, c)`.
pub fn mean_pass_at_k(problems: &[(u64, u64)], k: u64) -> Result<f64, PassAtKError> {
    if problems.is_empty() {
        return Err(PassAtKError::NoProblems);
    }
    let mut sum = 0.0;
    for &(n, c) in problems {
        sum += pass_at_k(n, c, k)?;
    }
    Ok(sum / problems.len() as f64)
}

/// The default k list for `n` samples: 1, 2, 4, ... below `n`, then `n` itself.
pub fn default_ks(n: u64) -> Vec<u64> {
    let mut ks = Vec::new();
    let mut k = 1;
    while k < n {
        ks.push(k);
        k *= 2;
    }
    if n > 0 {
        ks.push(n);
    }
    ks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact binomial in u128 (fine for n <= 60).
    fn binom(n: u64, k: u64) -> u128 {
        if k > n {
            return 0;
        }
        let k = k.min(n - k);
        (0..k).fold(1u128, |acc, i| acc * (n - i) as u128 / (i + 1) as u128)
    }

    #[test]
    fn matches_the_binomial_definition() {
        for n in 1..=40u64 {
            for c in 0..=n {
                for k in 1..=n {
                    let exact = 1.0 - binom(n - c, k) as f64 / binom(n, k) as f64;
                    let got = pass_at_k(n, c, k).unwrap();
                    assert!(
                        (got - exact).abs() < 1e-12,
                        "n={n} c={c} k={k}: {got} vs {exact}"
                    );
                }
            }
        }
    }

    #[test]
    fn edge_cases() {
        assert_eq!(pass_at_k(8, 0, 1), Ok(0.0));
        assert_eq!(pass_at_k(8, 0, 8), Ok(0.0));
        assert_eq!(pass_at_k(8, 8, 1), Ok(1.0));
        assert_eq!(pass_at_k(8, 8, 8), Ok(1.0));
        // k = n: any correct sample makes it 1
        assert_eq!(pass_at_k(8, 1, 8), Ok(1.0));
        // n − c < k: exactly 1
        assert_eq!(pass_at_k(10, 7, 4), Ok(1.0));
        for (n, c) in [(1, 0), (1, 1), (7, 3), (10, 4), (1000, 17)] {
            let p1 = pass_at_k(n, c, 1).unwrap();
            assert!(
                (p1 - c as f64 / n as f64).abs() < 1e-12,
                "n={n} c={c}: {p1}"
            );
        }
        assert_eq!(pass_at_k(8, 1, 0), Err(PassAtKError::ZeroK));
        assert_eq!(
            pass_at_k(4, 1, 8),
            Err(PassAtKError::TooFewSamples { n: 4, k: 8 })
        );
        assert_eq!(
            pass_at_k(0, 0, 1),
            Err(PassAtKError::TooFewSamples { n: 0, k: 1 })
        );
        assert_eq!(
            pass_at_k(4, 5, 1),
            Err(PassAtKError::MoreCorrectThanSamples { n: 4, c: 5 })
        );
    }

    #[test]
    fn large_n_stays_finite_and_ordered() {
        // C(10^6, 500) overflows every integer and f64; the product form does not
        let n = 1_000_000;
        let mut last = 0.0;
        for k in [1, 10, 100, 500, 10_000] {
            let p = pass_at_k(n, 3, k).unwrap();
            assert!(p.is_finite() && (0.0..=1.0).contains(&p), "k={k}: {p}");
            assert!(p > last, "pass@k must grow with k: {p} <= {last}");
            last = p;
        }
        // one correct in n: pass@k = k/n exactly
        assert!((pass_at_k(n, 1, 1000).unwrap() - 1e-3).abs() < 1e-12);
        // half correct and k = 200: 1 − ~2^-200, i.e. 1 in f64
        assert!(pass_at_k(n, n / 2, 200).unwrap() > 1.0 - 1e-12);
        // c close to n costs c multiplications and still lands on [0, 1]
        let p = pass_at_k(n, n - 5, 3).unwrap();
        assert!((0.0..=1.0).contains(&p));
    }

    #[test]
    fn means_and_default_ks() {
        let m = mean_pass_at_k(&[(4, 0), (4, 4), (4, 2)], 1).unwrap();
        assert!((m - 0.5).abs() < 1e-12);
        let m = mean_pass_at_k(&[(4, 0), (4, 1)], 4).unwrap();
        assert!((m - 0.5).abs() < 1e-12);
        assert_eq!(mean_pass_at_k(&[], 1), Err(PassAtKError::NoProblems));
        assert_eq!(
            mean_pass_at_k(&[(8, 1), (2, 1)], 4),
            Err(PassAtKError::TooFewSamples { n: 2, k: 4 })
        );
        assert_eq!(default_ks(8), vec![1, 2, 4, 8]);
        assert_eq!(default_ks(10), vec![1, 2, 4, 8, 10]);
        assert_eq!(default_ks(1), vec![1]);
        assert_eq!(default_ks(0), Vec::<u64>::new());
    }
}
