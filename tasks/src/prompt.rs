//! The prompt template: what the model sees at the root of the tree (spec §1: the root is the
//! prompt tokens with the chat template applied). For math, the paper appends "Let's think step
//! by step and output the final answer within \boxed{}." to the problem and applies the model's
//! chat template; built-in tasks use their raw compact prompt (a character-level model has no
//! chat template). The chat template itself belongs to the tokenizer (policy crate), which
//! implements [`ChatTemplate`]; this crate stays free of tokenizers.

use crate::{Problem, TaskError};

/// The instruction the DeepSearch paper appends to math problems.
pub const PAPER_SUFFIX: &str =
    "Let's think step by step and output the final answer within \\boxed{}.";

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// "system" | "user" | "assistant".
    pub role: String,
    pub content: String,
}

/// A model's chat template (implemented by the tokenizer side).
pub trait ChatTemplate {
    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// reply begins.
    fn apply(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, String>;
}

/// How a problem becomes the root text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptConfig {
    /// Text appended to the problem, separated by a space (default [`PAPER_SUFFIX`]; empty for
    /// none). Not applied to built-in generated tasks (countdown, arithmetic).
    pub suffix: String,
    /// Optional system message (default none).
    pub system: Option<String>,
    /// Apply the model's chat template when it has one (default true).
    pub use_chat_template: bool,
}

impl Default for PromptConfig {
    fn default() -> Self {
        PromptConfig {
            suffix: PAPER_SUFFIX.to_string(),
            system: None,
            use_chat_template: true,
        }
    }
}

impl PromptConfig {
    /// The user message for `problem`: its prompt plus the suffix (math and dataset tasks) or
    /// the raw prompt (built-in generated tasks, whose format is fixed).
    pub fn user_message(&self, problem: &Problem) -> String {
        let builtin = matches!(
            problem.task.as_str(),
            crate::countdown::TASK | crate::arithmetic::TASK
        );
        if builtin || self.suffix.is_empty() {
            problem.prompt.clone()
        } else {
            format!("{} {}", problem.prompt.trim_end(), self.suffix)
        }
    }

    /// The root text: through `chat` when given and enabled, else the user message itself.
    pub fn render(
        &self,
        problem: &Problem,
        chat: Option<&dyn ChatTemplate>,
    ) -> Result<String, TaskError> {
        let user = self.user_message(problem);
        match chat {
            Some(t) if self.use_chat_template => {
                let mut msgs = Vec::with_capacity(2);
                if let Some(s) = &self.system {
                    msgs.push(ChatMessage {
                        role: "system".into(),
                        content: s.clone(),
                    });
                }
                msgs.push(ChatMessage {
                    role: "user".into(),
                    content: user,
                });
                t.apply(&msgs, true).map_err(|e| {
                    TaskError::config(format!(
                        "chat template failed on problem {}: {e}",
                        problem.id
                    ))
                })
            }
            _ => Ok(user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ChatMl;
    impl ChatTemplate for ChatMl {
        fn apply(&self, m: &[ChatMessage], gen: bool) -> Result<String, String> {
            let mut s: String = m
                .iter()
                .map(|x| format!("<|im_start|>{}\n{}<|im_end|>\n", x.role, x.content))
                .collect();
            if gen {
                s.push_str("<|im_start|>assistant\n");
            }
            Ok(s)
        }
    }

    #[test]
    fn math_prompt_gets_suffix_and_template() {
        let p = Problem::new("1", "math", "What is 1+1?\n", "2");
        let c = PromptConfig::default();
        assert_eq!(
            c.render(&p, None).unwrap(),
            "What is 1+1? Let's think step by step and output the final answer within \\boxed{}."
        );
        let t = c.render(&p, Some(&ChatMl)).unwrap();
        assert!(t.starts_with("<|im_start|>user\nWhat is 1+1? Let's"), "{t}");
        assert!(t.ends_with("<|im_start|>assistant\n"));
        let raw = PromptConfig {
            use_chat_template: false,
            suffix: String::new(),
            system: None,
        };
        assert_eq!(raw.render(&p, Some(&ChatMl)).unwrap(), "What is 1+1?\n");
    }

    #[test]
    fn builtin_prompts_are_raw() {
        let p = Problem::new("c", "countdown", "3 7 > 10\n", "{}");
        assert_eq!(PromptConfig::default().user_message(&p), "3 7 > 10\n");
    }
}
