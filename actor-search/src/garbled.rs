//! The garbled-output filter the paper describes and the released code lacks (spec §7).
//!
//! A wrong response that repeats one token n-gram excessively is degenerate text, not a confident
//! mistake: supervising the model on it (spec §3 picks the lowest-entropy wrong answer, and
//! repetition loops have very low entropy) would teach the model about loops, not about its
//! reasoning. The search skips such terminals when choosing the one to back up and counts them.

use std::collections::HashMap;

/// The largest number of times any token n-gram of length `n` occurs in `tokens` (occurrences may
/// overlap). 0 when `tokens` is shorter than `n` or `n` is 0.
pub fn max_ngram_repeats(tokens: &[u32], n: usize) -> usize {
    if n == 0 || tokens.len() < n {
        return 0;
    }
    let mut counts: HashMap<&[u32], usize> = HashMap::with_capacity(tokens.len() - n + 1);
    let mut best = 0;
    for w in tokens.windows(n) {
        let c = counts.entry(w).or_insert(0);
        *c += 1;
        best = best.max(*c);
    }
    best
}

/// True when some n-gram occurs more than `max_repeats` times.
pub fn is_garbled(tokens: &[u32], n: usize, max_repeats: usize) -> bool {
    max_ngram_repeats(tokens, n) > max_repeats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_overlapping_ngrams() {
        // "abcabcabc": "abc" occurs 3 times, "bca" twice
        let t = [1, 2, 3, 1, 2, 3, 1, 2, 3];
        assert_eq!(max_ngram_repeats(&t, 3), 3);
        assert_eq!(max_ngram_repeats(&t, 1), 3);
        assert_eq!(max_ngram_repeats(&t, 9), 1);
        assert_eq!(max_ngram_repeats(&t, 10), 0);
        assert_eq!(max_ngram_repeats(&t, 0), 0);
        // "aaaaa" with n = 2: "aa" at 4 overlapping positions
        assert_eq!(max_ngram_repeats(&[7; 5], 2), 4);
    }

    #[test]
    fn garbled_threshold_is_strict() {
        let t = [1, 2, 3, 1, 2, 3, 1, 2, 3];
        assert!(!is_garbled(&t, 3, 3));
        assert!(is_garbled(&t, 3, 2));
        let normal: Vec<u32> = (0..100).collect();
        assert!(!is_garbled(&normal, 4, 1));
    }
}
