//! `report.html`: a self-contained page drawn from one or more run folders' `metrics.jsonl`,
//! several runs on the same axes (issue #7). Inline SVG and CSS, one small inline script (click a
//! run to hide or show it); a Content-Security-Policy of `default-src 'none'` so the page can load
//! nothing, from the network or from disk. `scripts/report-browser-test.sh` opens it in headless
//! Chromium and checks it through the machine-readable markers below.
//!
//! `metrics.jsonl` holds one JSON object per line with a `kind` field:
//! - `step`: one learner step (`step`, `generated_tokens`, `reward_mean`, `tree_depth_mean`,
//!   `tree_depth_max`, `expansions_per_tree`, and cumulative seconds `time_generate_s`,
//!   `time_bookkeeping_s`, `time_verify_s`, `time_train_s`; optional `elapsed_s`, the wall
//!   time since the run started);
//! - `eval`: held-out evaluation (`step`, `generated_tokens`, `pass1`, `pass_at_k`);
//! - `round`: coordinator round summary (`round`, `hard_set`, `cache_share`, and where known
//!   `step`, `generated_tokens`).
//!
//! Missing or `null` fields are skipped, so a chart shows whatever the run recorded, and a chart
//! with nothing to show says "no data recorded". Other kinds and fields are ignored. A line that
//! is not a JSON object with a string `kind`, or a known field that is neither a number nor
//! `null`, is an error naming file, line and field.
//!
//! Markers: every chart is a `<figure data-chart="ID" data-points="N">` (N: points of all its
//! series); every series carries `data-run="I"` (the run's index), `data-series="FIELD"` and
//! `data-series-points="N"` (its raw points); an empty chart holds
//! `<p class="empty">no data recorded</p>`; the script sets `data-script="ok"` on `<html>` when it
//! ran to the end.
//!
//! Long per-step series (more than [`SMOOTH_ABOVE`] points) would be a solid band of noise: their
//! raw points are a faint thin line under a centred moving average over about 2% of the points
//! (at least [`MIN_WINDOW`]), and their series `<g>` carries `data-smoothed-window="W"`; the legend
//! names the window. Eval and round series are drawn as recorded. Hover dots only on unsmoothed
//! series of at most [`MAX_DOTS`] points. The faint raw lines are drawn first, each in its own
//! `<g class="raw" data-run="I">`, so that no run's noise covers another run's average.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The records of one run folder.
#[derive(Debug, Clone)]
pub struct RunData {
    pub name: String,
    pub records: Vec<Value>,
}

/// Fields the report reads as numbers; anything else in them is a load error.
const NUMERIC_FIELDS: &[&str] = &[
    "step", "round", "generated_tokens", "reward_mean", "pass1", "pass_at_k", "hard_set", "cache_share",
    "tree_depth_mean", "tree_depth_max", "expansions_per_tree", "time_generate_s", "time_bookkeeping_s",
    "time_verify_s", "time_train_s", "elapsed_s",
];

/// Checks one parsed line; the error names the field.
fn check_record(v: &Value) -> Result<()> {
    let Some(obj) = v.as_object() else { bail!("not a JSON object") };
    match obj.get("kind") {
        Some(Value::String(_)) => {}
        Some(other) => bail!("field \"kind\" must be a string, got {other}"),
        None => bail!("field \"kind\" is missing"),
    }
    for f in NUMERIC_FIELDS {
        match obj.get(*f) {
            None | Some(Value::Null | Value::Number(_)) => {}
            Some(other) => bail!("field \"{f}\" must be a number, got {other}"),
        }
    }
    Ok(())
}

/// Reads `DIR/metrics.jsonl`; a malformed line is an error naming file and line.
pub fn load_run(dir: &Path) -> Result<RunData> {
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: invalid JSON", path.display(), i + 1))?;
        check_record(&v).with_context(|| format!("{}:{}: bad record", path.display(), i + 1))?;
        records.push(v);
    }
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    Ok(RunData { name, records })
}

/// One line chart: for each run and each `(field, label)` of `series`, the points
/// (`x`, field) of the records of `kind`.
struct Chart {
    id: &'static str,
    title: &'static str,
    kind: &'static str,
    x: &'static str,
    x_label: &'static str,
    series: &'static [(&'static str, &'static str)],
    y_label: &'static str,
    /// The y axis starts at 0 (counts, shares, accuracies) instead of at the data's minimum.
    y_from_zero: bool,
}

const REWARD: &[(&str, &str)] = &[("reward_mean", "reward")];
const PASS: &[(&str, &str)] = &[("pass1", "Pass@1"), ("pass_at_k", "Pass@k")];

