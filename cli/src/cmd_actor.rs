//! `deepsearch actor --config FILE [--set k=v]... [--metrics-listen ADDR]`: one search actor
//! (issue #6 item 3) on the real policy. The file and the `--set`s are layered over the defaults
//! ([`crate::config_load`]); with `actor.metrics_listen` the actor serves Prometheus `/metrics`.
//!
//! The config file (TOML) has a `[model]` section (HF folder, device, dtype, engine knobs, prompt
//! template) and an `[actor]` section (`deepsearch_search::runtime::ActorConfig`: peers,
//! capacity, `[actor.search]`, deadlines). The runtime is generic; this file is the glue that
//! makes the generation engine an actor policy: [`EngineActor`] (sampling through the engine,
//! prompts through the tokenizer and chat template, weight swaps into the model's `VarStore`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use deepsearch_policy::checkpoint::{parse_dtype, PolicyModel};
use deepsearch_policy::device::parse_device;
use deepsearch_policy::engine::{Engine, EngineConfig, TokenDecoder};
use deepsearch_policy::search_policy::EnginePolicy;
use deepsearch_policy::tokenizer::PolicyTokenizer;
use deepsearch_search::policy::{ExpandRequest, Policy, PolicyError, PrefixKey, Segment};
use deepsearch_search::runtime::{
    run_actor, ActorConfig, ActorDeps, ActorMetrics, ActorPolicy, PromptEncoder, Reloadable,
};
use deepsearch_tasks::prompt::PromptConfig;
use deepsearch_tasks::{Problem, VerifierPool};
use serde::{Deserialize, Serialize};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Actor config (TOML with `[model]` and `[actor]` sections).
    #[arg(long)]
    config: PathBuf,
    /// Override one config key, e.g. `--set actor.capacity=4` (repeatable; applied in order).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Prometheus /metrics address; overrides `actor.metrics_listen`.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// The model an actor serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Hugging Face Qwen2 folder (config.json, model.safetensors, tokenizer.json). Required.
    pub dir: PathBuf,
    /// `cpu`, `cuda` or `cuda:N`. Default "cpu".
    pub device: String,
    /// Parameter dtype: `f32`, `bf16` or `f16`. Default "f32".
    pub dtype: String,
    /// Generation engine knobs (prefix cache budget, context). Default: `EngineConfig` defaults.
    pub engine: EngineConfig,
    /// How a problem becomes the root text (suffix, system message, chat template).
    pub prompt: PromptConfig,
    /// Policy version of the weights in `dir`. Default 0 (the base model).
    pub version: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            dir: PathBuf::new(),
            device: "cpu".into(),
            dtype: "f32".into(),
            engine: EngineConfig::default(),
            prompt: PromptConfig::default(),
            version: 0,
        }
    }
}

/// The whole `deepsearch actor` config file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActorFileConfig {
    pub model: ModelConfig,
    pub actor: ActorConfig,
}

impl ActorFileConfig {
    /// Reads a TOML file with `--set` overrides over the defaults ([`crate::config_load`]) and
    /// validates it; errors name the file and the field.
    pub fn load(path: &Path, sets: &[String]) -> anyhow::Result<Self> {
        let cfg: ActorFileConfig = crate::config_load::load(Some(path), sets)?;
        if cfg.model.dir.as_os_str().is_empty() {
            anyhow::bail!("{}: `model.dir` is required", path.display());
        }
        cfg.actor
            .validate()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(cfg)
    }
}

/// The tokenizer as the engine's detokenizer; ids past the tokenizer (a padded embedding)
/// decode to nothing.
pub(crate) fn decoder(tok: PolicyTokenizer) -> Arc<dyn TokenDecoder> {
    let size = tok.vocab_size() as i64;
    Arc::new(move |ids: &[u32]| {
        let ids: Vec<i64> = ids
            .iter()
            .map(|&i| i as i64)
            .filter(|&i| i < size)
            .collect();
        tok.decode(&ids, true)
            .unwrap_or_else(|e| format!("<undecodable: {e}>"))
    })
}

/// The generation engine as an actor policy.
pub(crate) struct EngineActor {
    policy: EnginePolicy,
    vs: tch::nn::VarStore,
    tokenizer: PolicyTokenizer,
    prompt: PromptConfig,
}

