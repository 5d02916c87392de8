//! The DeepSearch coordinator (issue #6; spec §7; design.md "Roles and data flow").
//!
//! One per job, CPU only, never sees tensors. It keeps the problem pool with a durable record per
//! problem (status, Pass1@K history per policy version, attempts, verified solutions, last
//! error), runs the hard-problem filter and the solution cache, and leases work items
//! (`filter | search | cached | sample`) to actors with deadlines, heartbeats, re-leasing of
//! expired work, exactly-once results and fair shares across actors. Everything survives a
//! kill -9: every acknowledged change is committed to one redb file first.
//!
//! Layout: [`config`] (typed config), [`decide`] (every decision as a pure function of its inputs
//! and `now`), [`record`] (domain types), [`store`] (redb), `core` (the state machine, on its own
//! thread behind a handle), [`service`] (gRPC handlers and the admin token check), [`metrics`]
//! (Prometheus), [`sources`] (problem sources), [`client`] (typed client for the CLI and actors),
//! [`cache_file`] (the solution cache as JSONL).
//!
//! Entry point: [`run`] (or [`Coordinator::open`] + [`Coordinator::serve`] to add problems
//! in-process first).

pub mod cache_file;
pub mod client;
pub mod config;
pub mod convert;
mod core;
mod core_admin;
pub mod decide;
mod error;
pub mod handle;
pub mod log_layer;
pub mod metrics;
pub mod record;
pub mod service;
pub mod sources;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use deepsearch_proto::v1::admin_service_server::AdminServiceServer;
use deepsearch_proto::v1::coordinator_service_server::CoordinatorServiceServer;
use deepsearch_tasks::Problem;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

pub use crate::client::{ClientOptions, CoordinatorClient};
pub use crate::config::CoordinatorConfig;
pub use crate::error::{Error, Result};

use crate::core::Core;
use crate::handle::{now_ms, CoreThread};
use crate::service::{AdminSvc, BearerAuth, CoordinatorSvc};

/// Runs a coordinator on `listener` (gRPC: CoordinatorService, AdminService, health, reflection)
/// and, if `config.metrics_listen` is set, `/metrics` on that address, until `shutdown` resolves.
/// Loads `config.sources` first.
pub async fn run(
    config: CoordinatorConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| Error::Io {
            path: format!("metrics listen address {addr}").into(),
            source,
        })?),
        None => None,
    };
    Coordinator::open(config).await?.serve(listener, metrics_listener, shutdown).await
}

/// An opened coordinator (state loaded, sources added), not yet serving.
pub struct Coordinator {
    config: CoordinatorConfig,
    core: CoreThread,
    metrics: Arc<metrics::Metrics>,
}

impl Coordinator {
    /// Opens the store, restores state and loads the configured problem sources.
    pub async fn open(config: CoordinatorConfig) -> Result<Coordinator> {
        let metrics = Arc::new(metrics::Metrics::new());
        let (cfg, m) = (config.clone(), metrics.clone());
        let (core, problems) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut problems = Vec::new();
            for s in &cfg.sources {
                problems.extend(s.load()?);
            }
            Ok((Core::open(cfg, m)?, problems))
        })
        .await
        .map_err(|e| Error::Store(format!("open task failed: {e}")))??;
        let c = Coordinator { config, core: CoreThread::spawn(core)?, metrics };
        if !problems.is_empty() {
            let added = c.add_problems(problems).await?;
            tracing::info!(added, "problems from sources added");
        }
        Ok(c)
    }

    /// An in-process reader of the admin status (the `GetStatus` answer, without a token): for a
    /// host process that embeds the coordinator (`deepsearch train`). Calls fail once it stopped.
    pub fn status_reader(&self) -> StatusReader {
        StatusReader(self.core.handle())
    }

    /// Adds problems not yet known (as unfiltered); returns how many were new.
    pub async fn add_problems(&self, problems: Vec<Problem>) -> Result<usize> {
        self.core.handle().try_call(move |c| c.add_problems(problems)).await
    }

    /// Serves until `shutdown` resolves, then stops the core and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        metrics_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let Coordinator { config, core, metrics } = self;
        let result = serve_inner(&config, &core, metrics, listener, metrics_listener, shutdown).await;
        core.stop().await;
        tracing::info!("coordinator stopped");
        result
    }
}

