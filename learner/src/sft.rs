//! Supervised fine-tuning on solution traces: bootstraps a tiny policy before RL (design,
//! "Embedded default": "if no base policy exists it first bootstraps one by SFT on generated easy
//! solutions"). Loss: token-mean negative log-likelihood of the response tokens (EOS included)
//! given the prompt; the same AdamW, chunked log-probs and clipping as the RL learner.

use crate::batch::TrainSample;
use crate::error::{LearnerError, Result};
use crate::optim::{AdamParams, AdamW};
use crate::step::micro_tensors;
use deepsearch_policy::logprobs::{token_logprobs, LogprobOptions};
use deepsearch_policy::PolicyModel;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;
use tch::Kind;

/// SFT knobs (`deepsearch sft`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    /// Peak learning rate. Default 3e-3 (tiny models from scratch).
    pub lr: f64,
    /// Warm-up updates. Default 20.
    pub warmup_steps: u64,
    /// Weight decay on ≥ 2-D weights. Default 0.1.
    pub weight_decay: f64,
    /// Gradient-norm clip. Default 1.0.
    pub grad_clip: f64,
    /// Sequences per update. Default 32.
    pub batch_size: usize,
    /// Passes over the data. Default 1.
    pub epochs: usize,
    /// Stop after this many updates (0 = no cap). Default 0.
    pub max_steps: u64,
    /// Stop after this much wall time in seconds (0 = no cap). Default 0.
    pub max_seconds: f64,
    /// Shuffle seed. Default 0.
    pub seed: u64,
    /// Log-prob chunk length. Default 256.
    pub logprob_chunk: i64,
    /// Learning rate at the end of training as a fraction of `lr`, reached by a cosine decay
    /// after the warm-up over the run's length (the larger of the time, update and epoch
    /// fractions done). Default 1.0 (constant).
    pub decay_to: f64,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            lr: 3e-3,
            warmup_steps: 20,
            weight_decay: 0.1,
            grad_clip: 1.0,
            batch_size: 32,
            epochs: 1,
            max_steps: 0,
            max_seconds: 0.0,
            seed: 0,
            logprob_chunk: 256,
            decay_to: 1.0,
        }
    }
}

/// One supervised example: prompt and response token ids (append EOS to the response yourself).
#[derive(Clone, Debug, PartialEq)]
pub struct SftExample {
    pub prompt: Vec<i64>,
    pub response: Vec<i64>,
}

/// Outcome of [`train_sft`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SftReport {
    pub updates: u64,
    pub first_loss: f64,
    pub last_loss: f64,
    pub tokens: usize,
    pub seconds: f64,
}

/// Reads a JSONL file of `{"prompt": str, "response": str}` lines and tokenises them with the
/// model's tokenizer (prompt via [`deepsearch_policy::PolicyTokenizer::encode_prompt`], response
/// plus the first EOS id). Errors name the file and line.
pub fn read_examples(path: &Path, model: &PolicyModel) -> Result<Vec<SftExample>> {
    let text = std::fs::read_to_string(path).map_err(|e| LearnerError::io(path, e))?;
    let eos = *model.eos_ids.first().ok_or_else(|| LearnerError::InvalidArgument {
        arg: "model".into(),
        msg: "the model has no EOS id".into(),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let field = |f: &str| LearnerError::Format {
            path: path.to_path_buf(),
            field: format!("line {}: {f}", i + 1),
            msg: "missing string field".into(),
        };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| LearnerError::Format {
            path: path.to_path_buf(),
            field: format!("line {}", i + 1),
            msg: e.to_string(),
        })?;
        let prompt = v
            .get("prompt")
            .and_then(|p| p.as_str())
            .ok_or_else(|| field("prompt"))?;
        let response = v
            .get("response")
            .and_then(|p| p.as_str())
            .ok_or_else(|| field("response"))?;
        let p = model.tokenizer.encode_prompt(prompt)?;
        let mut r = model.tokenizer.encode(response, false)?;
        r.push(eos);
        model.check_token_ids(&p)?;
        model.check_token_ids(&r)?;
        if p.is_empty() || p.len() + r.len() > model.cfg.max_position_embeddings as usize {
            return Err(LearnerError::Format {
                path: path.to_path_buf(),
                field: format!("line {}", i + 1),
                msg: "empty prompt or longer than the model context".into(),
            });
        }
        out.push(SftExample { prompt: p, response: r });
    }
    Ok(out)
}

