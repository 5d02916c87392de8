//! A policy as a Hugging Face folder: `config.json`, `model.safetensors` (or shards with
//! `model.safetensors.index.json`), `tokenizer.json` (+ `tokenizer_config.json`) and
//! `generation_config.json`. [`PolicyModel::load`] reads one into a `VarStore` of the chosen
//! device and dtype; [`PolicyModel::save`] writes the same layout, loadable by transformers
//! (design: "a checkpoint the learner writes loads in transformers and vLLM unchanged");
//! [`PolicyModel::init_random`] creates a fresh tiny model (the embedded default's, tests').
//!
//! Load order is cheap-to-expensive so bad input fails fast: config, tokenizer (its size must
//! not exceed `vocab_size`; HF pads `vocab_size` above the tokenizer), generation config, then
//! the weights (see [`crate::weights`] for what is accepted).

use crate::config::{read_json, GenerationConfig, Qwen2Config};
use crate::error::{PolicyError, Result};
use crate::model::Qwen2;
use crate::tokenizer::PolicyTokenizer;
use crate::weights;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::path::Path;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// Default shard size of [`SaveOptions`]: 5 GB, transformers' `max_shard_size` default.
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;

/// A loaded policy: weights, architecture, tokenizer and stop tokens.
#[derive(Debug)]
pub struct PolicyModel {
    /// Owns the parameters (HF names); the learner optimises these.
    pub vs: VarStore,
    pub model: Qwen2,
    pub cfg: Qwen2Config,
    pub tokenizer: PolicyTokenizer,
    pub generation: GenerationConfig,
    /// Generation stops at any of these: `generation_config.json`'s `eos_token_id`, else
    /// `config.json`'s, else the tokenizer's `eos_token`.
    pub eos_ids: Vec<i64>,
    pub device: Device,
    /// Parameter dtype (`Kind::Float`, `Kind::BFloat16` or `Kind::Half`).
    pub dtype: Kind,
    /// `config.json` / `generation_config.json` as read, so fields this crate does not model
    /// survive a save.
    raw_config: Value,
    raw_generation: Value,
}

/// How [`PolicyModel::save`] writes weights.
#[derive(Clone, Debug, PartialEq)]
pub struct SaveOptions {
    /// Dtype of the saved tensors; `None` (default) keeps the model's.
    pub dtype: Option<Kind>,
    /// Past this many bytes of tensors the weights are sharded (default 5 GB).
    pub max_shard_bytes: u64,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions { dtype: None, max_shard_bytes: DEFAULT_MAX_SHARD_BYTES }
    }
}

/// Parses a dtype name: `float32`/`f32`, `bfloat16`/`bf16`, `float16`/`f16`.
pub fn parse_dtype(s: &str) -> Result<Kind> {
    match s.trim() {
        "float32" | "f32" | "float" => Ok(Kind::Float),
        "bfloat16" | "bf16" => Ok(Kind::BFloat16),
        "float16" | "f16" | "half" => Ok(Kind::Half),
        other => Err(PolicyError::InvalidArgument {
            arg: "dtype".into(),
            msg: format!("unknown dtype `{other}` (expected float32, bfloat16 or float16)"),
        }),
    }
}

/// The HF (`torch_dtype`) name of a parameter dtype.
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        Kind::Double => "float64",
        _ => "float32",
    }
}

fn check_param_dtype(dtype: Kind) -> Result<()> {
    match dtype {
        Kind::Float | Kind::BFloat16 | Kind::Half => Ok(()),
        other => Err(PolicyError::InvalidArgument {
            arg: "dtype".into(),
            msg: format!("{other:?} is not a parameter dtype (float32, bfloat16, float16)"),
        }),
    }
}

/// Checks that every id is a valid row of a `vocab`-row embedding; callers run it before
/// [`Qwen2::forward`] (an out-of-range id would otherwise abort inside libtorch).
pub fn check_token_ids(ids: &[i64], vocab: i64) -> Result<()> {
    match ids.iter().find(|&&id| id < 0 || id >= vocab) {
        Some(&id) => Err(PolicyError::TokenOutOfRange { id, vocab }),
        None => Ok(()),
    }
}

