//! Policy-engine benchmarks (not tests): decode throughput, prefix reuse in a tree expansion,
//! training forward+backward throughput. Driven by `bench/policy/run.sh`, which runs the same
//! measurements in PyTorch/transformers on the same weights and prints the ratios.
//!
//! ```text
//! bench_policy init   --out DIR                 # the bench model in HF format (fixed seed)
//! bench_policy decode --model DIR --batch B [--prompt-len 16] [--new 128] [--reps 3]
//! bench_policy reuse  --model DIR [--prompt-len 128] [--depth 10] [--segment 32] [--width 8] [--reps 3]
//! bench_policy train  --model DIR [--batch 8] [--seq 256] [--reps 5]
//! ```
//! Every measurement prints one JSON line. Threads: `--threads N` (default 2).

use deepsearch_policy::engine::{Engine, EngineConfig, GenRequest, PrefixKey, SamplingParams};
use deepsearch_policy::logprobs::{token_logprobs, LogprobOptions};
use deepsearch_policy::{PolicyModel, PolicyTokenizer, Qwen2Config, SaveOptions};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The bench model: 4 layers, hidden 256, 8 heads of 32, 2 KV heads, MLP 688, vocabulary 512,
/// tied embeddings (≈ 3.3 M parameters).
fn bench_config() -> Qwen2Config {
    Qwen2Config {
        hidden_size: 256,
        intermediate_size: 688,
        num_hidden_layers: 4,
        num_attention_heads: 8,
        num_key_value_heads: 2,
        max_position_embeddings: 4096,
        ..Qwen2Config::tiny(512)
    }
}

struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> AnyResult<Self> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let k = a.strip_prefix("--").ok_or_else(|| format!("expected --flag, got `{a}`"))?;
            let v = it.next().ok_or_else(|| format!("--{k} needs a value"))?;
            map.insert(k.to_string(), v.clone());
        }
        Ok(Opts(map))
    }
    fn num(&self, k: &str, default: usize) -> AnyResult<usize> {
        match self.0.get(k) {
            Some(v) => Ok(v.parse().map_err(|e| format!("--{k} {v}: {e}"))?),
            None => Ok(default),
        }
    }
    fn path(&self, k: &str) -> AnyResult<PathBuf> {
        Ok(PathBuf::from(self.0.get(k).ok_or_else(|| format!("--{k} is required"))?))
    }
}

fn random_ids(n: usize, vocab: u32, seed: u64) -> Vec<u32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(3..vocab)).collect()
}

fn load_engine(dir: &std::path::Path, cache_bytes: usize) -> AnyResult<Engine> {
    let pm = PolicyModel::load(dir, Device::Cpu, Kind::Float)?;
    let PolicyModel { model, .. } = pm;
    // no EOS: every row generates its full budget, as in the transformers run
    Ok(Engine::new(model, Device::Cpu, &[], EngineConfig { prefix_cache_bytes: cache_bytes, ..Default::default() }))
}

fn decode(o: &Opts) -> AnyResult<()> {
    let (batch, plen, new, reps) = (o.num("batch", 1)?, o.num("prompt-len", 16)?, o.num("new", 128)?, o.num("reps", 3)?);
    let mut engine = load_engine(&o.path("model")?, 0)?;
    let prompt = random_ids(plen, 512, 1);
    let params = SamplingParams::default();
    let req = GenRequest { key: None, reuse: None, tokens: &prompt, n: batch, max_new_tokens: new, params: &params, seed: 0 };
    engine.generate(&[GenRequest { max_new_tokens: 4, ..req.clone() }]).pop().unwrap()?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let out = engine.generate(std::slice::from_ref(&req)).pop().unwrap()?;
        best = best.min(t.elapsed().as_secs_f64());
        assert!(out.iter().all(|s| s.tokens.len() == new));
    }
    let tps = (batch * new) as f64 / best;
    println!("{{\"bench\":\"decode\",\"impl\":\"rust\",\"batch\":{batch},\"new\":{new},\"secs\":{best:.4},\"tokens_per_s\":{tps:.1}}}");
    Ok(())
}

