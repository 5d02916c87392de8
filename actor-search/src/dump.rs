//! A finished tree as JSON and as a self-contained HTML page a person can expand and read
//! (issue #4, item 6: `deepsearch search --dump tree.json --html tree.html`).
//!
//! The HTML needs no script and no network: nested `<details>` elements, one per node, with the
//! node's statistics in the summary line and its decoded segment below. Recorded trajectories are
//! highlighted; the JSON is embedded too so the page is also a data file.

use serde_json::{json, Value};

use crate::score::q_value;
use crate::search::FinishedTree;
use crate::select::frontier_score_of;
use crate::tree::NodeId;

/// The tree as JSON: problem, outcome, statistics, recorded leaves and every node (parent,
/// children, depth, visits, value, Q, frontier score when on the frontier, segment text, terminal
/// verdict). Non-finite numbers become `null`.
pub fn tree_to_json(t: &FinishedTree, decode: &dyn Fn(&[u32]) -> String) -> Value {
    let tree = &t.tree;
    let in_frontier: std::collections::HashSet<NodeId> = tree.frontier().iter().copied().collect();
    let nodes: Vec<Value> = (0..tree.len() as NodeId)
        .map(|id| {
            let n = tree.node(id);
            let terminal = n.terminal.as_ref().map(|term| {
                json!({
                    "kind": term.kind,
                    "verdict": term.verdict.as_str(),
                    "outcome": term.outcome,
                    "chosen": term.chosen,
                    "garbled": term.garbled,
                    "entropy": finite(term.entropy),
                })
            });
            json!({
                "id": id,
                "parent": n.parent,
                "children": tree.children(id).collect::<Vec<_>>(),
                "depth": n.depth,
                "visits": n.visits,
                "value": finite(n.value),
                "q": finite(q_value(n.value, n.visits)),
                "frontier_score": in_frontier.contains(&id).then(|| finite(frontier_score_of(tree, &t.cfg, id))),
                "segment_entropy": finite(n.segment_entropy),
                "tokens": n.tokens.len(),
                "finish": n.finish,
                "dead": n.dead,
                "text": if id == 0 { decode(&tree.prompt) } else { decode(&n.tokens) },
                "terminal": terminal,
            })
        })
        .collect();
    json!({
        "tree_id": t.id,
        "problem": t.problem,
        "outcome": t.outcome,
        "stats": t.stats,
        "recorded": t.recorded,
        "nodes": nodes,
    })
}

fn finite(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

/// Escape text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em}\
details{margin-left:1.2em;border-left:1px solid #ccc;padding-left:.4em}\
summary{cursor:pointer;font-family:monospace}\
pre{white-space:pre-wrap;background:#f6f6f6;margin:.2em 0 .4em 1.2em;padding:.3em}\
.correct{color:#070;font-weight:bold}.wrong{color:#b00}.incomplete{color:#a60}.dropped{color:#777}\
.path>summary{background:#fff3b0}.neg{color:#b00}.pos{color:#070}\
table{border-collapse:collapse}td{padding:0 .8em 0 0;font-family:monospace}";

/// The tree as one self-contained HTML page (inline CSS, no script, no external resource).
pub fn tree_to_html(t: &FinishedTree, decode: &dyn Fn(&[u32]) -> String) -> String {
    let tree = &t.tree;
    let mut on_path = vec![false; tree.len()];
    for &leaf in &t.recorded {
        for id in tree.path(leaf) {
            on_path[id as usize] = true;
        }
    }
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>DeepSearch tree ");
    h.push_str(&html_escape(&t.problem.id));
    h.push_str("</title><style>");
    h.push_str(STYLE);
    h.push_str("</style></head><body>");
    h.push_str(&format!(
        "<h2>Problem {}</h2><pre>{}</pre>",
        html_escape(&t.problem.id),
        html_escape(&t.problem.prompt)
    ));
    let s = &t.stats;
    h.push_str(&format!(
        "<table><tr><td>outcome</td><td>{}</td></tr><tr><td>expansions</td><td>{}</td></tr>\
         <tr><td>nodes</td><td>{}</td></tr><tr><td>trajectories</td><td>{}</td></tr>\
         <tr><td>terminals correct / wrong / incomplete / dropped</td><td>{} / {} / {} / {}</td></tr>\
         <tr><td>max depth</td><td>{}</td></tr></table>",
        html_escape(&t.outcome.to_string()),
        s.expansions, s.nodes, s.trajectories, s.correct, s.wrong, s.incomplete, s.verifier_errors, s.max_depth
    ));
    h.push_str(
        "<p>Highlighted: nodes on a recorded trajectory. N = visits, v = value, Q = v/N.</p>",
    );
    // iterative pre-order walk: Open(id) writes a node and schedules its children and its Close
    enum Ev {
        Open(NodeId),
        Close,
    }
    let mut stack = vec![Ev::Open(0)];
    while let Some(ev) = stack.pop() {
        match ev {
            Ev::Close => h.push_str("</details>"),
            Ev::Open(id) => {
                let n = tree.node(id);
                let class = if on_path[id as usize] {
                    " class=\"path\""
                } else {
                    ""
                };
                let open = if id == 0 || on_path[id as usize] {
                    " open"
                } else {
                    ""
                };
                let vclass = if n.value < 0.0 {
                    "neg"
                } else if n.value > 0.0 {
                    "pos"
                } else {
                    ""
                };
                let mut summary = format!(
                    "#{id} d={} N={} <span class=\"{vclass}\">v={:.3} Q={:.3}</span> tokens={}",
                    n.depth,
                    n.visits,
                    n.value,
                    q_value(n.value, n.visits),
                    n.tokens.len()
                );
                if let Some(term) = &n.terminal {
                    let (cls, label) = match term.outcome {
                        Some(o) => {
                            let l = serde_json::to_value(o)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string));
                            (l.clone().unwrap_or_default(), l.unwrap_or_default())
                        }
                        None => (
                            "dropped".to_string(),
                            format!("dropped ({})", term.verdict.as_str()),
                        ),
                    };
                    summary.push_str(&format!(
                        " <span class=\"{cls}\">[{:?}: {}{}{}]</span>",
                        term.kind,
                        html_escape(&label),
                        if term.chosen { ", recorded" } else { "" },
                        if term.garbled { ", garbled" } else { "" }
                    ));
                }
                if n.dead {
                    summary.push_str(" <span class=\"dropped\">[dead]</span>");
                }
                let text = if id == 0 {
                    decode(&tree.prompt)
                } else {
                    decode(&n.tokens)
                };
                h.push_str(&format!(
                    "<details{class}{open}><summary>{summary}</summary><pre>{}</pre>",
                    html_escape(&text)
                ));
                stack.push(Ev::Close);
                for c in tree.children(id).rev() {
                    stack.push(Ev::Open(c));
                }
            }
        }
    }
    let data = serde_json::to_string(&tree_to_json(t, decode)).unwrap_or_default();
    // '<' only occurs inside JSON strings, where \u003c is the same character: the script element
    // can then never be closed early
    h.push_str("<script type=\"application/json\" id=\"tree-data\">");
    h.push_str(&data.replace('<', "\\u003c"));
    h.push_str("</script></body></html>");
    h
}
