//! `report.html`: a self-contained page (inline SVG, no scripts, no network) drawn from one or
//! more run folders' `metrics.jsonl`, several runs on the same axes.
//!
//! `metrics.jsonl` holds one JSON object per line with a `kind` field:
//! - `step`: one learner step (`step`, `generated_tokens`, `reward_mean`, `tree_depth_mean`,
//!   `tree_depth_max`, `expansions_per_tree`, and cumulative seconds `time_generate_s`,
//!   `time_bookkeeping_s`, `time_verify_s`, `time_train_s`);
//! - `eval`: held-out evaluation (`step`, `generated_tokens`, `pass1`, `pass_at_k`);
//! - `round`: coordinator round summary (`round`, `hard_set`, `cache_share`).
//! Missing fields are skipped, so a chart shows whatever the run recorded.

use anyhow::{Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The records of one run folder.
#[derive(Debug, Clone)]
pub struct RunData {
    pub name: String,
    pub records: Vec<Value>,
}

/// Reads `DIR/metrics.jsonl`; a malformed line is an error naming file and line.
pub fn load_run(dir: &Path) -> Result<RunData> {
    let path = dir.join("metrics.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: invalid JSON", path.display(), i + 1))?;
        records.push(v);
    }
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    Ok(RunData { name, records })
}

/// One line chart: points (x, y) of records of `kind`.
struct Chart {
    title: &'static str,
    kind: &'static str,
    x: &'static str,
    x_label: &'static str,
    y: &'static [&'static str],
    y_label: &'static str,
}

const CHARTS: &[Chart] = &[
    Chart { title: "Training reward vs step", kind: "step", x: "step", x_label: "learner step", y: &["reward_mean"], y_label: "mean terminal reward" },
    Chart { title: "Training reward vs generated tokens", kind: "step", x: "generated_tokens", x_label: "generated tokens", y: &["reward_mean"], y_label: "mean terminal reward" },
    Chart { title: "Held-out accuracy vs step", kind: "eval", x: "step", x_label: "learner step", y: &["pass1"], y_label: "Pass@1" },
    Chart { title: "Held-out accuracy vs generated tokens", kind: "eval", x: "generated_tokens", x_label: "generated tokens", y: &["pass1"], y_label: "Pass@1" },
    Chart { title: "Hard-set size per round", kind: "round", x: "round", x_label: "round", y: &["hard_set"], y_label: "problems" },
    Chart { title: "Cache share per round", kind: "round", x: "round", x_label: "round", y: &["cache_share"], y_label: "share of cached problems" },
    Chart { title: "Tree depth", kind: "step", x: "step", x_label: "learner step", y: &["tree_depth_mean", "tree_depth_max"], y_label: "depth (segments)" },
    Chart { title: "Expansions per tree", kind: "step", x: "step", x_label: "learner step", y: &["expansions_per_tree"], y_label: "expansions" },
];

const TIME_FIELDS: &[(&str, &str)] = &[
    ("time_generate_s", "generation"),
    ("time_bookkeeping_s", "tree bookkeeping"),
    ("time_verify_s", "verification"),
    ("time_train_s", "training"),
];

const COLORS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

