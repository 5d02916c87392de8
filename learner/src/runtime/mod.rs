//! The learner runtime on rank 0 (spec §6; design.md "Roles and data flow"; issue #6 item 4):
//! serves `LearnerService` — trajectories in with acknowledgements and credits, policy versions
//! and weights out — and drives a [`Trainer`] on its own OS thread.
//!
//! Data flow, top to bottom:
//! 1. actors stream trajectories ([`service`]); each is validated at the edge, deduplicated,
//!    checked for staleness and grouped ([`ingest`]); the queue is bounded and the credits granted
//!    to actors are slots of it (backpressure, bounded memory);
//! 2. when `prompts_per_step` complete groups are ready, they go to the trainer thread
//!    ([`publish::TrainerThread`]), which steps, exports the weights (safetensors) and builds
//!    the manifest (per-tensor and whole SHA-256);
//! 3. the new version is kept (last `keep_versions`), announced on `WatchPolicyVersions`, served
//!    by `DownloadWeights` (manifest → chunks → trailer; clients verify with
//!    [`deepsearch_proto::weights::download_and_verify`]) and sent to the coordinator.
//!
//! 4. with `checkpoint_dir` set, the trainer thread restores the newest checkpoint at start
//!    (step and policy version continue) and writes one every `checkpoint_every_steps` steps,
//!    before that step's version is announced, and at a clean shutdown ([`publish`]).
//!
//! 5. with several learner processes (data parallelism), rank 0 runs this runtime with a
//!    [`ranks::LeaderTrainer`] that hands each step's groups to the other ranks, which run
//!    [`ranks::follow_steps`]; a collective failure stops the runtime with that error ([`ranks`]).
//!
//! Entry point: [`run_learner`]. [`PolicyTrainer`] adapts the Tree-GRPO [`crate::Learner`].

pub mod config;
pub mod ingest;
pub mod metrics;
pub mod policy_trainer;
pub mod publish;
pub mod ranks;
pub mod service;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use deepsearch_proto::v1::learner_service_server::LearnerServiceServer;
use deepsearch_search::Group;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

pub use config::{CoordinatorLink, LearnerRuntimeConfig};
pub use ingest::{Disposition, Incoming, IngestCounts, Invalid};
pub use policy_trainer::PolicyTrainer;
pub use publish::{CheckpointPolicy, Published};

use crate::error::{LearnerError, Result};
use crate::step::StepReport;
use ingest::{Ingest, IngestLimits};
use metrics::Metrics;
use publish::{StepDone, TrainerThread, Versions};
use service::LearnerSvc;

/// What the runtime needs from a trainer. It is moved onto one dedicated OS thread and every
/// method runs there (blocking is fine; the async runtime never waits on tensor work).
pub trait Trainer: Send + 'static {
    /// One training step over `groups` (exactly `prompts_per_step` complete, fresh groups);
    /// afterwards [`Trainer::policy_version`] is the new version (normally one more).
    fn train_step(&mut self, groups: Vec<Group>) -> Result<StepReport>;
    /// The current policy as a safetensors file (Hugging Face weight names).
    fn export_weights(&self) -> Result<Vec<u8>>;
    /// The model's Hugging Face `config.json`, verbatim.
    fn config_json(&self) -> String;
    /// Version of the current weights (0 before the first step, or the resumed version).
    fn policy_version(&self) -> u64;
    /// Writes a checkpoint of the whole training state (weights, optimizer, step, version) under
    /// `root`, keeping the newest `keep`; returns its folder. Default: checkpoints are not
    /// supported (`Ok(None)`, logged as a failed checkpoint when `checkpoint_dir` is set).
    fn save_checkpoint(&mut self, _root: &Path, _keep: usize) -> Result<Option<PathBuf>> {
        Ok(None)
    }
    /// Restores the newest checkpoint under `root` if it is ahead of the current state; returns
    /// its folder (None = nothing restored). Default: nothing to restore.
    fn restore_checkpoint(&mut self, _root: &Path) -> Result<Option<PathBuf>> {
        Ok(None)
    }
    /// Gives the current weights the version number `version` (above every version announced
    /// before a crash; see [`publish::PUBLISHED_VERSION_FILE`]). Default: unsupported (an error).
    fn renumber(&mut self, version: u64) -> Result<()> {
        Err(LearnerError::InvalidArgument {
            arg: "trainer".into(),
            msg: format!("cannot renumber the policy to version {version}: versions up to {} were announced before and this trainer cannot continue above them", version.saturating_sub(1)),
        })
    }
}

