//! [`PolicyTrainer`]: the Tree-GRPO [`Learner`] (spec §6) behind the runtime's [`Trainer`] trait.
//! A step validates the groups again against the model (vocabulary, context) and trains; the
//! export is the policy's parameters as one safetensors file under their Hugging Face names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use deepsearch_search::Group;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use tch::Kind;

use super::Trainer;
use crate::checkpoint::list_checkpoints;
use crate::error::{LearnerError, Result};
use crate::step::{Learner, StepReport};
use crate::weights::{named_tensors, tensor_bytes};

/// A [`Learner`] on a policy model, with the model's `config.json`.
pub struct PolicyTrainer {
    pub learner: Learner,
    config_json: String,
}

impl std::fmt::Debug for PolicyTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyTrainer").field("learner", &self.learner).finish()
    }
}

impl PolicyTrainer {
    /// Wraps `learner`; `config_json` is the model's Hugging Face `config.json` text.
    pub fn new(learner: Learner, config_json: String) -> Self {
        PolicyTrainer { learner, config_json }
    }

    /// Wraps `learner` and restores the newest checkpoint under `root` when there is one
    /// (weights, optimizer, step, policy version, RNG); a missing or empty `root` starts fresh.
    /// `run_learner` with `checkpoint_dir` set does the same by itself (and does not restore a
    /// checkpoint twice).
    pub fn resume(learner: Learner, config_json: String, root: &Path) -> Result<Self> {
        let mut t = PolicyTrainer::new(learner, config_json);
        t.restore_checkpoint(root)?;
        Ok(t)
    }
}

fn dtype_of(kind: Kind, name: &str) -> Result<Dtype> {
    match kind {
        Kind::Float => Ok(Dtype::F32),
        Kind::BFloat16 => Ok(Dtype::BF16),
        Kind::Half => Ok(Dtype::F16),
        other => Err(LearnerError::Weights(format!("tensor `{name}`: unsupported kind {other:?}"))),
    }
}

impl Trainer for PolicyTrainer {
    fn train_step(&mut self, groups: Vec<Group>) -> Result<StepReport> {
        let (report, ingest) = self.learner.train_on_groups(&groups)?;
        tracing::info!(
            groups_kept = ingest.groups_kept,
            groups_in = ingest.groups_in,
            trajectories_kept = ingest.trajectories_kept,
            zero_signal_groups = ingest.zero_signal_groups,
            "step ingest"
        );
        Ok(report)
    }

    fn export_weights(&self) -> Result<Vec<u8>> {
        // host sync: every parameter is copied to the host
        let raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = named_tensors(&self.learner.policy.vs)
            .into_iter()
            .map(|(name, t)| {
                let dtype = dtype_of(t.kind(), &name)?;
                let shape = t.size().iter().map(|&d| d as usize).collect();
                Ok((name, dtype, shape, tensor_bytes(&t)))
            })
            .collect::<Result<_>>()?;
        let views = raw
            .iter()
            .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| LearnerError::Weights(format!("building tensor view: {e}")))?;
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize(views, &Some(meta)).map_err(|e| LearnerError::Weights(format!("serialising: {e}")))
    }

    fn config_json(&self) -> String {
        self.config_json.clone()
    }

    fn policy_version(&self) -> u64 {
        self.learner.policy_version
    }

    fn save_checkpoint(&mut self, root: &Path, keep: usize) -> Result<Option<PathBuf>> {
        // `Learner::save_checkpoint` prunes to `cfg.keep_last`; the runtime's setting rules here.
        let own = std::mem::replace(&mut self.learner.cfg.keep_last, keep.max(1));
        let r = self.learner.save_checkpoint(root);
        self.learner.cfg.keep_last = own;
        r.map(Some)
    }

    fn restore_checkpoint(&mut self, root: &Path) -> Result<Option<PathBuf>> {
        let Some((step, dir)) = list_checkpoints(root)?.pop() else {
            return Ok(None);
        };
        if step <= self.learner.step {
            return Ok(None);
        }
        self.learner.load_checkpoint(&dir)?;
        Ok(Some(dir))
    }

    fn renumber(&mut self, version: u64) -> Result<()> {
        self.learner.policy_version = version;
        Ok(())
    }
}