/// Cosine decay from `peak` (progress 0) to `peak · end_fraction` (progress ≥ 1).
pub fn cosine_lr(peak: f64, end_fraction: f64, progress: f64) -> f64 {
    let p = progress.clamp(0.0, 1.0);
    peak * (end_fraction + (1.0 - end_fraction) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
}

/// Trains `model` on `examples`; `on_log(update, loss)` is called after every update.
pub fn train_sft(
    model: &mut PolicyModel,
    examples: &[SftExample],
    cfg: &SftConfig,
    mut on_log: impl FnMut(u64, f64),
) -> Result<SftReport> {
    if examples.is_empty() || cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(LearnerError::InvalidArgument {
            arg: "sft".into(),
            msg: "need examples, batch_size > 0 and epochs > 0".into(),
        });
    }
    let hp = AdamParams {
        lr: cfg.lr,
        warmup_steps: cfg.warmup_steps,
        weight_decay: cfg.weight_decay,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let mut opt = AdamW::new(&model.vs, hp);
    let samples: Vec<TrainSample> = examples
        .iter()
        .map(|e| TrainSample {
            group: 0,
            prompt: e.prompt.clone(),
            response: e.response.clone(),
            advantages: vec![1.0; e.response.len()],
            sampling_logprobs: None,
            policy_version: 0,
        })
        .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let opts = LogprobOptions {
        chunk_len: cfg.logprob_chunk,
        entropy: false,
    };
    let start = Instant::now();
    let mut rep = SftReport::default();
    let per_epoch = samples.len().div_ceil(cfg.batch_size) as f64;
    'outer: for epoch in 0..cfg.epochs {
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.shuffle(&mut rng);
        for (bi, idx) in order.chunks(cfg.batch_size).enumerate() {
            if cfg.decay_to < 1.0 && rep.updates >= cfg.warmup_steps {
                let mut done = (epoch as f64 * per_epoch + bi as f64) / (cfg.epochs as f64 * per_epoch);
                if cfg.max_seconds > 0.0 {
                    done = done.max(start.elapsed().as_secs_f64() / cfg.max_seconds);
                }
                if cfg.max_steps > 0 {
                    done = done.max(rep.updates as f64 / cfg.max_steps as f64);
                }
                opt.hp.lr = cosine_lr(cfg.lr, cfg.decay_to, done);
            }
            let n_tokens: usize = idx.iter().map(|&i| samples[i].response.len()).sum();
            let w = |_len: usize| 1.0 / n_tokens as f64;
            let mt = micro_tensors(&samples, idx, &w, model.device);
            opt.zero_grad();
            let logp = token_logprobs(&model.model, &mt.ids, &mt.mask, opts)?.logprobs;
            let loss = -(logp * &mt.weight).sum(Kind::Float);
            loss.backward();
            let grads = opt.grads();
            opt.clip_grad_norm(&grads, cfg.grad_clip);
            opt.step();
            // host/device sync: the loss for the log
            let l = loss.double_value(&[]);
            if rep.updates == 0 {
                rep.first_loss = l;
            }
            rep.updates += 1;
            rep.last_loss = l;
            rep.tokens += mt.tokens;
            on_log(rep.updates, l);
            if (cfg.max_steps > 0 && rep.updates >= cfg.max_steps)
                || (cfg.max_seconds > 0.0 && start.elapsed().as_secs_f64() >= cfg.max_seconds)
            {
                break 'outer;
            }
        }
    }
    rep.seconds = start.elapsed().as_secs_f64();
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::cosine_lr;

    #[test]
    fn cosine_decay_by_hand() {
        assert_eq!(cosine_lr(1.0, 0.1, 0.0), 1.0);
        // halfway: 0.1 + 0.9 · 0.5 · (1 + cos(π/2)) = 0.55
        assert!((cosine_lr(1.0, 0.1, 0.5) - 0.55).abs() < 1e-12);
        assert!((cosine_lr(2.0, 0.1, 1.0) - 0.2).abs() < 1e-12);
        assert!((cosine_lr(2.0, 0.1, 7.0) - 0.2).abs() < 1e-12);
        assert_eq!(cosine_lr(3e-3, 1.0, 0.3), 3e-3);
    }
}
