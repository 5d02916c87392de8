//! `deepsearch train [--config FILE] [--set key=value ...] [--out DIR] [--resume]`: the embedded
//! default (design.md "Embedded default"; issue: one command runs the whole system on one machine).
//!
//! One process runs a coordinator, `actors.count` actors and one learner as tokio tasks that talk
//! real gRPC over `127.0.0.1:0` listeners, on built-in Countdown with a tiny Qwen2:
//! 1. resolve the config ([`crate::train::config`]) and write `OUT/config.resolved.toml`; logs
//!    (JSON lines, level `DEEPSEARCH_LOG`, default info) go to `OUT/train.log`, warnings (or
//!    `RUST_LOG`) to stderr;
//! 2. bootstrap the base policy by SFT (cached by config hash, [`crate::train::eval::bootstrap`]);
//! 3. evaluate it on the held-out set (`eval` line at step 0);
//! 4. serve coordinator (training problems added in-process), learner (Tree-GRPO
//!    `PolicyTrainer`, wrapped by [`Recording`] to observe every step and the latest weights;
//!    checkpoints of the whole training state in `OUT/checkpoints/learner`) and actors
//!    ([`crate::cmd_actor::EngineActor`]); `run.mode` picks the coordinator pipeline;
//! 5. append `step` lines (and `eval` lines every `eval.every_steps` steps, `round` lines when the
//!    coordinator's round advances) to `OUT/metrics.jsonl` (record kinds: see [`crate::report`]);
//!    a progress bar with live figures on a terminal, one line per step otherwise;
//! 6. at the time budget or Ctrl-C: stop actors, learner (it writes a checkpoint), coordinator in
//!    that order; final eval (not after Ctrl-C), final checkpoint in `OUT/checkpoints/final` (HF
//!    layout), the solution cache export, `OUT/report.html`.
//!
//! `--resume` continues the run in `OUT`: its `config.resolved.toml` (unless `--config`), the
//! coordinator's store (filter verdicts, cache, round), the newest learner checkpoint (weights,
//! optimizer, step, version) and the rest of the time budget; records are appended. A fresh run
//! refuses a folder that already holds one.
//!
//! `generated_tokens` in the metrics is the actors' count of all tokens they generated (search,
//! filter and sampling), so DeepSearch and GRPO runs compare at equal generated tokens.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use deepsearch_coordinator::Coordinator;
use deepsearch_learner::runtime::{run_learner, CoordinatorLink, PolicyTrainer, Trainer};
use deepsearch_learner::{Learner, SingleProcess};
use deepsearch_policy::PolicyModel;
use deepsearch_search::runtime::{run_actor, ActorDeps, ActorMetrics, ActorPolicy};
use deepsearch_search::Group;
use deepsearch_tasks::{countdown, Verdict, VerifierPool};
use serde_json::json;
use tokio::sync::watch;

