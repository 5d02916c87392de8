//! The model configuration, read from a Hugging Face `config.json` (Qwen2 architecture) and
//! `generation_config.json`. Unknown fields are ignored (HF configs carry many); the fields the
//! forward pass needs are validated with errors that name the file and the field.

use crate::error::{PolicyError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Qwen2 hyper-parameters, with HF field names so the file round-trips.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Qwen2Config {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: i64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Per-head dimension; HF derives it as hidden_size / num_attention_heads when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<i64>,
    /// An id or a list of ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<serde_json::Value>,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
}

fn default_max_pos() -> i64 {
    32768
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_rms_eps() -> f64 {
    1e-6
}
fn default_act() -> String {
    "silu".into()
}
fn default_init_range() -> f64 {
    0.02
}

/// Reads and parses a JSON file, naming it in errors.
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| PolicyError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text)
        .map_err(|e| PolicyError::Json { path: path.to_path_buf(), msg: e.to_string() })
}

/// Extracts a list of ids from a JSON id-or-list value.
pub(crate) fn ids_of(v: &serde_json::Value) -> Vec<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().into_iter().collect(),
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_i64()).collect(),
        _ => Vec::new(),
    }
}

/// Maps the newer transformers (>= 5) spellings onto the fields this struct reads, and rejects
/// variants the forward pass does not implement (scaled RoPE, sliding-window attention) instead
/// of silently running a different model.
fn normalize_hf_fields(
    path: &Path,
    obj: &serde_json::Map<String, serde_json::Value>,
    value: &mut serde_json::Value,
) -> Result<()> {
    let unsupported = |field: &str, msg: String| PolicyError::Config {
        path: path.to_path_buf(),
        field: field.into(),
        msg,
    };
    // transformers 5 writes `rope_parameters: {rope_theta, rope_type}`; older ones `rope_theta`
    // plus an optional `rope_scaling`.
    for field in ["rope_parameters", "rope_scaling"] {
        let Some(rope) = obj.get(field).filter(|v| !v.is_null()) else { continue };
        let kind = rope.get("rope_type").or_else(|| rope.get("type")).and_then(|t| t.as_str());
        if let Some(kind) = kind.filter(|k| *k != "default") {
            return Err(unsupported(field, format!("rope type `{kind}` is not supported (only default)")));
        }
        if let Some(theta) = rope.get("rope_theta").filter(|_| !obj.contains_key("rope_theta")) {
            value["rope_theta"] = theta.clone();
        }
    }
    if obj.get("use_sliding_window").and_then(|v| v.as_bool()) == Some(true) {
        return Err(unsupported("use_sliding_window", "sliding-window attention is not supported".into()));
    }
    if let Some(types) = obj.get("layer_types").and_then(|v| v.as_array()) {
        if let Some(t) = types.iter().find(|t| t.as_str() != Some("full_attention")) {
            return Err(unsupported("layer_types", format!("layer type {t} is not supported")));
        }
    }
    // transformers 5 renamed `torch_dtype` to `dtype`.
    if !obj.contains_key("torch_dtype") {
        if let Some(d) = obj.get("dtype") {
            value["torch_dtype"] = d.clone();
        }
    }
    Ok(())
}

/// Checks the JSON type of every field this struct reads, so an ill-typed field is named in
/// the error (serde's own message does not say which field failed).
fn check_field_types(path: &Path, value: &serde_json::Value) -> Result<()> {
    use serde_json::Value as V;
    let int = |v: &V| v.is_i64();
    let num = |v: &V| v.is_number();
    /// (field, expected type in words, type test, may be null)
    type FieldCheck<'a> = (&'a str, &'a str, &'a dyn Fn(&V) -> bool, bool);
    let checks: [FieldCheck<'_>; 15] = [
        ("vocab_size", "an integer", &int, false),
        ("hidden_size", "an integer", &int, false),
        ("intermediate_size", "an integer", &int, false),
        ("num_hidden_layers", "an integer", &int, false),
        ("num_attention_heads", "an integer", &int, false),
        ("num_key_value_heads", "an integer", &int, false),
        ("max_position_embeddings", "an integer", &int, false),
        ("head_dim", "an integer", &int, true),
        ("bos_token_id", "an integer", &int, true),
        ("rope_theta", "a number", &num, false),
        ("rms_norm_eps", "a number", &num, false),
        ("initializer_range", "a number", &num, false),
        ("tie_word_embeddings", "a boolean", &|v: &V| v.is_boolean(), false),
        ("hidden_act", "a string", &|v: &V| v.is_string(), false),
        ("torch_dtype", "a string", &|v: &V| v.is_string(), true),
    ];
    for (field, what, ok, nullable) in checks {
        match value.get(field) {
            None => {}
            Some(V::Null) if nullable => {}
            Some(v) if ok(v) => {}
            Some(v) => {
                return Err(PolicyError::Config {
                    path: path.to_path_buf(),
                    field: field.into(),
                    msg: format!("expected {what}, got {v}"),
                })
            }
        }
    }
    if let Some(eos) = value.get("eos_token_id") {
        let ok = eos.is_null() || eos.is_i64() || eos.as_array().is_some_and(|a| a.iter().all(|x| x.is_i64()));
        if !ok {
            return Err(PolicyError::Config {
                path: path.to_path_buf(),
                field: "eos_token_id".into(),
                msg: format!("expected an id or a list of ids, got {eos}"),
            });
        }
    }
    Ok(())
}