impl EngineActor {
    /// Wraps a loaded model.
    pub(crate) fn new(pm: PolicyModel, engine: EngineConfig, prompt: PromptConfig) -> Self {
        let PolicyModel {
            vs,
            model,
            tokenizer,
            eos_ids,
            device,
            ..
        } = pm;
        let engine =
            Engine::new(model, device, &eos_ids, engine).with_decoder(decoder(tokenizer.clone()));
        EngineActor {
            policy: EnginePolicy::new(engine),
            vs,
            tokenizer,
            prompt,
        }
    }

    /// Loads `cfg.dir` on `cfg.device` in `cfg.dtype`.
    pub(crate) fn load(cfg: &ModelConfig) -> anyhow::Result<Self> {
        let device = parse_device(&cfg.device)?;
        let dtype = parse_dtype(&cfg.dtype)?;
        let pm = PolicyModel::load(&cfg.dir, device, dtype)
            .with_context(|| format!("loading the model from {}", cfg.dir.display()))?;
        Ok(Self::new(pm, cfg.engine.clone(), cfg.prompt.clone()))
    }
}

impl Policy for EngineActor {
    fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
        self.policy.expand(reqs)
    }
    fn release(&mut self, keys: &[PrefixKey]) {
        self.policy.release(keys)
    }
    fn decode(&self, tokens: &[u32]) -> String {
        self.policy.decode(tokens)
    }
    fn max_context(&self) -> usize {
        self.policy.max_context()
    }
}

impl PromptEncoder for EngineActor {
    fn encode_prompt(&self, problem: &Problem) -> Result<Vec<u32>, String> {
        let user = self.prompt.user_message(problem);
        let text = if self.prompt.use_chat_template {
            self.tokenizer
                .prompt_text(&user)
                .map_err(|e| e.to_string())?
        } else {
            user
        };
        let ids = self
            .tokenizer
            .encode(&text, false)
            .map_err(|e| e.to_string())?;
        ids.into_iter()
            .map(|i| u32::try_from(i).map_err(|_| format!("negative token id {i}")))
            .collect()
    }
}