/// The charts, by section.
const SECTIONS: &[(&str, &[Chart])] = &[
    ("Learning", &[
        Chart { id: "reward-step", title: "Training reward vs learner step", kind: "step", x: "step", x_label: "learner step", series: REWARD, y_label: "mean terminal reward", y_from_zero: false },
        Chart { id: "reward-tokens", title: "Training reward vs generated tokens", kind: "step", x: "generated_tokens", x_label: "generated tokens (actors)", series: REWARD, y_label: "mean terminal reward", y_from_zero: false },
        Chart { id: "eval-step", title: "Held-out accuracy vs learner step", kind: "eval", x: "step", x_label: "learner step", series: PASS, y_label: "accuracy", y_from_zero: true },
        Chart { id: "eval-tokens", title: "Held-out accuracy vs generated tokens", kind: "eval", x: "generated_tokens", x_label: "generated tokens (actors)", series: PASS, y_label: "accuracy", y_from_zero: true },
    ]),
    ("Coordinator", &[
        Chart { id: "hard-set", title: "Hard-set size per round", kind: "round", x: "round", x_label: "round", series: &[("hard_set", "hard set")], y_label: "problems", y_from_zero: true },
        Chart { id: "cache-share", title: "Cache share per round", kind: "round", x: "round", x_label: "round", series: &[("cache_share", "cache share")], y_label: "share of problems cached", y_from_zero: true },
    ]),
    ("Search", &[
        Chart { id: "tree-depth", title: "Tree depth", kind: "step", x: "step", x_label: "learner step", series: &[("tree_depth_mean", "mean"), ("tree_depth_max", "max")], y_label: "depth (segments)", y_from_zero: true },
        Chart { id: "expansions", title: "Expansions per tree", kind: "step", x: "step", x_label: "learner step", series: &[("expansions_per_tree", "expansions")], y_label: "expansions", y_from_zero: true },
    ]),
];

/// The phases of the time split: cumulative seconds in `step` records.
const TIME_FIELDS: &[(&str, &str)] = &[
    ("time_generate_s", "generation"),
    ("time_bookkeeping_s", "tree bookkeeping"),
    ("time_verify_s", "verification"),
    ("time_train_s", "training"),
];

/// Run colours (Okabe–Ito, readable for colour-blind readers); a run keeps its colour everywhere.
const RUN_COLORS: &[&str] = &["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];
/// Phase colours of the time split.
const PHASE_COLORS: &[&str] = &["#4C72B0", "#DD8452", "#55A868", "#8172B3"];
/// Dash patterns telling apart the series of one run in one chart.
const DASHES: &[&str] = &["", "7 4", "2 3"];
/// Series with more points than this, and smoothed ones, are drawn as lines only (no hover dots).
const MAX_DOTS: usize = 100;
/// Per-step series with more points than this get a moving average over the faint raw line.
const SMOOTH_ABOVE: usize = 60;
/// The smallest moving-average window.
const MIN_WINDOW: usize = 5;
/// Names longer than this (in characters) are shortened in the time split's label column.
const MAX_LABEL_CHARS: usize = 24;

/// The moving-average window for a series of `n` points: about 2% of them, at least
/// [`MIN_WINDOW`], odd so that it is centred on a point.
fn smooth_window(n: usize) -> usize {
    let w = ((n as f64 * 0.02).round() as usize).max(MIN_WINDOW);
    w | 1
}

/// The centred moving average of `ys` over `window` values; near the ends the window is cut
/// to the values there are (so the first value averages `window / 2 + 1` of them).
fn moving_average(ys: &[f64], window: usize) -> Vec<f64> {
    let half = window / 2;
    let mut prefix = Vec::with_capacity(ys.len() + 1);
    prefix.push(0.0);
    for y in ys {
        prefix.push(prefix[prefix.len() - 1] + y);
    }
    (0..ys.len())
        .map(|i| {
            let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(ys.len()));
            (prefix[hi] - prefix[lo]) / (hi - lo) as f64
        })
        .collect()
}

/// `name` cut to at most `max` characters, with an ellipsis in the middle where it was cut
/// (both ends of run names and paths tell runs apart).
fn shorten(name: &str, max: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= max || max < 3 {
        return name.to_string();
    }
    let tail = (max - 1) / 2;
    let head = max - 1 - tail;
    let mut s: String = chars[..head].iter().collect();
    s.push('…');
    s.extend(&chars[chars.len() - tail..]);
    s
}

fn color(run: usize) -> &'static str {
    RUN_COLORS[run % RUN_COLORS.len()]
}

fn series(run: &RunData, kind: &str, x: &str, y: &str) -> Vec<(f64, f64)> {
    run.records
        .iter()
        .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
        .filter_map(|r| Some((r.get(x)?.as_f64()?, r.get(y)?.as_f64()?)))
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .collect()
}

/// The largest value of `field` in any record (cumulative counters: the latest).
fn max_of(run: &RunData, field: &str) -> Option<f64> {
    run.records.iter().filter_map(|r| r.get(field)?.as_f64()).filter(|v| v.is_finite()).reduce(f64::max)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A linear axis with "nice" ticks (1, 2 or 5 times a power of ten).
#[derive(Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
    ticks: Vec<f64>,
}

