//! Learner benchmarks (results in bench/RESULTS.md).
//!
//! `throughput`: training tokens/s of the full learner step (π_old recompute without gradients,
//! then per mini-batch forward + backward over micro-batches, grad clip, AdamW) on a Qwen2 of the
//! given size; compare with `bench/learner/step_ref.py` (the same step in PyTorch):
//!
//!     cargo run --release -p deepsearch-learner --example bench_learner -- throughput
//!     /work/pyref/bin/python bench/learner/step_ref.py
//!
//! `memory`: peak resident memory of one log-prob pass over long responses, with the vocabulary
//! head chunked or not (run once per setting: the peak is per process):
//!
//!     bench_learner memory --chunk 0 --grad 1   # 0 = one chunk for the whole sequence
//!
//! Arguments are `--name value` pairs; defaults in `Opts`.

use deepsearch_learner::batch::{StepBatch, TrainSample};
use deepsearch_learner::{Learner, LearnerConfig, SingleProcess};
use deepsearch_policy::logprobs::{token_logprobs, LogprobOptions};
use deepsearch_policy::{PolicyModel, PolicyTokenizer, Qwen2Config};
use rand::{Rng, SeedableRng};
use std::time::Instant;

struct Opts {
    hidden: i64,
    layers: i64,
    vocab: i64,
    prompts: usize,
    k: usize,
    prompt_len: usize,
    resp_len: usize,
    micro: usize,
    minis: usize,
    steps: usize,
    threads: i32,
    chunk: i64,
    grad: bool,
}

fn parse() -> (String, Opts) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_else(|| "throughput".into());
    let mut o = Opts {
        hidden: 256,
        layers: 4,
        vocab: 512,
        prompts: 8,
        k: 8,
        prompt_len: 32,
        resp_len: 96,
        micro: 16,
        minis: 2,
        steps: 3,
        threads: 2,
        chunk: 256,
        grad: true,
    };
    let mut it = args.iter().skip(1);
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let n = |v: &str| {
            v.parse::<i64>()
                .unwrap_or_else(|_| panic!("{k}: expected a number, got {v}"))
        };
        match k.as_str() {
            "--hidden" => o.hidden = n(v),
            "--layers" => o.layers = n(v),
            "--vocab" => o.vocab = n(v),
            "--prompts" => o.prompts = n(v) as usize,
            "--k" => o.k = n(v) as usize,
            "--prompt-len" => o.prompt_len = n(v) as usize,
            "--resp-len" => o.resp_len = n(v) as usize,
            "--micro" => o.micro = n(v) as usize,
            "--minis" => o.minis = n(v) as usize,
            "--steps" => o.steps = n(v) as usize,
            "--threads" => o.threads = n(v) as i32,
            "--chunk" => o.chunk = n(v),
            "--grad" => o.grad = n(v) != 0,
            other => panic!("unknown option {other}"),
        }
    }
    (mode, o)
}

fn model(o: &Opts) -> PolicyModel {
    let tok = PolicyTokenizer::char_level("abcdefghijklmnopqrstuvwxyz").unwrap();
    let mut cfg = Qwen2Config::tiny(o.vocab);
    cfg.hidden_size = o.hidden;
    cfg.intermediate_size = o.hidden * 11 / 4;
    cfg.num_hidden_layers = o.layers;
    cfg.num_attention_heads = 4;
    cfg.num_key_value_heads = 2;
    cfg.max_position_embeddings = (o.prompt_len + o.resp_len + 8) as i64;
    PolicyModel::init_random(&cfg, tok, 0).unwrap()
}

fn batch(o: &Opts) -> StepBatch {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut b = StepBatch::default();
    for g in 0..o.prompts {
        let prompt: Vec<i64> = (0..o.prompt_len).map(|_| rng.random_range(3..o.vocab)).collect();
        let mut members = Vec::new();
        for _ in 0..o.k {
            let response: Vec<i64> = (0..o.resp_len).map(|_| rng.random_range(3..o.vocab)).collect();
            let a: f32 = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            members.push(b.samples.len());
            b.samples.push(TrainSample {
                group: g,
                prompt: prompt.clone(),
                advantages: vec![a; response.len()],
                sampling_logprobs: None,
                policy_version: 0,
                response,
            });
        }
        b.groups.push(members);
    }
    b
}

fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss as f64 / 1024.0
}

fn main() {
    let (mode, o) = parse();
    tch::set_num_threads(o.threads);
    match mode.as_str() {
        "throughput" => {
            let cfg = LearnerConfig {
                lr: 1e-5,
                warmup_steps: 0,
                mini_batches: o.minis,
                micro_batch_size: o.micro,
                shuffle: false,
                logprob_chunk: o.chunk,
                ..LearnerConfig::default()
            };
            let m = model(&o);
            let params = m.num_parameters();
            let mut l = Learner::new(cfg, m, Box::new(SingleProcess)).unwrap();
            let b = batch(&o);
            l.train_step(&b).unwrap(); // warm-up
            let t0 = Instant::now();
            let mut tokens = 0;
            for _ in 0..o.steps {
                tokens += l.train_step(&b).unwrap().tokens;
            }
            let s = t0.elapsed().as_secs_f64();
            println!(
                "rust learner step: params {params}, {} seqs x {} tokens, {} steps: {:.0} training tokens/s ({:.3} s/step)",
                o.prompts * o.k,
                o.prompt_len + o.resp_len,
                o.steps,
                tokens as f64 / s,
                s / o.steps as f64
            );
        }
        "memory" => {
            let m = model(&o);
            let b = batch(&Opts {
                prompts: 1,
                k: o.micro,
                ..o
            });
            let w = |_: usize| 1.0;
            let idx: Vec<usize> = (0..b.samples.len()).collect();
            let mt = deepsearch_learner::step::micro_tensors(&b.samples, &idx, &w, tch::Device::Cpu);
            let base = peak_rss_mb();
            let chunk = if o.chunk == 0 { i64::MAX } else { o.chunk };
            let opts = LogprobOptions {
                chunk_len: chunk,
                entropy: false,
            };
            let t0 = Instant::now();
            if o.grad {
                let lp = token_logprobs(&m.model, &mt.ids, &mt.mask, opts).unwrap().logprobs;
                lp.sum(tch::Kind::Float).backward();
            } else {
                let _g = tch::no_grad_guard();
                let _ = token_logprobs(&m.model, &mt.ids, &mt.mask, opts).unwrap();
            }
            println!(
                "memory: vocab {} seqs {} x {} tokens, chunk {}, grad {}: peak RSS {:.0} MB (before pass {:.0} MB), {:.2} s",
                o.vocab, o.micro, o.prompt_len + o.resp_len, o.chunk, o.grad, peak_rss_mb(), base, t0.elapsed().as_secs_f64()
            );
        }
        other => panic!("unknown mode {other} (throughput | memory)"),
    }
}
