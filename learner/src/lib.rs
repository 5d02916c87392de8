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
//! - [`collective`]: the data-parallel `Collective` trait (single process, thread ranks; NCCL in
//!   [`nccl`] behind the `cuda` feature) with deadlines on every wait.
//! - [`checkpoint`]: atomic HF-layout checkpoints with optimizer and trainer state, resume.
//! - [`weights`]: weight publication as checksummed safetensors chunks and verified reassembly.
//! - [`sft`]: supervised bootstrapping on solution traces (`deepsearch sft`).
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
pub mod weights;

pub use batch::{build_step, IngestLimits, IngestReport, StepBatch, TrainSample};
pub use checkpoint::{latest_checkpoint, list_checkpoints, TrainerState};
pub use collective::{Collective, SingleProcess, ThreadCollective, ThreadGroup};
pub use config::{AdvNorm, LearnerConfig, LossAgg, Precision};
pub use error::{LearnerError, Result};
pub use optim::{lr_at, AdamW};
pub use sft::{train_sft, SftConfig, SftExample, SftReport};
pub use step::{Learner, StepReport};
pub use weights::{publish, Reassembler, WeightChunk, WeightManifest};
