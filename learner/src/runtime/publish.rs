//! Steps and policy versions (spec §6; design.md "publishes policy version v+1 → actors fetch
//! weights"): the trainer's own OS thread, the kept versions with their manifests, and the
//! coordinator notification.
//!
//! The [`Trainer`] lives on one thread that owns it for its whole life (tensor work never runs on
//! the async runtime); jobs arrive over a channel and each answers on a oneshot. After a step the
//! same thread exports the weights and computes the manifest (hashing gigabytes is CPU work too),
//! so the async side only stores an `Arc` and announces it.
//!
//! Checkpoints (issue #6 "restart the learner from its checkpoint"): with a
//! [`CheckpointPolicy`] the thread restores the newest checkpoint before the first export, writes
//! one every `every_steps` steps BEFORE the step's version is exported and announced, and one at a
//! clean shutdown; it also records every announced version, so a resumed learner never reuses a
//! version number (see [`PUBLISHED_VERSION_FILE`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deepsearch_proto::v1 as pb;
use deepsearch_proto::weights::manifest_of;
use deepsearch_search::Group;
use tokio::sync::{oneshot, watch};

use super::config::CoordinatorLink;
use super::Trainer;
use crate::error::{LearnerError, Result};
use crate::step::StepReport;

/// One published policy version: its weights file and manifest.
#[derive(Debug)]
pub struct Published {
    pub version: u64,
    pub published_unix_ms: u64,
    /// The safetensors file, shared by every download.
    pub bytes: Arc<Vec<u8>>,
    pub manifest: pb::WeightsManifest,
}

impl Published {
    /// The announcement of this version on `WatchPolicyVersions`.
    pub fn announcement(&self) -> pb::WatchPolicyVersionsResponse {
        pb::WatchPolicyVersionsResponse {
            policy_version: self.version,
            published_unix_ms: self.published_unix_ms,
            total_bytes: self.manifest.total_bytes,
            sha256: self.manifest.sha256.clone(),
        }
    }
}

/// The last `keep` versions, oldest first.
#[derive(Debug)]
pub struct Versions {
    keep: usize,
    kept: VecDeque<Arc<Published>>,
}

impl Versions {
    pub fn new(keep: usize) -> Self {
        Versions { keep: keep.max(1), kept: VecDeque::new() }
    }

    /// Adds `p`, forgetting the oldest beyond `keep`.
    pub fn push(&mut self, p: Arc<Published>) {
        self.kept.push_back(p);
        while self.kept.len() > self.keep {
            self.kept.pop_front();
        }
    }

    /// Version `v` (0 = the newest) if still kept.
    pub fn get(&self, v: u64) -> Option<Arc<Published>> {
        if v == 0 {
            return self.kept.back().cloned();
        }
        self.kept.iter().find(|p| p.version == v).cloned()
    }

