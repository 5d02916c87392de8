//! The tokenizer of a policy: a Hugging Face `tokenizer.json` (through the `tokenizers` crate)
//! plus the parts of `tokenizer_config.json` generation needs (special tokens, chat template).
//!
//! Also builds the CHARACTER-level tokenizer of the embedded default's tiny models (built-in
//! tasks, spec §5 experiments): a byte-level BPE whose tokens are the characters of an
//! alphabet, a pre-tokenizer that isolates every character and a ByteLevel decoder, so text
//! round-trips exactly (spaces and newlines included) and both this crate and transformers
//! (`PreTrainedTokenizerFast`, and `AutoTokenizer`'s `Qwen2Tokenizer`) load the file.

use crate::chat::{ChatMessage, ChatTemplate};
use crate::config::read_json;
use crate::error::{PolicyError, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// End-of-sequence token of character-level tokenizers (id 0).
pub const CHAR_EOS: &str = "<|endoftext|>";
/// Padding token of character-level tokenizers (id 1).
pub const CHAR_PAD: &str = "<|pad|>";
/// Unknown-character token of character-level tokenizers (id 2).
pub const CHAR_UNK: &str = "<|unk|>";

/// A tokenizer with its special tokens and optional chat template.
#[derive(Clone, Debug)]
pub struct PolicyTokenizer {
    inner: tokenizers::Tokenizer,
    /// `tokenizer_config.json` as read (or built), re-written on save.
    config: Value,
    chat: Option<ChatTemplate>,
    /// Where the tokenizer came from, for error messages.
    origin: PathBuf,
}

fn tok_err(path: &Path, msg: impl std::fmt::Display) -> PolicyError {
    PolicyError::Tokenizer { path: path.to_path_buf(), msg: msg.to_string() }
}

/// A special-token entry of tokenizer_config.json: a string or `{"content": ...}`.
fn token_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

impl PolicyTokenizer {
    /// Loads `dir/tokenizer.json` and, when present, `dir/tokenizer_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|source| PolicyError::Io { path: path.clone(), source })?;
        let inner = tokenizers::Tokenizer::from_str(&text).map_err(|e| tok_err(&path, e))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let config = if cfg_path.exists() { read_json(&cfg_path)? } else { json!({}) };
        if !config.is_object() {
            return Err(PolicyError::Json { path: cfg_path, msg: "expected a JSON object".into() });
        }
        Self::with_config(inner, config, &cfg_path)
    }

    /// Wraps an in-memory tokenizer; `config` is a `tokenizer_config.json` object (special
    /// tokens, optional `chat_template`), `origin` names it in errors.
    pub fn with_config(inner: tokenizers::Tokenizer, config: Value, origin: &Path) -> Result<Self> {
        let chat = match config.get("chat_template") {
            None | Some(Value::Null) => None,
            Some(Value::String(src)) => Some(ChatTemplate::new(
                src,
                token_str(config.get("bos_token")),
                token_str(config.get("eos_token")),
                origin,
            )?),
            Some(other) => {
                return Err(PolicyError::Config {
                    path: origin.to_path_buf(),
                    field: "chat_template".into(),
                    msg: format!("expected a string, got {other}"),
                })
            }
        };
        let tok = PolicyTokenizer { inner, config, chat, origin: origin.to_path_buf() };
        for field in ["eos_token", "pad_token", "bos_token", "unk_token"] {
            if let Some(t) = token_str(tok.config.get(field)) {
                if tok.inner.token_to_id(&t).is_none() {
                    return Err(PolicyError::Config {
                        path: origin.to_path_buf(),
                        field: field.into(),
                        msg: format!("token `{t}` is not in the vocabulary"),
                    });
                }
            }
        }
        Ok(tok)
    }

    /// A character-level tokenizer over `alphabet` (see [`build_char_tokenizer`]) with a
    /// minimal `tokenizer_config.json` (eos `<|endoftext|>`, pad `<|pad|>`, no chat template).
    pub fn char_level(alphabet: &str) -> Result<Self> {
        let inner = build_char_tokenizer(alphabet)?;
        let config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": CHAR_EOS,
            "pad_token": CHAR_PAD,
            "unk_token": CHAR_UNK,
            "clean_up_tokenization_spaces": false,
        });
        Self::with_config(inner, config, Path::new("tokenizer_config.json"))
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The `tokenizer_config.json` object.
    pub fn config_json(&self) -> &Value {
        &self.config
    }

    /// Number of ids the tokenizer can produce: the largest id (model vocabulary or added
    /// token) plus one. This is what must not exceed the model's `vocab_size`.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab(true).values().max().map(|m| *m as usize + 1).unwrap_or(0)
    }

    /// Text → ids. `add_special_tokens` applies the tokenizer's post-processor (BOS etc.).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<i64>> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| tok_err(&self.origin, e))?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// Ids → text. Ids the tokenizer has no token for (a model's padded vocabulary above
    /// [`Self::vocab_size`]) are an error rather than silently dropped.
    pub fn decode(&self, ids: &[i64], skip_special_tokens: bool) -> Result<String> {
        let size = self.vocab_size() as i64;
        let mut u = Vec::with_capacity(ids.len());
        for &id in ids {
            if id < 0 || id >= size || self.inner.id_to_token(id as u32).is_none() {
                return Err(tok_err(&self.origin, format!("cannot decode id {id}: no such token")));
            }
            u.push(id as u32);
        }
        self.inner.decode(&u, skip_special_tokens).map_err(|e| tok_err(&self.origin, e))
    }

    /// The id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(|i| i as i64)
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: i64) -> Option<String> {
        u32::try_from(id).ok().and_then(|i| self.inner.id_to_token(i))
    }

    fn special_id(&self, field: &str) -> Option<i64> {
        token_str(self.config.get(field)).and_then(|t| self.token_to_id(&t))
    }

    /// Id of `eos_token` from tokenizer_config.json.
    pub fn eos_token_id(&self) -> Option<i64> {
        self.special_id("eos_token")
    }

    /// Id of `pad_token` from tokenizer_config.json.
    pub fn pad_token_id(&self) -> Option<i64> {
        self.special_id("pad_token")
    }

    /// Id of `bos_token` from tokenizer_config.json.
    pub fn bos_token_id(&self) -> Option<i64> {
        self.special_id("bos_token")
    }

    /// Ids of all special added tokens, sorted.
    pub fn special_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id as i64)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The chat template, when tokenizer_config.json has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    /// The text the policy is prompted with for a problem: the chat template applied to one
    /// user message with the generation prompt, or the raw problem without a template.
    pub fn prompt_text(&self, problem: &str) -> Result<String> {
        match &self.chat {
            Some(t) => t.render(&[ChatMessage::user(problem)], true),
            None => Ok(problem.to_string()),
        }
    }

    /// [`Self::prompt_text`] encoded (no extra special tokens: a template carries its own).
    pub fn encode_prompt(&self, problem: &str) -> Result<Vec<i64>> {
        self.encode(&self.prompt_text(problem)?, false)
    }

    /// `tokenizer.json` text.
    pub fn to_json_string(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| tok_err(&self.origin, e))
    }

    /// Writes `dir/tokenizer.json` and `dir/tokenizer_config.json` atomically (the config gets
    /// `tokenizer_class` and, when given, `model_max_length` if it lacks them).
    pub fn save(&self, dir: &Path, model_max_length: Option<i64>) -> Result<()> {
        let tok_json = self.to_json_string()?;
        crate::weights::write_atomic(&dir.join("tokenizer.json"), tok_json.as_bytes())?;
        let mut cfg = self.config.clone();
        if let Some(obj) = cfg.as_object_mut() {
            obj.entry("tokenizer_class").or_insert(json!("PreTrainedTokenizerFast"));
            if let Some(n) = model_max_length {
                obj.entry("model_max_length").or_insert(json!(n));
            }
        }
        crate::weights::write_json_atomic(&dir.join("tokenizer_config.json"), &cfg)
    }
}