use crate::cmd_actor::{EngineActor, ModelConfig};
use crate::train::config::{resolve, TrainConfig};
use crate::train::eval::{bootstrap, EvalResult, Evaluator};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Config file (TOML); default: the built-in embedded default (configs/embedded.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one key, e.g. `--set run.time_budget=5m` (value parsed as TOML, else a string).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Run folder (overrides `run.out_dir`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in the run folder (its config, coordinator state, newest learner
    /// checkpoint and the rest of its time budget).
    #[arg(long)]
    resume: bool,
}

/// What [`Recording`] sees of one step.
struct StepInfo {
    step: u64,
    version: u64,
    loss: f64,
    lr: f64,
    reward_mean: f64,
    correct_fraction: f64,
    groups: usize,
    trajectories: usize,
    response_tokens: usize,
    seconds: f64,
}

/// Latest exported weights (version, safetensors bytes).
type Latest = Arc<Mutex<Option<(u64, Arc<Vec<u8>>)>>>;

/// A [`Trainer`] that forwards to the real one and reports each step and the latest weights.
struct Recording {
    inner: PolicyTrainer,
    tx: tokio::sync::mpsc::UnboundedSender<StepInfo>,
    latest: Latest,
}

impl Trainer for Recording {
    fn train_step(&mut self, groups: Vec<Group>) -> deepsearch_learner::Result<deepsearch_learner::step::StepReport> {
        let trajs: Vec<_> = groups.iter().flat_map(|g| g.trajectories.iter()).collect();
        let n = trajs.len().max(1) as f64;
        let reward_mean = trajs.iter().map(|t| t.terminal_score).sum::<f64>() / n;
        let correct_fraction = trajs.iter().filter(|t| t.verdict == Verdict::Correct).count() as f64 / n;
        let (ng, nt) = (groups.len(), trajs.len());
        let t0 = Instant::now();
        let r = self.inner.train_step(groups)?;
        let _ = self.tx.send(StepInfo {
            step: r.step,
            version: r.policy_version,
            loss: r.loss,
            lr: r.lr,
            reward_mean,
            correct_fraction,
            groups: ng,
            trajectories: nt,
            response_tokens: r.response_tokens,
            seconds: t0.elapsed().as_secs_f64(),
        });
        Ok(r)
    }
    fn export_weights(&self) -> deepsearch_learner::Result<Vec<u8>> {
        let b = self.inner.export_weights()?;
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some((self.inner.policy_version(), Arc::new(b.clone())));
        Ok(b)
    }
    fn config_json(&self) -> String {
        self.inner.config_json()
    }
    fn policy_version(&self) -> u64 {
        self.inner.policy_version()
    }
    fn save_checkpoint(&mut self, root: &Path, keep: usize) -> deepsearch_learner::Result<Option<PathBuf>> {
        self.inner.save_checkpoint(root, keep)
    }
    fn restore_checkpoint(&mut self, root: &Path) -> deepsearch_learner::Result<Option<PathBuf>> {
        self.inner.restore_checkpoint(root)
    }
    fn renumber(&mut self, version: u64) -> deepsearch_learner::Result<()> {
        self.inner.renumber(version)
    }
}

/// Appends JSON lines to `OUT/metrics.jsonl`.
struct MetricsFile(std::fs::File);

impl MetricsFile {
    fn write(&mut self, v: serde_json::Value) -> anyhow::Result<()> {
        writeln!(self.0, "{v}")?;
        self.0.flush()?;
        Ok(())
    }
}

fn eval_line(step: u64, generated_tokens: u64, r: &EvalResult) -> serde_json::Value {
    json!({"kind": "eval", "step": step, "generated_tokens": generated_tokens, "pass1": r.pass1, "pass_at_k": r.pass_at_k, "eval_tokens": r.tokens})
}

fn stopped(mut rx: watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Where this run starts from.
struct Start {
    resume: bool,
    /// RL seconds already spent by earlier sessions of this run.
    elapsed_before: f64,
    /// Tokens generated by earlier sessions of this run.
    tokens_before: u64,
}

/// Resolves the config of a fresh or resumed run and checks the run folder.
fn resolve_run(args: &Args) -> anyhow::Result<(TrainConfig, Start)> {
    let mut cfg = resolve(args.config.as_deref(), &args.set)?;
    if let Some(o) = &args.out {
        cfg.run.out_dir = o.clone();
    }
    let out = cfg.run.out_dir.clone();
    let metrics = out.join("metrics.jsonl");
    if !args.resume {
        if metrics.exists() {
            anyhow::bail!(
                "run folder {} already holds a run ({} exists): continue it with `deepsearch train --resume --out {}`, or pick another --out",
                out.display(),
                metrics.display(),
                out.display()
            );
        }
        return Ok((cfg, Start { resume: false, elapsed_before: 0.0, tokens_before: 0 }));
    }
    if !metrics.exists() {
        anyhow::bail!("--resume: {} holds no run to continue (no {})", out.display(), metrics.display());
    }
    if args.config.is_none() {
        let file = out.join("config.resolved.toml");
        if !file.exists() {
            anyhow::bail!("--resume: {} is missing (pass --config)", file.display());
        }
        cfg = resolve(Some(&file), &args.set)?;
        if let Some(o) = &args.out {
            cfg.run.out_dir = o.clone();
        }
    }
    // what earlier sessions spent (a malformed line is an error naming file and line)
    let records = crate::report::load_run(&out)?.records;
    let elapsed_before = records.iter().filter_map(|v| v.get("elapsed_s").and_then(|e| e.as_f64())).fold(0.0, f64::max);
    let tokens_before = records.iter().filter_map(|v| v.get("generated_tokens").and_then(|g| g.as_u64())).max().unwrap_or(0);
    Ok((cfg, Start { resume: true, elapsed_before, tokens_before }))
}

/// Structured logs (JSON lines) to `OUT/train.log` at `DEEPSEARCH_LOG` (default info); stderr
/// gets warnings and errors (or what `RUST_LOG` asks for), so the progress display stays
/// readable.
fn init_logging(out: &Path) -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let path = out.join("train.log");
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("opening {}", path.display()))?;
    let file_filter = EnvFilter::try_from_env("DEEPSEARCH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().json().with_writer(Mutex::new(file)).with_filter(file_filter))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(stderr_filter))
        .try_init();
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (cfg, start) = resolve_run(&args)?;
    let out = cfg.run.out_dir.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create the run folder {}", out.display()))?;
    let resolved = out.join("config.resolved.toml");
    std::fs::write(&resolved, toml::to_string_pretty(&cfg)?).with_context(|| format!("cannot write {} (is the run folder writable?)", resolved.display()))?;
    init_logging(&out)?;
    tracing::info!(out = %out.display(), resume = start.resume, "train start");
    if cfg.run.threads > 0 {
        tch::set_num_threads(cfg.run.threads);
    }
    let base = bootstrap(&cfg)?;
    eprintln!("train: base policy {}", base.display());
    let mut metrics = MetricsFile(
        std::fs::OpenOptions::new().create(true).append(true).open(out.join("metrics.jsonl")).with_context(|| format!("opening {}/metrics.jsonl", out.display()))?,
    );
    let mut evaluator = Evaluator::new(&cfg, &base)?;
    let budget = cfg.time_budget()?;
    let remaining = budget.saturating_sub(Duration::from_secs_f64(start.elapsed_before));
    if start.resume {
        eprintln!(
            "train: resuming {} ({:.0}s of {} spent, {} left)",
            out.display(),
            start.elapsed_before,
            humantime::format_duration(budget),
            humantime::format_duration(Duration::from_secs(remaining.as_secs()))
        );
    } else {
        let t0 = Instant::now();
        let r0 = evaluator.run()?;
        eprintln!("eval step 0: pass@1 {:.3} pass@{} {:.3} ({:.0}s)", r0.pass1, cfg.eval.samples, r0.pass_at_k, t0.elapsed().as_secs_f64());
        metrics.write(eval_line(0, 0, &r0))?;
    }
    finish_run(&cfg, &base, metrics, evaluator, &start, remaining)
}

/// The RL phase and everything after it.
fn finish_run(cfg: &TrainConfig, base: &Path, metrics: MetricsFile, evaluator: Evaluator, start: &Start, budget: Duration) -> anyhow::Result<()> {
    let out = cfg.run.out_dir.clone();
    // Several workers even on 2 cores: one blocked task (a verifier wait, a weights swap) must not
    // starve the learner's step loop or the actors' heartbeats.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4 + 2 * cfg.actors.count).enable_all().build()?;
    let latest: Latest = Arc::new(Mutex::new(None));
    let done = rt.block_on(serve_all(cfg, base, metrics, evaluator, latest.clone(), start, budget))?;

    // final checkpoint (HF layout): the base folder's files with the latest weights
    let ckpt = out.join("checkpoints").join("final");
    write_checkpoint(base, &ckpt, latest.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(_, b)| b.clone()))?;
    eprintln!("train: {} steps, {} generated tokens; checkpoint {}", done.last_step, done.generated, ckpt.display());
    crate::report::write_report(&[out.clone()], &out.join("report.html"))?;
    eprintln!("train: report {}", out.join("report.html").display());
    if done.interrupted {
        eprintln!("train: interrupted; continue with `deepsearch train --resume --out {}`", out.display());
    }
    Ok(())
}

/// Copies `base` into `dst` and replaces `model.safetensors` by `weights` (when any); checks the
/// result loads.
fn write_checkpoint(base: &Path, dst: &Path, weights: Option<Arc<Vec<u8>>>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for e in std::fs::read_dir(base).with_context(|| format!("reading {}", base.display()))? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name()))?;
        }
    }
    if let Some(w) = weights {
        std::fs::write(dst.join("model.safetensors"), w.as_slice())?;
    }
    PolicyModel::load_with(dst, "cpu", "f32").with_context(|| format!("checking the checkpoint {}", dst.display()))?;
    Ok(())
}

