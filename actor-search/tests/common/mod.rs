//! Scripted test doubles: token-level stochastic policies and simple verifiers.
//!
//! Every sample is a deterministic function of (request seed, sample index, prefix), as the
//! `Policy` contract requires, so trees are reproducible whatever the batch composition.
#![allow(dead_code)]

use std::collections::HashSet;

use deepsearch_search::policy::{ExpandRequest, Finish, Policy, PolicyError, PrefixKey, Segment};
use deepsearch_tasks::{Problem, Verdict, Verifier};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// End of sequence.
pub const EOS: u32 = 1;
/// Line break, the segment delimiter "\n".
pub const NL: u32 = 2;
/// Letters a..z are tokens 3..=28; prompt tokens are ≥ 100 and decode to '#'.
pub fn letter(c: char) -> u32 {
    3 + (c as u32 - 'a' as u32)
}

/// Token ids → text: EOS is dropped, NL is "\n", letters, prompt tokens '#'.
pub fn decode(tokens: &[u32]) -> String {
    tokens
        .iter()
        .filter_map(|&t| match t {
            EOS => None,
            NL => Some('\n'),
            3..=28 => Some((b'a' + (t - 3) as u8) as char),
            _ => Some('#'),
        })
        .collect()
}

/// The response part of a request's prefix (tokens < 100).
pub fn response_of(tokens: &[u32]) -> &[u32] {
    let start = tokens.iter().position(|&t| t < 100).unwrap_or(tokens.len());
    &tokens[start..]
}

pub fn prompt(len: usize) -> Vec<u32> {
    vec![100; len]
}

pub fn problem(id: &str) -> Problem {
    Problem {
        id: id.to_string(),
        prompt: format!("problem {id}"),
        answer: String::new(),
        task: "scripted".into(),
        metadata: Default::default(),
    }
}

/// A next-token distribution: (token, probability) pairs.
pub type Dist = Vec<(u32, f64)>;

/// Sample one token; returns (token, ln p, entropy).
pub fn draw(rng: &mut ChaCha8Rng, d: &Dist) -> (u32, f32, f32) {
    let h: f64 = d
        .iter()
        .filter(|(_, p)| *p > 0.0)
        .map(|(_, p)| -p * p.ln())
        .sum();
    let mut u: f64 = rng.random::<f64>();
    for &(t, p) in d {
        if u < p {
            return (t, p.ln() as f32, h as f32);
        }
        u -= p;
    }
    let &(t, p) = d.last().expect("non-empty distribution");
    (t, p.ln() as f32, h as f32)
}

/// A language given by a next-token distribution over the response so far.
pub trait Language {
    fn next(&self, response: &[u32]) -> Dist;
}

/// Samples a `Language` token by token: stops at EOS, after NL when "\n" is a stop string, or at
/// the budget. Records every call for inspection.
pub struct LmPolicy<L: Language> {
    pub lang: L,
    pub max_context: usize,
    pub calls: Vec<usize>,
    pub released: HashSet<PrefixKey>,
    pub requested: Vec<PrefixKey>,
    pub tokens_generated: u64,
}

impl<L: Language> LmPolicy<L> {
    pub fn new(lang: L) -> Self {
        Self {
            lang,
            max_context: 1 << 20,
            calls: Vec::new(),
            released: HashSet::new(),
            requested: Vec::new(),
            tokens_generated: 0,
        }
    }

    pub fn sample(&self, req: &ExpandRequest, i: usize) -> Segment {
        let mut rng =
            ChaCha8Rng::seed_from_u64(req.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut resp = response_of(&req.tokens).to_vec();
        let stop_nl = req.params.stop.iter().any(|s| s == "\n");
        let mut seg = Segment::default();
        while seg.tokens.len() < req.max_new_tokens {
            let (t, lp, h) = draw(&mut rng, &self.lang.next(&resp));
            seg.tokens.push(t);
            seg.logprobs.push(lp);
            seg.entropies.push(h);
            resp.push(t);
            if t == EOS {
                seg.finish = Some(Finish::Eos);
                return seg;
            }
            if t == NL && stop_nl {
                seg.finish = Some(Finish::Stop);
                return seg;
            }
        }
        seg.finish = Some(Finish::Length);
        seg
    }
}

impl<L: Language> Policy for LmPolicy<L> {
    fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
        self.calls.push(reqs.len());
        let out: Vec<_> = reqs
            .iter()
            .map(|r| {
                self.requested.push(r.key);
                Ok((0..r.n).map(|i| self.sample(r, i)).collect::<Vec<_>>())
            })
            .collect();
        for s in out.iter().flatten().flatten() {
            self.tokens_generated += s.tokens.len() as u64;
        }
        out
    }
    fn release(&mut self, keys: &[PrefixKey]) {
        self.released.extend(keys.iter().copied());
    }
    fn decode(&self, tokens: &[u32]) -> String {
        decode(tokens)
    }
    fn max_context(&self) -> usize {
        self.max_context
    }
}

