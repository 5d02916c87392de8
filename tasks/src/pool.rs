//! A pool of verifier worker threads with a per-call deadline (design.md, complaint #5: verifier
//! timeouts that score zero or hang workers). No signals: a job that runs past its deadline is
//! abandoned — its caller gets `Verdict::Error("timeout ...")` and a fresh worker replaces the
//! stuck one, which exits when (if ever) its job returns. The deadline counts from the moment a
//! worker starts the job, so a long queue is not a timeout. If more than `max_stuck_workers`
//! threads are stuck, new jobs get an immediate `Verdict::Error` instead of queueing forever.
//!
//! Sync API: [`VerifierPool::verify`] / [`VerifierPool::verify_many`]; async-friendly:
//! [`VerifierPool::submit`] returns a [`Pending`] handle to wait on later (e.g. from
//! `spawn_blocking`). The deadline is enforced by the waiter: a `Pending` dropped without waiting
//! lets its job run to completion.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::math::MathConfig;
use crate::registry::{verifier_with, TASKS};
use crate::{verify_catching, Problem, TaskError, Verdict, Verifier};

/// Settings of a [`VerifierPool`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Worker threads (default 2).
    pub workers: usize,
    /// Deadline of one verification, counted from when a worker starts it (default "5s").
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Stuck (timed-out, still running) workers tolerated before new jobs are refused with an
    /// error (default 16).
    pub max_stuck_workers: usize,
    /// Settings of the math verifier (defaults of [`MathConfig`]).
    pub math: MathConfig,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: 2,
            deadline: Duration::from_secs(5),
            max_stuck_workers: 16,
            math: MathConfig::default(),
        }
    }
}

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const ABANDONED: u8 = 3;

struct JobState {
    status: AtomicU8,
    /// Nanoseconds since the pool's epoch when a worker started the job.
    started_ns: AtomicU64,
}

struct Job {
    verifier: Arc<dyn Verifier>,
    problem: Arc<Problem>,
    response: String,
    state: Arc<JobState>,
    reply: Sender<Verdict>,
}

struct Shared {
    rx: Receiver<Job>,
    epoch: Instant,
    stuck: AtomicUsize,
    deadline: Duration,
    max_stuck: usize,
    next_worker: AtomicUsize,
}

/// Verifier worker threads with per-call deadlines (see the module docs).
pub struct VerifierPool {
    tx: Sender<Job>,
    shared: Arc<Shared>,
    verifiers: HashMap<String, Arc<dyn Verifier>>,
}

