//! Terminal choice inside a real expansion (garbled filter, NaN entropies, pruning hook) and the
//! JSON / HTML views of a finished tree.

mod common;

use common::*;
use deepsearch_search::config::{EntropyKind, SearchConfig};
use deepsearch_search::policy::{ExpandRequest, Finish, Policy, PolicyError, PrefixKey, Segment};
use deepsearch_search::tree::TerminalKind;
use deepsearch_search::{search_all, tree_to_html, tree_to_json, Judge, TreeInput, TreeOutcome};
use deepsearch_tasks::{Problem, Verdict, Verifier};

/// Answers every request with the same fixed samples.
struct Script(Vec<Segment>);

impl Policy for Script {
    fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
        reqs.iter()
            .map(|r| Ok(self.0.iter().take(r.n).cloned().collect()))
            .collect()
    }
    fn release(&mut self, _: &[PrefixKey]) {}
    fn decode(&self, t: &[u32]) -> String {
        decode(t)
    }
    fn max_context(&self) -> usize {
        1000
    }
}

fn seg(text: &str, lp: f32, ent: f32, eos: bool) -> Segment {
    let mut tokens: Vec<u32> = text
        .chars()
        .map(|c| if c == '\n' { NL } else { letter(c) })
        .collect();
    if eos {
        tokens.push(EOS);
    }
    Segment {
        logprobs: vec![lp; tokens.len()],
        entropies: vec![ent; tokens.len()],
        finish: Some(if eos { Finish::Eos } else { Finish::Length }),
        tokens,
    }
}

/// "c…" answers are correct, everything else wrong.
struct StartsWithC;
impl Verifier for StartsWithC {
    fn verify(&self, _: &Problem, r: &str) -> Verdict {
        if r.starts_with('c') {
            Verdict::Correct
        } else {
            Verdict::Wrong
        }
    }
}

fn one_expansion(
    cfg: SearchConfig,
    segs: Vec<Segment>,
    judge: &Judge<'_>,
) -> deepsearch_search::FinishedTree {
    let cfg = SearchConfig {
        expansion_width: segs.len(),
        trajectories_per_tree: 1,
        segment_tokens: 64,
        ..cfg
    };
    let input = TreeInput {
        problem: problem("p"),
        prompt_tokens: prompt(2),
        salt: 0,
    };
    search_all(&cfg, vec![input], &mut Script(segs), judge)
        .unwrap()
        .remove(0)
}

#[test]
fn the_garbled_wrong_answer_is_not_the_confident_mistake() {
    let judge = Judge {
        verifier: &StartsWithC,
        prefix_valid: None,
    };
    // child 1: a repetition loop, the most confident; child 2: an honest wrong answer
    let segs = vec![
        seg("abababababababababab", -0.01, 0.1, true),
        seg("wrongx", -0.5, 1.0, true),
    ];
    let t = one_expansion(SearchConfig::for_test(), segs.clone(), &judge);
    assert_eq!(t.recorded, vec![2]);
    assert_eq!(t.stats.garbled_wrong, 1);
    assert!(t.tree.node(1).terminal.as_ref().unwrap().garbled);
    // with the filter off the loop is chosen (lowest entropy)
    let mut off = SearchConfig::for_test();
    off.garbled.enabled = false;
    let t = one_expansion(off, segs, &judge);
    assert_eq!(t.recorded, vec![1]);
    assert_eq!(t.stats.garbled_wrong, 0);
}

#[test]
fn nan_entropies_sort_last_and_correct_comes_first() {
    let judge = Judge {
        verifier: &StartsWithC,
        prefix_valid: None,
    };
    let cfg = SearchConfig {
        entropy: EntropyKind::Full,
        ..SearchConfig::for_test()
    };
    let segs = vec![
        seg("wa", -0.1, f32::NAN, true),
        seg("wb", -0.1, 2.0, true),
        seg("wc", -0.1, 1.5, true),
    ];
    let t = one_expansion(cfg.clone(), segs, &judge);
    assert_eq!(t.recorded, vec![3]); // 1.5 < 2.0 < NaN
    let segs = vec![
        seg("wa", -0.1, 0.1, true),
        seg("cb", -0.1, 3.0, true),
        seg("cc", -0.1, f32::NAN, true),
    ];
    let t = one_expansion(cfg, segs, &judge);
    assert_eq!(t.recorded, vec![2]);
    assert_eq!(t.stats.correct, 2);
    assert_eq!(t.tree.node(2).value, 1.0);
    assert_eq!(t.tree.node(0).value, 0.5); // root weight 1/2 at leaf depth 1
}

