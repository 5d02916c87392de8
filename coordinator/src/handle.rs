//! The core thread and its cloneable handle (style.md §8: a task owning its state, a bounded
//! channel, a handle with async methods).
//!
//! Messages are boxed closures over `&mut Core` with a oneshot reply, rather than one enum
//! variant per operation: the core has a dozen operations with distinct signatures, and a
//! closure keeps each call site typed without a parallel enum. The thread is a plain OS thread
//! because every durable write fsyncs.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::core::Core;
use crate::error::{Error, Result};

type Job = Box<dyn FnOnce(&mut Core) + Send>;

/// Bound of the core's inbox; callers wait (backpressure) when it is full.
const INBOX: usize = 1024;

/// Wall clock in unix milliseconds: the only place the coordinator reads the time; everything
/// below takes `now` as an argument.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A cloneable handle to the core thread.
#[derive(Clone)]
pub struct CoreHandle {
    tx: mpsc::Sender<Job>,
}

/// Owns the core thread; [`CoreThread::stop`] ends it and closes the database.
pub struct CoreThread {
    handle: CoreHandle,
    join: Option<JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl CoreThread {
    /// Starts the thread that owns `core`.
    pub fn spawn(core: Core) -> Result<CoreThread> {
        let (tx, mut rx) = mpsc::channel::<Job>(INBOX);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let join = std::thread::Builder::new()
            .name("coordinator-core".into())
            .spawn(move || {
                let mut core = core;
                'run: while let Some(job) = rx.blocking_recv() {
                    job(&mut core);
                    // Run whatever else is already queued, then pay for one fsync for all of it.
                    while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                        match rx.try_recv() {
                            Ok(job) => job(&mut core),
                            Err(_) => break,
                        }
                    }
                    core.flush();
                    if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                        break 'run;
                    }
                }
                core.flush();
                tracing::debug!("core thread stopped");
                // `core` (and the database) drop here, before `stop` returns.
            })
            .map_err(|source| Error::Io { path: "coordinator-core thread".into(), source })?;
        Ok(CoreThread { handle: CoreHandle { tx }, join: Some(join), stop })
    }

    /// A handle for services.
    pub fn handle(&self) -> CoreHandle {
        self.handle.clone()
    }

    /// Stops the thread after the jobs already queued and waits until the database is closed.
    pub async fn stop(mut self) {
        let stop = self.stop.clone();
        let _ = self
            .handle
            .call(move |_| stop.store(true, std::sync::atomic::Ordering::SeqCst))
            .await;
        if let Some(j) = self.join.take() {
            let _ = tokio::task::spawn_blocking(move || j.join()).await;
        }
    }
}

impl CoreHandle {
    /// Runs `f` on the core thread and returns its result.
    pub async fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut Core) -> R + Send + 'static) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |core| {
            let _ = tx.send(f(core));
        });
        self.tx.send(job).await.map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)
    }

    /// Like [`CoreHandle::try_call`], but if `f` left lazy writes pending, the reply waits for
    /// the group commit that makes them durable (or becomes a store error if it fails).
    pub async fn try_call_durable<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel::<Result<R>>();
        let job: Job = Box::new(move |core| {
            let r = f(core);
            if r.is_ok() && core.pending_flush {
                core.deferred.push(Box::new(move |err: Option<String>| {
                    let _ = tx.send(match err {
                        None => r,
                        Some(e) => Err(Error::Store(format!("durable commit failed: {e}"))),
                    });
                }));
            } else {
                let _ = tx.send(r);
            }
        });
        self.tx.send(job).await.map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Like [`CoreHandle::call`] for fallible operations.
    pub async fn try_call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.call(f).await?
    }
}
