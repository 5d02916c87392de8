//! `deepsearch learner --config FILE [--rank N --world-size W] [--listen ADDR]`: runs the learner
//! role (issue #6 item 4; spec §6) until Ctrl-C / SIGTERM: loads the policy checkpoint, builds the
//! Tree-GRPO learner and serves `LearnerService` with
//! `deepsearch_learner::runtime::run_learner`. Rank and world size also come from the `RANK` /
//! `WORLD_SIZE` environment (what torchrun and Kubernetes StatefulSets set).
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
use deepsearch_learner::runtime::{run_learner, LearnerRuntimeConfig, PolicyTrainer};
use deepsearch_learner::{Learner, LearnerConfig, SingleProcess};
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
    /// Number of learner ranks.
    #[arg(long, env = "WORLD_SIZE", default_value_t = 1)]
    world_size: usize,
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
struct ModelSection {
    /// Hugging Face checkpoint folder. Required.
    path: PathBuf,
    /// Device. Default "cpu".
    device: String,
    /// Parameter dtype. Default "f32".
    dtype: String,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection { path: PathBuf::new(), device: "cpu".into(), dtype: "f32".into() }
    }
}

/// The whole learner config file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    model: ModelSection,
    learner: LearnerConfig,
    runtime: LearnerRuntimeConfig,
}

fn load(path: &Path, sets: &[String]) -> anyhow::Result<FileConfig> {
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
    if args.rank >= args.world_size {
        bail!("--rank {} must be below --world-size {}", args.rank, args.world_size);
    }
    if args.world_size > 1 {
        bail!(
            "--world-size {}: multi-process data parallelism (NCCL collective, rank 0 broadcasting each step's groups) is not wired into `deepsearch learner` yet; run one learner process",
            args.world_size
        );
    }
    if let Some(l) = args.listen {
        cfg.runtime.listen = l;
    }
    if args.metrics_listen.is_some() {
        cfg.runtime.metrics_listen = args.metrics_listen;
    }
    if args.checkpoint_dir.is_some() {
        cfg.runtime.checkpoint_dir = args.checkpoint_dir;
    }
    let m = &cfg.model;
    let policy = PolicyModel::load_with(&m.path, &m.device, &m.dtype).with_context(|| format!("loading policy {}", m.path.display()))?;
    let config_json = std::fs::read_to_string(m.path.join("config.json")).with_context(|| format!("reading {}/config.json", m.path.display()))?;
    let learner = Learner::new(cfg.learner.clone(), policy, Box::new(SingleProcess))?;
    let trainer = match &cfg.runtime.checkpoint_dir {
        Some(dir) => PolicyTrainer::resume(learner, config_json, dir).with_context(|| format!("resuming from {}", dir.display()))?,
        None => PolicyTrainer::new(learner, config_json),
    };
    if trainer.learner.step > 0 {
        tracing::info!(step = trainer.learner.step, version = trainer.learner.policy_version, "learner resumed");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.runtime.listen)
            .await
            .with_context(|| format!("binding {}", cfg.runtime.listen))?;
        tracing::info!(addr = %listener.local_addr()?, "learner starting");
        run_learner(cfg.runtime, trainer, listener, crate::config_load::shutdown_signal()).await?;
        Ok(())
    })
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
