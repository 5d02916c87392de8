//! `deepsearch coordinator --config FILE [--set k=v]... [--listen ADDR] [--metrics-listen ADDR]`:
//! runs the coordinator role (issue #6 item 7) until Ctrl-C / SIGTERM. The file and the `--set`s
//! are layered over the defaults ([`crate::config_load`]). The same
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
    /// Override one config key, e.g. `--set filter.delta=0.5` (repeatable; applied in order).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// The config file with the `--set`s, validated; errors name the file.
pub(crate) fn load(path: &std::path::Path, sets: &[String]) -> anyhow::Result<CoordinatorConfig> {
    let cfg: CoordinatorConfig = crate::config_load::load(Some(path), sets)?;
    cfg.validate().with_context(|| format!("in {}", path.display()))?;
    Ok(cfg)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = load(&args.config, &args.set)?;
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
        deepsearch_coordinator::run(cfg, listener, crate::config_load::shutdown_signal()).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_sets_layer_and_bad_values_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[filter]\nk = 8\n").unwrap();
        let c = load(&p, &["filter.delta=0.5".into(), "schedule.lease_ttl=\"3s\"".into()]).unwrap();
        assert_eq!((c.filter.k, c.filter.delta, c.filter.strict), (8, 0.5, false));
        assert_eq!(c.schedule.lease_ttl, std::time::Duration::from_secs(3));
        let e = format!("{:#}", load(&p, &["filter.delta=1.5".into()]).unwrap_err());
        assert!(e.contains("c.toml") && e.contains("delta"), "{e}");
        let e = format!("{:#}", load(&p, &["filter.dleta=0.1".into()]).unwrap_err());
        assert!(e.contains("dleta"), "{e}");
    }
}
