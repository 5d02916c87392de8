//! The search actor (issue #6 item 3; design.md "Roles and data flow"; spec §5–§7).
//!
//! [`run_actor`] registers with the coordinator, heartbeats on the interval it was given
//! (extending its leases, dropping the ones the coordinator says are lost), leases up to
//! `capacity` work items, runs them on the policy thread ([`worker`]) — FILTER: K direct samples,
//! report the pass fraction; SEARCH: all search items as trees of ONE forest (one batched policy
//! call per iteration), stream each tree's trajectories, report solved + verified solutions;
//! CACHED: cached solutions + fresh samples as one group; SAMPLE: k direct samples as one group —
//! reports each outcome, streams each accepted group to the learner ([`push`], credits and acks),
//! and repeats. It follows policy versions announced by the coordinator (heartbeats, leases) and
//! the learner (acks): between batches it downloads the new weights ([`weights`]), verifies
//! every checksum, and swaps them in on the policy thread; every sampled token of a batch comes
//! from one version, which the batch's trajectories carry. Every RPC has a deadline; broken
//! connections are retried with exponential backoff; the actor exits cleanly when the
//! coordinator is draining and it holds no lease, when the pool is exhausted, or on shutdown.
//!
//! Layout: [`config`] (ActorConfig), [`convert`] (wire ↔ domain at the edge), [`work`] (one
//! batch, pure of I/O), [`worker`] (the policy thread), [`push`] (trajectory stream),
//! [`weights`] (download + verification), [`metrics`] (counters, Prometheus text; served on
//! `/metrics` when `metrics_listen` is set).

pub mod config;
pub mod convert;
pub mod metrics;
pub mod push;
pub mod weights;
pub mod work;
pub mod worker;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deepsearch_coordinator::{ClientOptions, CoordinatorClient};
use deepsearch_proto::v1 as pb;
use deepsearch_tasks::VerifierPool;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

pub use config::{backoff_delay, ActorConfig, ActorConfigError};
pub use convert::{wire_group, LeasedSolution, WireError, WireTrajectory, WorkItem, WorkMode};
pub use metrics::{ActorMetrics, MetricsSnapshot};
pub use work::{ItemResult, PromptEncoder, Report};
pub use worker::{ActorPolicy, PolicyFactory, PolicyWorker, Reloadable};

/// Errors of the actor runtime.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error(transparent)]
    Config(#[from] ActorConfigError),
    #[error("peer unavailable: {0}")]
    Unavailable(String),
    #[error("weights rejected: {0}")]
    Weights(String),
    #[error("policy: {0}")]
    Policy(String),
}

/// What an actor is made of besides its config.
pub struct ActorDeps {
    /// Builds the model on the policy thread.
    pub policy: PolicyFactory,
    /// Verifiers by task name (the built-ins are registered by `VerifierPool::new`).
    pub verifiers: VerifierPool,
    /// Counters, shared so the caller can read or serve them.
    pub metrics: Arc<ActorMetrics>,
    /// Policy version of the weights the factory loads (0 = the base model).
    pub initial_version: u64,
}

impl std::fmt::Debug for ActorDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorDeps")
            .field("initial_version", &self.initial_version)
            .finish_non_exhaustive()
    }
}

/// Runs one actor until the coordinator drains (or is exhausted) or `shutdown` resolves.
/// Returns the final counters.
pub async fn run_actor(
    config: ActorConfig,
    deps: ActorDeps,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<MetricsSnapshot, ActorError> {
    config.validate()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopper = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let metrics = deps.metrics.clone();
    metrics
        .policy_version
        .store(deps.initial_version, Ordering::Relaxed);
    let metrics_task = match config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| ActorConfigError {
                field: "metrics_listen".into(),
                reason: format!("cannot listen on {addr}: {e}"),
            })?;
            let (m, mut rx) = (metrics.clone(), stop_rx.clone());
            let stopped = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            Some(tokio::spawn(deepsearch_coordinator::metrics::serve_text(
                "actor",
                move || m.render(),
                listener,
                stopped,
            )))
        }
        None => None,
    };
    let params = worker::WorkerParams {
        search: config.search.clone(),
        max_solutions: config.max_solutions,
        metrics: metrics.clone(),
    };
    let worker = match PolicyWorker::spawn(deps.policy, deps.verifiers, params).await {
        Ok(w) => w,
        Err(e) => {
            if let Some(t) = metrics_task {
                t.abort();
            }
            return Err(e);
        }
    };
    let result = drive(&config, &worker, &metrics, stop_rx).await;
    worker.stop().await;
    stopper.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    tracing::info!(ok = result.is_ok(), "actor stopped");
    result.map(|()| metrics.snapshot())
}