/// What the RL phase ended with.
struct Done {
    last_step: u64,
    generated: u64,
    interrupted: bool,
}

/// The actors' counters, summed.
#[derive(Clone, Copy, Default)]
struct ActorTotals {
    generated: u64,
    expansions: u64,
    trees: u64,
    depth: u64,
    batch_us: u64,
    generate_us: u64,
    verify_us: u64,
}

impl ActorTotals {
    /// The sums; `generated` starts at `tokens_before` (a resumed run's earlier tokens).
    fn of(all: &[Arc<ActorMetrics>], tokens_before: u64) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let zero = ActorTotals { generated: tokens_before, ..ActorTotals::default() };
        all.iter().fold(zero, |t, m| ActorTotals {
            generated: t.generated + m.generated_tokens.load(Relaxed),
            expansions: t.expansions + m.expansions.load(Relaxed),
            trees: t.trees + m.trees.load(Relaxed),
            depth: t.depth + m.tree_depth_total.load(Relaxed),
            batch_us: t.batch_us + m.batch_micros.load(Relaxed),
            generate_us: t.generate_us + m.generate_micros.load(Relaxed),
            verify_us: t.verify_us + m.verifier_micros.load(Relaxed),
        })
    }
}

/// The coordinator's figures the run shows and records per round.
#[derive(Clone, Copy, Default)]
struct CoordFigures {
    round: Option<u64>,
    hard_set: u64,
    cache_problems: u64,
    cache_share: f64,
}

