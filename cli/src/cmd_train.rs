//! `deepsearch train [--config FILE] [--set key=value ...] [--out DIR]`: the embedded default
//! (design.md "Embedded default"; issue: one command runs the whole system on one machine).
//!
//! One process runs a coordinator, `actors.count` actors and one learner as tokio tasks that talk
//! real gRPC over `127.0.0.1:0` listeners, on built-in Countdown with a tiny Qwen2:
//! 1. resolve the config ([`crate::train::config`]) and write `OUT/config.resolved.toml`;
//! 2. bootstrap the base policy by SFT (cached by config hash, [`crate::train::eval::bootstrap`]);
//! 3. evaluate it on the held-out set (`eval` line at step 0);
//! 4. serve coordinator (training problems added in-process), learner (Tree-GRPO
//!    `PolicyTrainer`, wrapped by [`Recording`] to observe every step and the latest weights) and
//!    actors ([`crate::cmd_actor::EngineActor`]); `run.mode` picks the coordinator pipeline;
//! 5. append `step` lines (and `eval` lines every `eval.every_steps` steps) to
//!    `OUT/metrics.jsonl` (record kinds: see [`crate::report`]), one progress line per step on
//!    stderr;
//! 6. at the time budget or Ctrl-C: stop actors, learner, coordinator in that order; final eval,
//!    final checkpoint in `OUT/checkpoints/final` (HF layout), `OUT/report.html`.
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

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = resolve(args.config.as_deref(), &args.set)?;
    if let Some(o) = &args.out {
        cfg.run.out_dir = o.clone();
    }
    let out = cfg.run.out_dir.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("config.resolved.toml"), toml::to_string_pretty(&cfg)?)?;
    if cfg.run.threads > 0 {
        tch::set_num_threads(cfg.run.threads);
    }
    let base = bootstrap(&cfg)?;
    eprintln!("train: base policy {}", base.display());
    let mut metrics = MetricsFile(
        std::fs::OpenOptions::new().create(true).append(true).open(out.join("metrics.jsonl")).with_context(|| format!("opening {}/metrics.jsonl", out.display()))?,
    );
    let mut evaluator = Evaluator::new(&cfg, &base)?;
    let t0 = Instant::now();
    let r0 = evaluator.run()?;
    eprintln!("eval step 0: pass@1 {:.3} pass@{} {:.3} ({:.0}s)", r0.pass1, cfg.eval.samples, r0.pass_at_k, t0.elapsed().as_secs_f64());
    metrics.write(eval_line(0, 0, &r0))?;

    // Several workers even on 2 cores: one blocked task (a verifier wait, a weights swap) must not
    // starve the learner's step loop or the actors' heartbeats.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4 + 2 * cfg.actors.count).enable_all().build()?;
    let latest: Latest = Arc::new(Mutex::new(None));
    let (last_step, generated) = rt.block_on(serve_all(&cfg, &base, metrics, evaluator, latest.clone()))?;

    // final checkpoint (HF layout): the base folder's files with the latest weights
    let ckpt = out.join("checkpoints").join("final");
    write_checkpoint(&base, &ckpt, latest.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(_, b)| b.clone()))?;
    eprintln!("train: {last_step} steps, {generated} generated tokens; checkpoint {}", ckpt.display());
    crate::report::write_report(&[out.clone()], &out.join("report.html"))?;
    eprintln!("train: report {}", out.join("report.html").display());
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