impl Axis {
    /// Covers `[lo, hi]`; `integer`: ticks at whole numbers only (steps, rounds).
    fn nice(mut lo: f64, mut hi: f64, integer: bool) -> Axis {
        if hi <= lo {
            let span = (lo.abs() * 0.1).max(if integer { 1.0 } else { 0.1 });
            let was_nonneg = lo >= 0.0;
            lo -= span;
            hi += span;
            if was_nonneg {
                lo = lo.max(0.0);
            }
        }
        let raw = (hi - lo) / 8.0; // at most ~9 ticks
        let mag = 10f64.powf(raw.log10().floor());
        let mut step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw * 0.999).unwrap_or(10.0 * mag);
        if integer {
            step = step.max(1.0).round();
        }
        let (first, last) = ((lo / step).floor() as i64, (hi / step).ceil() as i64);
        let ticks: Vec<f64> = (first..=last).map(|i| if i == 0 { 0.0 } else { i as f64 * step }).collect();
        Axis { lo: first as f64 * step, hi: last as f64 * step, step, ticks }
    }

    /// Maps a value into `[a, b]` (pixels).
    fn map(&self, v: f64, a: f64, b: f64) -> f64 {
        a + (v - self.lo) / (self.hi - self.lo) * (b - a)
    }

    /// A tick label with as many decimals as the step needs; k / M for big numbers.
    fn label(&self, v: f64) -> String {
        if v.abs() < self.step * 1e-9 {
            return "0".into();
        }
        let (div, suffix) = if self.step >= 1e6 { (1e6, "M") } else if self.step >= 1e3 { (1e3, "k") } else { (1.0, "") };
        let s = self.step / div;
        let decimals = if s >= 1.0 { 0 } else { ((-s.log10()).ceil() as usize).min(4) };
        format!("{:.*}{suffix}", decimals, v / div)
    }
}

/// A value for a tooltip or the summary table.
fn fmt_value(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_tokens(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=7199 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s / 60 % 60),
    }
}

/// One drawn series of a chart.
struct Line {
    run: usize,
    dash: usize,
    field: &'static str,
    label: String,
    pts: Vec<(f64, f64)>,
    /// The moving-average window, where the series is smoothed.
    window: Option<usize>,
}

// Chart geometry (SVG user units; the SVG scales to its column).
const W: f64 = 560.0;
const H: f64 = 310.0;
const ML: f64 = 64.0;
const MR: f64 = 16.0;
const MT: f64 = 12.0;
const MB: f64 = 48.0;

fn chart_lines(chart: &Chart, runs: &[RunData]) -> Vec<Line> {
    let mut lines = Vec::new();
    for (ri, run) in runs.iter().enumerate() {
        for (si, (field, label)) in chart.series.iter().enumerate() {
            let pts = series(run, chart.kind, chart.x, field);
            if !pts.is_empty() {
                let label = if chart.series.len() > 1 { format!("{} · {label}", run.name) } else { run.name.clone() };
                let window = (chart.kind == "step" && pts.len() > SMOOTH_ABOVE).then(|| smooth_window(pts.len()));
                lines.push(Line { run: ri, dash: si, field, label, pts, window });
            }
        }
    }
    lines
}