/// State shared by the handlers and the stepper.
pub(crate) struct Shared {
    pub(crate) cfg: LearnerRuntimeConfig,
    ingest: Mutex<Ingest>,
    /// Bumped whenever queue slots are freed; streams without credits wait on it.
    pub(crate) freed: watch::Sender<u64>,
    /// A group completed (single consumer: the stepper).
    ready: Notify,
    pub(crate) versions: Mutex<Versions>,
    pub(crate) latest: watch::Sender<Arc<Published>>,
    pub(crate) steps: AtomicU64,
    pub(crate) metrics: Arc<Metrics>,
    /// Becomes true on shutdown.
    pub(crate) stop: watch::Receiver<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ingest> {
        // A panic while holding the lock cannot leave the counters inconsistent enough to matter
        // more than stopping ingest would, so a poisoned lock is recovered.
        self.ingest.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn version(&self) -> u64 {
        self.latest.borrow().version
    }

    pub(crate) fn reserve(&self, n: usize) -> usize {
        let mut ing = self.lock();
        let got = ing.reserve(n);
        self.metrics.free_slots.set(ing.free() as i64);
        got
    }

    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut ing = self.lock();
        ing.release(n);
        self.metrics.free_slots.set(ing.free() as i64);
        drop(ing);
        self.freed.send_modify(|g| *g += 1);
    }

    /// Runs `f` on the ingest state and mirrors what changed into the metrics.
    fn with_ingest<R>(&self, f: impl FnOnce(&mut Ingest) -> R) -> R {
        let mut ing = self.lock();
        let (before, free_before) = (ing.counts, ing.free());
        let r = f(&mut ing);
        let (c, m) = (ing.counts, &self.metrics);
        let bump = |v: &prometheus::IntCounterVec, label: &str, now: u64, was: u64| v.with_label_values(&[label]).inc_by(now - was);
        bump(&m.trajectories, "accepted", c.accepted, before.accepted);
        bump(&m.trajectories, "rejected", c.rejected_invalid, before.rejected_invalid);
        bump(&m.trajectories, "stale", c.dropped_stale, before.dropped_stale);
        bump(&m.trajectories, "duplicate", c.duplicates, before.duplicates);
        bump(&m.groups, "completed", c.groups_completed, before.groups_completed);
        bump(&m.groups, "stale", c.groups_stale, before.groups_stale);
        bump(&m.groups, "expired", c.groups_expired, before.groups_expired);
        bump(&m.groups, "trained", c.groups_trained, before.groups_trained);
        m.queue_depth.set(ing.queued() as i64);
        m.ready_groups.set(ing.ready_groups() as i64);
        m.pending_groups.set(ing.pending_groups() as i64);
        m.free_slots.set(ing.free() as i64);
        let freed = ing.free() > free_before;
        drop(ing);
        if freed {
            self.freed.send_modify(|g| *g += 1);
        }
        r
    }

    pub(crate) fn admit(&self, inc: std::result::Result<Incoming, Invalid>, now: Instant) -> Disposition {
        let d = self.with_ingest(|ing| ing.admit(inc, now));
        if d == Disposition::GroupComplete {
            self.ready.notify_one();
        }
        d
    }

