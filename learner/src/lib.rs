//! The DeepSearch learner (spec §6, issue #5): turns trajectory groups from the search actors into
//! policy updates.
//!
//! - [`config`]: `LearnerConfig`, every knob with the spec's defaults.
//! - [`batch`]: validation at the edge (bad trajectories counted, never a crash), staleness,
//!   advantages, mini-/micro-batch planning and data-parallel shards.
//! - [`loss`]: the Tree-GRPO / DAPO objective as small pure pieces (PPO clip-higher + dual-clip,
//!   k3 KL, truncated importance sampling, token-mean and sequence aggregations).
//! - [`optim`]: AdamW over tensors with warm-up, decay groups, fp32 masters for bf16, clipping.
//! - [`step`]: the [`Learner`] and its training step (reads top to bottom).
//! - [`collective`]: the data-parallel `Collective` trait (single process, thread ranks; processes
//!   over TCP in [`tcp_collective`]; NCCL in `nccl` behind the `cuda` feature) with deadlines on
//!   every wait. `deepsearch learner --world-size W` wires them up across processes
//!   ([`runtime::ranks`]: rendezvous over gRPC, rank 0 hands each step's groups to the others).
//! - [`checkpoint`]: atomic HF-layout checkpoints with optimizer and trainer state, resume.
//! - [`weights`]: weight publication as checksummed safetensors chunks and verified reassembly.
//! - [`sft`]: supervised bootstrapping on solution traces (`deepsearch sft`).
//!
//! Multi-process data parallelism on a cluster, one process per GPU (torchrun-style variables;
//! every rank reads the same config and, to resume, the same `checkpoint_dir` on a shared volume):
//!
//! ```text
//! # on every node, for each local GPU i (ranks 0..W-1 over all nodes; rank 0 serves the actors):
//! RANK=<global rank> WORLD_SIZE=<W> LOCAL_RANK=<i> MASTER_ADDR=<rank 0 host> MASTER_PORT=29500 \
//!   deepsearch learner --config learner.toml      # [model] device = "cuda", binary built with --features cuda
//! ```
pub mod batch;
pub mod checkpoint;
pub mod collective;
pub mod config;
pub mod error;
pub mod loss;
#[cfg(feature = "cuda")]
pub mod nccl;
pub mod optim;
/// Rank 0's serving side: trajectory ingest with credits, steps on a trainer thread, versions and weights (issue #6).
pub mod runtime;
pub mod sft;
pub mod step;
pub mod tcp_collective;
pub mod weights;

pub use batch::{build_step, IngestLimits, IngestReport, StepBatch, TrainSample};
pub use checkpoint::{latest_checkpoint, list_checkpoints, TrainerState};
pub use collective::{Collective, SingleProcess, ThreadCollective, ThreadGroup};
pub use config::{AdvNorm, LearnerConfig, LossAgg, Precision};
pub use error::{LearnerError, Result};
pub use optim::{lr_at, AdamW};
pub use sft::{train_sft, SftConfig, SftExample, SftReport};
pub use step::{Learner, StepReport};
pub use tcp_collective::TcpCollective;
pub use weights::{publish, Reassembler, WeightChunk, WeightManifest};