/// State shared by the main loop and the heartbeat task.
struct Session {
    name: String,
    capacity: u32,
    actor_id: Mutex<String>,
    /// Leases being worked on (heartbeats extend them).
    leases: Mutex<HashSet<String>>,
    /// Leases the coordinator said are lost: their results are dropped.
    lost: Mutex<HashSet<String>>,
    /// Newest policy version anyone announced.
    newest: Arc<watch::Sender<u64>>,
    metrics: Arc<ActorMetrics>,
}

impl Session {
    fn actor_id(&self) -> String {
        self.actor_id.lock().expect("session lock").clone()
    }

    fn announce(&self, v: u64) {
        self.metrics.newest_policy_version.fetch_max(v, Ordering::Relaxed);
        self.newest.send_if_modified(|cur| {
            if v > *cur {
                *cur = v;
                true
            } else {
                false
            }
        });
    }

    /// Registers (again), retrying with backoff until it works or the actor stops.
    async fn register(
        &self,
        coord: &CoordinatorClient,
        cfg: &ActorConfig,
        metrics: &ActorMetrics,
        stop: &watch::Receiver<bool>,
    ) -> Option<Duration> {
        let mut attempt = 0;
        loop {
            let held = metrics.policy_version.load(Ordering::Relaxed);
            match coord.register_actor(&self.name, self.capacity, held).await {
                Ok(r) => {
                    tracing::info!(actor_id = %r.actor_id, policy_version = r.policy_version, "registered with the coordinator");
                    *self.actor_id.lock().expect("session lock") = r.actor_id;
                    self.announce(r.policy_version);
                    return Some(Duration::from_millis(r.heartbeat_interval_ms.max(10)));
                }
                Err(s) => {
                    metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
                    let d = backoff_delay(cfg.backoff_initial, cfg.backoff_max, attempt);
                    tracing::warn!(error = %s, delay = ?d, "registering with the coordinator failed");
                    attempt += 1;
                    if pause(d, stop).await {
                        return None;
                    }
                }
            }
        }
    }
}