fn series(run: &RunData, kind: &str, x: &str, y: &str) -> Vec<(f64, f64)> {
    run.records
        .iter()
        .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
        .filter_map(|r| Some((r.get(x)?.as_f64()?, r.get(y)?.as_f64()?)))
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws one chart as inline SVG; returns the number of points drawn.
fn svg_chart(out: &mut String, chart: &Chart, runs: &[RunData]) -> usize {
    let (w, h, ml, mr, mt, mb) = (520.0, 300.0, 60.0, 15.0, 15.0, 45.0);
    let mut lines: Vec<(String, &str, Vec<(f64, f64)>)> = Vec::new();
    for (ri, run) in runs.iter().enumerate() {
        for (yi, y) in chart.y.iter().enumerate() {
            let pts = series(run, chart.kind, chart.x, y);
            if !pts.is_empty() {
                let label = if chart.y.len() > 1 { format!("{} {}", run.name, y) } else { run.name.clone() };
                lines.push((label, COLORS[(ri * chart.y.len() + yi) % COLORS.len()], pts));
            }
        }
    }
    let n: usize = lines.iter().map(|l| l.2.len()).sum();
    let _ = write!(out, "<figure class=\"chart\" data-points=\"{n}\"><figcaption>{}</figcaption>", esc(chart.title));
    if n == 0 {
        out.push_str("<p class=\"empty\">no data recorded</p></figure>");
        return 0;
    }
    let all = lines.iter().flat_map(|l| l.2.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let px = |x: f64| ml + (x - x0) / (x1 - x0) * (w - ml - mr);
    let py = |y: f64| h - mb - (y - y0) / (y1 - y0) * (h - mt - mb);
    let _ = write!(out, "<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\">");
    let _ = write!(out, "<rect x=\"{ml}\" y=\"{mt}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>", w - ml - mr, h - mt - mb);
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let (xv, yv) = (x0 + f * (x1 - x0), y0 + f * (y1 - y0));
        let _ = write!(out, "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>", px(xv), h - mb + 14.0, fmt_tick(xv));
        let _ = write!(out, "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>", ml - 4.0, py(yv) + 4.0, fmt_tick(yv));
        let _ = write!(out, "<line x1=\"{ml}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>", w - mr, py(yv), py(yv));
    }
    let _ = write!(out, "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"middle\">{}</text>", (ml + w - mr) / 2.0, h - 8.0, esc(chart.x_label));
    let _ = write!(out, "<text transform=\"translate(14,{:.1}) rotate(-90)\" class=\"axis\" text-anchor=\"middle\">{}</text>", (mt + h - mb) / 2.0, esc(chart.y_label));
    for (label, color, pts) in &lines {
        let coords: Vec<String> = pts.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = write!(out, "<polyline class=\"series\" data-label=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>", esc(label), coords.join(" "));
        for &(x, y) in pts {
            let _ = write!(out, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"><title>{}: ({}, {:.4})</title></circle>", px(x), py(y), esc(label), fmt_tick(x), y);
        }
    }
    out.push_str("</svg><div class=\"legend\">");
    for (label, color, _) in &lines {
        let _ = write!(out, "<span><i style=\"background:{color}\"></i>{}</span>", esc(label));
    }
    out.push_str("</div></figure>");
    n
}

/// The time split: the last cumulative value of each phase, per run, as stacked bars.
fn svg_time_split(out: &mut String, runs: &[RunData]) -> usize {
    let mut rows = Vec::new();
    for run in runs {
        let last = |f: &str| {
            run.records.iter().rev().filter_map(|r| r.get(f)?.as_f64()).next().unwrap_or(0.0)
        };
        let vals: Vec<f64> = TIME_FIELDS.iter().map(|(f, _)| last(f)).collect();
        if vals.iter().sum::<f64>() > 0.0 {
            rows.push((run.name.clone(), vals));
        }
    }
    let _ = write!(out, "<figure class=\"chart\" data-points=\"{}\"><figcaption>Where the time went</figcaption>", rows.len());
    if rows.is_empty() {
        out.push_str("<p class=\"empty\">no data recorded</p></figure>");
        return 0;
    }
    let (w, bar, gap, ml) = (520.0, 22.0, 10.0, 120.0);
    let h = rows.len() as f64 * (bar + gap) + 10.0;
    let _ = write!(out, "<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">");
    for (i, (name, vals)) in rows.iter().enumerate() {
        let total: f64 = vals.iter().sum();
        let y = 5.0 + i as f64 * (bar + gap);
        let _ = write!(out, "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>", ml - 6.0, y + bar * 0.7, esc(name));
        let mut x = ml;
        for (j, v) in vals.iter().enumerate() {
            let bw = v / total * (w - ml - 10.0);
            let _ = write!(out, "<rect class=\"series\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bar}\" fill=\"{}\"><title>{}: {:.1} s ({:.1}%)</title></rect>", COLORS[j % COLORS.len()], TIME_FIELDS[j].1, v, 100.0 * v / total);
            x += bw;
        }
    }
    out.push_str("</svg><div class=\"legend\">");
    for (j, (_, label)) in TIME_FIELDS.iter().enumerate() {
        let _ = write!(out, "<span><i style=\"background:{}\"></i>{label}</span>", COLORS[j % COLORS.len()]);
    }
    out.push_str("</div></figure>");
    rows.len()
}

/// Renders the whole page.
pub fn render(runs: &[RunData], title: &str) -> String {
    let mut body = String::new();
    let mut points = 0;
    for chart in CHARTS {
        points += svg_chart(&mut body, chart, runs);
    }
    points += svg_time_split(&mut body, runs);
    let names: Vec<String> = runs.iter().map(|r| esc(&r.name)).collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}h1{{font-size:20px}}\
.grid{{display:flex;flex-wrap:wrap;gap:16px}}.chart{{margin:0;border:1px solid #ddd;padding:8px;border-radius:6px}}\
figcaption{{font-weight:600;margin-bottom:4px}}.tick{{font-size:10px;fill:#555}}.axis{{font-size:11px;fill:#333}}\
.legend span{{margin-right:12px;font-size:12px}}.legend i{{display:inline-block;width:10px;height:10px;margin-right:4px}}\
.empty{{color:#999;width:520px}}</style></head><body><h1>{title}</h1><p>Runs: {runs}. {points} data points.</p>\
<div class=\"grid\">{body}</div></body></html>",
        title = esc(title),
        runs = names.join(", "),
    )
}

/// `deepsearch report RUN...`: writes `--out` (default: RUN/report.html for one run).
pub fn write_report(dirs: &[PathBuf], out: &Path) -> Result<()> {
    let runs = dirs.iter().map(|d| load_run(d)).collect::<Result<Vec<_>>>()?;
    let html = render(&runs, "DeepSearch run report");
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, html).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn charts_carry_every_point_of_every_run() {
        let a = RunData {
            name: "a".into(),
            records: vec![
                json!({"kind": "step", "step": 1, "generated_tokens": 100, "reward_mean": -0.5, "time_train_s": 2.0}),
                json!({"kind": "step", "step": 2, "generated_tokens": 250, "reward_mean": 0.1, "time_train_s": 3.0}),
                json!({"kind": "eval", "step": 2, "generated_tokens": 250, "pass1": 0.3}),
            ],
        };
        let b = RunData { name: "b<x>".into(), records: vec![json!({"kind": "step", "step": 1, "reward_mean": 0.2})] };
        let html = render(&[a, b], "t");
        assert!(html.contains("b&lt;x&gt;"));
        // reward-vs-step has 3 points (2 from a, 1 from b)
        assert!(html.contains("<figure class=\"chart\" data-points=\"3\"><figcaption>Training reward vs step"));
        assert!(html.contains("data-points=\"1\"><figcaption>Held-out accuracy vs step"));
        assert!(html.contains("no data recorded"), "charts without data say so");
        assert!(!html.contains("<script"), "the page needs no script");
    }
}