impl std::fmt::Debug for VerifierPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierPool")
            .field("deadline", &self.shared.deadline)
            .field("stuck", &self.shared.stuck.load(Ordering::Relaxed))
            .field("tasks", &self.verifiers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl VerifierPool {
    /// Starts `config.workers` threads, with the built-in verifiers registered.
    pub fn new(config: &PoolConfig) -> Result<Self, TaskError> {
        if config.workers == 0 || config.deadline.is_zero() {
            return Err(TaskError::config("pool: workers and deadline must be > 0"));
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            rx,
            epoch: Instant::now(),
            stuck: AtomicUsize::new(0),
            deadline: config.deadline,
            max_stuck: config.max_stuck_workers,
            next_worker: AtomicUsize::new(0),
        });
        for _ in 0..config.workers {
            spawn_worker(&shared)?;
        }
        let mut verifiers = HashMap::new();
        for t in TASKS {
            verifiers.insert(t.to_string(), verifier_with(t, &config.math)?);
        }
        Ok(VerifierPool {
            tx,
            shared,
            verifiers,
        })
    }

    /// Registers (or replaces) the verifier used for problems of `task`.
    pub fn register(&mut self, task: impl Into<String>, verifier: Arc<dyn Verifier>) {
        self.verifiers.insert(task.into(), verifier);
    }

    /// Workers currently stuck past their deadline.
    pub fn stuck_workers(&self) -> usize {
        self.shared.stuck.load(Ordering::Relaxed)
    }

    /// Queues `response` for the verifier of `problem.task`.
    pub fn submit(&self, problem: Arc<Problem>, response: String) -> Pending {
        match self.verifiers.get(&problem.task) {
            Some(v) => self.submit_with(v.clone(), problem, response),
            None => Pending::ready(Verdict::Error(
                TaskError::UnknownTask(problem.task.clone()).to_string(),
            )),
        }
    }

    /// Queues `response` for an explicit verifier.
    pub fn submit_with(
        &self,
        verifier: Arc<dyn Verifier>,
        problem: Arc<Problem>,
        response: String,
    ) -> Pending {
        let stuck = self.shared.stuck.load(Ordering::Relaxed);
        if stuck > self.shared.max_stuck {
            return Pending::ready(Verdict::Error(format!(
                "verifier pool exhausted: {stuck} stuck workers"
            )));
        }
        let (reply, rx) = crossbeam_channel::bounded(1);
        let state = Arc::new(JobState {
            status: AtomicU8::new(QUEUED),
            started_ns: AtomicU64::new(0),
        });
        let job = Job {
            verifier,
            problem,
            response,
            state: state.clone(),
            reply,
        };
        if self.tx.send(job).is_err() {
            return Pending::ready(Verdict::Error("verifier pool is shut down".into()));
        }
        Pending {
            inner: PendingInner::Waiting {
                rx,
                state,
                shared: self.shared.clone(),
            },
        }
    }

    /// Verifies one response and waits for the verdict.
    pub fn verify(&self, problem: &Problem, response: &str) -> Verdict {
        self.submit(Arc::new(problem.clone()), response.to_string())
            .wait()
    }

    /// Verifies many responses to one problem in parallel; verdicts in input order.
    pub fn verify_many(&self, problem: &Problem, responses: &[String]) -> Vec<Verdict> {
        let p = Arc::new(problem.clone());
        let pending: Vec<Pending> = responses
            .iter()
            .map(|r| self.submit(p.clone(), r.clone()))
            .collect();
        pending.into_iter().map(Pending::wait).collect()
    }
}

fn spawn_worker(shared: &Arc<Shared>) -> Result<(), TaskError> {
    let s = shared.clone();
    let id = shared.next_worker.fetch_add(1, Ordering::Relaxed);
    std::thread::Builder::new()
        .name(format!("verifier-{id}"))
        .stack_size(8 << 20)
        .spawn(move || worker_loop(s))
        .map(|_| ())
        .map_err(|e| TaskError::config(format!("pool: cannot spawn a worker thread: {e}")))
}

fn worker_loop(shared: Arc<Shared>) {
    while let Ok(job) = shared.rx.recv() {
        if job
            .state
            .status
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        let started = shared.epoch.elapsed().as_nanos() as u64;
        job.state
            .started_ns
            .store(started.max(1), Ordering::Release);
        let verdict = verify_catching(job.verifier.as_ref(), &job.problem, &job.response);
        if job
            .state
            .status
            .compare_exchange(RUNNING, DONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let _ = job.reply.send(verdict);
        } else {
            // Abandoned: a replacement already took this worker's place.
            shared.stuck.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(task = %job.problem.task, problem = %job.problem.id, "stuck verifier returned late; worker exits");
            return;
        }
    }
}

/// A verification in flight; [`Pending::wait`] enforces the deadline.
pub struct Pending {
    inner: PendingInner,
}

enum PendingInner {
    Ready(Verdict),
    Waiting {
        rx: Receiver<Verdict>,
        state: Arc<JobState>,
        shared: Arc<Shared>,
    },
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

impl Pending {
    /// An already-decided verdict (e.g. a malformed input reported in order with the rest).
    pub fn ready(v: Verdict) -> Self {
        Pending {
            inner: PendingInner::Ready(v),
        }
    }

