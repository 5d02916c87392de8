//! `LearnerRuntimeConfig`: every knob of the learner's serving side (ingest, credits, steps,
//! weight publication, coordinator link). Read from the `[runtime]` section of a learner config
//! (serde, unknown fields rejected); [`LearnerRuntimeConfig::for_test`] is a small loopback setup.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{LearnerError, Result};

/// How the learner tells the coordinator about new policy versions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorLink {
    /// Coordinator gRPC address ("host:port" or a URI). Default "127.0.0.1:50051".
    pub address: String,
    /// Deadline of each `PublishPolicyVersion` call. Default "5s".
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per version before giving up (logged; the next version supersedes it). Default 5.
    pub attempts: u32,
    /// Wait before the first retry; doubled per retry. Default "500ms".
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
}

impl Default for CoordinatorLink {
    fn default() -> Self {
        CoordinatorLink {
            address: "127.0.0.1:50051".into(),
            timeout: Duration::from_secs(5),
            attempts: 5,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Every knob of the learner runtime.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerRuntimeConfig {
    /// gRPC listen address of LearnerService (rank 0). Default "127.0.0.1:50061".
    pub listen: SocketAddr,
    /// Prometheus `/metrics` address; none = not served. Default none.
    pub metrics_listen: Option<SocketAddr>,
    /// Address actors use to reach this learner, sent to the coordinator as the version's
    /// location. Default "" (= the listen address).
    pub advertise: String,
    /// Complete groups (prompts) per training step. Default 256 (spec §6).
    pub prompts_per_step: usize,
    /// Trajectories the learner holds at most (in incomplete groups and complete groups waiting
    /// for a step, plus credits granted to actors): the memory bound. Must hold a step's worth plus
    /// the actors' partial groups. Default 8192.
    pub max_queued_trajectories: usize,
    /// Credits one stream may hold at once (unacknowledged trajectories in flight). Default 16.
    ///
    /// Why 16: credits only bound how far an actor may run ahead of its acknowledgements. The
    /// 64-actor load benchmark (bench/RESULTS.md, "Learner runtime") ingests the same ~22k
    /// trajectories/s with 8 credits as with 64, but 64 queue 4096 trajectories in flight and
    /// push the p99 acknowledgement latency from 70 ms to 528 ms (Little's law) and reserve half
    /// the default queue as credits. 16 keeps twice the measured sufficient window for links with
    /// a longer round trip than loopback.
    pub stream_credits: u32,
    /// Trajectories more than this many versions behind the learner are dropped and counted
    /// (checked on arrival, on every new version and when a step is assembled). Default 4.
    pub max_staleness: u64,
    /// An incomplete group older than this is dropped (its actor is gone) and its room freed.
    /// Default "10m".
    #[serde(with = "humantime_serde")]
    pub group_timeout: Duration,
    /// Trajectory ids (and completed group ids) remembered for exactly-once ingest. Default 1000000.
    pub dedupe_window: usize,
    /// Policy versions whose weights are kept for download. Default 3.
    pub keep_versions: usize,
    /// Default weights chunk size in bytes (capped below `max_message_bytes`). Default 1 MiB.
    pub chunk_bytes: usize,
    /// Largest gRPC message sent or accepted. Default 16 MiB.
    pub max_message_bytes: usize,
    /// Deadline the server puts on unary calls. Default "30s".
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The coordinator to notify of new versions; none = standalone. Default none.
    pub coordinator: Option<CoordinatorLink>,
    /// Folder of the learner's checkpoints (`step-<8 digits>/`, see `crate::checkpoint`): written
    /// every `checkpoint_every_steps` steps and at a clean shutdown; at start the newest one is
    /// restored and training continues from its step and policy version. None = no checkpoints.
    /// Default none.
    pub checkpoint_dir: Option<PathBuf>,
    /// Steps between checkpoints (the checkpoint is written before the step's version is
    /// published, so with 1 every announced version survives a crash). Default 1.
    pub checkpoint_every_steps: u64,
    /// Checkpoints kept in `checkpoint_dir` (older ones deleted). Default 3.
    pub keep_checkpoints: usize,
}

impl Default for LearnerRuntimeConfig {
    fn default() -> Self {
        LearnerRuntimeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50061)),
            metrics_listen: None,
            advertise: String::new(),
            prompts_per_step: 256,
            max_queued_trajectories: 8192,
            stream_credits: 16,
            max_staleness: 4,
            group_timeout: Duration::from_secs(600),
            dedupe_window: 1_000_000,
            keep_versions: 3,
            chunk_bytes: 1 << 20,
            max_message_bytes: 16 << 20,
            request_timeout: Duration::from_secs(30),
            coordinator: None,
            checkpoint_dir: None,
            checkpoint_every_steps: 1,
            keep_checkpoints: 3,
        }
    }
}