/// Sleeps `d`; true if the actor was told to stop meanwhile.
async fn pause(d: Duration, stop: &watch::Receiver<bool>) -> bool {
    let mut rx = stop.clone();
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = rx.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

fn learner_channel(cfg: &ActorConfig) -> Result<Channel, ActorError> {
    let uri = if cfg.learner.contains("://") {
        cfg.learner.clone()
    } else {
        format!("http://{}", cfg.learner)
    };
    let ep = Endpoint::from_shared(uri).map_err(|e| ActorConfigError {
        field: "learner".into(),
        reason: e.to_string(),
    })?;
    Ok(ep.connect_timeout(cfg.connect_timeout).connect_lazy())
}

async fn drive(
    cfg: &ActorConfig,
    worker: &PolicyWorker,
    metrics: &Arc<ActorMetrics>,
    stop: watch::Receiver<bool>,
) -> Result<(), ActorError> {
    let coord = CoordinatorClient::connect_lazy(
        &cfg.coordinator,
        ClientOptions {
            timeout: cfg.rpc_timeout,
            connect_timeout: cfg.connect_timeout,
            max_message_bytes: cfg.max_message_bytes,
            ..ClientOptions::default()
        },
    )
    .map_err(|e| ActorConfigError {
        field: "coordinator".into(),
        reason: e.to_string(),
    })?;
    let learner = learner_channel(cfg)?;
    let (newest, newest_rx) = watch::channel(0u64);
    let session = Arc::new(Session {
        name: cfg.name.clone(),
        capacity: cfg.capacity,
        actor_id: Mutex::new(String::new()),
        leases: Mutex::new(HashSet::new()),
        lost: Mutex::new(HashSet::new()),
        newest: Arc::new(newest),
        metrics: metrics.clone(),
    });
    let Some(interval) = session.register(&coord, cfg, metrics, &stop).await else {
        return Ok(());
    };
    let heartbeat = tokio::spawn(heartbeat_loop(
        coord.clone(),
        session.clone(),
        cfg.clone(),
        metrics.clone(),
        interval,
        stop.clone(),
    ));
    let pusher = push::Pusher::spawn(
        learner.clone(),
        push::PushParams {
            queue: cfg.push_queue,
            initial_credits: cfg.initial_credits,
            rpc_timeout: cfg.rpc_timeout,
            ack_timeout: cfg.ack_timeout,
            backoff_initial: cfg.backoff_initial,
            backoff_max: cfg.backoff_max,
            max_message_bytes: cfg.max_message_bytes,
        },
        metrics.clone(),
        session.newest.clone(),
    );
    let mut lp = LoopState {
        attempt: 0,
        weights_attempt: 0,
        weights_retry_at: None,
    };
    let result = main_loop(
        cfg, worker, metrics, &coord, &learner, &session, &pusher, &newest_rx, &stop, &mut lp,
    )
    .await;
    if !pusher.finish(cfg.flush_timeout).await {
        tracing::warn!("some trajectories were not acknowledged by the learner");
    }
    heartbeat.abort();
    result
}

struct LoopState {
    attempt: u32,
    weights_attempt: u32,
    weights_retry_at: Option<tokio::time::Instant>,
}

#[allow(clippy::too_many_arguments)]
async fn main_loop(
    cfg: &ActorConfig,
    worker: &PolicyWorker,
    metrics: &Arc<ActorMetrics>,
    coord: &CoordinatorClient,
    learner: &Channel,
    session: &Arc<Session>,
    pusher: &push::Pusher,
    newest: &watch::Receiver<u64>,
    stop: &watch::Receiver<bool>,
    lp: &mut LoopState,
) -> Result<(), ActorError> {
    loop {
        let stopping = *stop.borrow();
        if stopping {
            tracing::info!("shutdown requested");
            return Ok(());
        }
        if cfg.follow_policy {
            let want = *newest.borrow();
            follow_policy(cfg, worker, metrics, learner, want, lp).await;
        }
        let actor_id = session.actor_id();
        let resp = match coord.lease_work(&actor_id, cfg.capacity).await {
            Ok(r) => {
                lp.attempt = 0;
                r
            }
            Err(s) => {
                metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
                if s.code() == tonic::Code::NotFound {
                    tracing::warn!(error = %s, "the coordinator does not know this actor: registering again");
                    if session.register(coord, cfg, metrics, stop).await.is_none() {
                        return Ok(());
                    }
                    continue;
                }
                let d = backoff_delay(cfg.backoff_initial, cfg.backoff_max, lp.attempt);
                lp.attempt += 1;
                tracing::warn!(error = %s, delay = ?d, "leasing work failed");
                if pause(d, stop).await {
                    return Ok(());
                }
                continue;
            }
        };
        let state =
            pb::SchedulingState::try_from(resp.state).unwrap_or(pb::SchedulingState::Unspecified);
        if resp.items.is_empty() {
            if state == pb::SchedulingState::Draining {
                tracing::info!("coordinator is draining and this actor holds no lease: exiting");
                return Ok(());
            }
            if resp.exhausted {
                tracing::info!("every problem is retired: exiting");
                return Ok(());
            }
            if pause(
                Duration::from_millis(resp.retry_after_ms.clamp(1, 60_000)),
                stop,
            )
            .await
            {
                return Ok(());
            }
            continue;
        }
        run_items(
            cfg, worker, metrics, coord, session, pusher, stop, resp.items,
        )
        .await?;
    }
}

/// Downloads, verifies and swaps in the newest version when it is newer than the one held.
async fn follow_policy(
    cfg: &ActorConfig,
    worker: &PolicyWorker,
    metrics: &ActorMetrics,
    learner: &Channel,
    newest: u64,
    lp: &mut LoopState,
) {
    let held = metrics.policy_version.load(Ordering::Relaxed);
    if newest <= held
        || lp
            .weights_retry_at
            .is_some_and(|t| tokio::time::Instant::now() < t)
    {
        return;
    }
    let mut client = pb::learner_service_client::LearnerServiceClient::new(learner.clone())
        .max_decoding_message_size(cfg.max_message_bytes)
        .max_encoding_message_size(cfg.max_message_bytes);
    let got = async {
        // 0 = the newest the learner keeps (it may already be past `newest`)
        let w =
            weights::download_weights(&mut client, 0, cfg.weights_chunk_bytes, cfg.weights_timeout)
                .await?;
        if w.version <= held {
            return Err(ActorError::Weights(format!(
                "the learner's newest version {} is not newer than {held}",
                w.version
            )));
        }
        let v = w.version;
        worker.load(w.bytes, v).await?;
        Ok(v)
    }
    .await;
    match got {
        Ok(v) => {
            metrics.policy_version.store(v, Ordering::Relaxed);
            metrics.weight_swaps.fetch_add(1, Ordering::Relaxed);
            lp.weights_attempt = 0;
            lp.weights_retry_at = None;
            tracing::info!(from = held, to = v, "policy weights swapped");
        }
        Err(e) => {
            metrics.weight_failures.fetch_add(1, Ordering::Relaxed);
            let d = backoff_delay(cfg.backoff_initial, cfg.backoff_max, lp.weights_attempt);
            lp.weights_attempt += 1;
            lp.weights_retry_at = Some(tokio::time::Instant::now() + d);
            tracing::warn!(error = %e, held, newest, retry_in = ?d, "policy update failed: keeping the current weights");
        }
    }
}

/// Runs one leased batch, then reports each item and streams each accepted group.
#[allow(clippy::too_many_arguments)]
async fn run_items(
    cfg: &ActorConfig,
    worker: &PolicyWorker,
    metrics: &Arc<ActorMetrics>,
    coord: &CoordinatorClient,
    session: &Arc<Session>,
    pusher: &push::Pusher,
    stop: &watch::Receiver<bool>,
    raw: Vec<pb::WorkItem>,
) -> Result<(), ActorError> {
    metrics
        .items_leased
        .fetch_add(raw.len() as u64, Ordering::Relaxed);
    let mut items = Vec::with_capacity(raw.len());
    let mut results: Vec<(String, Report)> = Vec::new();
    for w in raw {
        session.announce(w.policy_version);
        let lease_id = w.lease_id.clone();
        session
            .leases
            .lock()
            .expect("session lock")
            .insert(lease_id.clone());
        match WorkItem::try_from(w) {
            Ok(item) => items.push(item),
            Err(e) => results.push((
                lease_id,
                Report {
                    error: Some(e.to_string()),
                    ..Report::default()
                },
            )),
        }
    }
    let version = metrics.policy_version.load(Ordering::Relaxed);
    let cancel = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (cancel, mut stop) = (cancel.clone(), stop.clone());
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            cancel.store(true, Ordering::Relaxed);
        })
    };
    tracing::debug!(items = items.len(), version, "running a batch");
    let done = worker.run(items, version, cancel).await;
    watcher.abort();
    let done = done?;
    metrics.batches.fetch_add(1, Ordering::Relaxed);
    let actor_id = session.actor_id();
    for (lease_id, report) in results {
        send_report(cfg, coord, metrics, &actor_id, &lease_id, version, &report).await;
        session
            .leases
            .lock()
            .expect("session lock")
            .remove(&lease_id);
    }
    for r in done {
        metrics
            .generated_tokens
            .fetch_add(r.report.generated_tokens, Ordering::Relaxed);
        metrics
            .verifier_errors
            .fetch_add(u64::from(r.report.verifier_errors), Ordering::Relaxed);
        metrics
            .expansions
            .fetch_add(r.expansions, Ordering::Relaxed);
        if r.mode == WorkMode::Search && r.report.error.is_none() {
            metrics.trees.fetch_add(1, Ordering::Relaxed);
            metrics.observe_tree(r.max_depth, r.frontier_size);
        }
        let lost = session
            .lost
            .lock()
            .expect("session lock")
            .remove(&r.lease_id);
        session
            .leases
            .lock()
            .expect("session lock")
            .remove(&r.lease_id);
        if lost {
            metrics.results_lost_lease.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(lease_id = %r.lease_id, "lease lost while running: result dropped");
            continue;
        }
        let d = send_report(
            cfg,
            coord,
            metrics,
            &actor_id,
            &r.lease_id,
            version,
            &r.report,
        )
        .await;
        let keep = matches!(
            d,
            Some(pb::ReportDisposition::Accepted | pb::ReportDisposition::Duplicate)
        );
        if keep && r.report.error.is_none() && !r.trajectories.is_empty() {
            let n = r.trajectories.len() as u64;
            for t in wire_group(&r.lease_id, &actor_id, r.trajectories) {
                pusher.send(t).await?;
            }
            metrics.trajectories_queued.fetch_add(n, Ordering::Relaxed);
        } else if !r.trajectories.is_empty() {
            metrics.results_lost_lease.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(lease_id = %r.lease_id, disposition = ?d, "report not accepted: group not streamed");
        }
    }
    Ok(())
}