impl CoordFigures {
    fn from_status(st: &deepsearch_proto::v1::GetStatusResponse) -> Self {
        let by = |k: &str| st.problems_by_status.get(k).copied().unwrap_or(0);
        CoordFigures { round: Some(st.round), hard_set: by("hard") + by("cached"), cache_problems: st.cache_problems, cache_share: st.cache_hit_rate }
    }
    fn record(&self, step: u64, generated: u64) -> serde_json::Value {
        json!({"kind": "round", "round": self.round.unwrap_or(0), "hard_set": self.hard_set, "cache_share": self.cache_share,
            "cache_problems": self.cache_problems, "step": step, "generated_tokens": generated})
    }
}

/// One `step` record: the learner's step plus the actors' cumulative counters (time split in
/// seconds, cumulative; tree depth averaged over the trees finished since the previous step).
fn step_record(s: &StepInfo, now: &ActorTotals, prev: &ActorTotals, train_s: f64, elapsed_s: f64) -> serde_json::Value {
    let trees = now.trees.saturating_sub(prev.trees);
    let depth = (trees > 0).then(|| now.depth.saturating_sub(prev.depth) as f64 / trees as f64);
    let expansions = (trees > 0).then(|| now.expansions.saturating_sub(prev.expansions) as f64 / trees as f64);
    let bookkeeping = now.batch_us.saturating_sub(now.generate_us + now.verify_us);
    json!({
        "kind": "step", "step": s.step, "policy_version": s.version, "generated_tokens": now.generated,
        "reward_mean": s.reward_mean, "correct_fraction": s.correct_fraction, "loss": s.loss, "lr": s.lr,
        "groups": s.groups, "trajectories": s.trajectories, "response_tokens": s.response_tokens,
        "trees": trees, "tree_depth_mean": depth, "expansions_per_tree": expansions,
        "time_generate_s": now.generate_us as f64 / 1e6, "time_verify_s": now.verify_us as f64 / 1e6,
        "time_bookkeeping_s": bookkeeping as f64 / 1e6, "time_train_s": train_s, "elapsed_s": elapsed_s,
    })
}

