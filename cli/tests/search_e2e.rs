//! End to end with the real (tiny, random) policy: a Qwen2 with a character tokenizer over the
//! Countdown alphabet searches built-in Countdown problems through the generation engine —
//! trajectories are well formed, every prefix key is released, the tree dumps are written — and
//! the `deepsearch search` binary writes both files for a saved tiny model.

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;

use deepsearch_policy::checkpoint::{PolicyModel, SaveOptions};
use deepsearch_policy::config::Qwen2Config;
use deepsearch_policy::engine::{Engine, EngineConfig};
use deepsearch_policy::search_policy::EnginePolicy;
use deepsearch_policy::tokenizer::PolicyTokenizer;
use deepsearch_search::config::OverlongConfig;
use deepsearch_search::policy::{ExpandRequest, Policy, PolicyError, PrefixKey, Segment};
use deepsearch_search::{search_all, tree_to_html, tree_to_json, Judge, SearchConfig, TreeInput};
use deepsearch_tasks::{countdown, registry};

fn tiny_model(seed: u64) -> PolicyModel {
    let alphabet = registry::alphabet(countdown::TASK).expect("countdown has an alphabet");
    let tok = PolicyTokenizer::char_level(alphabet).unwrap();
    let cfg = Qwen2Config::tiny(tok.vocab_size() as i64);
    PolicyModel::init_random(&cfg, tok, seed).unwrap()
}

/// The engine as a search policy, recording which prefix keys were used and released.
struct Recording {
    inner: EnginePolicy,
    requested: HashSet<PrefixKey>,
    released: HashSet<PrefixKey>,
}

impl Policy for Recording {
    fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
        self.requested.extend(reqs.iter().map(|r| r.key));
        self.inner.expand(reqs)
    }
    fn release(&mut self, keys: &[PrefixKey]) {
        self.released.extend(keys.iter().copied());
        self.inner.release(keys)
    }
    fn decode(&self, tokens: &[u32]) -> String {
        self.inner.decode(tokens)
    }
    fn max_context(&self) -> usize {
        self.inner.max_context()
    }
}

fn small_search() -> SearchConfig {
    SearchConfig {
        segment_tokens: 16,
        segment_delimiter: Some("\n".into()),
        expansion_width: 4,
        trajectories_per_tree: 4,
        max_depth: 8,
        max_expansions: 64,
        overlong: OverlongConfig {
            max_response_tokens: None,
            buffer_tokens: 32,
            factor: 1.0,
        },
        ..SearchConfig::default()
    }
}

#[test]
fn tiny_policy_searches_countdown_trees_end_to_end() {
    let pm = tiny_model(11);
    let tok = pm.tokenizer.clone();
    let PolicyModel {
        model,
        tokenizer,
        eos_ids,
        device,
        ..
    } = pm;
    let size = tokenizer.vocab_size() as i64;
    let dec = Arc::new(move |ids: &[u32]| {
        let ids: Vec<i64> = ids
            .iter()
            .map(|&i| i as i64)
            .filter(|&i| i < size)
            .collect();
        tokenizer.decode(&ids, true).unwrap()
    });
    let engine = Engine::new(model, device, &eos_ids, EngineConfig::default()).with_decoder(dec);
    let mut policy = Recording {
        inner: EnginePolicy::new(engine),
        requested: HashSet::new(),
        released: HashSet::new(),
    };
    let problems = countdown::generate(&countdown::CountdownConfig::with_numbers(3), 5, 3).unwrap();
    let inputs: Vec<TreeInput> = problems
        .iter()
        .map(|p| {
            let ids = tok.encode_prompt(&p.prompt).unwrap();
            TreeInput {
                problem: p.clone(),
                prompt_tokens: ids.into_iter().map(|i| i as u32).collect(),
                salt: 0,
            }
        })
        .collect();
    let verifier = registry::verifier_for(countdown::TASK).unwrap();
    let judge = Judge {
        verifier: verifier.as_ref(),
        prefix_valid: None,
    };
    let cfg = small_search();
    let trees = search_all(&cfg, inputs.clone(), &mut policy, &judge).unwrap();
    assert_eq!(trees.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    for (tree, input) in trees.iter().zip(&inputs) {
        assert_eq!(tree.problem.id, input.problem.id);
        assert!(
            tree.stats.expansions > 0 && tree.stats.generated_tokens > 0,
            "{:?}",
            tree.stats
        );
        let trajs = tree.trajectories(0);
        assert!(
            !trajs.is_empty(),
            "tree {} recorded nothing: {}",
            tree.problem.id,
            tree.outcome
        );
        for t in &trajs {
            let n = t.tokens.len();
            assert!(n > 0 && n <= cfg.max_response_tokens());
            assert_eq!(t.prompt_tokens, input.prompt_tokens);
            assert_eq!(t.logprobs.len(), n);
            assert_eq!(t.token_scores.len(), n);
            assert!(t.entropies.is_empty() || t.entropies.len() == n);
            assert!(
                t.segment_ends.windows(2).all(|w| w[0] < w[1]),
                "{:?}",
                t.segment_ends
            );
            assert_eq!(*t.segment_ends.last().unwrap() as usize, n);
            assert!(t.segment_ends.len() <= cfg.max_depth as usize);
            assert!(t.token_scores.iter().all(|s| s.is_finite()) && t.terminal_score.is_finite());
            assert!(t.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0));
            assert!(!t.verdict.is_error());
        }
        let decode = |ids: &[u32]| policy.decode(ids);
        let json = tree_to_json(tree, &decode);
        assert_eq!(
            json["nodes"].as_array().unwrap().len() as u32,
            tree.stats.nodes
        );
        let html = tree_to_html(tree, &decode);
        assert!(html.contains("<details"));
        let jp = dir.path().join(format!("{}.json", tree.problem.id));
        let hp = dir.path().join(format!("{}.html", tree.problem.id));
        std::fs::write(&jp, serde_json::to_string(&json).unwrap()).unwrap();
        std::fs::write(&hp, &html).unwrap();
        assert!(
            std::fs::metadata(&jp).unwrap().len() > 0 && std::fs::metadata(&hp).unwrap().len() > 0
        );
    }
    let leaked: Vec<_> = policy.requested.difference(&policy.released).collect();
    assert!(leaked.is_empty(), "prefix keys never released: {leaked:?}");
}

#[test]
fn search_binary_writes_json_and_html() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    tiny_model(3)
        .save(&model_dir, &SaveOptions::default())
        .unwrap();
    let (json, html) = (dir.path().join("tree.json"), dir.path().join("tree.html"));
    let out = Command::new(env!("CARGO_BIN_EXE_deepsearch"))
        .args(["search", "--model"])
        .arg(&model_dir)
        .args([
            "--task",
            "countdown",
            "--seed",
            "3",
            "--index",
            "1",
            "--dump",
        ])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .args([
            "--set",
            "search.segment_tokens=16",
            "--set",
            "search.segment_delimiter=\"\\n\"",
            "--set",
            "search.expansion_width=4",
            "--set",
            "search.trajectories_per_tree=4",
            "--set",
            "search.max_depth=8",
            "--set",
            "search.overlong.buffer_tokens=32",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("problem countdown-3-1: "), "{stdout}");
    assert!(stdout.contains("trajectories"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["problem"]["id"], "countdown-3-1");
    assert!(!v["nodes"].as_array().unwrap().is_empty());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<details") && page.contains("</html>"),
        "{}",
        &page[..page.len().min(200)]
    );
}