/// Reports one outcome, retrying transient failures; returns the disposition (None = gave up).
#[allow(clippy::too_many_arguments)]
async fn send_report(
    cfg: &ActorConfig,
    coord: &CoordinatorClient,
    metrics: &ActorMetrics,
    actor_id: &str,
    lease_id: &str,
    version: u64,
    r: &Report,
) -> Option<pb::ReportDisposition> {
    let req = pb::ReportOutcomeRequest {
        actor_id: actor_id.to_string(),
        lease_id: lease_id.to_string(),
        policy_version: version,
        samples: r.samples,
        correct: r.correct,
        verifier_errors: r.verifier_errors,
        solved: r.solved,
        solutions: r
            .solutions
            .iter()
            .map(|(text, tokens)| pb::Solution {
                text: text.clone(),
                tokens: tokens.clone(),
                policy_version: version,
                verdict: pb::Verdict::Correct as i32,
            })
            .collect(),
        generated_tokens: r.generated_tokens,
        error: r.error.clone().unwrap_or_default(),
    };
    if r.error.is_some() {
        metrics.items_failed.fetch_add(1, Ordering::Relaxed);
    }
    for attempt in 0..cfg.report_attempts {
        match coord.report_outcome(req.clone()).await {
            Ok(resp) => {
                let d = pb::ReportDisposition::try_from(resp.disposition)
                    .unwrap_or(pb::ReportDisposition::Unspecified);
                let c = match d {
                    pb::ReportDisposition::Accepted => &metrics.reports_accepted,
                    pb::ReportDisposition::Duplicate => &metrics.reports_duplicate,
                    pb::ReportDisposition::Expired => &metrics.reports_expired,
                    _ => &metrics.reports_failed,
                };
                c.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(lease_id, disposition = ?d, status = %resp.problem_status, reason = %resp.reason, "outcome reported");
                return Some(d);
            }
            Err(s) => {
                metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
                let permanent = matches!(
                    s.code(),
                    tonic::Code::NotFound
                        | tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                );
                tracing::warn!(lease_id, error = %s, attempt, "reporting an outcome failed");
                if permanent {
                    return None;
                }
                tokio::time::sleep(backoff_delay(cfg.backoff_initial, cfg.backoff_max, attempt))
                    .await;
            }
        }
    }
    None
}

