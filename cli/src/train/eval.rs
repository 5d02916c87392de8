//! Bootstrap and held-out evaluation for `deepsearch train` (design.md "Embedded default").
//!
//! - [`bootstrap`]: the base policy. A cached SFT model in `<cache_dir>/<hash>` is reused; else a
//!   fresh tiny char-level Qwen2 (`cmd_sft::init_model`) is trained on generated easy Countdown
//!   traces for `bootstrap.max_seconds` and saved there (written to a temporary folder first, then
//!   renamed, so an interrupted bootstrap never leaves a half model in the cache).
//! - [`Evaluator`]: Pass@1 (mean over `samples` T=1 samples per problem) and Pass@k (any correct)
//!   on the held-out set, batched through the generation engine ([`crate::cmd_actor::EngineActor`]
//!   as a search `Policy`), verified with the task's verifier.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use deepsearch_learner::sft::{read_examples, train_sft, SftConfig};
use deepsearch_policy::checkpoint::{PolicyModel, SaveOptions};
use deepsearch_search::policy::{ExpandRequest, Policy, PrefixKey};
use deepsearch_search::runtime::{PromptEncoder, Reloadable};
use deepsearch_search::SamplingParams;
use deepsearch_tasks::{countdown, registry, verify_catching, Problem, Verdict};

use super::config::{fnv64, TrainConfig};
use crate::cmd_actor::EngineActor;

/// Returns the base policy folder, training and caching it if needed.
pub fn bootstrap(cfg: &TrainConfig) -> anyhow::Result<PathBuf> {
    let b = &cfg.bootstrap;
    if let Some(m) = &b.model {
        return Ok(m.clone());
    }
    let mut key = b.clone();
    key.cache_dir = PathBuf::new();
    let hash = fnv64(serde_json::to_string(&key)?.as_bytes());
    let dir = b.cache_dir.join(format!("{hash:016x}"));
    if dir.join("config.json").exists() && dir.join("model.safetensors").exists() {
        tracing::info!(dir = %dir.display(), "reusing cached bootstrap policy");
        return Ok(dir);
    }
    std::fs::create_dir_all(&b.cache_dir).with_context(|| format!("creating {}", b.cache_dir.display()))?;
    let tmp = b.cache_dir.join(format!("{hash:016x}.tmp{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let problems = countdown::generate(&b.problems, b.seed, b.count).context("bootstrap.problems")?;
    let data = tmp.join("sft.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&data)?);
        for p in &problems {
            let trace = registry::solution_trace(p).with_context(|| format!("problem {}: no solution trace", p.id))?;
            writeln!(f, "{}", serde_json::json!({"prompt": p.prompt, "response": trace}))?;
        }
        f.flush()?;
    }
    let mut model = crate::cmd_sft::init_model("countdown", b.init_seed)?;
    let examples = read_examples(&data, &model)?;
    let sft = SftConfig {
        lr: b.lr,
        batch_size: b.batch_size,
        epochs: 1000,
        max_seconds: b.max_seconds,
        max_steps: b.max_updates,
        seed: b.seed,
        decay_to: b.decay_to,
        ..Default::default()
    };
    eprintln!("bootstrap: SFT of a {}-parameter model on {} easy traces for {:.0}s", model.num_parameters(), examples.len(), b.max_seconds);
    let report = train_sft(&mut model, &examples, &sft, |step, loss| {
        if step % 50 == 0 {
            eprintln!("bootstrap: update {step} loss {loss:.4}");
        }
    })?;
    eprintln!("bootstrap: {} updates, loss {:.4} -> {:.4}", report.updates, report.first_loss, report.last_loss);
    std::fs::remove_file(&data)?;
    model.save(&tmp, &SaveOptions::default()).with_context(|| format!("writing {}", tmp.display()))?;
    if std::fs::rename(&tmp, &dir).is_err() {
        // another run cached it meanwhile: use theirs
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(dir)
}

/// One evaluation's numbers.
#[derive(Clone, Copy, Debug)]
pub struct EvalResult {
    pub pass1: f64,
    pub pass_at_k: f64,
    pub tokens: usize,
}

/// The held-out set and a policy to sample it with.
pub struct Evaluator {
    actor: EngineActor,
    problems: Vec<Problem>,
    samples: usize,
    max_new_tokens: usize,
    batch: usize,
    seed: u64,
}

impl Evaluator {
    /// Loads `base` and generates the eval set.
    pub fn new(cfg: &TrainConfig, base: &Path) -> anyhow::Result<Self> {
        let pm = PolicyModel::load_with(base, "cpu", "f32").with_context(|| format!("loading {}", base.display()))?;
        let actor = EngineActor::new(pm, cfg.model.engine.clone(), cfg.model.prompt.clone());
        let problems = countdown::generate(&cfg.data.eval, cfg.data.eval_seed, cfg.data.eval_count).context("data.eval")?;
        Ok(Evaluator {
            actor,
            problems,
            samples: cfg.eval.samples,
            max_new_tokens: cfg.eval.max_new_tokens,
            batch: cfg.eval.batch,
            seed: cfg.run.seed,
        })
    }

    /// Swaps in new weights (a safetensors file).
    pub fn load_weights(&mut self, bytes: &[u8], version: u64) -> anyhow::Result<()> {
        self.actor.load_safetensors(bytes, version).map_err(|e| anyhow::anyhow!("eval weights: {e}"))
    }

    /// Samples every problem `samples` times at T=1 and verifies.
    pub fn run(&mut self) -> anyhow::Result<EvalResult> {
        let verifier = registry::verifier_for("countdown")?;
        let params = Arc::new(SamplingParams::default());
        let (mut correct, mut any, mut tokens) = (0usize, 0usize, 0usize);
        for (c, chunk) in self.problems.chunks(self.batch).enumerate() {
            let mut reqs = Vec::with_capacity(chunk.len());
            for (i, p) in chunk.iter().enumerate() {
                let prompt = self.actor.encode_prompt(p).map_err(|e| anyhow::anyhow!("problem {}: {e}", p.id))?;
                reqs.push(ExpandRequest {
                    key: PrefixKey { tree: (c * self.batch + i) as u64, node: 0 },
                    reuse: None,
                    tokens: Arc::new(prompt),
                    n: self.samples,
                    max_new_tokens: self.max_new_tokens,
                    params: params.clone(),
                    seed: self.seed.wrapping_mul(1_000_003).wrapping_add((c * self.batch + i) as u64),
                });
            }
            let keys: Vec<PrefixKey> = reqs.iter().map(|r| r.key).collect();
            let outs = self.actor.expand(&reqs);
            self.actor.release(&keys);
            for (p, out) in chunk.iter().zip(outs) {
                let segs = out.map_err(|e| anyhow::anyhow!("eval of {}: {e}", p.id))?;
                let mut hit = false;
                for s in segs {
                    tokens += s.tokens.len();
                    let text = self.actor.decode(&s.tokens);
                    if verify_catching(verifier.as_ref(), p, &text) == Verdict::Correct {
                        correct += 1;
                        hit = true;
                    }
                }
                any += usize::from(hit);
            }
        }
        let n = self.problems.len().max(1);
        Ok(EvalResult {
            pass1: correct as f64 / (n * self.samples) as f64,
            pass_at_k: any as f64 / n as f64,
            tokens,
        })
    }
}