/// Progress display: a bar over the time budget with live figures on a terminal; hidden (and
/// replaced by one line per step) when stderr is not one.
struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    fn new(budget: Duration) -> Self {
        use std::io::IsTerminal;
        let bar = if std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new(budget.as_secs().max(1));
            let style = indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:24}] {percent:>3}% {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
            b.set_style(style);
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        Progress { bar }
    }
    /// A line above the bar (or on stderr when there is no bar).
    fn line(&self, text: String) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }
}

/// Runs coordinator, learner and actors until the budget or Ctrl-C; records steps, evals and
/// rounds.
async fn serve_all(cfg: &TrainConfig, base: &Path, mut metrics: MetricsFile, evaluator: Evaluator, latest: Latest, start: &Start, budget: Duration) -> anyhow::Result<Done> {
    let out = &cfg.run.out_dir;
    let coord_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let learn_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (coord_addr, learn_addr) = (coord_l.local_addr()?, learn_l.local_addr()?);

    // coordinator: training problems added in-process; its store holds the run's filter
    // verdicts, cache and round (kept by --resume, cleared for a fresh run)
    let mut ccfg = cfg.coordinator.clone();
    ccfg.listen = coord_addr;
    ccfg.metrics_listen = None;
    ccfg.sources.clear();
    ccfg.state_dir = out.join("coordinator");
    ccfg.schedule.pipeline = cfg.pipeline();
    // admin over the loopback listener while the run lasts (a fresh token per run folder)
    let token_file = out.join("admin.token");
    if !token_file.exists() {
        write_token(&token_file)?;
    }
    ccfg.admin.token_file = Some(token_file.clone());
    ccfg.admin.token_env = None;
    let learner_ckpt = cfg.runtime.checkpoint_dir.clone().unwrap_or_else(|| out.join("checkpoints").join("learner"));
    if !start.resume {
        for d in [&ccfg.state_dir, &learner_ckpt] {
            if d.exists() {
                std::fs::remove_dir_all(d).with_context(|| format!("clearing {}", d.display()))?;
            }
        }
    }
    let coordinator = Coordinator::open(ccfg).await?;
    let problems = countdown::generate(&cfg.data.train, cfg.data.train_seed, cfg.data.train_count).context("data.train")?;
    let added = coordinator.add_problems(problems).await?;
    let status = coordinator.status_reader();
    tracing::info!(%coord_addr, added, "coordinator serving");

    let (stop_actors_tx, stop_actors) = watch::channel(false);
    let (stop_learner_tx, stop_learner) = watch::channel(false);
    let (stop_coord_tx, stop_coord) = watch::channel(false);
    let coord_task = tokio::spawn(coordinator.serve(coord_l, None, stopped(stop_coord)));

    // learner: checkpoints of the whole training state every `runtime.checkpoint_every_steps`
    // steps and at the stop; a resumed run restores the newest
    let mut lcfg = cfg.learner.clone();
    lcfg.seed = cfg.run.seed;
    let mut rcfg = cfg.runtime.clone();
    rcfg.listen = learn_addr;
    rcfg.metrics_listen = None;
    rcfg.prompts_per_step = lcfg.prompts_per_step;
    rcfg.max_staleness = lcfg.max_staleness;
    rcfg.checkpoint_dir = Some(learner_ckpt);
    rcfg.coordinator = Some(CoordinatorLink { address: coord_addr.to_string(), ..CoordinatorLink::default() });
    let policy = PolicyModel::load_with(base, "cpu", "f32").with_context(|| format!("loading {}", base.display()))?;
    let config_json = std::fs::read_to_string(base.join("config.json"))?;
    let learner = Learner::new(lcfg, policy, Box::new(SingleProcess))?;
    let (step_tx, mut step_rx) = tokio::sync::mpsc::unbounded_channel();
    let trainer = Recording { inner: PolicyTrainer::new(learner, config_json), tx: step_tx, latest: latest.clone() };
    let learner_task = tokio::spawn(run_learner(rcfg, trainer, learn_l, stopped(stop_learner)));

    // actors
    let mut actor_tasks = Vec::new();
    let mut actor_metrics = Vec::new();
    for i in 0..cfg.actors.count {
        let mut acfg = cfg.actor.clone();
        acfg.name = format!("train-actor-{i}");
        acfg.coordinator = coord_addr.to_string();
        acfg.learner = learn_addr.to_string();
        acfg.search.seed = cfg.run.seed.wrapping_add(i as u64);
        let model = ModelConfig { dir: base.to_path_buf(), engine: cfg.model.engine.clone(), prompt: cfg.model.prompt.clone(), ..ModelConfig::default() };
        let m = Arc::new(ActorMetrics::default());
        actor_metrics.push(m.clone());
        let deps = ActorDeps {
            policy: Box::new(move || {
                let p: Box<dyn ActorPolicy> = Box::new(EngineActor::load(&model).map_err(|e| format!("{e:#}"))?);
                Ok(p)
            }),
            verifiers: VerifierPool::new(&acfg.verifier).context("starting the verifier pool")?,
            metrics: m,
            initial_version: 0,
        };
        actor_tasks.push(tokio::spawn(run_actor(acfg, deps, stopped(stop_actors.clone()))));
    }
    eprintln!(
        "train: coordinator on {coord_addr} ({added} new problems), learner on {learn_addr}, {} actor(s); training for {}; logs in {}",
        cfg.actors.count,
        humantime::format_duration(Duration::from_secs(budget.as_secs())),
        out.join("train.log").display()
    );
    eprintln!("train: admin: deepsearch admin --coordinator {coord_addr} --token-file {} status", token_file.display());

    let t_start = Instant::now();
    let elapsed = || start.elapsed_before + t_start.elapsed().as_secs_f64();
    let tokens_spent = |generated: u64| cfg.run.token_budget > 0 && generated >= cfg.run.token_budget;
    let deadline = tokio::time::sleep(budget);
    tokio::pin!(deadline);
    let ctrl_c = crate::config_load::shutdown_signal();
    tokio::pin!(ctrl_c);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let progress = Progress::new(budget);
    let evaluator = Arc::new(Mutex::new(evaluator));
    let (mut last_step, mut interrupted) = (0u64, false);
    let mut prev = ActorTotals::of(&actor_metrics, start.tokens_before);
    let first = prev;
    let mut train_s = 0.0f64;
    let mut coord = CoordFigures::default();
    let (mut reward, mut pass1) = (f64::NAN, f64::NAN);
    loop {
        tokio::select! {
            _ = &mut deadline => { progress.line("train: time budget reached".into()); break; }
            _ = &mut ctrl_c => { progress.line("train: interrupted; stopping cleanly (the learner writes a checkpoint)".into()); interrupted = true; break; }
            _ = tick.tick() => {
                if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(2), status.status()).await {
                    let now = CoordFigures::from_status(&st);
                    if let Some(r) = coord.round {
                        if st.round > r {
                            metrics.write(coord.record(last_step, prev.generated))?;
                        }
                    }
                    coord = now;
                }
                let tot = ActorTotals::of(&actor_metrics, start.tokens_before);
                if tokens_spent(tot.generated) {
                    progress.line(format!("train: token budget reached ({} generated tokens)", tot.generated));
                    break;
                }
                let secs = t_start.elapsed().as_secs_f64().max(1e-3);
                progress.bar.set_position(t_start.elapsed().as_secs());
                progress.bar.set_message(format!(
                    "step {last_step} | reward {reward:+.3} | pass@1 {pass1:.3} | cache {:.0}% | hard {} | {:.0} tok/s | {:.1} exp/s",
                    100.0 * coord.cache_share, coord.hard_set,
                    tot.generated.saturating_sub(first.generated) as f64 / secs,
                    tot.expansions.saturating_sub(first.expansions) as f64 / secs,
                ));
            }
            s = step_rx.recv() => {
                let Some(s) = s else { progress.line("train: learner stopped early".into()); break; };
                last_step = s.step;
                reward = s.reward_mean;
                train_s += s.seconds;
                let now = ActorTotals::of(&actor_metrics, start.tokens_before);
                metrics.write(step_record(&s, &now, &prev, train_s, elapsed()))?;
                prev = now;
                let budget_spent = tokens_spent(now.generated);
                progress.line(format!("step {:>4}  reward {:+.3}  correct {:.3}  loss {:+.4}  tokens {}  {:.0}s", s.step, s.reward_mean, s.correct_fraction, s.loss, now.generated, elapsed()));
                if cfg.eval.every_steps > 0 && s.step % cfg.eval.every_steps == 0 {
                    if let Some(r) = eval_latest(&evaluator, &latest).await? {
                        pass1 = r.pass1;
                        progress.line(format!("eval step {}: pass@1 {:.3} pass@{} {:.3}", s.step, r.pass1, cfg.eval.samples, r.pass_at_k));
                        metrics.write(eval_line(s.step, now.generated, &r))?;
                    }
                }
                if budget_spent {
                    progress.line(format!("train: token budget reached ({} generated tokens)", now.generated));
                    break;
                }
            }
        }
    }
    progress.bar.finish_and_clear();

    // stop: actors first (they flush to the learner), then the learner (it writes a checkpoint),
    // then the coordinator
    let _ = stop_actors_tx.send(true);
    for t in actor_tasks {
        match tokio::time::timeout(Duration::from_secs(60), t).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "actor ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "actor task failed"),
            Err(_) => tracing::warn!("actor did not stop within 60s"),
            Ok(Ok(Ok(_))) => {}
        }
    }
    let _ = stop_learner_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(120), learner_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "learner ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "learner task failed"),
        Err(_) => tracing::warn!("learner did not stop within 120s"),
        Ok(Ok(Ok(()))) => {}
    }
    // steps finished while stopping
    while let Ok(s) = step_rx.try_recv() {
        last_step = s.step;
        train_s += s.seconds;
        let now = ActorTotals::of(&actor_metrics, start.tokens_before);
        metrics.write(step_record(&s, &now, &prev, train_s, elapsed()))?;
        prev = now;
    }
    if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(2), status.status()).await {
        coord = CoordFigures::from_status(&st);
    }
    if coord.round.is_some() {
        metrics.write(coord.record(last_step, prev.generated))?;
    }
    let _ = stop_coord_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(30), coord_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "coordinator ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "coordinator task failed"),
        Err(_) => tracing::warn!("coordinator did not stop within 30s"),
        Ok(Ok(Ok(()))) => {}
    }
    match export_cache(&out.join("coordinator").join("coordinator.redb"), &out.join("solution_cache.jsonl")) {
        Ok(n) => eprintln!("train: {n} cached problems exported to solution_cache.jsonl"),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "solution cache export failed"),
    }
    let g = ActorTotals::of(&actor_metrics, start.tokens_before).generated;
    if last_step > 0 && !interrupted {
        if let Some(r) = eval_latest(&evaluator, &latest).await? {
            eprintln!("final eval (step {last_step}): pass@1 {:.3} pass@{} {:.3}", r.pass1, cfg.eval.samples, r.pass_at_k);
            metrics.write(eval_line(last_step, g, &r))?;
        }
    }
    Ok(Done { last_step, generated: g, interrupted })
}