#[test]
fn the_prefix_hook_prunes_invalid_children_when_enabled() {
    let no_z = |_: &Problem, text: &str| !text.contains('z');
    let judge = Judge {
        verifier: &StartsWithC,
        prefix_valid: Some(&no_z),
    };
    let segs = vec![seg("zz", -0.1, 1.0, false), seg("ab", -0.1, 1.0, false)];
    let cfg = SearchConfig {
        max_expansions: 1,
        prune_invalid_prefixes: true,
        ..SearchConfig::for_test()
    };
    let t = one_expansion(cfg.clone(), segs.clone(), &judge);
    assert_eq!(t.stats.pruned_prefixes, 1);
    let term = t.tree.node(1).terminal.as_ref().unwrap();
    assert_eq!(
        (term.kind, &term.verdict),
        (TerminalKind::Pruned, &Verdict::Wrong)
    );
    assert_eq!(
        t.recorded,
        vec![1],
        "a pruned child is a wrong terminal and can be backed up"
    );
    // off (the default): no pruning
    let t = one_expansion(
        SearchConfig {
            prune_invalid_prefixes: false,
            ..cfg
        },
        segs,
        &judge,
    );
    assert_eq!(t.stats.pruned_prefixes, 0);
    assert!(t.tree.node(1).terminal.is_none());
}

#[test]
fn json_and_html_show_every_node() {
    let v = HashVerifier {
        correct_mod: 3,
        error_mod: 0,
    };
    let judge = Judge {
        verifier: &v,
        prefix_valid: None,
    };
    let cfg = SearchConfig {
        segment_delimiter: Some("\n".into()),
        ..SearchConfig::for_test()
    };
    let mut pol = LmPolicy::new(RandomText {
        p_eos: 0.1,
        p_nl: 0.25,
    });
    let mut p = problem("dump<&>");
    p.prompt = "Reach 24 from <3 4 5>".into();
    let input = TreeInput {
        problem: p,
        prompt_tokens: prompt(2),
        salt: 0,
    };
    let t = search_all(&cfg, vec![input], &mut pol, &judge)
        .unwrap()
        .remove(0);
    assert_eq!(t.outcome, TreeOutcome::Completed);
    let j = tree_to_json(&t, &decode);
    let nodes = j["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), t.tree.len());
    assert_eq!(j["recorded"].as_array().unwrap().len(), 4);
    for (id, n) in nodes.iter().enumerate() {
        let node = t.tree.node(id as u32);
        assert_eq!(n["visits"], node.visits);
        assert_eq!(
            n["children"].as_array().unwrap().len() as u32,
            node.n_children
        );
        if id > 0 {
            assert_eq!(n["text"], decode(&node.tokens));
        }
    }
    let chosen = nodes
        .iter()
        .filter(|n| n["terminal"]["chosen"] == true)
        .count();
    assert_eq!(chosen, 4);
    let html = tree_to_html(&t, &decode);
    // to look at the page: DEEPSEARCH_DUMP_DIR=/tmp cargo test -p deepsearch-search --test choice_and_dump
    if let Ok(dir) = std::env::var("DEEPSEARCH_DUMP_DIR") {
        let dir = std::path::Path::new(&dir);
        std::fs::write(dir.join("tree.html"), &html).unwrap();
        std::fs::write(
            dir.join("tree.json"),
            serde_json::to_string_pretty(&j).unwrap(),
        )
        .unwrap();
    }
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<details").count(), t.tree.len());
    assert_eq!(html.matches("</details>").count(), t.tree.len());
    assert!(html.contains("Reach 24 from &lt;3 4 5&gt;"));
    assert!(!html.contains("<3 4 5>"));
    assert!(
        !html.contains("http"),
        "self-contained: no external resource"
    );
    assert_eq!(html.matches(", recorded").count(), 4);
}
