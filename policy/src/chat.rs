//! Chat templates: the Jinja `chat_template` of a Hugging Face `tokenizer_config.json`, rendered
//! with `minijinja` the way transformers' `apply_chat_template` renders it (`trim_blocks`,
//! `lstrip_blocks`, Python string methods through `minijinja-contrib`'s pycompat, a
//! `raise_exception` function, `bos_token` / `eos_token` in the context). The policy sees the
//! problem as one user message followed by the generation prompt (spec §1: the prompt is the
//! root of the search tree); a tokenizer without a template uses the raw problem text.

use crate::error::{PolicyError, Result};
use minijinja::{Environment, ErrorKind};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One chat message, as transformers passes it to a template (`{role, content}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage { role: "user".into(), content: content.into() }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    /// The file the template came from, for error messages.
    origin: PathBuf,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl Clone for ChatTemplate {
    fn clone(&self) -> Self {
        // Recompiling cannot fail: the same source compiled when `self` was built.
        ChatTemplate::new(
            &self.source,
            self.bos_token.clone(),
            self.eos_token.clone(),
            &self.origin,
        )
        .expect("a chat template that compiled once compiles again")
    }
}

const TEMPLATE_NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`; `origin` (usually `tokenizer_config.json`) names the file in errors.
    pub fn new(
        source: &str,
        bos_token: Option<String>,
        eos_token: Option<String>,
        origin: &Path,
    ) -> Result<Self> {
        let bad = |e: minijinja::Error| PolicyError::Config {
            path: origin.to_path_buf(),
            field: "chat_template".into(),
            msg: e.to_string(),
        };
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(bad)?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, _> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned(TEMPLATE_NAME, source.to_string()).map_err(bad)?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos_token,
            eos_token,
            origin: origin.to_path_buf(),
        })
    }

    /// The template source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// reply starts.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let bad = |e: minijinja::Error| PolicyError::Config {
            path: self.origin.clone(),
            field: "chat_template".into(),
            msg: format!("rendering failed: {e}"),
        };
        let tmpl = self.env.get_template(TEMPLATE_NAME).map_err(bad)?;
        tmpl.render(minijinja::context! {
            messages => minijinja::Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone().unwrap_or_default(),
            eos_token => self.eos_token.clone().unwrap_or_default(),
        })
        .map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Qwen2.5 chat template (without the tool branch), as shipped in its
    /// tokenizer_config.json; the expected string is what transformers renders.
    const QWEN_LIKE: &str = "{%- if messages[0]['role'] == 'system' %}\n    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n{%- else %}\n    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n{%- endif %}\n{%- for message in messages %}\n    {%- if not (message.role == 'system' and loop.first) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content.strip() + '<|im_end|>' + '\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

    #[test]
    fn renders_a_qwen_style_template_with_python_string_methods() {
        let t = ChatTemplate::new(QWEN_LIKE, None, None, Path::new("tokenizer_config.json"))
            .unwrap();
        let out = t.render(&[ChatMessage::user(" 3+4=? ")], true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\n3+4=?<|im_end|>\n<|im_start|>assistant\n"
        );
        let no_prompt = t.render(&[ChatMessage::user("x")], false).unwrap();
        assert!(no_prompt.ends_with("<|im_start|>user\nx<|im_end|>\n"), "{no_prompt:?}");
    }

    #[test]
    fn template_errors_name_the_file_and_field() {
        let err = ChatTemplate::new("{% if %}", None, None, Path::new("/m/tokenizer_config.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/m/tokenizer_config.json") && err.contains("chat_template"), "{err}");
        let t = ChatTemplate::new(
            "{{ raise_exception('only user messages') }}",
            None,
            None,
            Path::new("tc.json"),
        )
        .unwrap();
        let err = t.render(&[ChatMessage::user("a")], true).unwrap_err().to_string();
        assert!(err.contains("only user messages"), "{err}");
    }
}
