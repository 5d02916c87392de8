//! The policy thread (style.md §9: never block the async runtime with tensor work).
//!
//! One OS thread creates the model (through a factory, so the model never crosses threads),
//! owns it, and serves jobs from a bounded channel: "run this batch" and "load these weights".
//! Jobs run one at a time, so a weight swap always happens BETWEEN batches and a batch never sees
//! half-swapped weights. The async side awaits each reply on a oneshot.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use deepsearch_tasks::{registry, Problem, Verdict, Verifier, VerifierPool};
use tokio::sync::{mpsc, oneshot};

use crate::config::SearchConfig;
use crate::policy::{Metered, Policy};
use crate::runtime::convert::WorkItem;
use crate::runtime::metrics::ActorMetrics;
use crate::runtime::work::{run_batch, BatchParams, ItemResult, PromptEncoder};
use crate::runtime::ActorError;

/// Swapping in new weights (a safetensors file, already verified by the caller).
pub trait Reloadable {
    /// Replace every parameter with the tensors of `bytes`; on error the model must be unchanged
    /// (check everything before copying anything).
    fn load_safetensors(&mut self, bytes: &[u8], version: u64) -> Result<(), String>;
}

/// Everything the actor needs from a model: sampling, prompts, weight swaps.
pub trait ActorPolicy: Policy + PromptEncoder + Reloadable {}
impl<T: Policy + PromptEncoder + Reloadable + ?Sized> ActorPolicy for T {}

/// Builds the model on the policy thread.
pub type PolicyFactory = Box<dyn FnOnce() -> Result<Box<dyn ActorPolicy>, String> + Send>;

/// Verifies through the pool of the task's verifier (deadline-bound: a hang becomes an error),
/// timing every call into the actor's metrics.
struct PoolVerifier(Arc<VerifierPool>, Arc<ActorMetrics>);

impl Verifier for PoolVerifier {
    fn verify(&self, problem: &Problem, response: &str) -> Verdict {
        let t0 = std::time::Instant::now();
        let v = self.0.verify(problem, response);
        self.1.observe_verifier(t0.elapsed());
        v
    }
}

fn prefix_valid(problem: &Problem, partial: &str) -> bool {
    registry::prefix_is_valid(problem, partial)
}

enum Job {
    Run {
        items: Vec<WorkItem>,
        version: u64,
        cancel: Arc<AtomicBool>,
        reply: oneshot::Sender<Vec<ItemResult>>,
    },
    Load {
        bytes: Vec<u8>,
        version: u64,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Handle of the policy thread.
pub struct PolicyWorker {
    tx: Option<mpsc::Sender<Job>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for PolicyWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyWorker").finish_non_exhaustive()
    }
}

/// Settings of the policy thread.
#[derive(Clone, Debug)]
pub struct WorkerParams {
    pub search: SearchConfig,
    pub max_solutions: usize,
    /// Where verifier latencies go.
    pub metrics: Arc<ActorMetrics>,
}

impl PolicyWorker {
    /// Starts the thread, builds the model there and waits until it is ready.
    pub async fn spawn(
        factory: PolicyFactory,
        verifiers: VerifierPool,
        params: WorkerParams,
    ) -> Result<Self, ActorError> {
        let (tx, mut rx) = mpsc::channel::<Job>(2);
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        let pool = Arc::new(verifiers);
        let join = std::thread::Builder::new()
            .name("policy".into())
            .spawn(move || {
                let mut policy = match factory() {
                    Ok(p) => {
                        let _ = ready_tx.send(Ok(()));
                        p
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let verifier = PoolVerifier(pool, params.metrics.clone());
                let hook: &crate::sample::PrefixValid = &prefix_valid;
                let hook = params.search.prune_invalid_prefixes.then_some(hook);
                let mut next_key: u64 = 0;
                while let Some(job) = rx.blocking_recv() {
                    match job {
                        Job::Run {
                            items,
                            version,
                            cancel,
                            reply,
                        } => {
                            let bp = BatchParams {
                                cfg: &params.search,
                                version,
                                first_key: next_key,
                                max_solutions: params.max_solutions,
                            };
                            // direct keys + tree keys: 2 per item at most
                            next_key = next_key.wrapping_add(2 * items.len() as u64 + 2);
                            let t0 = std::time::Instant::now();
                            // generation time apart from the rest of the batch (verification
                            // and search bookkeeping), both added when the batch ends
                            let mut metered = Metered::new(&mut *policy);
                            let out = run_batch(&mut metered, &verifier, hook, &items, bp, &cancel);
                            ActorMetrics::add(
                                &params.metrics.generate_micros,
                                metered.expand_time.as_micros() as u64,
                            );
                            ActorMetrics::add(
                                &params.metrics.batch_micros,
                                t0.elapsed().as_micros() as u64,
                            );
                            let _ = reply.send(out);
                        }
                        Job::Load {
                            bytes,
                            version,
                            reply,
                        } => {
                            let _ = reply.send(policy.load_safetensors(&bytes, version));
                        }
                    }
                }
                tracing::debug!("policy thread exits");
            })
            .map_err(|e| ActorError::Policy(format!("cannot start the policy thread: {e}")))?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(PolicyWorker {
                tx: Some(tx),
                join: Some(join),
            }),
            Ok(Err(e)) => {
                let _ = join.join();
                Err(ActorError::Policy(format!(
                    "building the policy failed: {e}"
                )))
            }
            Err(_) => Err(ActorError::Policy(
                "the policy thread died while building the policy".into(),
            )),
        }
    }

    fn sender(&self) -> Result<&mpsc::Sender<Job>, ActorError> {
        self.tx
            .as_ref()
            .ok_or_else(|| ActorError::Policy("policy thread stopped".into()))
    }

    /// Runs one batch with the weights of `version`.
    pub async fn run(
        &self,
        items: Vec<WorkItem>,
        version: u64,
        cancel: Arc<AtomicBool>,
    ) -> Result<Vec<ItemResult>, ActorError> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Job::Run {
                items,
                version,
                cancel,
                reply,
            })
            .await
            .map_err(|_| ActorError::Policy("policy thread stopped".into()))?;
        rx.await
            .map_err(|_| ActorError::Policy("the policy thread died during a batch".into()))
    }

    /// Swaps in verified weights (between batches: jobs run one at a time).
    pub async fn load(&self, bytes: Vec<u8>, version: u64) -> Result<(), ActorError> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Job::Load {
                bytes,
                version,
                reply,
            })
            .await
            .map_err(|_| ActorError::Policy("policy thread stopped".into()))?;
        rx.await
            .map_err(|_| ActorError::Policy("the policy thread died while loading weights".into()))?
            .map_err(|e| ActorError::Weights(format!("loading version {version} failed: {e}")))
    }

    /// Stops the thread after its current job and waits for it.
    pub async fn stop(mut self) {
        self.tx.take();
        if let Some(j) = self.join.take() {
            let _ = tokio::task::spawn_blocking(move || j.join()).await;
        }
    }
}