    /// Counters since start.
    pub(crate) fn counts(&self) -> IngestCounts {
        self.lock().counts
    }

    fn publish(&self, done: StepDone) {
        match &done.checkpoint {
            Some(Ok(_)) => self.metrics.checkpoints.inc(),
            Some(Err(_)) => self.metrics.checkpoint_failures.inc(),
            None => {}
        }
        let p = Arc::new(done.published);
        let previous = self.version();
        if p.version <= previous && done.report.is_some() {
            tracing::warn!(version = p.version, previous, "trainer did not advance the policy version");
        }
        self.versions.lock().unwrap_or_else(|e| e.into_inner()).push(p.clone());
        self.with_ingest(|ing| ing.set_version(p.version));
        if let Some(r) = &done.report {
            self.steps.fetch_add(1, Ordering::Relaxed);
            self.metrics.steps.inc();
            tracing::info!(step = r.step, version = p.version, loss = r.loss, seconds = done.seconds, bytes = p.bytes.len(), "policy version published");
        }
        self.metrics.step_seconds.observe(done.seconds);
        self.metrics.policy_version.set(p.version as i64);
        self.latest.send_replace(p);
    }
}

/// Runs the learner runtime on `listener` (gRPC: LearnerService, health, reflection) and, if
/// `config.metrics_listen` is set, `/metrics`, until `shutdown` resolves. Publishes the trainer's
/// current weights first, then trains whenever a step's worth of groups is ready.
pub async fn run_learner<T: Trainer>(
    config: LearnerRuntimeConfig,
    trainer: T,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| LearnerError::io(format!("metrics listen address {addr}"), e))?),
        None => None,
    };
    run_learner_with(config, trainer, listener, metrics_listener, shutdown).await
}

/// [`run_learner`] with the metrics listener given (tests pre-bind `127.0.0.1:0`).
pub async fn run_learner_with<T: Trainer>(
    config: LearnerRuntimeConfig,
    trainer: T,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    let addr = listener.local_addr().map_err(|e| LearnerError::io("learner listener", e))?;
    let ckpt = config.checkpoint_dir.clone().map(|root| CheckpointPolicy {
        root,
        every_steps: config.checkpoint_every_steps,
        keep: config.keep_checkpoints,
    });
    let trainer = TrainerThread::spawn_with(trainer, ckpt)?;
    let initial = trainer.export().await?;
    let v0 = initial.published.version;
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_now = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let limits = IngestLimits {
        capacity: config.max_queued_trajectories,
        max_staleness: config.max_staleness,
        group_timeout: config.group_timeout,
        dedupe_window: config.dedupe_window,
    };
    let p0 = Arc::new(initial.published);
    let mut versions = Versions::new(config.keep_versions);
    versions.push(p0.clone());
    metrics.policy_version.set(v0 as i64);
    let shared = Arc::new(Shared {
        cfg: config.clone(),
        ingest: Mutex::new(Ingest::new(limits, v0)),
        freed: watch::channel(0).0,
        ready: Notify::new(),
        versions: Mutex::new(versions),
        latest: watch::channel(p0).0,
        steps: AtomicU64::new(0),
        metrics: metrics.clone(),
        stop: stop_rx.clone(),
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let (version_tx, version_rx) = watch::channel(v0);
    let coordinator_task = config.coordinator.clone().map(|link| {
        let location = if config.advertise.is_empty() { addr.to_string() } else { config.advertise.clone() };
        tokio::spawn(publish::coordinator_publisher(link, location, version_rx, metrics.coordinator_publish_failures.clone()))
    });
    let metrics_task = metrics_listener.map(|l| tokio::spawn(metrics::serve(metrics.clone(), l, stopped(stop_rx.clone()))));
    let server = tokio::spawn(serve(shared.clone(), listener, stopped(stop_rx.clone())));
    tracing::info!(%addr, version = v0, "learner listening");

    let stepped = step_loop(&shared, &trainer, &version_tx, stop_rx.clone()).await;
    if stepped.is_err() {
        // the trainer is gone or the rank group broke: stop serving now
        let _ = stop_now.send(true);
    }
    if shared.cfg.checkpoint_dir.is_some() && trainer.is_alive() && stepped.is_ok() {
        // a clean stop keeps every step (a kill -9 keeps those up to the last periodic one)
        match trainer.checkpoint().await {
            Ok(done) => match done.checkpoint {
                Some(Ok(dir)) => tracing::info!(dir = %dir.display(), "final checkpoint written"),
                Some(Err(_)) => shared.metrics.checkpoint_failures.inc(),
                None => {}
            },
            Err(e) => tracing::error!(error = %e, "final checkpoint failed"),
        }
    }

    // Shutdown: streams end on the stop signal; give the server a grace period to drain.
    drop(version_tx);
    let served = match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(LearnerError::io(addr.to_string(), format!("server task failed: {e}"))),
        Err(_) => {
            tracing::warn!("grpc server did not drain within 5s; closing");
            Ok(())
        }
    };
    if let Some(t) = coordinator_task {
        t.abort();
    }
    if let Some(t) = metrics_task {
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), t).await {
            tracing::error!(error = %e, "metrics server failed");
        }
    }
    trainer.stop().await;
    tracing::info!(counts = ?shared.counts(), "learner stopped");
    stepped.and(served)
}