    /// Blocks until the verdict, or until the deadline after the job started (→ `Error`).
    pub fn wait(self) -> Verdict {
        let (rx, state, shared) = match self.inner {
            PendingInner::Ready(v) => return v,
            PendingInner::Waiting { rx, state, shared } => (rx, state, shared),
        };
        loop {
            let status = state.status.load(Ordering::Acquire);
            let started_ns = state.started_ns.load(Ordering::Acquire);
            let budget = if status == QUEUED || started_ns == 0 {
                shared.deadline // not started yet: wait and look again
            } else {
                let started = shared.epoch + Duration::from_nanos(started_ns);
                (started + shared.deadline).saturating_duration_since(Instant::now())
            };
            match rx.recv_timeout(budget) {
                Ok(v) => return v,
                Err(RecvTimeoutError::Disconnected) => {
                    return Verdict::Error("verifier worker vanished".into())
                }
                Err(RecvTimeoutError::Timeout) => {
                    if status == QUEUED || started_ns == 0 {
                        continue;
                    }
                    let abandoned = state
                        .status
                        .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok();
                    if !abandoned {
                        // Finished just now: the verdict is (about to be) in the channel.
                        return rx
                            .recv()
                            .unwrap_or_else(|_| Verdict::Error("verifier worker vanished".into()));
                    }
                    let stuck = shared.stuck.fetch_add(1, Ordering::AcqRel) + 1;
                    tracing::warn!(deadline = ?shared.deadline, stuck, "verification timed out; replacing worker");
                    if let Err(e) = spawn_worker(&shared) {
                        tracing::error!(error = %e, "cannot replace a stuck verifier worker");
                    }
                    return Verdict::Error(format!(
                        "timeout: verification exceeded {:?}",
                        shared.deadline
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sleeps for the number of milliseconds in the response, then says Correct.
    struct Sleepy;
    impl Verifier for Sleepy {
        fn verify(&self, _: &Problem, response: &str) -> Verdict {
            std::thread::sleep(Duration::from_millis(response.parse().unwrap_or(0)));
            Verdict::Correct
        }
    }

    struct Panicky;
    impl Verifier for Panicky {
        fn verify(&self, _: &Problem, _: &str) -> Verdict {
            panic!("boom")
        }
    }

    fn pool(workers: usize, deadline_ms: u64) -> VerifierPool {
        let cfg = PoolConfig {
            workers,
            deadline: Duration::from_millis(deadline_ms),
            ..Default::default()
        };
        let mut p = VerifierPool::new(&cfg).unwrap();
        p.register("sleepy", Arc::new(Sleepy));
        p.register("panicky", Arc::new(Panicky));
        p
    }

    #[test]
    fn timeout_is_an_error_and_the_pool_keeps_working() {
        let p = pool(1, 100);
        let sleepy = Problem::new("s", "sleepy", "", "");
        // The only worker gets stuck for 2 s: the call returns an error after ~100 ms.
        let t0 = Instant::now();
        let v = p.verify(&sleepy, "2000");
        assert!(
            matches!(&v, Verdict::Error(m) if m.starts_with("timeout")),
            "{v:?}"
        );
        assert!(t0.elapsed() < Duration::from_millis(1500));
        assert_eq!(p.stuck_workers(), 1);
        // A replacement worker serves the next jobs.
        let math = Problem::new("m", "math", "", "4");
        assert_eq!(p.verify(&math, r"\boxed{4}"), Verdict::Correct);
        assert_eq!(p.verify(&sleepy, "1"), Verdict::Correct);
    }

    #[test]
    fn queue_time_does_not_count_against_the_deadline() {
        // One worker, 10 jobs of 30 ms with a 200 ms deadline: total 300 ms, none times out.
        let p = pool(1, 200);
        let sleepy = Problem::new("s", "sleepy", "", "");
        let verdicts = p.verify_many(&sleepy, &vec!["30".to_string(); 10]);
        assert!(
            verdicts.iter().all(|v| *v == Verdict::Correct),
            "{verdicts:?}"
        );
    }

    #[test]
    fn panics_and_unknown_tasks_are_errors() {
        let p = pool(2, 1000);
        let v = p.verify(&Problem::new("x", "panicky", "", ""), "");
        assert!(
            matches!(&v, Verdict::Error(m) if m.contains("boom")),
            "{v:?}"
        );
        assert!(p.verify(&Problem::new("x", "chess", "", ""), "").is_error());
        let math = Problem::new("m", "math", "", "1/2");
        let many = p.verify_many(
            &math,
            &[r"\boxed{0.5}".into(), r"\boxed{2}".into(), "none".into()],
        );
        assert_eq!(
            many,
            vec![Verdict::Correct, Verdict::Wrong, Verdict::Unparsable]
        );
        assert!(VerifierPool::new(&PoolConfig {
            workers: 0,
            ..Default::default()
        })
        .is_err());
    }
}