    /// Versions kept, oldest first.
    pub fn list(&self) -> Vec<u64> {
        self.kept.iter().map(|p| p.version).collect()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Where and how often the trainer thread writes checkpoints (from `LearnerRuntimeConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointPolicy {
    pub root: PathBuf,
    pub every_steps: u64,
    pub keep: usize,
}

/// Name of the file in the checkpoint folder holding the newest policy version ever announced
/// (written before each announcement). A resumed learner numbers its weights above it, so a
/// version number never names two different sets of weights, even when the crash lost steps
/// published after the last checkpoint.
pub const PUBLISHED_VERSION_FILE: &str = "published_version";

/// The newest version recorded in `root` (0 when none; an unreadable file is an error naming it).
pub fn read_published_version(root: &Path) -> Result<u64> {
    let p = root.join(PUBLISHED_VERSION_FILE);
    match std::fs::read_to_string(&p) {
        Ok(text) => text.trim().parse::<u64>().map_err(|e| LearnerError::Format {
            path: p.clone(),
            field: "(version)".into(),
            msg: format!("`{}`: {e}", text.trim()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(LearnerError::io(&p, e)),
    }
}

/// Records `version` as announced (temporary file, fsync, rename: never torn).
pub fn write_published_version(root: &Path, version: u64) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(root).map_err(|e| LearnerError::io(root, e))?;
    let tmp = root.join(format!(".{PUBLISHED_VERSION_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| LearnerError::io(&tmp, e))?;
    f.write_all(format!("{version}\n").as_bytes()).and_then(|_| f.sync_all()).map_err(|e| LearnerError::io(&tmp, e))?;
    let dst = root.join(PUBLISHED_VERSION_FILE);
    std::fs::rename(&tmp, &dst).map_err(|e| LearnerError::io(&dst, e))
}

/// What the trainer thread answers.
#[derive(Debug)]
pub struct StepDone {
    /// None for the initial export.
    pub report: Option<StepReport>,
    pub published: Published,
    pub seconds: f64,
    /// A checkpoint written with this job: its folder, or why it failed (training goes on).
    pub checkpoint: Option<std::result::Result<PathBuf, String>>,
}

enum Job {
    /// Restore the newest checkpoint (when configured), then export the current weights without
    /// training (the initial version).
    Start,
    Step(Vec<Group>),
    /// Write a checkpoint if any step ran since the last one (clean shutdown); answers with the
    /// current weights unchanged.
    Checkpoint,
}

/// Handle of the trainer's thread.
pub struct TrainerThread {
    jobs: std::sync::mpsc::Sender<(Job, oneshot::Sender<Result<StepDone>>)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The trainer and its checkpoint bookkeeping, owned by the thread.
struct Owned<T> {
    trainer: T,
    ckpt: Option<CheckpointPolicy>,
    /// Steps since the last checkpoint.
    since: u64,
}

impl TrainerThread {
    /// Moves `trainer` onto its own OS thread (no checkpoints).
    pub fn spawn<T: Trainer>(trainer: T) -> Result<Self> {
        Self::spawn_with(trainer, None)
    }

    /// Moves `trainer` onto its own OS thread, checkpointing per `ckpt`.
    pub fn spawn_with<T: Trainer>(trainer: T, ckpt: Option<CheckpointPolicy>) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<(Job, oneshot::Sender<Result<StepDone>>)>();
        let mut owned = Owned { trainer, ckpt, since: 0 };
        let thread = std::thread::Builder::new()
            .name("learner-trainer".into())
            .spawn(move || {
                while let Ok((job, reply)) = rx.recv() {
                    let _ = reply.send(run_job(&mut owned, job));
                }
                tracing::debug!("trainer thread finished");
            })
            .map_err(|e| LearnerError::io("learner-trainer thread", e))?;
        Ok(TrainerThread { jobs: tx, thread: Some(thread) })
    }

    async fn call(&self, job: Job) -> Result<StepDone> {
        let (reply, rx) = oneshot::channel();
        let dead = || LearnerError::InvalidArgument { arg: "trainer".into(), msg: "the trainer thread has stopped (panicked?)".into() };
        self.jobs.send((job, reply)).map_err(|_| dead())?;
        rx.await.map_err(|_| dead())?
    }

    /// Whether the thread still runs (false after a panic in the trainer).
    pub fn is_alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Restores the newest checkpoint (if configured) and exports the current weights as a
    /// publication (no step).
    pub async fn export(&self) -> Result<StepDone> {
        self.call(Job::Start).await
    }

    /// Runs one step over `groups` and exports the new weights.
    pub async fn step(&self, groups: Vec<Group>) -> Result<StepDone> {
        self.call(Job::Step(groups)).await
    }

    /// Writes a checkpoint if steps ran since the last one.
    pub async fn checkpoint(&self) -> Result<StepDone> {
        self.call(Job::Checkpoint).await
    }

    /// Closes the job channel and waits (off the async runtime) for the thread to end.
    pub async fn stop(mut self) {
        let TrainerThread { jobs, thread } = &mut self;
        drop(std::mem::replace(jobs, std::sync::mpsc::channel().0));
        if let Some(t) = thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Restores the newest checkpoint under `c.root` and makes sure the version about to be
/// announced is above every version announced before (see [`PUBLISHED_VERSION_FILE`]).
fn resume<T: Trainer>(trainer: &mut T, c: &CheckpointPolicy) -> Result<()> {
    if let Some(dir) = trainer.restore_checkpoint(&c.root)? {
        tracing::info!(dir = %dir.display(), version = trainer.policy_version(), "learner resumed from checkpoint");
    }
    let announced = read_published_version(&c.root)?;
    let v = trainer.policy_version();
    if v < announced {
        // The crash lost versions announced after the checkpoint: actors may hold them. Give
        // these weights a fresh number so actors swap to them and nothing is newer than us.
        trainer.renumber(announced + 1)?;
        tracing::warn!(checkpoint_version = v, announced, now = announced + 1, "versions after the checkpoint were lost; renumbered");
    }
    Ok(())
}

fn save<T: Trainer>(o: &mut Owned<T>) -> Option<std::result::Result<PathBuf, String>> {
    let c = o.ckpt.as_ref()?;
    let r = match o.trainer.save_checkpoint(&c.root, c.keep) {
        Ok(Some(dir)) => Ok(dir),
        Ok(None) => Err("this trainer does not write checkpoints".to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = &r {
        tracing::error!(root = %c.root.display(), error = %e, "checkpoint failed; training goes on");
    } else {
        o.since = 0;
    }
    Some(r)
}

fn run_job<T: Trainer>(o: &mut Owned<T>, job: Job) -> Result<StepDone> {
    let t0 = std::time::Instant::now();
    let mut checkpoint = None;
    let report = match job {
        Job::Start => {
            if let Some(c) = o.ckpt.clone() {
                resume(&mut o.trainer, &c)?;
            }
            None
        }
        Job::Step(groups) => {
            let r = o.trainer.train_step(groups)?;
            o.since += 1;
            if o.ckpt.as_ref().is_some_and(|c| o.since >= c.every_steps) {
                checkpoint = save(o);
            }
            Some(r)
        }
        Job::Checkpoint => {
            if o.since > 0 {
                checkpoint = save(o);
            }
            None
        }
    };
    let trainer = &o.trainer;
    let bytes = trainer.export_weights()?;
    let version = trainer.policy_version();
    let manifest = manifest_of(version, &bytes, &trainer.config_json()).map_err(|e| LearnerError::Weights(e.to_string()))?;
    if let Some(c) = &o.ckpt {
        // before the announcement: a version is recorded before anyone can hold it
        if let Err(e) = write_published_version(&c.root, version) {
            tracing::error!(error = %e, version, "recording the announced version failed");
        }
    }
    let published = Published { version, published_unix_ms: now_ms(), bytes: Arc::new(bytes), manifest };
    Ok(StepDone { report, published, seconds: t0.elapsed().as_secs_f64(), checkpoint })
}

/// Tells the coordinator about the newest version: deadline per call, retries with doubling
/// backoff; a newer version supersedes one still being retried. Ends when `versions` closes.
pub async fn coordinator_publisher(
    link: CoordinatorLink,
    location: String,
    mut versions: watch::Receiver<u64>,
    failures: prometheus::IntCounter,
) {
    let opts = deepsearch_coordinator::ClientOptions { timeout: link.timeout, ..Default::default() };
    let client = match deepsearch_coordinator::CoordinatorClient::connect_lazy(&link.address, opts) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(address = %link.address, error = %e, "bad coordinator address: versions will not be published there");
            return;
        }
    };
    while versions.changed().await.is_ok() {
        let mut backoff = link.backoff;
        let mut attempt = 0;
        loop {
            let v = *versions.borrow_and_update();
            attempt += 1;
            match client.publish_policy_version(v, &location).await {
                Ok(_) => {
                    tracing::info!(version = v, "policy version published to the coordinator");
                    break;
                }
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                    tracing::warn!(version = v, error = %s, "coordinator refused the version (it knows a newer one)");
                    break;
                }
                Err(s) => {
                    failures.inc();
                    if attempt >= link.attempts {
                        tracing::error!(version = v, attempts = attempt, error = %s, "publishing to the coordinator failed; giving up on this version");
                        break;
                    }
                    tracing::warn!(version = v, attempt, error = %s, "publishing to the coordinator failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    if versions.has_changed().unwrap_or(false) {
                        attempt = 0;
                        backoff = link.backoff;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(version: u64) -> Arc<Published> {
        Arc::new(Published { version, published_unix_ms: 0, bytes: Arc::new(vec![]), manifest: Default::default() })
    }

    /// A trainer whose "checkpoint" is a folder `step-N` holding its version.
    struct Fake {
        version: u64,
        step: u64,
    }

    impl Trainer for Fake {
        fn train_step(&mut self, _groups: Vec<Group>) -> Result<StepReport> {
            self.step += 1;
            self.version += 1;
            Ok(StepReport { step: self.step, policy_version: self.version, ..Default::default() })
        }
        fn export_weights(&self) -> Result<Vec<u8>> {
            let v = (self.version as f32).to_le_bytes();
            let views = vec![("w".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &v).unwrap())];
            Ok(safetensors::serialize(views, &None).unwrap())
        }
        fn config_json(&self) -> String {
            "{}".into()
        }
        fn policy_version(&self) -> u64 {
            self.version
        }
        fn save_checkpoint(&mut self, root: &Path, keep: usize) -> Result<Option<PathBuf>> {
            let dir = root.join(format!("step-{:08}", self.step));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(crate::checkpoint::STATE_FILE), format!("{} {}", self.step, self.version)).unwrap();
            let all = crate::checkpoint::list_checkpoints(root)?;
            for (_, d) in all.iter().take(all.len().saturating_sub(keep)) {
                std::fs::remove_dir_all(d).unwrap();
            }
            Ok(Some(dir))
        }
        fn restore_checkpoint(&mut self, root: &Path) -> Result<Option<PathBuf>> {
            let Some((_, dir)) = crate::checkpoint::list_checkpoints(root)?.pop() else { return Ok(None) };
            let text = std::fs::read_to_string(dir.join(crate::checkpoint::STATE_FILE)).unwrap();
            let (s, v) = text.split_once(' ').unwrap();
            (self.step, self.version) = (s.parse().unwrap(), v.parse().unwrap());
            Ok(Some(dir))
        }
        fn renumber(&mut self, version: u64) -> Result<()> {
            self.version = version;
            Ok(())
        }
    }

    #[tokio::test]
    async fn checkpoints_every_n_steps_resume_and_never_reuse_a_version() {
        let dir = tempfile::tempdir().unwrap();
        let policy = CheckpointPolicy { root: dir.path().to_path_buf(), every_steps: 2, keep: 2 };
        let t = TrainerThread::spawn_with(Fake { version: 0, step: 0 }, Some(policy.clone())).unwrap();
        assert_eq!(t.export().await.unwrap().published.version, 0);
        let mut written = Vec::new();
        for _ in 0..5 {
            let d = t.step(Vec::new()).await.unwrap();
            written.push((d.published.version, d.checkpoint.map(|c| c.is_ok())));
        }
        // every 2nd step checkpoints, before its version is announced
        assert_eq!(written, vec![(1, None), (2, Some(true)), (3, None), (4, Some(true)), (5, None)]);
        assert_eq!(read_published_version(dir.path()).unwrap(), 5);
        let kept: Vec<u64> = crate::checkpoint::list_checkpoints(dir.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(kept, vec![2, 4]);
        t.stop().await; // a crash: step 5 is lost

        // Resumed at step 4 (version 4) while version 5 was announced: the weights become 6.
        let t = TrainerThread::spawn_with(Fake { version: 0, step: 0 }, Some(policy.clone())).unwrap();
        assert_eq!(t.export().await.unwrap().published.version, 6);
        assert_eq!(t.step(Vec::new()).await.unwrap().published.version, 7);
        // a clean stop checkpoints the step since the last checkpoint, and only then
        assert!(t.checkpoint().await.unwrap().checkpoint.unwrap().is_ok());
        assert!(t.checkpoint().await.unwrap().checkpoint.is_none());
        t.stop().await;
        let t = TrainerThread::spawn_with(Fake { version: 0, step: 0 }, Some(policy)).unwrap();
        assert_eq!(t.export().await.unwrap().published.version, 7);
        t.stop().await;

        std::fs::write(dir.path().join(PUBLISHED_VERSION_FILE), "seven").unwrap();
        let e = read_published_version(dir.path()).unwrap_err().to_string();
        assert!(e.contains(PUBLISHED_VERSION_FILE) && e.contains("seven"), "{e}");
    }

    #[test]
    fn versions_keep_the_last_n() {
        let mut v = Versions::new(2);
        assert!(v.get(0).is_none());
        for i in 0..4 {
            v.push(p(i));
        }
        assert_eq!(v.list(), vec![2, 3]);
        assert_eq!(v.get(0).unwrap().version, 3);
        assert_eq!(v.get(2).unwrap().version, 2);
        assert!(v.get(1).is_none());
    }
}