/// Draws one chart as a `<figure>` with inline SVG and a legend; returns the points drawn.
fn svg_chart(out: &mut String, chart: &Chart, runs: &[RunData]) -> usize {
    let lines = chart_lines(chart, runs);
    let n: usize = lines.iter().map(|l| l.pts.len()).sum();
    let _ = write!(out, "<figure class=\"chart\" data-chart=\"{}\" data-points=\"{n}\"><figcaption>{}</figcaption>", chart.id, esc(chart.title));
    if n == 0 {
        out.push_str("<p class=\"empty\">no data recorded</p></figure>");
        return 0;
    }
    let pts = || lines.iter().flat_map(|l| l.pts.iter());
    let (x0, x1) = pts().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = pts().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let integer_x = pts().all(|p| p.0 == p.0.round());
    let xa = Axis::nice(x0, x1, integer_x);
    let ya = if chart.y_from_zero && y0 >= 0.0 { Axis::nice(0.0, y1, false) } else { Axis::nice(y0, y1, false) };
    let px = |x: f64| xa.map(x, ML, W - MR);
    let py = |y: f64| ya.map(y, H - MB, MT);
    let _ = write!(out, "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">", esc(chart.title));
    for &t in &xa.ticks {
        let _ = write!(out, "<line class=\"gl\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{MT}\" y2=\"{}\"/><text class=\"tick\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>", H - MB + 4.0, H - MB + 18.0, xa.label(t), x = px(t));
    }
    for &t in &ya.ticks {
        let _ = write!(out, "<line class=\"gl\" x1=\"{}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>", ML - 4.0, W - MR, ML - 7.0, py(t) + 4.0, ya.label(t), y = py(t));
    }
    let _ = write!(out, "<rect class=\"frame\" x=\"{ML}\" y=\"{MT}\" width=\"{}\" height=\"{}\"/>", W - ML - MR, H - MT - MB);
    let _ = write!(out, "<text class=\"axis\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>", (ML + W - MR) / 2.0, H - 8.0, esc(chart.x_label));
    let _ = write!(out, "<text class=\"axis\" transform=\"translate(15,{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>", (MT + H - MB) / 2.0, esc(chart.y_label));
    let coords = |pts: &mut dyn Iterator<Item = (f64, f64)>| pts.map(|(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect::<Vec<_>>().join(" ");
    // the raw values of smoothed series, faint and thin, under every series' line
    for l in lines.iter().filter(|l| l.window.is_some()) {
        let _ = write!(out, "<g class=\"raw\" data-run=\"{}\"><polyline fill=\"none\" stroke=\"{}\" stroke-width=\"0.8\" stroke-opacity=\"0.22\" points=\"{}\"/></g>", l.run, color(l.run), coords(&mut l.pts.iter().copied()));
    }
    for l in &lines {
        let c = color(l.run);
        let _ = write!(out, "<g class=\"series\" data-run=\"{}\" data-series=\"{}\" data-series-points=\"{}\"", l.run, l.field, l.pts.len());
        let dash = DASHES[l.dash % DASHES.len()];
        match l.window {
            Some(w) => {
                // the moving average, in x order, over the raw line drawn above
                let _ = write!(out, " data-smoothed-window=\"{w}\">");
                let mut sorted = l.pts.clone();
                sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
                let ys: Vec<f64> = sorted.iter().map(|p| p.1).collect();
                let avg = moving_average(&ys, w);
                let _ = write!(out, "<polyline class=\"smooth\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2.2\" stroke-linejoin=\"round\" stroke-dasharray=\"{dash}\" points=\"{}\"><title>{}: moving average of {w} steps</title></polyline>", coords(&mut sorted.iter().zip(&avg).map(|(p, a)| (p.0, *a))), esc(&l.label));
            }
            None => {
                let _ = write!(out, "><polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\" points=\"{}\"/>", coords(&mut l.pts.iter().copied()));
            }
        }
        if l.window.is_none() && l.pts.len() <= MAX_DOTS {
            for &(x, y) in &l.pts {
                let _ = write!(out, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"><title>{}\n{}: {}\n{}: {}</title></circle>", px(x), py(y), esc(&l.label), esc(chart.x_label), fmt_value(x), esc(chart.y_label), fmt_value(y));
            }
        }
        out.push_str("</g>");
    }
    out.push_str("</svg><div class=\"legend\">");
    for l in &lines {
        let _ = write!(out, "<span data-run=\"{}\"><svg width=\"26\" height=\"10\"><line x1=\"1\" x2=\"25\" y1=\"5\" y2=\"5\" stroke=\"{}\" stroke-width=\"2.5\" stroke-dasharray=\"{}\"/></svg>{} <small>({} pts{})</small></span>", l.run, color(l.run), DASHES[l.dash % DASHES.len()], esc(&l.label), l.pts.len(), l.window.map(|w| format!(", avg of {w}")).unwrap_or_default());
    }
    out.push_str("</div>");
    if lines.iter().any(|l| l.window.is_some()) {
        out.push_str("<p class=\"note\">Faint: every step. Bold: centred moving average (window in the legend, about 2% of the steps).</p>");
    }
    out.push_str("</figure>");
    n
}

/// The time split: the last cumulative value of each phase, per run, as 100% stacked bars.
fn svg_time_split(out: &mut String, runs: &[RunData]) -> usize {
    let rows: Vec<(usize, Vec<f64>)> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| (i, TIME_FIELDS.iter().map(|(f, _)| max_of(run, f).unwrap_or(0.0).max(0.0)).collect::<Vec<f64>>()))
        .filter(|(_, vals)| vals.iter().sum::<f64>() > 0.0)
        .collect();
    let _ = write!(out, "<figure class=\"chart\" data-chart=\"time-split\" data-points=\"{}\"><figcaption>Where the time went (cumulative seconds per phase)</figcaption>", rows.len());
    if rows.is_empty() {
        out.push_str("<p class=\"empty\">no data recorded</p></figure>");
        return 0;
    }
    // the label column fits the longest (shortened) name: about 7 units a character at 12px
    let longest = rows.iter().map(|(ri, _)| runs[*ri].name.chars().count().min(MAX_LABEL_CHARS)).max().unwrap_or(0);
    let (bar, gap, mr) = (26.0, 14.0, 70.0);
    let ml = (longest as f64 * 7.0 + 16.0).max(60.0);
    let h = rows.len() as f64 * (bar + gap) + gap;
    let _ = write!(out, "<svg viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"time split\">");
    for (i, (ri, vals)) in rows.iter().enumerate() {
        let total: f64 = vals.iter().sum();
        let y = gap + i as f64 * (bar + gap);
        let name = &runs[*ri].name;
        let _ = write!(out, "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{}\"><title>{}</title>{}</text>", ml - 8.0, y + bar * 0.68, color(*ri), esc(name), esc(&shorten(name, MAX_LABEL_CHARS)));
        let mut x = ml;
        for (j, v) in vals.iter().enumerate().filter(|(_, v)| **v > 0.0) {
            let bw = v / total * (W - ml - mr);
            let pct = 100.0 * v / total;
            let _ = write!(out, "<g class=\"series\" data-run=\"{ri}\" data-series=\"{}\" data-series-points=\"1\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bar}\" fill=\"{}\"><title>{}: {}: {} ({pct:.1}%)</title></rect>", TIME_FIELDS[j].0, PHASE_COLORS[j % PHASE_COLORS.len()], esc(name), TIME_FIELDS[j].1, fmt_duration(*v));
            if bw >= 34.0 {
                let _ = write!(out, "<text class=\"inbar\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{pct:.0}%</text>", x + bw / 2.0, y + bar * 0.68);
            }
            out.push_str("</g>");
            x += bw;
        }
        let _ = write!(out, "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">{}</text>", x + 6.0, y + bar * 0.68, fmt_duration(total));
    }
    out.push_str("</svg><div class=\"legend\">");
    for (j, (_, label)) in TIME_FIELDS.iter().enumerate() {
        let _ = write!(out, "<span><i style=\"background:{}\"></i>{label}</span>", PHASE_COLORS[j % PHASE_COLORS.len()]);
    }
    out.push_str("</div></figure>");
    rows.len()
}

/// First, last and best (highest) value of `field` over the run's `eval` records, in order.
fn first_last_best(run: &RunData, field: &str) -> Option<(f64, f64, f64)> {
    let vals: Vec<f64> = series(run, "eval", "step", field).into_iter().map(|p| p.1).collect();
    let best = vals.iter().copied().reduce(f64::max)?;
    Some((vals[0], vals[vals.len() - 1], best))
}

/// The summary table: one row per run.
fn summary_table(out: &mut String, runs: &[RunData]) {
    out.push_str("<table class=\"summary\"><thead><tr><th rowspan=\"2\">run</th><th rowspan=\"2\">steps</th><th rowspan=\"2\">generated tokens</th><th rowspan=\"2\">wall time</th><th colspan=\"3\">held-out Pass@1</th><th colspan=\"3\">held-out Pass@k</th></tr><tr><th>first</th><th>last</th><th>best</th><th>first</th><th>last</th><th>best</th></tr></thead><tbody>");
    let dash = || "<td class=\"na\">—</td>".to_string();
    for (ri, run) in runs.iter().enumerate() {
        let steps = run.records.iter().filter(|r| r.get("kind").and_then(Value::as_str) == Some("step")).filter_map(|r| r.get("step")?.as_f64()).reduce(f64::max);
        let cell = |v: Option<String>| v.map(|s| format!("<td>{s}</td>")).unwrap_or_else(dash);
        let _ = write!(out, "<tr data-run=\"{ri}\"><th><i style=\"background:{}\"></i>{}</th>{}{}{}", color(ri), esc(&run.name), cell(steps.map(fmt_value)), cell(max_of(run, "generated_tokens").map(fmt_tokens)), cell(max_of(run, "elapsed_s").map(fmt_duration)));
        for field in ["pass1", "pass_at_k"] {
            match first_last_best(run, field) {
                Some((f, l, b)) => {
                    let _ = write!(out, "<td>{f:.3}</td><td>{l:.3}</td><td>{b:.3}</td>");
                }
                None => out.push_str(&dash().repeat(3)),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

const STYLE: &str = "body{font:15px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;padding:20px 24px;max-width:1800px;color:#1d1d1f;background:#fafafa}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}\
.meta{color:#555;margin:0 0 10px}.runs button{font:inherit;margin:0 8px 6px 0;padding:3px 10px;border:1px solid #bbb;border-radius:14px;background:#fff;cursor:pointer}\
.runs button[aria-pressed=false]{opacity:.45;text-decoration:line-through}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:16px}\
.chart{margin:0;background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px 12px}.chart>svg{width:100%;height:auto;display:block}\
figcaption{font-weight:600;margin-bottom:6px}.tick{font-size:12px;fill:#444}.axis{font-size:13px;fill:#222}.inbar{font-size:12px;fill:#fff;font-weight:600}\
line.gl{stroke:#e6e6e6}.frame{fill:none;stroke:#888}circle{stroke:#fff;stroke-width:.8}\
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:13px;margin-top:4px}.legend svg{vertical-align:middle;margin-right:4px}\
.legend i,.summary i{display:inline-block;width:11px;height:11px;margin-right:6px;border-radius:2px;vertical-align:-1px}\
.legend small{color:#777}.off{opacity:.08}.legend .off,.summary .off{opacity:.35}\
.note{color:#666;font-size:12px;margin:4px 0 0}.empty{color:#888;font-style:italic;padding:40px 0;text-align:center;border:1px dashed #ccc;border-radius:6px}\
.summary{border-collapse:collapse;background:#fff;font-variant-numeric:tabular-nums}.summary th,.summary td{border:1px solid #ddd;padding:4px 10px;text-align:right}\
.summary tbody th{text-align:left}.summary thead th{background:#f0f0f0;text-align:center}.na{color:#aaa}";

/// Click a run's button to hide or show it in every chart; marks the page when it ran through.
const SCRIPT: &str = "document.querySelectorAll('.runs button').forEach(function(b){b.addEventListener('click',function(){\
var on=b.getAttribute('aria-pressed')!=='false';b.setAttribute('aria-pressed',on?'false':'true');\
document.querySelectorAll('[data-run=\"'+b.dataset.run+'\"]').forEach(function(e){if(e!==b){e.classList.toggle('off',on);}});});});\
document.documentElement.dataset.script='ok';";

/// Renders the whole page.
pub fn render(runs: &[RunData], title: &str) -> String {
    let mut body = String::new();
    let mut points = 0;
    body.push_str("<h2>Summary</h2>");
    summary_table(&mut body, runs);
    for (section, charts) in SECTIONS {
        let _ = write!(body, "<h2>{section}</h2><div class=\"grid\">");
        for chart in *charts {
            points += svg_chart(&mut body, chart, runs);
        }
        if *section == "Search" {
            body.push_str("</div><h2>Time</h2><div class=\"grid\">");
            points += svg_time_split(&mut body, runs);
        }
        body.push_str("</div>");
    }
    let mut buttons = String::new();
    for (ri, run) in runs.iter().enumerate() {
        let _ = write!(buttons, "<button type=\"button\" data-run=\"{ri}\" aria-pressed=\"true\" style=\"color:{c};border-color:{c}\">■ {}</button>", esc(&run.name), c = color(ri));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title><style>{STYLE}</style></head>\
<body><h1>{title}</h1><p class=\"meta\">{n} run(s), {points} data points from metrics.jsonl. Hover a point for its value (series of more than {MAX_DOTS} points have none); click a run to hide or show it.</p>\
<div class=\"runs\">{buttons}</div>{body}<script>{SCRIPT}</script></body></html>",
        title = esc(title),
        n = runs.len(),
    )
}

/// Gives runs with the same folder name (`a/out`, `b/out`) their full paths as names.
fn disambiguate(runs: &mut [RunData], dirs: &[PathBuf]) {
    let names: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
    for (run, dir) in runs.iter_mut().zip(dirs) {
        if names.iter().filter(|n| **n == run.name).count() > 1 {
            run.name = dir.display().to_string();
        }
    }
}

/// `deepsearch report RUN...`: writes `out` (atomically: a temporary file renamed).
pub fn write_report(dirs: &[PathBuf], out: &Path) -> Result<()> {
    let mut runs = dirs.iter().map(|d| load_run(d)).collect::<Result<Vec<_>>>()?;
    disambiguate(&mut runs, dirs);
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

    /// The `<figure>` of chart `id`, up to its end.
    fn figure<'a>(html: &'a str, id: &str) -> &'a str {
        let start = html.find(&format!("data-chart=\"{id}\"")).unwrap_or_else(|| panic!("chart {id} missing"));
        let end = html[start..].find("</figure>").expect("figure closed");
        &html[start..start + end]
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report").join(name)
    }

    const ALL_CHARTS: &[&str] =
        &["reward-step", "reward-tokens", "eval-step", "eval-tokens", "hard-set", "cache-share", "tree-depth", "expansions", "time-split"];

    #[test]
    fn charts_carry_every_point_of_every_run() {
        let step = |s: u32, tok: u32, r: f64| json!({"kind": "step", "step": s, "generated_tokens": tok, "reward_mean": r, "tree_depth_mean": 2.5, "tree_depth_max": 4, "time_train_s": 2.0 * s as f64, "time_generate_s": 5.0 * s as f64});
        let a = RunData {
            name: "a".into(),
            records: vec![
                step(1, 100, -0.5),
                step(2, 250, 0.1),
                json!({"kind": "eval", "step": 2, "generated_tokens": 250, "pass1": 0.3, "pass_at_k": 0.5}),
                json!({"kind": "round", "round": 1, "hard_set": 40, "cache_share": null}),
            ],
        };
        let b = RunData { name: "b<x>".into(), records: vec![json!({"kind": "step", "step": 1, "reward_mean": 0.2, "tree_depth_max": 3})] };
        let html = render(&[a, b], "t");
        assert!(html.contains("b&lt;x&gt;"), "names are escaped");
        let reward = figure(&html, "reward-step");
        assert!(reward.contains("data-points=\"3\""), "2 points of a + 1 of b: {reward}");
        assert!(reward.contains("data-run=\"0\" data-series=\"reward_mean\" data-series-points=\"2\""));
        assert!(reward.contains("data-run=\"1\" data-series=\"reward_mean\" data-series-points=\"1\""));
        assert_eq!(reward.matches("<circle").count(), 3);
        assert!(figure(&html, "reward-tokens").contains("data-points=\"2\""), "b has no generated_tokens");
        let depth = figure(&html, "tree-depth");
        assert!(depth.contains("data-points=\"5\""), "{depth}");
        assert!(depth.contains("data-run=\"1\" data-series=\"tree_depth_max\" data-series-points=\"1\""));
        assert!(!depth.contains("data-run=\"1\" data-series=\"tree_depth_mean\""), "no empty series");
        let eval = figure(&html, "eval-step");
        assert!(eval.contains("data-series=\"pass1\" data-series-points=\"1\"") && eval.contains("data-series=\"pass_at_k\" data-series-points=\"1\""));
        assert!(figure(&html, "hard-set").contains("data-series-points=\"1\""));
        let time = figure(&html, "time-split");
        assert!(time.contains("data-points=\"1\""), "only run a has times");
        assert!(time.contains("data-series=\"time_generate_s\"") && time.contains("71%"), "5/(5+2) of the time is generation: {time}");
        assert!(!time.contains("data-series=\"time_verify_s\""), "zero phases are not drawn");
        // charts without data say so instead of drawing an empty frame
        for id in ["cache-share", "expansions"] {
            let f = figure(&html, id);
            assert!(f.contains("data-points=\"0\"") && f.contains("no data recorded") && !f.contains("<svg"), "{id}: {f}");
        }
        assert!(!html.contains("data-series-points=\"0\""));
    }

    #[test]
    fn empty_runs_say_no_data_for_every_chart() {
        let html = render(&[RunData { name: "e".into(), records: vec![json!({"kind": "other"})] }], "t");
        for id in ALL_CHARTS {
            assert!(figure(&html, id).contains("no data recorded"), "{id}");
        }
        assert_eq!(html.matches("no data recorded").count(), ALL_CHARTS.len());
        assert!(!html.contains("class=\"series\""));
    }

    #[test]
    fn committed_fixtures_fill_every_chart_and_the_summary() {
        let runs = [load_run(&fixture("run-a")).unwrap(), load_run(&fixture("run-b")).unwrap()];
        let html = render(&runs, "t");
        for id in ALL_CHARTS {
            let f = figure(&html, id);
            assert!(!f.contains("no data recorded"), "{id}");
            for run in 0..2 {
                assert!(f.contains(&format!("data-run=\"{run}\"")), "{id} draws run {run}");
            }
        }
        assert!(!html.contains("data-series-points=\"0\""));
        let steps_a = runs[0].records.iter().filter(|r| r["kind"] == "step").count();
        assert!(figure(&html, "reward-step").contains(&format!("data-run=\"0\" data-series=\"reward_mean\" data-series-points=\"{steps_a}\"")));
        // summary: one row per run, with first/last/best Pass@1 and Pass@k
        assert_eq!(html.matches("<tr data-run=").count(), 2);
        let (f, l, b) = first_last_best(&runs[0], "pass1").unwrap();
        assert!(f < l && l <= b, "the fixture improves: {f} {l} {b}");
        assert!(html.contains(&format!("<td>{f:.3}</td><td>{l:.3}</td><td>{b:.3}</td>")));
        // nothing that could load: no URLs, and a policy that forbids loads anyway
        assert!(html.contains("default-src 'none'"));
        for bad in ["http:", "https:", "src=", "href=", "url(", "@import"] {
            assert!(!html.contains(bad), "{bad}");
        }
    }

    #[test]
    fn malformed_lines_name_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("{\"kind\":\"step\",\"step\":1}\n\n{\"kind\":\"step\",\"step\":2,\n", ":3: invalid JSON"),
            ("{\"kind\":\"step\",\"step\":1}\n[1,2]\n", ":2: bad record: not a JSON object"),
            ("{\"step\":1}\n", ":1: bad record: field \"kind\" is missing"),
            ("{\"kind\":\"eval\",\"pass1\":\"0.5\"}\n", ":1: bad record: field \"pass1\" must be a number, got \"0.5\""),
        ];
        for (text, want) in cases {
            std::fs::write(dir.path().join("metrics.jsonl"), text).unwrap();
            let err = format!("{:#}", load_run(dir.path()).unwrap_err());
            assert!(err.contains(&format!("metrics.jsonl{want}")), "{err}");
        }
        let err = write_report(&[dir.path().to_path_buf()], &dir.path().join("r.html")).unwrap_err();
        assert!(format!("{err:#}").contains("metrics.jsonl:1"), "the command fails the same way");
        assert!(!dir.path().join("r.html").exists());
        let err = format!("{:#}", load_run(&dir.path().join("missing")).unwrap_err());
        assert!(err.contains("missing/metrics.jsonl: cannot read"), "{err}");
    }

    #[test]
    fn axes_have_nice_ticks_covering_the_data() {
        for (lo, hi, integer) in [(0.0, 1.0, false), (-0.57, 0.33, false), (1.0, 16.0, true), (0.0, 101_476.0, true), (3.0, 3.0, true), (0.3, 0.3, false), (1.0, 3.0, true)] {
            let a = Axis::nice(lo, hi, integer);
            assert!(a.lo <= lo && a.hi >= hi && a.ticks.len() >= 2 && a.ticks.len() <= 12, "{lo} {hi}: {a:?}");
            let m = a.step / 10f64.powf(a.step.log10().floor());
            assert!([1.0, 2.0, 5.0].iter().any(|n| (m - n).abs() < 1e-9), "step {} is 1, 2 or 5 × 10^k", a.step);
            if integer {
                assert!(a.step >= 1.0 && a.ticks.iter().all(|t| t.fract() == 0.0), "{a:?}");
            }
        }
        let a = Axis::nice(0.0, 101_476.0, true);
        assert_eq!((a.label(0.0), a.label(20_000.0)), ("0".to_string(), "20k".to_string()));
        let a = Axis::nice(-0.57, 0.33, false);
        assert!((a.step - 0.2).abs() < 1e-12, "{a:?}");
        assert_eq!((a.label(-0.4), a.label(0.0)), ("-0.4".to_string(), "0".to_string()));
        assert_eq!(Axis::nice(3.0, 3.0, true).lo, 2.0);
        assert_eq!(Axis::nice(0.0, 0.0, true).lo, 0.0, "a single non-negative value keeps the axis non-negative");
        assert_eq!(fmt_duration(59.4), "59 s");
        assert_eq!((fmt_duration(75.4), fmt_duration(754.0), fmt_duration(7300.0)), ("1m 15s".into(), "12m 34s".into(), "2h 01m".into()));
    }

    #[test]
    fn moving_average_window_and_values() {
        assert_eq!([61, 300, 1000, 2342, 3561].map(smooth_window), [5, 7, 21, 47, 71], "about 2%, at least 5, odd");
        let avg = moving_average(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 5);
        assert_eq!(avg, vec![2.0, 2.5, 3.0, 4.0, 4.5, 5.0], "centred; cut at the ends");
        let avg = moving_average(&[0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0], 3);
        assert_eq!(avg, vec![0.0, 0.0, 3.0, 3.0, 3.0, 0.0, 0.0]);
        assert_eq!(moving_average(&[7.0], 5), vec![7.0]);
        assert!(moving_average(&[], 5).is_empty());
    }

    /// The `points` of the first polyline after `marker` in `html`, as (x, y) pairs.
    fn polyline(html: &str, marker: &str) -> Vec<(f64, f64)> {
        let start = html.find(marker).unwrap_or_else(|| panic!("no {marker}"));
        let pts = &html[start..];
        let pts = &pts[pts.find("points=\"").unwrap() + 8..];
        pts[..pts.find('"').unwrap()].split(' ').map(|p| p.split_once(',').map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap())).unwrap()).collect()
    }

    #[test]
    fn long_step_series_are_smoothed_and_lose_their_dots() {
        // steps alternate between reward 0 and 1: a band of noise around 0.5
        let steps = |n: u32| (1..=n).map(|s| json!({"kind": "step", "step": s, "reward_mean": (s % 2) as f64, "expansions_per_tree": 2})).collect::<Vec<_>>();
        let evals = |n: u32| (1..=n).map(|s| json!({"kind": "eval", "step": s, "pass1": 0.01 * (s % 7) as f64})).collect::<Vec<_>>();
        let long = RunData { name: "long".into(), records: [steps(61), evals(101)].concat() };
        let short = RunData { name: "short".into(), records: [steps(60), evals(100)].concat() };
        let html = render(&[long, short], "t");
        let reward = figure(&html, "reward-step");
        assert!(reward.contains("data-run=\"0\" data-series=\"reward_mean\" data-series-points=\"61\" data-smoothed-window=\"5\""), "{reward}");
        assert!(reward.contains("data-run=\"1\" data-series=\"reward_mean\" data-series-points=\"60\">"), "60 points are drawn as they are");
        assert_eq!(reward.matches("data-smoothed-window=").count(), 1);
        assert!(reward.contains("long <small>(61 pts, avg of 5)</small>") && reward.contains("moving average"), "the legend names the window");
        assert_eq!(reward.matches("<circle").count(), 60, "dots only for the short run");
        assert_eq!(reward.matches("<g class=\"raw\" data-run=\"0\">").count(), 1, "the raw values stay, faint");
        // the smoothed line has a point per step, and it is much flatter than the raw 0/1 values
        let raw = polyline(reward, "<g class=\"raw\"").iter().map(|p| p.1).collect::<Vec<_>>();
        let avg = polyline(reward, "<polyline class=\"smooth\"");
        assert_eq!((raw.len(), avg.len()), (61, 61));
        let spread = |v: &mut dyn Iterator<Item = f64>| v.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
        let (r0, r1) = spread(&mut raw.iter().copied());
        let (a0, a1) = spread(&mut avg[2..59].iter().map(|p| p.1));
        assert!((a1 - a0) < 0.25 * (r1 - r0), "window 5 over 0/1: 0.4..0.6 of the raw 0..1 span: {a0}..{a1} vs {r0}..{r1}");
        // eval series are never smoothed; 101 points lose their dots, 100 keep them
        let eval = figure(&html, "eval-step");
        assert!(!eval.contains("data-smoothed-window") && !eval.contains("class=\"raw\""));
        assert!(eval.contains("data-series-points=\"101\"") && eval.contains("data-series-points=\"100\""));
        assert_eq!(eval.matches("<circle").count(), 100);
    }

    #[test]
    fn long_names_fit_the_time_split() {
        let times = vec![json!({"kind": "step", "step": 1, "time_generate_s": 3.0, "time_train_s": 1.0})];
        let long = "deepsearch-keep-all-with-a-long-suffix";
        let runs = [RunData { name: "deepsearch-noprune".into(), records: times.clone() }, RunData { name: long.into(), records: times }];
        let html = render(&runs, "t");
        let time = figure(&html, "time-split");
        assert!(time.contains("<title>deepsearch-noprune</title>deepsearch-noprune</text>"), "{time}");
        assert_eq!(shorten(long, MAX_LABEL_CHARS), "deepsearch-k…long-suffix");
        assert!(time.contains(&format!("<title>{long}</title>deepsearch-k…long-suffix</text>")), "{time}");
        // the bars start right of a column as wide as the longest shown name (~7 units a char)
        let x: f64 = time[time.find("<rect x=\"").unwrap() + 9..].split('"').next().unwrap().parse().unwrap();
        assert!(x >= 24.0 * 7.0, "label column {x}");
        assert_eq!(shorten("grpo", 3), "grpo".chars().take(1).collect::<String>() + "…" + "o");
        assert_eq!(shorten("ab", 3), "ab");
    }

    #[test]
    fn same_folder_names_get_their_paths() {
        let mut runs = vec![RunData { name: "out".into(), records: vec![] }, RunData { name: "out".into(), records: vec![] }];
        disambiguate(&mut runs, &["x/out".into(), "y/out".into()]);
        assert_eq!((runs[0].name.as_str(), runs[1].name.as_str()), ("x/out", "y/out"));
    }
}