impl Qwen2Config {
    /// Loads `config.json`; every missing or ill-typed field is reported by name.
    pub fn from_file(path: &Path) -> Result<Self> {
        let value = read_json(path)?;
        let obj = value.as_object().ok_or_else(|| PolicyError::Json {
            path: path.to_path_buf(),
            msg: "expected a JSON object".into(),
        })?;
        for field in [
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
        ] {
            if !obj.contains_key(field) {
                return Err(PolicyError::Config {
                    path: path.to_path_buf(),
                    field: field.into(),
                    msg: "missing".into(),
                });
            }
        }
        let mut value = value.clone();
        // HF defaults num_key_value_heads to num_attention_heads when absent.
        if !obj.contains_key("num_key_value_heads") {
            value["num_key_value_heads"] = obj["num_attention_heads"].clone();
        }
        normalize_hf_fields(path, obj, &mut value)?;
        check_field_types(path, &value)?;
        let cfg: Qwen2Config = serde_json::from_value(value).map_err(|e| {
            let msg = e.to_string();
            let field = msg.split('`').nth(1).unwrap_or("?").to_string();
            PolicyError::Config { path: path.to_path_buf(), field, msg }
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks the shape constraints the forward pass relies on.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, msg: String| PolicyError::Config {
            path: path.to_path_buf(),
            field: field.into(),
            msg,
        };
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v <= 0 {
                return Err(bad(field, format!("must be positive, got {v}")));
            }
        }
        if self.head_dim.is_none() && self.hidden_size % self.num_attention_heads != 0 {
            return Err(bad(
                "hidden_size",
                format!(
                    "{} is not divisible by num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        if self.head_dim() % 2 != 0 {
            return Err(bad("head_dim", format!("{} must be even for RoPE", self.head_dim())));
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(bad(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            ));
        }
        if self.hidden_act != "silu" {
            return Err(bad("hidden_act", format!("only silu is supported, got {}", self.hidden_act)));
        }
        if !(self.rope_theta > 0.0) || !(self.rms_norm_eps > 0.0) {
            return Err(bad("rope_theta", "rope_theta and rms_norm_eps must be positive".into()));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> i64 {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// End-of-sequence ids declared in config.json.
    pub fn eos_ids(&self) -> Vec<i64> {
        self.eos_token_id.as_ref().map(ids_of).unwrap_or_default()
    }

    /// The 0.3M-parameter model `deepsearch train` bootstraps by SFT (hidden 96, 3 layers, 4
    /// heads, 2 KV heads; design.md: fast small models win at a few minutes on 2 cores).
    pub fn bootstrap(vocab_size: i64) -> Self {
        Qwen2Config {
            hidden_size: 96,
            intermediate_size: 256,
            num_hidden_layers: 3,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            max_position_embeddings: 512,
            ..Self::tiny(vocab_size)
        }
    }

    /// A small configuration for tests.
    pub fn tiny(vocab_size: i64) -> Self {
        Qwen2Config {
            vocab_size,
            hidden_size: 64,
            intermediate_size: 176,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            max_position_embeddings: 1024,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-6,
            tie_word_embeddings: true,
            hidden_act: "silu".into(),
            head_dim: None,
            bos_token_id: None,
            eos_token_id: None,
            initializer_range: 0.02,
            torch_dtype: Some("float32".into()),
        }
    }
}

/// The parts of `generation_config.json` the engine uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationConfig {
    pub eos_token_ids: Vec<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
}

impl GenerationConfig {
    /// Reads `generation_config.json` if present (it is optional in HF folders).
    pub fn from_file(path: &Path) -> Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let v = read_json(path)?;
        Ok(Some(GenerationConfig {
            eos_token_ids: v.get("eos_token_id").map(ids_of).unwrap_or_default(),
            temperature: v.get("temperature").and_then(|x| x.as_f64()),
            top_p: v.get("top_p").and_then(|x| x.as_f64()),
            top_k: v.get("top_k").and_then(|x| x.as_i64()),
        }))
    }
}