/// Writes a random admin token (48 hex digits from the OS) readable by the owner only.
fn write_token(path: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).context("reading /dev/urandom for the admin token")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{hex}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes the coordinator's solution cache (problems with status `cached`) as JSONL, read from
/// its store after it stopped. Returns the entries written.
fn export_cache(db: &Path, out: &Path) -> anyhow::Result<usize> {
    use deepsearch_coordinator::record::Status;
    let loaded = deepsearch_coordinator::store::Store::open(db)?.load()?;
    let entries = loaded
        .problems
        .iter()
        .filter(|r| r.status == Status::Cached)
        .map(deepsearch_coordinator::convert::cache_entry_to_pb)
        .collect();
    Ok(deepsearch_coordinator::cache_file::write_jsonl(out, entries)?)
}

/// Evaluates the latest published weights on a blocking thread; `None` before any step.
async fn eval_latest(evaluator: &Arc<Mutex<Evaluator>>, latest: &Latest) -> anyhow::Result<Option<EvalResult>> {
    let Some((version, bytes)) = latest.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return Ok(None) };
    let ev = evaluator.clone();
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<EvalResult> {
        let mut ev = ev.lock().unwrap_or_else(|e| e.into_inner());
        ev.load_weights(&bytes, version)?;
        ev.run()
    })
    .await
    .context("eval task")??;
    Ok(Some(r))
}