impl LearnerRuntimeConfig {
    /// Loopback, 2 prompts per step, 64 queued trajectories, 8 credits per stream, small chunks.
    pub fn for_test() -> Self {
        LearnerRuntimeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            prompts_per_step: 2,
            max_queued_trajectories: 64,
            stream_credits: 8,
            dedupe_window: 10_000,
            keep_versions: 2,
            chunk_bytes: 64,
            ..Default::default()
        }
    }

    /// Checks ranges; [`super::run_learner`] calls it.
    pub fn validate(&self) -> Result<()> {
        let check = |field: &str, ok: bool, msg: &str| {
            if ok { Ok(()) } else { Err(LearnerError::config(&format!("runtime.{field}"), msg)) }
        };
        check("prompts_per_step", self.prompts_per_step > 0, "must be positive")?;
        check("max_queued_trajectories", self.max_queued_trajectories >= self.prompts_per_step, "must be >= prompts_per_step")?;
        check("stream_credits", self.stream_credits > 0, "must be positive")?;
        check("group_timeout", !self.group_timeout.is_zero(), "must be positive")?;
        check("dedupe_window", self.dedupe_window > 0, "must be positive")?;
        check("keep_versions", self.keep_versions > 0, "must be positive")?;
        check("chunk_bytes", self.chunk_bytes > 0, "must be positive")?;
        check("max_message_bytes", self.max_message_bytes >= 4096, "must be >= 4096")?;
        check("request_timeout", !self.request_timeout.is_zero(), "must be positive")?;
        check("checkpoint_every_steps", self.checkpoint_every_steps > 0, "must be positive")?;
        check("keep_checkpoints", self.keep_checkpoints > 0, "must be positive")?;
        if let Some(c) = &self.coordinator {
            check("coordinator.attempts", c.attempts > 0, "must be positive")?;
            check("coordinator.timeout", !c.timeout.is_zero(), "must be positive")?;
        }
        Ok(())
    }

    /// Chunk size actually used for a request asking `asked` bytes (0 = default): capped so a
    /// chunk message stays below `max_message_bytes`.
    pub fn chunk_for(&self, asked: u32) -> usize {
        let want = if asked == 0 { self.chunk_bytes } else { asked as usize };
        want.min(self.max_message_bytes - 1024).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_unknown_fields_are_rejected() {
        LearnerRuntimeConfig::default().validate().unwrap();
        LearnerRuntimeConfig::for_test().validate().unwrap();
        let c: LearnerRuntimeConfig = toml::from_str(
            "prompts_per_step = 4\ngroup_timeout = \"30s\"\n[coordinator]\naddress = \"c:1\"\n",
        )
        .unwrap();
        assert_eq!(c.group_timeout, Duration::from_secs(30));
        assert_eq!(c.coordinator.unwrap().attempts, 5);
        let err = toml::from_str::<LearnerRuntimeConfig>("prompts = 4").unwrap_err().to_string();
        assert!(err.contains("prompts"), "{err}");
        let bad = LearnerRuntimeConfig { max_queued_trajectories: 1, prompts_per_step: 2, ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("runtime.max_queued_trajectories"));
        let c = LearnerRuntimeConfig { chunk_bytes: 100, max_message_bytes: 5000, ..Default::default() };
        assert_eq!((c.chunk_for(0), c.chunk_for(7), c.chunk_for(1 << 30)), (100, 7, 3976));
    }
}
