//! The gRPC handlers of `LearnerService` (learner.proto): decode, call the shared state, encode.
//!
//! `PushTrajectories` protocol (what an actor must do):
//! 1. open the stream; the learner's first response is `acked_sequence = 0` with the stream's
//!    initial `credits` (0 when the queue is full);
//! 2. send messages with `sequence` 1, 2, 3, … and never beyond `acked_sequence + credits` of the
//!    latest response;
//! 3. every message is answered by a cumulative acknowledgement (`acked_sequence` = its sequence)
//!    with fresh credits; when the queue was full (credits 0) a later response with the same
//!    `acked_sequence` grants credits again as room frees up.
//!
//! Credits are slots of the bounded queue reserved for the stream, so the trajectories in flight
//! plus those held never exceed `max_queued_trajectories`. A message sent without credit is still
//! taken, but only once a slot is free (the stream is not read meanwhile: HTTP/2 flow control holds
//! the sender). A sequence gap is INVALID_ARGUMENT and ends the stream.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use deepsearch_proto::v1 as pb;
use deepsearch_proto::weights::download_stream;
use futures::Stream;
use pb::learner_service_server::LearnerService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::ingest::{Disposition, Incoming, Invalid};
use super::Shared;

/// The `LearnerService` implementation.
pub struct LearnerSvc {
    pub(crate) shared: Arc<Shared>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// What woke a trajectory stream up.
enum Event {
    Message(Box<pb::PushTrajectoriesRequest>),
    /// Slots were freed while this stream had no credits.
    Freed,
    End,
}

/// Per-stream counters and credits.
#[derive(Debug, Default)]
struct StreamState {
    acked: u64,
    /// Slots reserved for messages beyond `acked` (= the credits last granted, minus what arrived).
    reserved: usize,
    dropped_stale: u64,
    rejected_invalid: u64,
}

impl StreamState {
    fn response(&self, version: u64) -> pb::PushTrajectoriesResponse {
        pb::PushTrajectoriesResponse {
            acked_sequence: self.acked,
            credits: self.reserved as u32,
            dropped_stale: self.dropped_stale,
            rejected_invalid: self.rejected_invalid,
            policy_version: version,
        }
    }
}

async fn push_stream(shared: Arc<Shared>, mut input: Streaming<pb::PushTrajectoriesRequest>, tx: mpsc::Sender<Result<pb::PushTrajectoriesResponse, Status>>) {
    let window = shared.cfg.stream_credits as usize;
    let mut freed = shared.freed.subscribe();
    let mut stop = shared.stop.clone();
    let mut st = StreamState { reserved: shared.reserve(window), ..Default::default() };
    shared.metrics.streams.inc();
    let mut ok = tx.send(Ok(st.response(shared.version()))).await.is_ok();
    while ok {
        let event = tokio::select! {
            msg = input.message() => match msg {
                Ok(Some(m)) => Event::Message(Box::new(m)),
                Ok(None) => Event::End,
                Err(s) => {
                    tracing::debug!(error = %s, "trajectory stream broke");
                    Event::End
                }
            },
            r = freed.changed(), if st.reserved == 0 => if r.is_ok() { Event::Freed } else { Event::End },
            _ = stop.wait_for(|s| *s) => Event::End,
        };
        let m = match event {
            Event::End => break,
            Event::Freed => {
                st.reserved += shared.reserve(window);
                if st.reserved > 0 {
                    ok = tx.send(Ok(st.response(shared.version()))).await.is_ok();
                }
                continue;
            }
            Event::Message(m) => *m,
        };
        let arrived = Instant::now();
        if m.sequence != st.acked + 1 {
            let msg = format!("sequence {} after acknowledged {} (must increase by 1)", m.sequence, st.acked);
            let _ = tx.send(Err(Status::invalid_argument(msg))).await;
            break;
        }
        if st.reserved == 0 {
            // Sent without credit: take it once a slot frees up.
            while shared.reserve(1) == 0 {
                tokio::select! {
                    r = freed.changed() => if r.is_err() { ok = false; break },
                    _ = stop.wait_for(|s| *s) => { ok = false; break },
                }
            }
            if !ok {
                break;
            }
            st.reserved = 1;
        }
        st.reserved -= 1;
        st.acked = m.sequence;
        let inc = m.trajectory.ok_or_else(|| Invalid { field: "trajectory".into(), msg: "missing".into() }).and_then(Incoming::try_from);
        match shared.admit(inc, arrived) {
            Disposition::Stale { staleness } => {
                st.dropped_stale += 1;
                tracing::debug!(sequence = m.sequence, staleness, "stale trajectory dropped");
            }
            Disposition::Rejected(why) => {
                st.rejected_invalid += 1;
                tracing::warn!(sequence = m.sequence, reason = %why, "trajectory rejected");
            }
            _ => {}
        }
        st.reserved += shared.reserve(window - st.reserved);
        ok = tx.send(Ok(st.response(shared.version()))).await.is_ok();
        shared.metrics.ack_latency.observe(arrived.elapsed().as_secs_f64());
    }
    shared.release(st.reserved);
    shared.metrics.streams.dec();
}

#[tonic::async_trait]
impl LearnerService for LearnerSvc {
    type PushTrajectoriesStream = ReceiverStream<Result<pb::PushTrajectoriesResponse, Status>>;
    type WatchPolicyVersionsStream = ReceiverStream<Result<pb::WatchPolicyVersionsResponse, Status>>;
    type DownloadWeightsStream = BoxStream<pb::DownloadWeightsResponse>;