fn reuse(o: &Opts) -> AnyResult<()> {
    let (plen, depth, seg, width, reps) =
        (o.num("prompt-len", 128)?, o.num("depth", 10)?, o.num("segment", 32)?, o.num("width", 8)?, o.num("reps", 3)?);
    let dir = o.path("model")?;
    let params = SamplingParams::default();
    let key = |node: u32| PrefixKey { tree: 0, node };
    // grow a path root → depth with the cache on, as the tree search does
    let mut warm = load_engine(&dir, 1 << 30)?;
    let mut tokens = random_ids(plen, 512, 2);
    for d in 0..depth {
        let req = GenRequest {
            key: Some(key(d as u32)),
            reuse: d.checked_sub(1).map(|p| key(p as u32)),
            tokens: &tokens,
            n: width,
            max_new_tokens: seg,
            params: &params,
            seed: d as u64,
        };
        let child = warm.generate(&[req]).pop().unwrap()?.remove(0);
        tokens.extend(child.tokens);
    }
    let node = GenRequest {
        key: Some(key(1000)),
        reuse: Some(key(depth as u32 - 1)),
        tokens: &tokens,
        n: width,
        max_new_tokens: seg,
        params: &params,
        seed: 99,
    };
    let time = |engine: &mut Engine, reqs: &[GenRequest<'_>]| -> AnyResult<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let t = Instant::now();
            for r in engine.generate(reqs) {
                r?;
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let before = warm.stats();
    let t_reuse = time(&mut warm, std::slice::from_ref(&node))?;
    let prefilled = (warm.stats().prefill_tokens - before.prefill_tokens) / reps as u64;
    let mut cold = load_engine(&dir, 0)?;
    cold.generate(&[GenRequest { max_new_tokens: 2, ..node.clone() }]).pop().unwrap()?;
    let t_cold = time(&mut cold, std::slice::from_ref(&node))?;
    // what an engine without prefix sharing does: every sample prefills the whole prefix
    let per_sample: Vec<GenRequest<'_>> =
        (0..width).map(|i| GenRequest { n: 1, seed: 99 + i as u64, ..node.clone() }).collect();
    let t_each = time(&mut cold, &per_sample)?;
    println!(
        "{{\"bench\":\"reuse\",\"prefix_tokens\":{},\"width\":{width},\"segment\":{seg},\"prefilled_with_reuse\":{prefilled},\"secs_reuse\":{t_reuse:.4},\"secs_recompute_once\":{t_cold:.4},\"secs_recompute_per_sample\":{t_each:.4},\"speedup_vs_recompute_once\":{:.2},\"speedup_vs_recompute_per_sample\":{:.2}}}",
        tokens.len(),
        t_cold / t_reuse,
        t_each / t_reuse
    );
    Ok(())
}

fn train(o: &Opts) -> AnyResult<()> {
    let (batch, seq, reps) = (o.num("batch", 8)?, o.num("seq", 256)?, o.num("reps", 5)?);
    let pm = PolicyModel::load(&o.path("model")?, Device::Cpu, Kind::Float)?;
    let ids = random_ids(batch * seq, 512, 3);
    let ids = Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>()).view([batch as i64, seq as i64]);
    let mask = ids.ones_like();
    let step = || -> AnyResult<()> {
        for mut v in pm.vs.trainable_variables() {
            v.zero_grad();
        }
        let out = token_logprobs(&pm.model, &ids, &mask, LogprobOptions::default())?;
        let loss = -out.logprobs.mean(Kind::Float);
        loss.backward();
        Ok(())
    };
    step()?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        step()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let tps = (batch * seq) as f64 / best;
    println!("{{\"bench\":\"train\",\"impl\":\"rust\",\"batch\":{batch},\"seq\":{seq},\"secs\":{best:.4},\"tokens_per_s\":{tps:.1}}}");
    Ok(())
}

/// Where a decode step's time goes: forward with a boolean mask vs the causal path, and the
/// sampler, at batch `--batch` after a past of `--past` tokens.
fn prof(o: &Opts) -> AnyResult<()> {
    use deepsearch_policy::sampler::{sample_step, RowParams};
    use deepsearch_policy::AttnMask;
    let (batch, past, steps) = (o.num("batch", 8)? as i64, o.num("past", 448)? as i64, o.num("steps", 32)?);
    let pm = PolicyModel::load(&o.path("model")?, Device::Cpu, Kind::Float)?;
    let _g = tch::no_grad_guard();
    let m = &pm.model;
    let ids = Tensor::randint_low(3, 512, [batch, past], (Kind::Int64, Device::Cpu));
    let pos = Tensor::arange(past, (Kind::Int64, Device::Cpu)).view([1, past]).expand([batch, past], false);
    // room for one more position: every timed step appends at `past` and is then cut back
    let kv = std::cell::RefCell::new(m.new_cache(batch, past + 1));
    let h = m.forward_into(&ids, &pos, &mut kv.borrow_mut(), AttnMask::Causal);
    let one = ids.narrow(1, 0, 1);
    let time = |f: &dyn Fn(i64)| {
        let t = Instant::now();
        for i in 0..steps as i64 {
            f(i);
        }
        t.elapsed().as_secs_f64() / steps as f64 * 1e3
    };
    let p = pos.narrow(1, 0, 1) + past;
    let step = |mask: AttnMask<'_>| {
        let mut kv = kv.borrow_mut();
        let _ = m.forward_into(&one, &p, &mut kv, mask);
        kv.set_len(past);
    };
    let causal = time(&|_| step(AttnMask::Causal));
    let mask = Tensor::ones([batch, 1, 1, past + 1], (Kind::Bool, Device::Cpu));
    let masked = time(&|_| step(AttnMask::Custom(&mask)));
    let params = SamplingParams::default();
    let rows: Vec<&SamplingParams> = (0..batch).map(|_| &params).collect();
    let rp = RowParams::new(&rows, 512, Device::Cpu);
    let last = h.select(1, past - 1);
    let u: Vec<f64> = (0..batch).map(|i| i as f64 / batch as f64).collect();
    let sample = time(&|_| {
        let _ = sample_step(&m.logits(&last), &rp, &u);
    });
    println!("{{\"bench\":\"prof\",\"batch\":{batch},\"past\":{past},\"ms_forward_causal\":{causal:.3},\"ms_forward_mask\":{masked:.3},\"ms_logits_sample\":{sample:.3}}}");
    Ok(())
}

fn init(o: &Opts) -> AnyResult<()> {
    let alphabet: String = (32u8..127).map(char::from).collect();
    let tok = PolicyTokenizer::char_level(&alphabet)?;
    let pm = PolicyModel::init_random(&bench_config(), tok, 1234)?;
    pm.save(&o.path("out")?, &SaveOptions::default())?;
    println!("{{\"bench\":\"init\",\"parameters\":{}}}", pm.num_parameters());
    Ok(())
}

fn main() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args.split_first().ok_or("usage: bench_policy init|decode|reuse|train --flag value ...")?;
    let o = Opts::parse(rest)?;
    let threads = o.num("threads", 2)? as i32;
    tch::set_num_threads(threads);
    tch::set_num_interop_threads(1);
    match cmd.as_str() {
        "init" => init(&o),
        "decode" => decode(&o),
        "reuse" => reuse(&o),
        "train" => train(&o),
        "prof" => prof(&o),
        other => Err(format!("unknown bench `{other}`").into()),
    }
}
