//! Streaming trajectories to the learner (`LearnerService.PushTrajectories`) with
//! acknowledgements and credits (backpressure).
//!
//! One task owns the stream. It sends a trajectory only while `sent < acked + credits` (the
//! learner's window); until the first answer the window is `initial_credits` (default 0: the
//! learner opens every stream with a response granting the first credits). The actor hands
//! trajectories over through a bounded queue, so when the learner stops granting credits the
//! queue fills and the actor stops leasing work. When the stream breaks, or no acknowledgement
//! arrives within `ack_timeout` while trajectories are in flight, the stream is reopened with
//! exponential backoff and every unacknowledged trajectory is sent again (new sequence numbers,
//! same trajectory ids: the learner deduplicates by id).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use deepsearch_proto::v1 as pb;
use pb::learner_service_client::LearnerServiceClient;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::runtime::config::backoff_delay;
use crate::runtime::metrics::ActorMetrics;
use crate::runtime::ActorError;

/// Knobs of the pusher (from `ActorConfig`).
#[derive(Clone, Debug)]
pub struct PushParams {
    pub queue: usize,
    pub initial_credits: u32,
    pub rpc_timeout: Duration,
    pub ack_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub max_message_bytes: usize,
}

/// Handle of the pusher task.
pub struct Pusher {
    tx: mpsc::Sender<pb::Trajectory>,
    join: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").finish_non_exhaustive()
    }
}

impl Pusher {
    /// Starts the pusher on `channel`; newer learner versions seen in acks go to `versions`.
    pub fn spawn(
        channel: Channel,
        p: PushParams,
        metrics: Arc<ActorMetrics>,
        versions: Arc<watch::Sender<u64>>,
    ) -> Pusher {
        let (tx, rx) = mpsc::channel(p.queue);
        let join = tokio::spawn(push_loop(channel, p, metrics, versions, rx));
        Pusher { tx, join }
    }

    /// Queues one trajectory, waiting while the queue is full (backpressure).
    pub async fn send(&self, t: pb::Trajectory) -> Result<(), ActorError> {
        self.tx
            .send(t)
            .await
            .map_err(|_| ActorError::Unavailable("trajectory pusher stopped".into()))
    }

    /// Closes the queue and waits up to `timeout` for the learner to acknowledge everything.
    /// Returns false when it gave up (what was not acknowledged is lost).
    pub async fn finish(self, timeout: Duration) -> bool {
        let Pusher { tx, mut join } = self;
        drop(tx);
        match tokio::time::timeout(timeout, &mut join).await {
            Ok(_) => true,
            Err(_) => {
                tracing::warn!(
                    ?timeout,
                    "learner did not acknowledge every trajectory before exit"
                );
                join.abort();
                false
            }
        }
    }
}

/// Per-stream counters the learner reports cumulatively.
#[derive(Default)]
struct StreamCounts {
    stale: u64,
    rejected: u64,
}

