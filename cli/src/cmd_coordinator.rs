//! `deepsearch coordinator --config FILE [--listen ADDR] [--metrics-listen ADDR]`: runs the
//! coordinator role (issue #6 item 7) until Ctrl-C / SIGTERM. The same
//! `deepsearch_coordinator::run` runs in-process in `deepsearch train`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use deepsearch_coordinator::CoordinatorConfig;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Coordinator config (TOML; see coordinator/config.example.toml).
    #[arg(long)]
    config: PathBuf,
    /// gRPC listen address; overrides the config's `listen` (default 127.0.0.1:50051).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Prometheus /metrics address; overrides the config's `metrics_listen`.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = CoordinatorConfig::from_file(&args.config)?;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if args.metrics_listen.is_some() {
        cfg.metrics_listen = args.metrics_listen;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        tracing::info!(addr = %listener.local_addr()?, "coordinator starting");
        deepsearch_coordinator::run(cfg, listener, shutdown_signal()).await?;
        Ok(())
    })
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
