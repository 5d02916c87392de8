//! Steps and policy versions (spec §6; design.md "publishes policy version v+1 → actors fetch
//! weights"): the trainer's own OS thread, the kept versions with their manifests, and the
//! coordinator notification.
//!
//! The [`Trainer`] lives on one thread that owns it for its whole life (tensor work never runs on
//! the async runtime); jobs arrive over a channel and each answers on a oneshot. After a step the
//! same thread exports the weights and computes the manifest (hashing gigabytes is CPU work too),
//! so the async side only stores an `Arc` and announces it.

use std::collections::VecDeque;
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

/// What the trainer thread answers.
#[derive(Debug)]
pub struct StepDone {
    /// None for the initial export.
    pub report: Option<StepReport>,
    pub published: Published,
    pub seconds: f64,
}

enum Job {
    /// Export the current weights without training (the initial version).
    Export,
    Step(Vec<Group>),
}

/// Handle of the trainer's thread.
pub struct TrainerThread {
    jobs: std::sync::mpsc::Sender<(Job, oneshot::Sender<Result<StepDone>>)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TrainerThread {
    /// Moves `trainer` onto its own OS thread.
    pub fn spawn<T: Trainer>(mut trainer: T) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<(Job, oneshot::Sender<Result<StepDone>>)>();
        let thread = std::thread::Builder::new()
            .name("learner-trainer".into())
            .spawn(move || {
                while let Ok((job, reply)) = rx.recv() {
                    let _ = reply.send(run_job(&mut trainer, job));
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

    /// Exports the current weights as a publication (no step).
    pub async fn export(&self) -> Result<StepDone> {
        self.call(Job::Export).await
    }

    /// Runs one step over `groups` and exports the new weights.
    pub async fn step(&self, groups: Vec<Group>) -> Result<StepDone> {
        self.call(Job::Step(groups)).await
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

fn run_job<T: Trainer>(trainer: &mut T, job: Job) -> Result<StepDone> {
    let t0 = std::time::Instant::now();
    let report = match job {
        Job::Export => None,
        Job::Step(groups) => Some(trainer.train_step(groups)?),
    };
    let bytes = trainer.export_weights()?;
    let version = trainer.policy_version();
    let manifest = manifest_of(version, &bytes, &trainer.config_json()).map_err(|e| LearnerError::Weights(e.to_string()))?;
    let published = Published { version, published_unix_ms: now_ms(), bytes: Arc::new(bytes), manifest };
    Ok(StepDone { report, published, seconds: t0.elapsed().as_secs_f64() })
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