/// Runs coordinator, learner and actors until the budget or Ctrl-C; records steps and evals.
/// Returns (last step, generated tokens).
async fn serve_all(cfg: &TrainConfig, base: &Path, mut metrics: MetricsFile, evaluator: Evaluator, latest: Latest) -> anyhow::Result<(u64, u64)> {
    let budget = cfg.time_budget()?;
    let out = &cfg.run.out_dir;
    let coord_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let learn_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (coord_addr, learn_addr) = (coord_l.local_addr()?, learn_l.local_addr()?);

    // coordinator: a fresh state folder per run; training problems added in-process
    let mut ccfg = cfg.coordinator.clone();
    ccfg.listen = coord_addr;
    ccfg.metrics_listen = None;
    ccfg.sources.clear();
    ccfg.state_dir = out.join("coordinator");
    ccfg.schedule.pipeline = cfg.pipeline();
    if ccfg.state_dir.exists() {
        std::fs::remove_dir_all(&ccfg.state_dir)?;
    }
    let coordinator = Coordinator::open(ccfg).await?;
    let problems = countdown::generate(&cfg.data.train, cfg.data.train_seed, cfg.data.train_count).context("data.train")?;
    let added = coordinator.add_problems(problems).await?;
    eprintln!("train: coordinator on {coord_addr} with {added} problems");

    let (stop_actors_tx, stop_actors) = watch::channel(false);
    let (stop_learner_tx, stop_learner) = watch::channel(false);
    let (stop_coord_tx, stop_coord) = watch::channel(false);
    let coord_task = tokio::spawn(coordinator.serve(coord_l, None, stopped(stop_coord)));

    // learner
    let mut lcfg = cfg.learner.clone();
    lcfg.seed = cfg.run.seed;
    let mut rcfg = cfg.runtime.clone();
    rcfg.listen = learn_addr;
    rcfg.metrics_listen = None;
    rcfg.prompts_per_step = lcfg.prompts_per_step;
    rcfg.max_staleness = lcfg.max_staleness;
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
    eprintln!("train: learner on {learn_addr}, {} actor(s); training for {}", cfg.actors.count, humantime::format_duration(budget));

    let generated = {
        let am = actor_metrics.clone();
        move || am.iter().map(|m| m.generated_tokens.load(std::sync::atomic::Ordering::Relaxed)).sum::<u64>()
    };
    let expansions_trees = {
        let am = actor_metrics.clone();
        move || {
            am.iter().fold((0u64, 0u64), |(e, t), m| {
                (e + m.expansions.load(std::sync::atomic::Ordering::Relaxed), t + m.trees.load(std::sync::atomic::Ordering::Relaxed))
            })
        }
    };

    let start = Instant::now();
    let deadline = tokio::time::sleep(budget);
    tokio::pin!(deadline);
    let ctrl_c = crate::config_load::shutdown_signal();
    tokio::pin!(ctrl_c);
    let evaluator = Arc::new(Mutex::new(evaluator));
    let mut last_step = 0u64;
    loop {
        tokio::select! {
            _ = &mut deadline => { eprintln!("train: time budget reached"); break; }
            _ = &mut ctrl_c => { eprintln!("train: interrupted; stopping cleanly"); break; }
            s = step_rx.recv() => {
                let Some(s) = s else { eprintln!("train: learner stopped early"); break; };
                last_step = s.step;
                let g = generated();
                let (ex, trees) = expansions_trees();
                metrics.write(json!({
                    "kind": "step", "step": s.step, "policy_version": s.version, "generated_tokens": g,
                    "reward_mean": s.reward_mean, "correct_fraction": s.correct_fraction, "loss": s.loss, "lr": s.lr,
                    "groups": s.groups, "trajectories": s.trajectories, "response_tokens": s.response_tokens,
                    "expansions_per_tree": if trees > 0 { ex as f64 / trees as f64 } else { 0.0 },
                    "time_train_s": s.seconds, "elapsed_s": start.elapsed().as_secs_f64(),
                }))?;
                eprintln!("step {:>4}  reward {:.3}  correct {:.3}  loss {:+.4}  tokens {g}  {:.0}s", s.step, s.reward_mean, s.correct_fraction, s.loss, start.elapsed().as_secs_f64());
                if cfg.eval.every_steps > 0 && s.step % cfg.eval.every_steps == 0 {
                    if let Some(r) = eval_latest(&evaluator, &latest).await? {
                        eprintln!("eval step {}: pass@1 {:.3} pass@{} {:.3}", s.step, r.pass1, cfg.eval.samples, r.pass_at_k);
                        metrics.write(eval_line(s.step, g, &r))?;
                    }
                }
            }
        }
    }

    // stop: actors first (they flush to the learner), then the learner, then the coordinator
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
        metrics.write(json!({"kind": "step", "step": s.step, "policy_version": s.version, "generated_tokens": generated(),
            "reward_mean": s.reward_mean, "correct_fraction": s.correct_fraction, "loss": s.loss, "lr": s.lr, "time_train_s": s.seconds}))?;
    }
    let _ = stop_coord_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(30), coord_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "coordinator ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "coordinator task failed"),
        Err(_) => tracing::warn!("coordinator did not stop within 30s"),
        Ok(Ok(Ok(()))) => {}
    }
    match export_cache(&cfg.run.out_dir.join("coordinator").join("coordinator.redb"), &cfg.run.out_dir.join("solution_cache.jsonl")) {
        Ok(n) => eprintln!("train: {n} cached problems exported to solution_cache.jsonl"),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "solution cache export failed"),
    }
    let g = generated();
    if last_step > 0 {
        if let Some(r) = eval_latest(&evaluator, &latest).await? {
            eprintln!("final eval (step {last_step}): pass@1 {:.3} pass@{} {:.3}", r.pass1, cfg.eval.samples, r.pass_at_k);
            metrics.write(eval_line(last_step, g, &r))?;
        }
    }
    Ok((last_step, g))
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
