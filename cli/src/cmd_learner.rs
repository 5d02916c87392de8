//! `deepsearch learner --config FILE [--rank N --world-size W --master-addr HOST:PORT]
//! [--listen ADDR]`: runs the learner role (issue #6 item 4; spec §6) until Ctrl-C / SIGTERM:
//! loads the policy checkpoint, builds the Tree-GRPO learner and serves `LearnerService` with
//! `deepsearch_learner::runtime::run_learner`. Rank, world size and the rendezvous address also
//! come from the environment torchrun and Kubernetes StatefulSets set: `RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `MASTER_ADDR` + `MASTER_PORT`.
//!
//! With `--world-size W > 1` (issue #5, data parallelism) W processes form one learner: rank 0
//! serves `LearnerService` and the rendezvous (`LearnerRendezvous` on the master address), ranks
//! 1..W join it and train on rank 0's steps, each on its share of every mini-batch, with the
//! gradients all-reduced (`deepsearch_learner::runtime::ranks`). The collective is NCCL when
//! `model.device` is CUDA (binary built with `--features cuda`; device `cuda` means
//! `cuda:$LOCAL_RANK`) and TCP through rank 0 on the CPU. Only rank 0 publishes and checkpoints;
//! every rank resumes from the same `checkpoint_dir`. A dead or silent rank stops the group with
//! an error naming it within `learner.collective_timeout`. On one machine (CPU):
//!
//! ```text
//! deepsearch learner --config l.toml --world-size 2 --rank 0 --master-addr 127.0.0.1:29500 &
//! deepsearch learner --config l.toml --world-size 2 --rank 1 --master-addr 127.0.0.1:29500
//! ```
//!
//! The config file (TOML, unknown fields rejected):
//!
//! ```toml
//! [model]
//! path = "runs/base"      # Hugging Face checkpoint folder (required)
//! device = "cpu"          # cpu | cuda | cuda:N (default cpu)
//! dtype = "f32"           # f32 | bf16 | f16 (default f32)
//! [learner]               # deepsearch_learner::LearnerConfig (spec §6 defaults)
//! [runtime]               # deepsearch_learner::runtime::LearnerRuntimeConfig
//! checkpoint_dir = "runs/x/learner-ckpt"   # resume from the newest checkpoint there, write new ones
//! ```
//!
//! Every key can also be given as `--set section.key=value` (layered over the file, which is
//! layered over the defaults: [`crate::config_load`]). With a checkpoint folder (config or
//! `--checkpoint-dir`) a restarted learner resumes from its newest checkpoint: weights,
//! optimizer, step and policy version continue, and actors reconnect by themselves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use deepsearch_learner::runtime::ranks::{self, GroupInfo, LeaderTrainer, Rendezvous};
use deepsearch_learner::runtime::{run_learner, LearnerRuntimeConfig, PolicyTrainer};
use deepsearch_learner::{Collective, Learner, LearnerConfig, SingleProcess, TcpCollective};
use deepsearch_policy::PolicyModel;
use serde::{Deserialize, Serialize};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Learner config (TOML with [model], [learner] and [runtime] sections).
    #[arg(long)]
    config: PathBuf,
    /// This process's rank (0 serves LearnerService).
    #[arg(long, env = "RANK", default_value_t = 0)]
    rank: usize,
    /// Number of learner ranks (processes; one per GPU on CUDA).
    #[arg(long, env = "WORLD_SIZE", default_value_t = 1)]
    world_size: usize,
    /// Rendezvous address of rank 0 (HOST:PORT; rank 0 listens there, the others connect);
    /// default `$MASTER_ADDR:$MASTER_PORT`. Needed when the world size is above 1.
    #[arg(long)]
    master_addr: Option<String>,
    /// GPU of this process on its node when `model.device` is `cuda` (device `cuda:LOCAL_RANK`).
    #[arg(long, env = "LOCAL_RANK", default_value_t = 0)]
    local_rank: usize,
    /// gRPC listen address; overrides `runtime.listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Prometheus /metrics address; overrides `runtime.metrics_listen`.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Checkpoint folder (resume from its newest checkpoint, write new ones there); overrides
    /// `runtime.checkpoint_dir`.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Override one config key, e.g. `--set learner.lr=1e-5` (repeatable; applied in order).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// `[model]`: which checkpoint to train.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ModelSection {
    /// Hugging Face checkpoint folder. Required.
    pub(crate) path: PathBuf,
    /// Device. Default "cpu".
    pub(crate) device: String,
    /// Parameter dtype. Default "f32".
    pub(crate) dtype: String,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection { path: PathBuf::new(), device: "cpu".into(), dtype: "f32".into() }
    }
}

