//! Problem sources named in the coordinator config (issue #6 item 2: "loads problem sources").
//!
//! Each source is a dataset file (JSONL or Parquet, loaded by `deepsearch_tasks::source` with its
//! field-name options) or a built-in generator of the tasks crate with a count and a seed.
//! Problems may also be added directly through [`crate::Coordinator::add_problems`].

use deepsearch_tasks::arithmetic::ArithmeticConfig;
use deepsearch_tasks::countdown::CountdownConfig;
use deepsearch_tasks::Problem;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One problem source; `kind` selects the variant.
///
/// ```toml
/// [[sources]]
/// kind = "file"
/// path = "data/train.jsonl"
/// answer_field = "final_answer"
///
/// [[sources]]
/// kind = "countdown"
/// count = 1000
/// seed = 7
/// config = { min_numbers = 5, max_numbers = 5 }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    /// A JSONL or Parquet dataset; fields as in `deepsearch_tasks::source::SourceConfig`.
    File(deepsearch_tasks::source::SourceConfig),
    /// Built-in Countdown generator.
    Countdown(Generated<CountdownConfig>),
    /// Built-in arithmetic generator.
    Arithmetic(Generated<ArithmeticConfig>),
}

/// A generated source: `count` problems, deterministic in `(config, seed)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generated<C> {
    /// How many problems (no default).
    pub count: usize,
    /// Generator seed. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Generator options. Default: the generator's defaults.
    #[serde(default)]
    pub config: C,
}

impl SourceConfig {
    /// A short name for logs and errors.
    pub fn describe(&self) -> String {
        match self {
            SourceConfig::File(f) => format!("file {}", f.path.display()),
            SourceConfig::Countdown(g) => format!("countdown (count {}, seed {})", g.count, g.seed),
            SourceConfig::Arithmetic(g) => format!("arithmetic (count {}, seed {})", g.count, g.seed),
        }
    }

    /// Loads or generates the problems.
    pub fn load(&self) -> Result<Vec<Problem>> {
        let named = |e: deepsearch_tasks::TaskError| Error::Source(format!("{}: {e}", self.describe()));
        let problems = match self {
            SourceConfig::File(f) => {
                let loaded = deepsearch_tasks::source::load(f).map_err(named)?;
                if !loaded.skipped.is_empty() {
                    tracing::warn!(source = %self.describe(), skipped = loaded.skipped.len(), "bad records skipped");
                }
                loaded.problems
            }
            SourceConfig::Countdown(g) => {
                deepsearch_tasks::countdown::generate(&g.config, g.seed, g.count).map_err(named)?
            }
            SourceConfig::Arithmetic(g) => {
                deepsearch_tasks::arithmetic::generate(&g.config, g.seed, g.count).map_err(named)?
            }
        };
        tracing::info!(source = %self.describe(), problems = problems.len(), "problem source loaded");
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrap {
        sources: Vec<SourceConfig>,
    }

    #[test]
    fn parses_file_and_generator_sources() {
        let w: Wrap = toml::from_str(
            r#"
            [[sources]]
            kind = "file"
            path = "x.jsonl"
            answer_field = "final"
            [[sources]]
            kind = "countdown"
            count = 3
            seed = 7
            config = { min_numbers = 3, max_numbers = 3 }
            "#,
        )
        .unwrap();
        assert_eq!(w.sources.len(), 2);
        match &w.sources[0] {
            SourceConfig::File(f) => assert_eq!(f.answer_field, "final"),
            other => panic!("{other:?}"),
        }
        let problems = w.sources[1].load().unwrap();
        assert_eq!(problems.len(), 3);
        assert_eq!(problems, w.sources[1].load().unwrap(), "deterministic in the seed");
        assert!(toml::from_str::<Wrap>("[[sources]]\nkind = \"countdown\"\ncount = 1\ncolor = 2\n").is_err());
    }

    #[test]
    fn missing_file_error_names_the_source() {
        let s = SourceConfig::File(deepsearch_tasks::source::SourceConfig::for_path("/nonexistent/p.jsonl"));
        let e = s.load().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/p.jsonl"), "{e}");
    }
}
