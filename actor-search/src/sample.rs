//! Inputs of a search and the pure pieces of an expansion: derived seeds and sample validation.
//!
//! Seeds derive from (run seed, problem id, salt, expansion index) only, never from the batch a
//! request travelled in, so any tree can be replayed (style rule 12, spec §1). A sample that
//! cannot become a node (no tokens, NaN log-probs, lengths that disagree) is rejected here and
//! counted by the caller, never a panic.

use deepsearch_tasks::{Problem, Verifier};

use crate::policy::Segment;

/// A problem to search: the problem (for the verifier) and its prompt tokens (chat template
/// applied by the caller).
#[derive(Clone, Debug)]
pub struct TreeInput {
    pub problem: Problem,
    pub prompt_tokens: Vec<u32>,
    /// Distinguishes several searches of the same problem in one run (e.g. the round).
    pub salt: u64,
}

/// "Is this partial response still possibly right?" (the invalid-prefix hook).
pub type PrefixValid = dyn Fn(&Problem, &str) -> bool;

/// Judges responses: the verifier, and optionally the invalid-prefix hook (used only when
/// `prune_invalid_prefixes` is on) that says whether a partial response can still be right.
#[derive(Clone, Copy)]
pub struct Judge<'a> {
    pub verifier: &'a dyn Verifier,
    pub prefix_valid: Option<&'a PrefixValid>,
}

/// splitmix64 finaliser: a bijective mix used for all derived seeds.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seed of one tree: from the run seed, the problem id (FNV-1a) and the salt.
pub fn tree_seed(run_seed: u64, problem_id: &str, salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in problem_id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    mix64(mix64(run_seed ^ h) ^ salt)
}

/// Seed of a tree's `expansion`-th request.
pub fn request_seed(tree_seed: u64, expansion: u64) -> u64 {
    mix64(tree_seed ^ mix64(expansion.wrapping_add(1)))
}

/// Why a sample cannot become a node; counted, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidSample {
    Empty,
    NonFiniteLogprob,
    Malformed,
}

/// Check one sample (pure): tokens present, one finite log-prob per token, entropies absent or
/// one per token (NaN entropies are allowed: they sort last, spec §3), within the token budget.
pub fn validate_segment(seg: &Segment, max_new_tokens: usize) -> Result<(), InvalidSample> {
    if seg.tokens.is_empty() {
        return Err(InvalidSample::Empty);
    }
    if seg.logprobs.len() != seg.tokens.len()
        || !(seg.entropies.is_empty() || seg.entropies.len() == seg.tokens.len())
        || seg.tokens.len() > max_new_tokens
    {
        return Err(InvalidSample::Malformed);
    }
    if seg.logprobs.iter().any(|l| !l.is_finite()) {
        return Err(InvalidSample::NonFiniteLogprob);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Finish;

    fn seg(tokens: usize, lp: f32) -> Segment {
        Segment {
            tokens: vec![5; tokens],
            logprobs: vec![lp; tokens],
            entropies: Vec::new(),
            finish: Some(Finish::Length),
        }
    }

    #[test]
    fn segments_are_validated() {
        assert_eq!(validate_segment(&seg(3, -1.0), 3), Ok(()));
        assert_eq!(
            validate_segment(&seg(0, -1.0), 3),
            Err(InvalidSample::Empty)
        );
        assert_eq!(
            validate_segment(&seg(4, -1.0), 3),
            Err(InvalidSample::Malformed)
        );
        assert_eq!(
            validate_segment(&seg(2, f32::NAN), 3),
            Err(InvalidSample::NonFiniteLogprob)
        );
        assert_eq!(
            validate_segment(&seg(2, f32::NEG_INFINITY), 3),
            Err(InvalidSample::NonFiniteLogprob)
        );
        let mut s = seg(2, -1.0);
        s.logprobs.pop();
        assert_eq!(validate_segment(&s, 3), Err(InvalidSample::Malformed));
        let mut s = seg(2, -1.0);
        s.entropies = vec![f32::NAN; 2]; // NaN entropies are allowed
        assert_eq!(validate_segment(&s, 3), Ok(()));
        s.entropies.pop();
        assert_eq!(validate_segment(&s, 3), Err(InvalidSample::Malformed));
    }

    #[test]
    fn seeds_depend_on_every_input_and_nothing_else() {
        let a = tree_seed(1, "p", 0);
        assert_eq!(a, tree_seed(1, "p", 0));
        assert_ne!(a, tree_seed(2, "p", 0));
        assert_ne!(a, tree_seed(1, "q", 0));
        assert_ne!(a, tree_seed(1, "p", 1));
        assert_ne!(request_seed(a, 0), request_seed(a, 1));
        assert_eq!(mix64(0), 0xe220_a839_7b1d_cdaf); // splitmix64's first output for state 0
    }
}