/// Heartbeats every `interval`: extends the leases being worked on, marks lost ones, learns the
/// newest policy version and the scheduling state; re-registers when the coordinator forgot us.
async fn heartbeat_loop(
    coord: CoordinatorClient,
    session: Arc<Session>,
    cfg: ActorConfig,
    metrics: Arc<ActorMetrics>,
    mut interval: Duration,
    stop: watch::Receiver<bool>,
) {
    loop {
        if pause(interval, &stop).await {
            return;
        }
        let ids: Vec<String> = session
            .leases
            .lock()
            .expect("session lock")
            .iter()
            .cloned()
            .collect();
        let held = metrics.policy_version.load(Ordering::Relaxed);
        match coord.heartbeat(&session.actor_id(), ids, held).await {
            Ok(r) => {
                if !r.lost_lease_ids.is_empty() {
                    tracing::warn!(lost = ?r.lost_lease_ids, "the coordinator reports lost leases");
                    let mut lost = session.lost.lock().expect("session lock");
                    let mut leases = session.leases.lock().expect("session lock");
                    for l in r.lost_lease_ids {
                        if leases.remove(&l) {
                            lost.insert(l);
                        }
                    }
                }
                session.announce(r.policy_version);
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %s, "heartbeat: unknown actor, registering again");
                match session.register(&coord, &cfg, &metrics, &stop).await {
                    Some(i) => interval = i,
                    None => return,
                }
            }
            Err(s) => {
                metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %s, "heartbeat failed");
            }
        }
    }
}