/// The whole learner config file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileConfig {
    pub(crate) model: ModelSection,
    pub(crate) learner: LearnerConfig,
    pub(crate) runtime: LearnerRuntimeConfig,
}

pub(crate) fn load(path: &Path, sets: &[String]) -> anyhow::Result<FileConfig> {
    let cfg: FileConfig = crate::config_load::load(Some(path), sets)?;
    if cfg.model.path.as_os_str().is_empty() {
        bail!("{}: `model.path` is required", path.display());
    }
    let (l, r) = (&cfg.learner, &cfg.runtime);
    if l.prompts_per_step != r.prompts_per_step {
        bail!("{}: runtime.prompts_per_step ({}) differs from learner.prompts_per_step ({})", path.display(), r.prompts_per_step, l.prompts_per_step);
    }
    if l.max_staleness != r.max_staleness {
        bail!("{}: runtime.max_staleness ({}) differs from learner.max_staleness ({})", path.display(), r.max_staleness, l.max_staleness);
    }
    Ok(cfg)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = load(&args.config, &args.set)?;
    if args.world_size == 0 {
        bail!("--world-size must be at least 1");
    }
    if args.rank >= args.world_size {
        bail!("--rank {} must be below --world-size {}", args.rank, args.world_size);
    }
    if let Some(l) = args.listen {
        cfg.runtime.listen = l;
    }
    if args.metrics_listen.is_some() {
        cfg.runtime.metrics_listen = args.metrics_listen;
    }
    if args.checkpoint_dir.is_some() {
        cfg.runtime.checkpoint_dir = args.checkpoint_dir.clone();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.world_size == 1 {
        let policy = load_policy(&cfg.model, &cfg.model.device)?;
        let trainer = build_trainer(&cfg, policy, Box::new(SingleProcess))?;
        return rt.block_on(serve(cfg, trainer));
    }
    run_ranked(&args, cfg, &rt)
}

fn load_policy(m: &ModelSection, device: &str) -> anyhow::Result<PolicyModel> {
    PolicyModel::load_with(&m.path, device, &m.dtype).with_context(|| format!("loading policy {} on {device}", m.path.display()))
}

/// The learner on `collective`, resumed from the newest checkpoint of `runtime.checkpoint_dir`.
fn build_trainer(cfg: &FileConfig, policy: PolicyModel, collective: Box<dyn Collective>) -> anyhow::Result<PolicyTrainer> {
    let m = &cfg.model;
    let config_json = std::fs::read_to_string(m.path.join("config.json")).with_context(|| format!("reading {}/config.json", m.path.display()))?;
    let learner = Learner::new(cfg.learner.clone(), policy, collective)?;
    let trainer = match &cfg.runtime.checkpoint_dir {
        Some(dir) => PolicyTrainer::resume(learner, config_json, dir).with_context(|| format!("resuming from {}", dir.display()))?,
        None => PolicyTrainer::new(learner, config_json),
    };
    if trainer.learner.step > 0 {
        tracing::info!(step = trainer.learner.step, version = trainer.learner.policy_version, "learner resumed");
    }
    Ok(trainer)
}

/// Rank 0's serving side (any world size): `LearnerService` until Ctrl-C / SIGTERM.
async fn serve<T: deepsearch_learner::runtime::Trainer>(cfg: FileConfig, trainer: T) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.runtime.listen).await.with_context(|| format!("binding {}", cfg.runtime.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "learner starting");
    run_learner(cfg.runtime, trainer, listener, crate::config_load::shutdown_signal()).await?;
    Ok(())
}