/// See [`Coordinator::status_reader`].
#[derive(Clone)]
pub struct StatusReader(handle::CoreHandle);

impl StatusReader {
    /// The coordinator's status now.
    pub async fn status(&self) -> Result<deepsearch_proto::v1::GetStatusResponse> {
        self.0.try_call(|c| c.status(handle::now_ms())).await
    }
}

async fn serve_inner(
    config: &CoordinatorConfig,
    core: &CoreThread,
    metrics: Arc<metrics::Metrics>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let handle = core.handle();
    let token = config.admin.resolve_token()?;
    if token.is_none() {
        tracing::warn!("no admin token configured: every admin call will be refused");
    }
    let max = config.server.max_message_bytes;
    let coord = CoordinatorServiceServer::new(CoordinatorSvc {
        core: handle.clone(),
        max_solutions: config.cache.max_solutions,
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let admin = InterceptedService::new(
        AdminServiceServer::new(AdminSvc { core: handle.clone() })
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        BearerAuth::new(token),
    );
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<CoordinatorServiceServer<CoordinatorSvc>>().await;
    health_reporter.set_serving::<AdminServiceServer<AdminSvc>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(deepsearch_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Config(format!("reflection service: {e}")))?;

    // Fan the one shutdown future out to the gRPC server, the metrics server and the sweeper.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let sweeper = {
        let handle = handle.clone();
        let period = config.schedule.sweep_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match handle.try_call(|c| c.sweep(now_ms())).await {
                    Ok(()) => {}
                    Err(Error::ShuttingDown) => break,
                    Err(e) => tracing::error!(error = %e, "sweep failed"),
                }
            }
        })
    };
    let metrics_task = metrics_listener
        .map(|l| tokio::spawn(metrics::serve(metrics, l, stopped(stop_rx.clone()))));

    let mut builder = tonic::transport::Server::builder().timeout(config.server.request_timeout);
    if let Some(tls) = &config.server.tls {
        builder = with_tls(builder, tls)?;
    }
    let mut builder = builder.layer(log_layer::LogErrorsLayer);
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, tls = config.server.tls.is_some(), "coordinator listening");
    let served = builder
        .add_service(coord)
        .add_service(admin)
        .add_service(health)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming(listener), stopped(stop_rx.clone()))
        .await;
    health_reporter.set_not_serving::<CoordinatorServiceServer<CoordinatorSvc>>().await;
    sweeper.abort();
    if let Some(t) = metrics_task {
        match t.await {
            Ok(Err(e)) => tracing::error!(error = %e, "metrics server failed"),
            Err(e) => tracing::error!(error = %e, "metrics task failed"),
            Ok(Ok(())) => {}
        }
    }
    served?;
    Ok(())
}

/// Accepted connections with TCP_NODELAY: small gRPC responses must not wait for delayed ACKs
/// (tonic applies its own `tcp_nodelay` only to listeners it binds itself).
fn incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        if let Err(e) = conn.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        Ok(conn)
    })
}

#[cfg(feature = "tls")]
fn with_tls(
    builder: tonic::transport::Server,
    tls: &config::TlsConfig,
) -> Result<tonic::transport::Server> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|source| Error::Io { path: p.to_path_buf(), source })
    };
    let identity = tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
    Ok(builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?)
}

#[cfg(not(feature = "tls"))]
fn with_tls(
    _builder: tonic::transport::Server,
    _tls: &config::TlsConfig,
) -> Result<tonic::transport::Server> {
    Err(Error::Config("server.tls is set but this build lacks the `tls` feature".into()))
}
