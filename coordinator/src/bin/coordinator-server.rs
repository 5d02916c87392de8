//! `coordinator-server --config FILE [--listen ADDR]`: the coordinator alone, without libtorch
//! (a small binary for a CPU-only coordinator image and for the kill -9 fault tests). The full
//! `deepsearch coordinator` command runs the same [`deepsearch_coordinator::run`].
//!
//! Prints `listening <addr>` on stdout once the socket is bound, then serves until SIGINT/SIGTERM.

use std::path::PathBuf;

use deepsearch_coordinator::CoordinatorConfig;

fn usage() -> ! {
    eprintln!("usage: coordinator-server --config FILE [--listen ADDR]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let (mut config, mut listen) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => config = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--listen" => listen = Some(args.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    let Some(config) = config else { usage() };
    match serve(&config, listen).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(path: &std::path::Path, listen: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = CoordinatorConfig::from_file(path)?;
    if let Some(l) = listen {
        cfg.listen = l.parse()?;
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    println!("listening {}", listener.local_addr()?);
    deepsearch_coordinator::run(cfg, listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