/// Waits for complete groups and runs steps until `stop`.
async fn step_loop(shared: &Arc<Shared>, trainer: &TrainerThread, version_tx: &watch::Sender<u64>, mut stop: watch::Receiver<bool>) -> Result<()> {
    let period = (shared.cfg.group_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut sweep = tokio::time::interval(period);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let n = shared.cfg.prompts_per_step;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            _ = shared.ready.notified() => {}
            _ = sweep.tick() => {
                shared.with_ingest(|ing| ing.expire(Instant::now()));
            }
        }
        while let Some(groups) = shared.with_ingest(|ing| ing.take_step(n)) {
            let trajectories: usize = groups.iter().map(|g| g.trajectories.len()).sum();
            tracing::debug!(groups = groups.len(), trajectories, "step assembled");
            match trainer.step(groups).await {
                Ok(done) => {
                    let v = done.published.version;
                    shared.publish(done);
                    let _ = version_tx.send(v);
                }
                Err(e) if !trainer.is_alive() => return Err(e),
                // a broken rank group (dead or silent peer): every rank must stop, rank 0 too
                Err(e) if ranks::is_fatal(&e) => {
                    shared.metrics.step_failures.inc();
                    tracing::error!(error = %e, "collective failed: the learner group is broken; stopping");
                    return Err(e);
                }
                Err(e @ LearnerError::NoSignal { .. }) => {
                    tracing::debug!(error = %e, "step skipped: no group with signal");
                }
                Err(e) => {
                    shared.metrics.step_failures.inc();
                    tracing::error!(error = %e, "training step failed; its groups are dropped");
                }
            }
            if *stop.borrow() {
                return Ok(());
            }
        }
    }
}

async fn serve(shared: Arc<Shared>, listener: TcpListener, stopped: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let cfg = &shared.cfg;
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let max = cfg.max_message_bytes;
    let svc = LearnerServiceServer::new(LearnerSvc { shared: shared.clone() })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<LearnerServiceServer<LearnerSvc>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(deepsearch_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| LearnerError::config("runtime (reflection service)", e.to_string()))?;
    let served = tonic::transport::Server::builder()
        .timeout(cfg.request_timeout)
        .add_service(svc)
        .add_service(health)
        .add_service(reflection)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), stopped)
        .await;
    health_reporter.set_not_serving::<LearnerServiceServer<LearnerSvc>>().await;
    served.map_err(|e| LearnerError::io(addr, format!("grpc server: {e}")))
}