/// How long forming a group of several ranks may take at most (at least the collective timeout):
/// every rank must start and join. torchrun's default rendezvous timeout is 15 minutes.
const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// `--master-addr`, else `MASTER_ADDR:MASTER_PORT`.
fn master_addr(args: &Args) -> anyhow::Result<String> {
    if let Some(a) = &args.master_addr {
        return Ok(a.clone());
    }
    match (std::env::var("MASTER_ADDR"), std::env::var("MASTER_PORT")) {
        (Ok(a), Ok(p)) if !a.is_empty() && !p.is_empty() => Ok(format!("{a}:{p}")),
        _ => bail!(
            "--world-size {}: the ranks need rank 0's rendezvous address: --master-addr HOST:PORT, or MASTER_ADDR and MASTER_PORT in the environment",
            args.world_size
        ),
    }
}

/// One rank of a multi-process learner (see the module docs).
fn run_ranked(args: &Args, cfg: FileConfig, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let (rank, world) = (args.rank, args.world_size);
    let master = master_addr(args)?;
    let device = match cfg.model.device.trim() {
        "cuda" => format!("cuda:{}", args.local_rank),
        d => d.to_string(),
    };
    let policy = load_policy(&cfg.model, &device)?;
    let cuda = match policy.device {
        tch::Device::Cuda(i) => Some(i),
        _ => None,
    };
    if cuda.is_some() && !cfg!(feature = "cuda") {
        bail!("model.device `{device}` with --world-size {world} needs the NCCL collective: rebuild with `cargo build --release --features cuda`");
    }
    let backend = if cuda.is_some() { ranks::BACKEND_NCCL } else { ranks::BACKEND_TCP };
    let (timeout, bucket) = (cfg.learner.collective_timeout, cfg.learner.bucket_elems);
    // forming the group waits for the slowest rank to start (and load the model)
    let join = timeout.max(JOIN_TIMEOUT);
    tracing::info!(rank, world, backend, master = %master, "joining the learner group");
    if rank == 0 {
        // like torchrun: all interfaces at the master port (the master's own host name may
        // resolve to a loopback alias on its host), or loopback when the master is loopback
        let master_sock = rt.block_on(ranks::resolve(&master))?;
        let ip = if master_sock.ip().is_loopback() { master_sock.ip() } else { std::net::Ipv4Addr::UNSPECIFIED.into() };
        let bind = std::net::SocketAddr::new(ip, master_sock.port());
        let rv_listener = rt.block_on(tokio::net::TcpListener::bind(bind)).with_context(|| format!("binding the rendezvous address {bind} (rank 0 listens on --master-addr {master})"))?;
        let coll_listener = std::net::TcpListener::bind((ip, 0)).with_context(|| format!("binding the collective listener on {ip}"))?;
        let info = GroupInfo {
            world,
            backend: backend.into(),
            nccl_unique_id: if cuda.is_some() { nccl_unique_id()? } else { Vec::new() },
            tcp_port: coll_listener.local_addr()?.port(),
        };
        let unique_id = info.nccl_unique_id.clone();
        let rv = Rendezvous::new(info);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tracing::info!(addr = %rv_listener.local_addr()?, "rendezvous listening");
        let server = rt.spawn(ranks::serve_rendezvous(rv.clone(), rv_listener, async move {
            let _ = stop_rx.await;
        }));
        let collective: Box<dyn Collective> = match cuda {
            Some(d) => {
                rv.wait_joined(join)?;
                nccl_collective(rank, world, d, unique_id, timeout, bucket)?
            }
            None => Box::new(TcpCollective::leader(coll_listener, world, join, bucket)?.with_timeout(timeout)),
        };
        let served = build_trainer(&cfg, policy, collective).and_then(|t| rt.block_on(serve(cfg, LeaderTrainer::new(t, rv.clone(), timeout))));
        rv.stop(served.as_ref().err().map(|e| format!("{e:#}")));
        let _ = stop_tx.send(());
        if rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(10), server).await }).is_err() {
            tracing::warn!("rendezvous server did not stop within 10s");
        }
        return served;
    }
    let info = rt.block_on(ranks::join_group(&master, rank, world, backend, join))?;
    let collective: Box<dyn Collective> = match cuda {
        Some(d) => nccl_collective(rank, world, d, info.nccl_unique_id, timeout, bucket)?,
        None => {
            let leader = std::net::SocketAddr::new(rt.block_on(ranks::resolve(&master))?.ip(), info.tcp_port);
            Box::new(TcpCollective::follower(leader, rank, world, join, bucket)?.with_timeout(timeout))
        }
    };
    let mut trainer = build_trainer(&cfg, policy, collective)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    rt.spawn(async move {
        crate::config_load::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let end = ranks::follow_steps(rt.handle(), &master, rank, &mut trainer, stop_rx)?;
    tracing::info!(rank, step = trainer.learner.step, ?end, "learner rank finished");
    Ok(())
}

#[cfg(feature = "cuda")]
fn nccl_unique_id() -> anyhow::Result<Vec<u8>> {
    Ok(deepsearch_learner::nccl::new_unique_id()?)
}

#[cfg(feature = "cuda")]
fn nccl_collective(rank: usize, world: usize, device: usize, unique_id: Vec<u8>, timeout: std::time::Duration, bucket_elems: usize) -> anyhow::Result<Box<dyn Collective>> {
    use deepsearch_learner::nccl::{NcclCollective, NcclParams};
    let p = NcclParams { rank, world, device, unique_id, timeout, bucket_elems };
    Ok(Box::new(NcclCollective::new(p)?))
}

#[cfg(not(feature = "cuda"))]
fn nccl_unique_id() -> anyhow::Result<Vec<u8>> {
    bail!("built without the `cuda` feature: no NCCL")
}

#[cfg(not(feature = "cuda"))]
fn nccl_collective(_: usize, _: usize, _: usize, _: Vec<u8>, _: std::time::Duration, _: usize) -> anyhow::Result<Box<dyn Collective>> {
    bail!("built without the `cuda` feature: no NCCL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sections_parse_and_disagreements_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.toml");
        std::fs::write(&p, "[model]\npath = \"m\"\n[learner]\nprompts_per_step = 4\n[runtime]\nprompts_per_step = 4\nstream_credits = 3\n").unwrap();
        let c = load(&p, &[]).unwrap();
        assert_eq!((c.model.device.as_str(), c.runtime.stream_credits), ("cpu", 3));
        let sets = ["runtime.checkpoint_dir=\"ck\"".to_string(), "runtime.keep_checkpoints=2".to_string()];
        let c = load(&p, &sets).unwrap();
        assert_eq!((c.runtime.checkpoint_dir.as_deref(), c.runtime.keep_checkpoints), (Some(Path::new("ck")), 2));
        assert_eq!((c.runtime.stream_credits, c.learner.prompts_per_step), (3, 4));
        std::fs::write(&p, "[model]\npath = \"m\"\n[learner]\nprompts_per_step = 4\n").unwrap();
        let err = load(&p, &[]).unwrap_err().to_string();
        assert!(err.contains("runtime.prompts_per_step (256) differs"), "{err}");
        std::fs::write(&p, "[model]\npath = \"m\"\nfoo = 1\n").unwrap();
        let err = format!("{:#}", load(&p, &[]).unwrap_err());
        assert!(err.contains("foo") && err.contains("l.toml"), "{err}");
        std::fs::write(&p, "[learner]\n").unwrap();
        let err = format!("{:#}", load(&p, &[]).unwrap_err());
        assert!(err.contains("model.path"), "{err}");
    }
}