fn check_tokenizer_fits(tok: &PolicyTokenizer, cfg: &Qwen2Config, dir: &Path) -> Result<()> {
    let size = tok.vocab_size() as i64;
    if size > cfg.vocab_size {
        return Err(PolicyError::Tokenizer {
            path: dir.join("tokenizer.json"),
            msg: format!(
                "vocabulary of {size} ids exceeds `vocab_size` {} in {}",
                cfg.vocab_size,
                dir.join("config.json").display()
            ),
        });
    }
    Ok(())
}

fn resolve_eos(gen: &GenerationConfig, cfg: &Qwen2Config, tok: &PolicyTokenizer) -> Vec<i64> {
    let mut ids = if !gen.eos_token_ids.is_empty() {
        gen.eos_token_ids.clone()
    } else if !cfg.eos_ids().is_empty() {
        cfg.eos_ids()
    } else {
        tok.eos_token_id().into_iter().collect()
    };
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl PolicyModel {
    /// Loads a Hugging Face Qwen2 folder onto `device` with parameters in `dtype`.
    pub fn load(dir: &Path, device: Device, dtype: Kind) -> Result<Self> {
        check_param_dtype(dtype)?;
        let config_path = dir.join("config.json");
        let cfg = Qwen2Config::from_file(&config_path)?;
        let raw_config = read_json(&config_path)?;
        let tokenizer = PolicyTokenizer::from_dir(dir)?;
        check_tokenizer_fits(&tokenizer, &cfg, dir)?;
        let gen_path = dir.join("generation_config.json");
        let generation = GenerationConfig::from_file(&gen_path)?.unwrap_or_default();
        let raw_generation = if gen_path.exists() { read_json(&gen_path)? } else { json!({}) };
        if !raw_generation.is_object() {
            return Err(PolicyError::Json { path: gen_path, msg: "expected a JSON object".into() });
        }
        let eos_ids = resolve_eos(&generation, &cfg, &tokenizer);
        if let Some(&bad) = eos_ids.iter().find(|&&id| id < 0 || id >= cfg.vocab_size) {
            return Err(PolicyError::Config {
                path: gen_path,
                field: "eos_token_id".into(),
                msg: format!("id {bad} is outside the vocabulary of {}", cfg.vocab_size),
            });
        }
        let mut vs = VarStore::new(device);
        let model = tch::no_grad(|| Qwen2::new(&vs.root(), &cfg));
        if dtype != Kind::Float {
            vs.set_kind(dtype);
        }
        weights::load_into(&vs, dir, cfg.tie_word_embeddings)?;
        tracing::info!(
            dir = %dir.display(),
            ?device,
            dtype = dtype_name(dtype),
            layers = cfg.num_hidden_layers,
            hidden = cfg.hidden_size,
            vocab = cfg.vocab_size,
            "loaded policy checkpoint"
        );
        Ok(PolicyModel {
            vs,
            model,
            cfg,
            tokenizer,
            generation,
            eos_ids,
            device,
            dtype,
            raw_config,
            raw_generation,
        })
    }

    /// [`Self::load`] with the device (`cpu`, `cuda`, `cuda:N`) and dtype as strings.
    pub fn load_with(dir: &Path, device: &str, dtype: &str) -> Result<Self> {
        let device = crate::device::parse_device(device)?;
        Self::load(dir, device, parse_dtype(dtype)?)
    }

    /// A freshly initialised model on CPU in f32, as HF initialises Qwen2 (normal(0,
    /// `initializer_range`) weights, unit norms, zero biases), drawn from a ChaCha RNG seeded
    /// by `seed` (so independent of libtorch's global RNG and of other threads). EOS is the
    /// tokenizer's `eos_token`.
    pub fn init_random(cfg: &Qwen2Config, tokenizer: PolicyTokenizer, seed: u64) -> Result<Self> {
        let origin = Path::new("<init_random>");
        cfg.validate(origin)?;
        check_tokenizer_fits(&tokenizer, cfg, origin)?;
        let vs = VarStore::new(Device::Cpu);
        let model = tch::no_grad(|| Qwen2::new(&vs.root(), cfg));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, var) in &mut vars {
            let numel = var.numel();
            let values: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; numel]
            } else if name.ends_with(".bias") {
                vec![0.0; numel]
            } else {
                (0..numel).map(|_| normal(&mut rng) * cfg.initializer_range as f32).collect()
            };
            let t = Tensor::from_slice(&values).view(var.size().as_slice());
            tch::no_grad(|| var.f_copy_(&t))?;
        }
        let eos_ids: Vec<i64> = tokenizer.eos_token_id().into_iter().collect();
        let generation = GenerationConfig { eos_token_ids: eos_ids.clone(), ..Default::default() };
        Ok(PolicyModel {
            vs,
            model,
            cfg: cfg.clone(),
            tokenizer,
            generation,
            eos_ids,
            device: Device::Cpu,
            dtype: Kind::Float,
            raw_config: json!({}),
            raw_generation: json!({}),
        })
    }

    /// Checks ids against this model's vocabulary (see [`check_token_ids`]).
    pub fn check_token_ids(&self, ids: &[i64]) -> Result<()> {
        check_token_ids(ids, self.cfg.vocab_size)
    }

    /// Number of parameters.
    pub fn num_parameters(&self) -> i64 {
        self.vs.variables().values().map(|t| t.numel() as i64).sum()
    }

    /// Writes the folder (created if needed); every file is written atomically. With tied
    /// embeddings no `lm_head.weight` is written.
    pub fn save(&self, dir: &Path, opts: &SaveOptions) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PolicyError::Io { path: dir.to_path_buf(), source: e })?;
        let kind = opts.dtype.unwrap_or(self.dtype);
        check_param_dtype(kind)?;
        if opts.max_shard_bytes == 0 {
            return Err(PolicyError::InvalidArgument {
                arg: "max_shard_bytes".into(),
                msg: "must be positive".into(),
            });
        }
        weights::save_from(&self.vs, dir, kind, opts.max_shard_bytes)?;
        weights::write_json_atomic(&dir.join("config.json"), &self.config_json(kind)?)?;
        weights::write_json_atomic(&dir.join("generation_config.json"), &self.generation_json())?;
        self.tokenizer.save(dir, Some(self.cfg.max_position_embeddings))?;
        tracing::info!(dir = %dir.display(), dtype = dtype_name(kind), "saved policy checkpoint");
        Ok(())
    }

    /// `config.json`: the loaded file's fields, overwritten by this model's configuration.
    fn config_json(&self, kind: Kind) -> Result<Value> {
        let mut out = self.raw_config.clone();
        let ours = serde_json::to_value(&self.cfg).map_err(|e| PolicyError::Json {
            path: "config.json".into(),
            msg: e.to_string(),
        })?;
        let obj = out.as_object_mut().expect("config.json is an object");
        if let Value::Object(fields) = ours {
            obj.extend(fields);
        }
        obj.insert("architectures".into(), json!(["Qwen2ForCausalLM"]));
        obj.insert("model_type".into(), json!("qwen2"));
        obj.insert("torch_dtype".into(), json!(dtype_name(kind)));
        if obj.contains_key("dtype") {
            obj.insert("dtype".into(), json!(dtype_name(kind)));
        }
        if let Some(rope) = obj.get_mut("rope_parameters").and_then(|r| r.as_object_mut()) {
            rope.insert("rope_theta".into(), json!(self.cfg.rope_theta));
        }
        if self.cfg.eos_token_id.is_none() && !self.eos_ids.is_empty() {
            obj.insert("eos_token_id".into(), json!(self.eos_ids[0]));
        }
        obj.entry("use_cache").or_insert(json!(true));
        Ok(out)
    }

    /// `generation_config.json`: the loaded file's fields plus this model's stop tokens.
    fn generation_json(&self) -> Value {
        let mut out = self.raw_generation.clone();
        let obj = out.as_object_mut().expect("generation_config.json is an object");
        obj.insert("eos_token_id".into(), json!(self.eos_ids));
        if let Some(pad) = self.tokenizer.pad_token_id() {
            obj.entry("pad_token_id").or_insert(json!(pad));
        }
        if let Some(bos) = self.tokenizer.bos_token_id() {
            obj.entry("bos_token_id").or_insert(json!(bos));
        }
        out
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_id_check_and_dtype_names() {
        assert!(check_token_ids(&[0, 5, 9], 10).is_ok());
        let err = check_token_ids(&[3, 10], 10).unwrap_err().to_string();
        assert_eq!(err, "token id 10 out of range for vocabulary of 10");
        assert!(check_token_ids(&[-1], 10).is_err());
        assert_eq!(parse_dtype("bf16").unwrap(), Kind::BFloat16);
        assert_eq!(dtype_name(parse_dtype("float32").unwrap()), "float32");
        let err = parse_dtype("int8").unwrap_err().to_string();
        assert!(err.contains("unknown dtype `int8`"), "{err}");
    }
}