/// GPT-2's byte → printable character table, as the ByteLevel pre-tokenizer uses it.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).expect("256..324 are valid chars")
}

fn byte_level(s: &str) -> String {
    s.bytes().map(byte_char).collect()
}

/// Builds a character-level Hugging Face tokenizer: ids 0, 1, 2 are the special tokens
/// `<|endoftext|>` (EOS), `<|pad|>` and `<|unk|>`, then one id per distinct character of
/// `alphabet` in order of first appearance. Characters outside the alphabet encode to
/// `<|unk|>`. Errors on an empty alphabet.
///
/// The model is a byte-level BPE (GPT-2 / Qwen2 style) whose vocabulary is the alphabet's
/// characters: no merges, except the ones that join the bytes of a multi-byte character into
/// its single token (their intermediate prefixes get ids after the alphabet). Being a plain
/// byte-level BPE matters: transformers >= 5 loads a `qwen2` folder's tokenizer as
/// `Qwen2Tokenizer`, which rebuilds the pipeline from vocab + merges with its own
/// pre-tokenizer; since no merge crosses a character boundary it yields the same ids.
pub fn build_char_tokenizer(alphabet: &str) -> Result<tokenizers::Tokenizer> {
    let origin = Path::new("<char tokenizer>");
    let mut vocab = serde_json::Map::new();
    for s in [CHAR_EOS, CHAR_PAD, CHAR_UNK] {
        vocab.insert(s.into(), json!(vocab.len()));
    }
    let specials = vocab.len();
    let mut merges: Vec<Value> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    for ch in alphabet.chars() {
        let token = byte_level(&ch.to_string());
        if vocab.contains_key(&token) {
            continue;
        }
        vocab.insert(token.clone(), json!(vocab.len()));
        // bytes b1..bn of a multi-byte char: merges (b1, b2), (b1b2, b3), ...
        let parts: Vec<String> = token.chars().map(String::from).collect();
        let mut acc = parts[0].clone();
        for (i, part) in parts.iter().enumerate().skip(1) {
            merges.push(json!([acc.clone(), part.clone()]));
            acc.push_str(part);
            if i + 1 < parts.len() {
                prefixes.push(acc.clone());
            }
        }
        for p in parts.iter().filter(|p| !vocab.contains_key(*p)) {
            prefixes.push(p.clone());
        }
    }
    if vocab.len() == specials {
        return Err(PolicyError::InvalidArgument {
            arg: "alphabet".into(),
            msg: "must contain at least one character".into(),
        });
    }
    for p in prefixes {
        if !vocab.contains_key(&p) {
            vocab.insert(p, json!(vocab.len()));
        }
    }
    let added: Vec<Value> = [CHAR_EOS, CHAR_PAD, CHAR_UNK]
        .iter()
        .enumerate()
        .map(|(id, s)| {
            json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        // Each character is its own word (`[\s\S]` matches any character, newlines included),
        // then mapped to byte-level symbols.
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "[\\s\\S]"}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "model": {"type": "BPE", "dropout": null, "unk_token": CHAR_UNK,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    });
    tokenizers::Tokenizer::from_str(&spec.to_string()).map_err(|e| tok_err(origin, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_tokenizer_round_trips_spaces_and_newlines() {
        let t = PolicyTokenizer::char_level("ab 1\n").unwrap();
        assert_eq!(t.vocab_size(), 8);
        let ids = t.encode("a b\n11", false).unwrap();
        assert_eq!(ids, vec![3, 5, 4, 7, 6, 6]);
        assert_eq!(t.decode(&ids, false).unwrap(), "a b\n11");
        assert_eq!(t.eos_token_id(), Some(0));
        assert_eq!(t.pad_token_id(), Some(1));
        assert_eq!(t.special_ids(), vec![0, 1, 2]);
        // unknown characters map to <|unk|>; specials in text are single tokens
        assert_eq!(t.encode("az", false).unwrap(), vec![3, 2]);
        assert_eq!(t.encode("a<|endoftext|>", false).unwrap(), vec![3, 0]);
        assert_eq!(t.decode(&[3, 0], true).unwrap(), "a");
        assert_eq!(t.decode(&[3, 0], false).unwrap(), "a<|endoftext|>");
        let err = t.decode(&[3, 8], false).unwrap_err().to_string();
        assert!(err.contains("cannot decode id 8"), "{err}");
        // no template: the prompt is the raw problem
        assert_eq!(t.prompt_text("1 1").unwrap(), "1 1");
        // saved files load back to the same tokenizer
        let dir = tempfile::tempdir().unwrap();
        t.save(dir.path(), Some(64)).unwrap();
        let back = PolicyTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(back.encode("a b\n11", false).unwrap(), ids);
        assert_eq!(back.config_json()["model_max_length"], 64);
        assert_eq!(back.eos_token_id(), Some(0));
    }

    #[test]
    fn multi_byte_characters_are_single_tokens() {
        let t = PolicyTokenizer::char_level("a×\n").unwrap();
        // 'a' 3, '×' 4, '\n' 5, then the two byte symbols of '×' (merge inputs)
        assert_eq!(t.vocab_size(), 8);
        let ids = t.encode("a×\n×", false).unwrap();
        assert_eq!(ids, vec![3, 4, 5, 4]);
        assert_eq!(t.decode(&ids, false).unwrap(), "a×\n×");
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b'a'), 'a');
    }

    #[test]
    fn duplicate_characters_are_ignored_and_empty_alphabet_is_an_error() {
        let t = build_char_tokenizer("aab").unwrap();
        assert_eq!(t.get_vocab_size(true), 5);
        let err = build_char_tokenizer("").unwrap_err().to_string();
        assert!(err.contains("alphabet"), "{err}");
    }
}
