//! Learner checkpoints (issue #5 §4): the model in Hugging Face layout (loads in transformers
//! unchanged) plus `optimizer.safetensors` (AdamW moments, fp32 masters) and `trainer_state.json`
//! (step, policy version, optimizer updates, RNG position, data cursor, config).
//!
//! Layout: `<root>/step-<8 digits>/`. A checkpoint is written into `<root>/.tmp-step-…`, every file
//! fsynced, the folder renamed into place and `<root>` fsynced: a crash leaves either the previous
//! checkpoints or the new complete one, never a torn one. Only the newest `keep_last` are kept.
//! Resume loads the newest and the run continues exactly (same weights, moments, RNG stream).

use crate::config::LearnerConfig;
use crate::error::{LearnerError, Result};
use crate::step::Learner;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Name of the optimizer-state file.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Name of the trainer-state file.
pub const STATE_FILE: &str = "trainer_state.json";

/// Everything besides tensors needed to resume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    pub step: u64,
    pub policy_version: u64,
    pub optimizer_updates: u64,
    /// The learner RNG: its seed and stream position (ChaCha8 word position).
    pub rng_seed: u64,
    pub rng_word_pos: u128,
    /// Opaque position of the data feed.
    pub data_cursor: serde_json::Value,
    pub config: LearnerConfig,
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| LearnerError::io(dir, e))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| LearnerError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| LearnerError::io(path, e))
}

/// Checkpoints under `root`, oldest first, as (step, folder).
pub fn list_checkpoints(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).map_err(|e| LearnerError::io(root, e))? {
        let e = e.map_err(|e| LearnerError::io(root, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse::<u64>().ok()) {
            if e.path().join(STATE_FILE).exists() {
                out.push((step, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The newest complete checkpoint under `root`.
pub fn latest_checkpoint(root: &Path) -> Result<Option<PathBuf>> {
    Ok(list_checkpoints(root)?.pop().map(|(_, p)| p))
}

impl Learner {
    /// The resumable state of this learner.
    pub fn trainer_state(&self) -> TrainerState {
        TrainerState {
            step: self.step,
            policy_version: self.policy_version,
            optimizer_updates: self.opt.updates,
            rng_seed: self.cfg.seed,
            rng_word_pos: self.rng.get_word_pos(),
            data_cursor: self.data_cursor.clone(),
            config: self.cfg.clone(),
        }
    }

    /// Writes a checkpoint of the current step under `root` atomically and prunes old ones
    /// (call on rank 0: every rank holds the same weights). Returns the folder.
    pub fn save_checkpoint(&self, root: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(root).map_err(|e| LearnerError::io(root, e))?;
        let name = step_dir_name(self.step);
        let tmp = root.join(format!(".tmp-{name}"));
        let fin = root.join(&name);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| LearnerError::io(&tmp, e))?;
        }
        // host/device sync: weights and moments are copied to the host
        self.policy.save(&tmp, &deepsearch_policy::SaveOptions::default())?;
        let state = self.opt.state_tensors();
        let views: Vec<(String, Vec<u8>, Vec<usize>)> = state
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    crate::weights::tensor_bytes(t),
                    t.size().iter().map(|&d| d as usize).collect(),
                )
            })
            .collect();
        let tviews = views
            .iter()
            .map(|(n, b, s)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).map(|v| (n.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| LearnerError::Checkpoint {
                path: tmp.clone(),
                msg: e.to_string(),
            })?;
        let bytes = safetensors::serialize(tviews, &None).map_err(|e| LearnerError::Checkpoint {
            path: tmp.clone(),
            msg: e.to_string(),
        })?;
        write_synced(&tmp.join(OPTIMIZER_FILE), &bytes)?;
        let json = serde_json::to_vec_pretty(&self.trainer_state()).map_err(|e| LearnerError::Checkpoint {
            path: tmp.clone(),
            msg: e.to_string(),
        })?;
        write_synced(&tmp.join(STATE_FILE), &json)?;
        fsync_dir(&tmp)?;
        if fin.exists() {
            std::fs::remove_dir_all(&fin).map_err(|e| LearnerError::io(&fin, e))?;
        }
        std::fs::rename(&tmp, &fin).map_err(|e| LearnerError::io(&fin, e))?;
        fsync_dir(root)?;
        let all = list_checkpoints(root)?;
        for (_, old) in all.iter().take(all.len().saturating_sub(self.cfg.keep_last)) {
            std::fs::remove_dir_all(old).map_err(|e| LearnerError::io(old, e))?;
        }
        tracing::info!(dir = %fin.display(), step = self.step, version = self.policy_version, "checkpoint written");
        Ok(fin)
    }

    /// Restores weights, optimizer, step, version, RNG and data cursor from a checkpoint folder
    /// written by [`Self::save_checkpoint`]. The config in the checkpoint is informational: the
    /// caller's config stays in force.
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<TrainerState> {
        let state_path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path).map_err(|e| LearnerError::io(&state_path, e))?;
        let state: TrainerState = serde_json::from_str(&text).map_err(|e| LearnerError::Format {
            path: state_path.clone(),
            field: "(json)".into(),
            msg: e.to_string(),
        })?;
        deepsearch_policy::weights::load_into(&self.policy.vs, dir, self.policy.cfg.tie_word_embeddings)?;
        let opt_path = dir.join(OPTIMIZER_FILE);
        let bytes = std::fs::read(&opt_path).map_err(|e| LearnerError::io(&opt_path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| LearnerError::Checkpoint {
            path: opt_path.clone(),
            msg: e.to_string(),
        })?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            tensors.insert(name, Tensor::f_from_data_size(view.data(), &shape, tch::Kind::Float)?);
        }
        self.opt.load_state(&tensors, state.optimizer_updates, &opt_path)?;
        self.step = state.step;
        self.policy_version = state.policy_version;
        self.rng = ChaCha8Rng::seed_from_u64(state.rng_seed);
        self.rng.set_word_pos(state.rng_word_pos);
        self.data_cursor = state.data_cursor.clone();
        tracing::info!(dir = %dir.display(), step = state.step, version = state.policy_version, "resumed from checkpoint");
        Ok(state)
    }
}
