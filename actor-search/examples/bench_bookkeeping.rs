//! Bookkeeping cost of the tree search with a trivial policy (issue #4 benchmark).
//!
//! The policy answers instantly with full-length segments (EOS with a fixed probability), the
//! verifier is a hash, so everything measured outside the policy call is the search's own work:
//! selection, prefix assembly, validation, tree updates, terminal choice, backup, stats.
//! Reference: the paper reports "CPU bookkeeping a few ms per tree, generation > 99%" (spec §5).
//!
//! Run: `cargo run --release -p deepsearch-search --example bench_bookkeeping [trees] [rounds] [segment_tokens] [eos_every]`

use std::time::Instant;

use deepsearch_search::policy::{ExpandRequest, Finish, Policy, PolicyError, PrefixKey, Segment};
use deepsearch_search::{Forest, Judge, SearchConfig, TreeInput};
use deepsearch_tasks::{Problem, Verdict, Verifier};

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Full-length segments of pseudo-random tokens; a sample ends with EOS with probability
/// `1 / eos_every`.
struct Trivial {
    tokens: u64,
    eos_every: u64,
}

impl Policy for Trivial {
    fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
        reqs.iter()
            .map(|r| {
                Ok((0..r.n)
                    .map(|i| {
                        let h = mix(r.seed ^ i as u64);
                        let eos = h.is_multiple_of(self.eos_every);
                        let len = r.max_new_tokens;
                        // varied tokens, so the garbled filter sees normal text
                        let mut tokens: Vec<u32> = (0..len as u64)
                            .map(|j| (mix(h ^ j) % 50_000) as u32 + 3)
                            .collect();
                        if eos {
                            tokens[len - 1] = 1;
                        }
                        self.tokens += len as u64;
                        Segment {
                            tokens,
                            logprobs: vec![-((h % 7) as f32) / 7.0 - 0.1; len],
                            entropies: vec![1.0; len],
                            finish: Some(if eos { Finish::Eos } else { Finish::Length }),
                        }
                    })
                    .collect())
            })
            .collect()
    }
    fn release(&mut self, _: &[PrefixKey]) {}
    fn decode(&self, tokens: &[u32]) -> String {
        // a cheap stand-in for a tokenizer: the length and the last token
        format!("{}:{}", tokens.len(), tokens.last().copied().unwrap_or(0))
    }
    fn max_context(&self) -> usize {
        1 << 20
    }
}

struct HashVerifier;
impl Verifier for HashVerifier {
    fn verify(&self, _: &Problem, r: &str) -> Verdict {
        if mix(r.len() as u64 ^ r.as_bytes()[0] as u64).is_multiple_of(5) {
            Verdict::Correct
        } else {
            Verdict::Wrong
        }
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let trees = args.first().copied().unwrap_or(16);
    let rounds = args.get(1).copied().unwrap_or(8);
    // spec defaults (width 8, depth 64, 8 trajectories) with 256-token segments unless given
    let cfg = SearchConfig {
        segment_tokens: args.get(2).copied().unwrap_or(256),
        ..SearchConfig::default()
    };
    let cfg = SearchConfig {
        overlong: deepsearch_search::config::OverlongConfig {
            buffer_tokens: cfg.max_response_tokens() / 4,
            ..cfg.overlong.clone()
        },
        ..cfg
    };
    let mut pol = Trivial {
        tokens: 0,
        eos_every: args.get(3).copied().unwrap_or(16) as u64,
    };
    let judge = Judge {
        verifier: &HashVerifier,
        prefix_valid: None,
    };
    let (mut book_ns, mut verify_ns, mut gen_ns, mut exps, mut nodes, mut backups, mut done_trees) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let wall = Instant::now();
    for round in 0..rounds {
        let mut forest = Forest::new(cfg.clone(), (round * trees) as u64).expect("valid config");
        for t in 0..trees {
            let problem = Problem {
                id: format!("p{round}-{t}"),
                prompt: String::new(),
                answer: String::new(),
                task: "bench".into(),
                metadata: Default::default(),
            };
            forest.add(TreeInput {
                problem,
                prompt_tokens: vec![7; 200],
                salt: 0,
            });
        }
        for f in forest.run(&mut pol, &judge) {
            book_ns += f.stats.bookkeeping_ns;
            verify_ns += f.stats.verify_ns;
            exps += f.stats.expansions as u64;
            nodes += f.stats.nodes as u64;
            backups += f
                .recorded
                .iter()
                .map(|&l| f.tree.node(l).depth as u64 + 1)
                .sum::<u64>();
            done_trees += 1;
        }
        gen_ns += forest.stats().generation_ns;
    }
    let wall_s = wall.elapsed().as_secs_f64();
    let book_s = book_ns as f64 / 1e9;
    let node_ops = nodes + backups;
    println!(
        "segment_tokens {}, width {}, max_depth {}, EOS probability 1/{}",
        cfg.segment_tokens, cfg.expansion_width, cfg.max_depth, pol.eos_every
    );
    println!(
        "trees {done_trees}, expansions {exps} ({:.1}/tree), nodes {nodes}, backup steps {backups}",
        exps as f64 / done_trees as f64
    );
    println!(
        "generated tokens {} (trivial policy time {:.3}s, verify+decode {:.3}s, wall {:.3}s)",
        pol.tokens,
        gen_ns as f64 / 1e9,
        verify_ns as f64 / 1e9,
        wall_s
    );
    println!(
        "bookkeeping: {:.3}s total, {:.2} us/expansion, {:.3} ms/tree, {:.2} M node ops/s (nodes created + backup steps)",
        book_s,
        book_s * 1e6 / exps as f64,
        book_s * 1e3 / done_trees as f64,
        node_ops as f64 / book_s / 1e6
    );
    println!(
        "reference (paper, spec §5): a few ms of CPU bookkeeping per tree; ratio ours/3ms = {:.3}",
        book_s * 1e3 / done_trees as f64 / 3.0
    );
}