async fn push_loop(
    channel: Channel,
    p: PushParams,
    metrics: Arc<ActorMetrics>,
    versions: Arc<watch::Sender<u64>>,
    mut rx: mpsc::Receiver<pb::Trajectory>,
) {
    let mut pending: VecDeque<pb::Trajectory> = VecDeque::new();
    let mut input_closed = false;
    let mut attempt: u32 = 0;
    loop {
        if input_closed && pending.is_empty() {
            return;
        }
        if pending.is_empty() {
            // open a stream only when there is something to send
            match rx.recv().await {
                Some(t) => pending.push_back(t),
                None => return,
            }
        }
        let (req_tx, req_rx) = mpsc::channel::<pb::PushTrajectoriesRequest>(p.queue.max(1));
        let mut client = LearnerServiceClient::new(channel.clone())
            .max_decoding_message_size(p.max_message_bytes)
            .max_encoding_message_size(p.max_message_bytes);
        let open = tokio::time::timeout(
            p.rpc_timeout,
            client.push_trajectories(tokio_stream::wrappers::ReceiverStream::new(req_rx)),
        )
        .await;
        let mut resp = match open {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => {
                retry_pause(
                    &metrics,
                    &p,
                    &mut attempt,
                    &format!("opening the trajectory stream failed: {s}"),
                )
                .await;
                continue;
            }
            Err(_) => {
                retry_pause(
                    &metrics,
                    &p,
                    &mut attempt,
                    "opening the trajectory stream timed out",
                )
                .await;
                continue;
            }
        };
        let mut unacked: VecDeque<(u64, pb::Trajectory)> = VecDeque::new();
        let (mut seq, mut acked, mut credits) = (0u64, 0u64, u64::from(p.initial_credits));
        let mut counts = StreamCounts::default();
        let mut last_progress = Instant::now();
        let mut answered = false;
        let why: String = loop {
            // send while the window allows
            let mut broken = false;
            while seq < acked + credits {
                let next = match pending.pop_front() {
                    Some(t) => Some(t),
                    None if !input_closed => match rx.try_recv() {
                        Ok(t) => Some(t),
                        Err(mpsc::error::TryRecvError::Empty) => None,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            input_closed = true;
                            None
                        }
                    },
                    None => None,
                };
                let Some(t) = next else { break };
                seq += 1;
                if unacked.is_empty() {
                    last_progress = Instant::now();
                }
                unacked.push_back((seq, t.clone()));
                if req_tx
                    .send(pb::PushTrajectoriesRequest {
                        sequence: seq,
                        trajectory: Some(t),
                    })
                    .await
                    .is_err()
                {
                    broken = true;
                    break;
                }
            }
            if broken {
                break "the trajectory stream closed".to_string();
            }
            if input_closed && pending.is_empty() && unacked.is_empty() {
                return;
            }
            let window_open = seq < acked + credits;
            tokio::select! {
                msg = resp.message() => match msg {
                    Ok(Some(r)) => {
                        answered = true;
                        while unacked.front().is_some_and(|(s, _)| *s <= r.acked_sequence) {
                            unacked.pop_front();
                            ActorMetrics::add(&metrics.trajectories_acked, 1);
                        }
                        if r.acked_sequence > acked {
                            last_progress = Instant::now();
                            attempt = 0;
                        }
                        acked = acked.max(r.acked_sequence);
                        credits = u64::from(r.credits);
                        ActorMetrics::add(&metrics.trajectories_stale, r.dropped_stale.saturating_sub(counts.stale));
                        ActorMetrics::add(&metrics.trajectories_rejected, r.rejected_invalid.saturating_sub(counts.rejected));
                        counts.stale = counts.stale.max(r.dropped_stale);
                        counts.rejected = counts.rejected.max(r.rejected_invalid);
                        metrics.newest_policy_version.fetch_max(r.policy_version, Ordering::Relaxed);
                        versions.send_if_modified(|v| if r.policy_version > *v { *v = r.policy_version; true } else { false });
                    }
                    Ok(None) => break "the learner closed the trajectory stream".to_string(),
                    Err(s) => break format!("trajectory stream failed: {s}"),
                },
                t = rx.recv(), if window_open && !input_closed && pending.is_empty() => match t {
                    Some(t) => pending.push_back(t),
                    None => input_closed = true,
                },
                _ = tokio::time::sleep_until(last_progress + p.ack_timeout), if !unacked.is_empty() || !answered => {
                    break format!("no acknowledgement or credit grant within {:?}", p.ack_timeout);
                }
            }
        };
        drop(req_tx);
        for (_, t) in unacked.into_iter().rev() {
            pending.push_front(t);
        }
        retry_pause(&metrics, &p, &mut attempt, &why).await;
    }
}

async fn retry_pause(metrics: &ActorMetrics, p: &PushParams, attempt: &mut u32, why: &str) {
    let delay = backoff_delay(p.backoff_initial, p.backoff_max, *attempt);
    tracing::warn!(
        reason = why,
        ?delay,
        attempt = *attempt,
        "reopening the trajectory stream"
    );
    metrics.reconnects.fetch_add(1, Ordering::Relaxed);
    metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
    *attempt = attempt.saturating_add(1);
    tokio::time::sleep(delay).await;
}
