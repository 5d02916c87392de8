//! `deepsearch generate`: sample continuations of one prompt from a Hugging Face Qwen2 folder with
//! the search actors' engine (same sampler, same log-probs and entropies), for smoke tests and
//! for comparing against transformers.
//!
//! With `--json`, one object per sample on stdout: `{"tokens", "logprobs", "entropies", "text",
//! "finish"}`; tokens are the new ids only, logprobs are ln π(token) under the model at
//! temperature 1, entropies are in nats.

use anyhow::Context;
use deepsearch_policy::checkpoint::{parse_dtype, PolicyModel};
use deepsearch_policy::device::parse_device;
use deepsearch_policy::engine::{Engine, EngineConfig, GenRequest, SamplingParams, TokenDecoder};
use deepsearch_policy::tokenizer::PolicyTokenizer;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Hugging Face folder: config.json, model.safetensors, tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// Prompt text (encoded without special tokens; no chat template is applied).
    #[arg(long, conflicts_with = "prompt_ids", required_unless_present = "prompt_ids")]
    prompt: Option<String>,
    /// Prompt as comma-separated token ids, e.g. 1,2,3.
    #[arg(long, value_delimiter = ',')]
    prompt_ids: Option<Vec<u32>>,
    #[arg(long)]
    max_new_tokens: usize,
    /// 0 decodes greedily.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Stop strings (repeatable); the sample ends right after one appears.
    #[arg(long)]
    stop: Vec<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 1)]
    num_samples: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32 | bf16 | f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// One JSON object per sample instead of text.
    #[arg(long)]
    json: bool,
}

/// The tokenizer as the engine's detokenizer; ids above the tokenizer's vocabulary (a padded
/// embedding) decode to nothing.
fn decoder(tok: PolicyTokenizer) -> Arc<dyn TokenDecoder> {
    let size = tok.vocab_size() as i64;
    Arc::new(move |ids: &[u32]| {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).filter(|&i| i < size).collect();
        tok.decode(&ids, true).unwrap_or_else(|e| format!("<undecodable: {e}>"))
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    let dtype = parse_dtype(&args.dtype)?;
    let pm = PolicyModel::load(&args.model, device, dtype)
        .with_context(|| format!("loading the model from {}", args.model.display()))?;
    let prompt: Vec<u32> = match (&args.prompt, &args.prompt_ids) {
        (Some(text), _) => pm
            .tokenizer
            .encode(text, false)?
            .into_iter()
            .map(|i| u32::try_from(i).context("tokenizer returned a negative id"))
            .collect::<anyhow::Result<_>>()?,
        (None, Some(ids)) => ids.clone(),
        (None, None) => anyhow::bail!("give --prompt or --prompt-ids"),
    };
    let PolicyModel { model, tokenizer, eos_ids, .. } = pm;
    let dec = decoder(tokenizer);
    let mut engine = Engine::new(model, device, &eos_ids, EngineConfig::default()).with_decoder(dec.clone());
    let params = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        stop: args.stop.clone(),
    };
    let req = GenRequest {
        key: None,
        reuse: None,
        tokens: &prompt,
        n: args.num_samples,
        max_new_tokens: args.max_new_tokens,
        params: &params,
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    let segments = engine.generate(&[req]).pop().expect("one result per request")?;
    let generated: usize = segments.iter().map(|s| s.tokens.len()).sum();
    tracing::info!(
        samples = segments.len(),
        generated,
        secs = started.elapsed().as_secs_f64(),
        "generation done"
    );
    for (i, seg) in segments.iter().enumerate() {
        let text = dec.decode(&seg.tokens);
        if args.json {
            let obj = serde_json::json!({
                "tokens": seg.tokens,
                "logprobs": seg.logprobs,
                "entropies": seg.entropies,
                "text": text,
                "finish": seg.finish,
            });
            println!("{obj}");
        } else {
            if args.num_samples > 1 {
                println!("--- sample {i} ({:?}) ---", seg.finish);
            }
            println!("{text}");
        }
    }
    Ok(())
}