    async fn push_trajectories(&self, req: Request<Streaming<pb::PushTrajectoriesRequest>>) -> Result<Response<Self::PushTrajectoriesStream>, Status> {
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(push_stream(self.shared.clone(), req.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn watch_policy_versions(&self, req: Request<pb::WatchPolicyVersionsRequest>) -> Result<Response<Self::WatchPolicyVersionsStream>, Status> {
        let mut after = req.into_inner().after_version;
        // after_version 0 = also announce the current version (even version 0).
        let mut first = after == 0;
        let mut latest = self.shared.latest.subscribe();
        let mut stop = self.shared.stop.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let announce = {
                    let p = latest.borrow_and_update();
                    (first || p.version > after).then(|| p.announcement())
                };
                if let Some(a) = announce {
                    first = false;
                    after = a.policy_version;
                    if tx.send(Ok(a)).await.is_err() {
                        break;
                    }
                }
                tokio::select! {
                    r = latest.changed() => if r.is_err() { break },
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tx.closed() => break,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn download_weights(&self, req: Request<pb::DownloadWeightsRequest>) -> Result<Response<Self::DownloadWeightsStream>, Status> {
        let r = req.into_inner();
        let p = self.shared.versions.lock().map_err(|_| Status::internal("versions lock poisoned"))?.get(r.policy_version);
        let Some(p) = p else {
            let kept = self.shared.versions.lock().map(|v| v.list()).unwrap_or_default();
            return Err(Status::not_found(format!("policy version {} is not kept (kept: {kept:?})", r.policy_version)));
        };
        let chunk = self.shared.cfg.chunk_for(r.chunk_bytes);
        tracing::debug!(version = p.version, bytes = p.bytes.len(), chunk, "weights download");
        let it = download_stream(p.manifest.clone(), p.bytes.clone(), chunk);
        Ok(Response::new(Box::pin(tokio_stream::iter(it.map(Ok::<_, Status>)))))
    }

    async fn get_policy_version(&self, _req: Request<pb::GetLearnerPolicyVersionRequest>) -> Result<Response<pb::GetLearnerPolicyVersionResponse>, Status> {
        Ok(Response::new(pb::GetLearnerPolicyVersionResponse {
            policy_version: self.shared.version(),
            step: self.shared.steps.load(std::sync::atomic::Ordering::Relaxed),
        }))
    }
}