/// Random text: letters, NL with prob `p_nl`, EOS with prob `p_eos`, uneven letter weights.
pub struct RandomText {
    pub p_eos: f64,
    pub p_nl: f64,
}

impl Language for RandomText {
    fn next(&self, _response: &[u32]) -> Dist {
        let rest = 1.0 - self.p_eos - self.p_nl;
        let mut d = vec![(EOS, self.p_eos), (NL, self.p_nl)];
        // a..e with weights 5,4,3,2,1
        for (k, w) in [5.0, 4.0, 3.0, 2.0, 1.0].iter().enumerate() {
            d.push((3 + k as u32, rest * w / 15.0));
        }
        d
    }
}

/// Judges by a hash of the text: `1/correct_mod` correct, some unparsable, some verifier errors.
pub struct HashVerifier {
    pub correct_mod: u64,
    pub error_mod: u64,
}

pub fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Verifier for HashVerifier {
    fn verify(&self, _p: &Problem, response: &str) -> Verdict {
        let h = fnv(response);
        if self.error_mod > 0 && (h >> 20).is_multiple_of(self.error_mod) {
            return Verdict::Error("timeout after 5s".into());
        }
        if h.is_multiple_of(self.correct_mod) {
            Verdict::Correct
        } else if h % 7 == 1 {
            Verdict::Unparsable
        } else {
            Verdict::Wrong
        }
    }
}

/// The "rare choice" language of the demonstration: `lines` lines of `line_len` tokens; each line
/// starts with a choice, 'g' (good) with probability `p_good`, else one of 'b','c','d'; then filler
/// letters; a line ends with NL, the last one with EOS. After a bad choice the response goes on
/// for `dead_end` more lines and ends (a wrong answer). Correct ⇔ every line starts with 'g'.
pub struct RareChoice {
    pub lines: usize,
    pub line_len: usize,
    pub p_good: f64,
    pub dead_end: usize,
}

impl Language for RareChoice {
    fn next(&self, r: &[u32]) -> Dist {
        let pos = r.len() % self.line_len;
        let line = r.len() / self.line_len;
        let first_bad = (0..=line.min(self.lines))
            .find(|&l| l * self.line_len < r.len() && r[l * self.line_len] != letter('g'));
        if pos == 0 {
            return if first_bad.is_some() {
                vec![(letter('x'), 0.5), (letter('y'), 0.5)]
            } else {
                let q = (1.0 - self.p_good) / 3.0;
                vec![
                    (letter('g'), self.p_good),
                    (letter('b'), q),
                    (letter('c'), q),
                    (letter('d'), q),
                ]
            };
        }
        if pos + 1 < self.line_len {
            return vec![(letter('f'), 0.5), (letter('h'), 0.5)];
        }
        let last = match first_bad {
            Some(b) => line >= b + self.dead_end,
            None => line + 1 >= self.lines,
        };
        vec![(if last { EOS } else { NL }, 1.0)]
    }
}

/// Correct iff the response has `lines` lines, each starting with 'g'.
pub struct RareChoiceVerifier {
    pub lines: usize,
}

impl Verifier for RareChoiceVerifier {
    fn verify(&self, _p: &Problem, response: &str) -> Verdict {
        let ls: Vec<&str> = response.split('\n').collect();
        if ls.len() == self.lines && ls.iter().all(|l| l.starts_with('g')) {
            Verdict::Correct
        } else {
            Verdict::Wrong
        }
    }
}