impl Reloadable for EngineActor {
    /// Parses the safetensors file and swaps every parameter in through
    /// `deepsearch_learner::weights::apply`, which checks every name and shape before copying.
    fn load_safetensors(&mut self, bytes: &[u8], version: u64) -> Result<(), String> {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| format!("not a safetensors file: {e}"))?;
        let mut tensors = Vec::with_capacity(st.len());
        for (name, view) in st.tensors() {
            let kind = match view.dtype() {
                safetensors::Dtype::F32 => tch::Kind::Float,
                safetensors::Dtype::BF16 => tch::Kind::BFloat16,
                safetensors::Dtype::F16 => tch::Kind::Half,
                other => return Err(format!("tensor `{name}`: unsupported dtype {other:?}")),
            };
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let t = tch::Tensor::f_from_data_size(view.data(), &shape, kind)
                .map_err(|e| format!("tensor `{name}`: {e}"))?;
            tensors.push((name, t));
        }
        deepsearch_learner::weights::apply(&self.vs, &tensors).map_err(|e| e.to_string())?;
        tracing::info!(version, tensors = tensors.len(), "policy weights loaded");
        Ok(())
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = ActorFileConfig::load(&args.config, &args.set)?;
    if args.metrics_listen.is_some() {
        cfg.actor.metrics_listen = args.metrics_listen;
    }
    let verifiers = VerifierPool::new(&cfg.actor.verifier).context("starting the verifier pool")?;
    let model = cfg.model.clone();
    let deps = ActorDeps {
        policy: Box::new(move || {
            let p: Box<dyn ActorPolicy> =
                Box::new(EngineActor::load(&model).map_err(|e| format!("{e:#}"))?);
            Ok(p)
        }),
        verifiers,
        metrics: Arc::new(ActorMetrics::default()),
        initial_version: cfg.model.version,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let snap = rt.block_on(run_actor(cfg.actor, deps, crate::config_load::shutdown_signal()))?;
    tracing::info!(
        batches = snap.batches,
        trees = snap.trees,
        trajectories_queued = snap.trajectories_queued,
        trajectories_acked = snap.trajectories_acked,
        weight_swaps = snap.weight_swaps,
        policy_version = snap.policy_version,
        "actor finished"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_parses_and_names_bad_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("actor.toml");
        std::fs::write(
            &p,
            "[model]\ndir = \"m\"\n\n[actor]\ncapacity = 2\nrpc_timeout = \"3s\"\n\n[actor.search]\nsegment_tokens = 16\n\n[actor.search.overlong]\nbuffer_tokens = 256\n",
        )
        .unwrap();
        let c = ActorFileConfig::load(&p, &[]).unwrap();
        assert_eq!((c.actor.capacity, c.actor.search.segment_tokens), (2, 16));
        assert_eq!(c.model.device, "cpu");
        std::fs::write(&p, "[model]\ndir = \"m\"\n[actor]\ncapacty = 2\n").unwrap();
        let e = format!("{:#}", ActorFileConfig::load(&p, &[]).unwrap_err());
        assert!(e.contains("capacty") && e.contains("actor.toml"), "{e}");
        std::fs::write(&p, "[model]\ndir = \"m\"\n[actor]\ncapacity = 0\n").unwrap();
        let e = format!("{:#}", ActorFileConfig::load(&p, &[]).unwrap_err());
        assert!(e.contains("capacity"), "{e}");
        let sets = ["actor.capacity=3".to_string(), "actor.search.max_depth=20".to_string()];
        let c = ActorFileConfig::load(&p, &sets).unwrap();
        assert_eq!((c.actor.capacity, c.actor.search.max_depth), (3, 20));
        assert_eq!(c.actor.search.segment_tokens, ActorConfig::default().search.segment_tokens);
        assert_eq!(c.actor.rpc_timeout, ActorConfig::default().rpc_timeout);
    }

    fn tiny(seed: u64, hidden: i64) -> PolicyModel {
        let tok = PolicyTokenizer::char_level("0123456789+-*/=> \n").unwrap();
        let mut cfg = deepsearch_policy::config::Qwen2Config::tiny(tok.vocab_size() as i64);
        cfg.hidden_size = hidden;
        PolicyModel::init_random(&cfg, tok, seed).unwrap()
    }

    /// A seeded sample: its tokens and log-probs (the log-probs tell two tiny models apart).
    fn sample(p: &mut EngineActor) -> (Vec<u32>, Vec<f32>) {
        let problem = Problem::new("p", "countdown", "3 4 > 7\n", "");
        let tokens = Arc::new(p.encode_prompt(&problem).unwrap());
        let params = Arc::new(deepsearch_search::SamplingParams::default());
        let req = ExpandRequest {
            key: PrefixKey { tree: 0, node: 0 },
            reuse: None,
            tokens,
            n: 1,
            max_new_tokens: 12,
            params,
            seed: 1,
        };
        let out = p.expand(&[req]).pop().unwrap().unwrap().pop().unwrap();
        p.release(&[PrefixKey { tree: 0, node: 0 }]);
        (out.tokens, out.logprobs)
    }

    #[test]
    fn weights_swap_in_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let save = |pm: &PolicyModel, name: &str| {
            let d = dir.path().join(name);
            pm.save(&d, &deepsearch_policy::SaveOptions::default())
                .unwrap();
            std::fs::read(d.join("model.safetensors")).unwrap()
        };
        let b_bytes = save(&tiny(2, 64), "b");
        let other_shape = save(&tiny(3, 32), "c");
        let mut a = EngineActor::new(
            tiny(1, 64),
            EngineConfig::default(),
            PromptConfig::default(),
        );
        let mut b = EngineActor::new(
            tiny(2, 64),
            EngineConfig::default(),
            PromptConfig::default(),
        );
        let (before, want) = (sample(&mut a), sample(&mut b));
        assert_ne!(before, want, "two random models should disagree");
        // a file of another architecture is refused and the model is untouched
        let e = a.load_safetensors(&other_shape, 5).unwrap_err();
        assert!(e.contains("shape"), "{e}");
        assert!(a.load_safetensors(b"not safetensors", 5).is_err());
        assert_eq!(sample(&mut a), before);
        // B's file turns A into B
        a.load_safetensors(&b_bytes, 6).unwrap();
        assert_eq!(sample(&mut a), want);
    }
}
