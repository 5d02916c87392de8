//! Data parallelism across learner processes (issue #5; design.md "Scale plan"): how ranks > 0
//! find rank 0, build the collective, and train on the same steps.
//!
//! - Rendezvous (`LearnerRendezvous`, learner_rendezvous.proto): rank 0 serves it on the
//!   rendezvous address (`--master-addr`, or `MASTER_ADDR:MASTER_PORT` as torchrun and Kubernetes
//!   StatefulSets set them). A rank > 0 calls [`join_group`] (retrying until its deadline while
//!   rank 0 starts) and gets the collective's setup: the NCCL unique id (backend "nccl") or the
//!   port of rank 0's [`crate::TcpCollective`] listener (backend "tcp"). A different world size or
//!   backend is a clear error on both sides.
//! - Steps: only rank 0 serves `LearnerService`, so only rank 0 receives trajectories. Its trainer
//!   is a [`LeaderTrainer`]: before each step it sends the step's groups (JSON, in pieces) to every
//!   rank on `FollowSteps`, then trains on the very bytes it sent (decoded), so every rank's
//!   `StepBatch::plan` sees identical groups and takes its own share. Ranks > 0 run
//!   [`follow_steps`]: receive, check they are at rank 0's step (same checkpoint), train. The
//!   collective in [`crate::Learner`] all-reduces the gradients, so every rank applies the same
//!   update. Only rank 0 publishes weights and writes checkpoints; every rank restores the newest
//!   checkpoint of the same `checkpoint_dir` at start (a shared volume).
//! - Shutdown: when rank 0 stops it sends `StopFollowing` (empty error = clean) and the followers
//!   exit; a follower that vanishes makes rank 0's next step fail with an error naming it
//!   (a collective error is fatal to the group: `run_learner` returns it).
//!
//! Waits: joining and the first step's wait for followers have the collective deadline; the
//! step stream has none (steps come when actors deliver) but HTTP/2 keepalive ends it within
//! [`KEEPALIVE`] × 3 when rank 0's host disappears, and a dead rank 0 process closes it at once.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use deepsearch_proto::v1 as pb;
use deepsearch_search::Group;
use futures::Stream;
use pb::learner_rendezvous_client::LearnerRendezvousClient;
use pb::learner_rendezvous_server::{LearnerRendezvous, LearnerRendezvousServer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use super::{PolicyTrainer, Trainer};
use crate::error::{LearnerError, Result};
use crate::step::StepReport;

/// Backend name of the CPU collective ([`crate::TcpCollective`]).
pub const BACKEND_TCP: &str = "tcp";
/// Backend name of the NCCL collective (`crate::nccl`, feature `cuda`).
pub const BACKEND_NCCL: &str = "nccl";
/// HTTP/2 keepalive interval of the step stream (a dead peer host is noticed within ~3×).
pub const KEEPALIVE: Duration = Duration::from_secs(10);
/// Size of one piece of a step's groups on the wire.
const PIECE_BYTES: usize = 1 << 20;
/// Largest message a follower accepts (a piece plus its envelope).
const MAX_MESSAGE: usize = 4 << 20;

/// What rank 0 tells every joining rank.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupInfo {
    pub world: usize,
    /// [`BACKEND_TCP`] or [`BACKEND_NCCL`].
    pub backend: String,
    /// NCCL: rank 0's unique id (128 bytes).
    pub nccl_unique_id: Vec<u8>,
    /// TCP: the port of rank 0's collective listener, on the rendezvous host.
    pub tcp_port: u16,
}

type Tx = mpsc::UnboundedSender<std::result::Result<pb::FollowStepsResponse, Status>>;

/// Rank 0's side of the rendezvous: the group's setup and each follower's step stream.
pub struct Rendezvous {
    info: GroupInfo,
    /// Index r: rank r's step stream (index 0 unused).
    followers: Mutex<Vec<Option<Tx>>>,
    /// Index r: whether rank r called JoinGroup (index 0 unused).
    joined_group: Mutex<Vec<bool>>,
    joined: Condvar,
    /// Notified when a follower's step stream arrives.
    followed: Condvar,
}

impl std::fmt::Debug for Rendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendezvous").field("info", &self.info).finish()
    }
}

impl Rendezvous {
    pub fn new(info: GroupInfo) -> Arc<Self> {
        let n = info.world;
        Arc::new(Rendezvous { info, followers: Mutex::new(vec![None; n]), joined_group: Mutex::new(vec![false; n]), joined: Condvar::new(), followed: Condvar::new() })
    }

    /// Waits until every rank > 0 has joined (called JoinGroup), at most `timeout`; rank 0 then
    /// knows the others are about to build their collective (NCCL's init blocks until all do).
    pub fn wait_joined(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut j = self.joined_group.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let missing: Vec<usize> = (1..self.info.world).filter(|&r| !j[r]).collect();
            if missing.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(LearnerError::CollectiveTimeout { op: "join".into(), rank: 0, waited_ms: timeout.as_millis() as u64, msg: format!("ranks {missing:?} never joined") });
            }
            j = self.joined.wait_timeout(j, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Tx>>> {
        self.followers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every rank > 0 follows the steps, at most `timeout`.
    fn wait_followers(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut f = self.lock();
        loop {
            let missing: Vec<usize> = (1..self.info.world).filter(|&r| f[r].is_none()).collect();
            if missing.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(LearnerError::CollectiveTimeout {
                    op: "follow steps".into(),
                    rank: 0,
                    waited_ms: timeout.as_millis() as u64,
                    msg: format!("ranks {missing:?} never called FollowSteps"),
                });
            }
            f = self.followed.wait_timeout(f, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Sends one step's groups (`json`) to every follower (after waiting, up to `timeout`, for
    /// all of them to follow). A follower whose stream is gone is an error naming it.
    pub fn send_step(&self, step: u64, policy_version: u64, json: &[u8], timeout: Duration) -> Result<()> {
        self.wait_followers(timeout)?;
        let f = self.lock();
        let pieces: Vec<&[u8]> = if json.is_empty() { vec![json] } else { json.chunks(PIECE_BYTES).collect() };
        for (r, tx) in f.iter().enumerate().skip(1) {
            let Some(tx) = tx.as_ref() else {
                return Err(LearnerError::Collective { op: "send step groups".into(), rank: 0, msg: format!("rank {r} does not follow the steps (rank 0 stopped them)") });
            };
            for (i, p) in pieces.iter().enumerate() {
                let m = pb::FollowStepsResponse {
                    event: Some(pb::follow_steps_response::Event::Step(pb::StepGroups {
                        step,
                        policy_version,
                        groups_json: p.to_vec(),
                        last: i + 1 == pieces.len(),
                    })),
                };
                tx.send(Ok(m)).map_err(|_| LearnerError::Collective {
                    op: "send step groups".into(),
                    rank: 0,
                    msg: format!("rank {r} no longer follows the steps (its FollowSteps stream closed: the process exited or lost its connection)"),
                })?;
            }
        }
        Ok(())
    }

    /// Tells every follower that rank 0 stops (`error` None = cleanly) and closes the streams.
    pub fn stop(&self, error: Option<String>) {
        let mut f = self.lock();
        for tx in f.iter_mut().filter_map(Option::take) {
            let m = pb::FollowStepsResponse {
                event: Some(pb::follow_steps_response::Event::Stop(pb::StopFollowing { error: error.clone().unwrap_or_default() })),
            };
            let _ = tx.send(Ok(m));
        }
    }
}

/// The `LearnerRendezvous` gRPC service.
struct RendezvousSvc {
    rv: Arc<Rendezvous>,
}

type FollowStream = Pin<Box<dyn Stream<Item = std::result::Result<pb::FollowStepsResponse, Status>> + Send + 'static>>;

impl RendezvousSvc {
    fn check_rank(&self, rank: u32) -> std::result::Result<usize, Status> {
        let world = self.rv.info.world;
        match rank as usize {
            r if r >= 1 && r < world => Ok(r),
            r => Err(Status::invalid_argument(format!("rank {r} is out of range 1..{world} (rank 0 runs world size {world})"))),
        }
    }
}

#[tonic::async_trait]
impl LearnerRendezvous for RendezvousSvc {
    async fn join_group(&self, req: Request<pb::JoinGroupRequest>) -> std::result::Result<Response<pb::JoinGroupResponse>, Status> {
        let r = req.into_inner();
        let info = &self.rv.info;
        if r.world_size as usize != info.world {
            return Err(Status::failed_precondition(format!("rank {} joined with world size {}, but rank 0 runs world size {}", r.rank, r.world_size, info.world)));
        }
        self.check_rank(r.rank)?;
        if r.backend != info.backend {
            return Err(Status::failed_precondition(format!(
                "rank {} uses the `{}` collective, rank 0 uses `{}` (model.device must be cpu on every rank or cuda on every rank)",
                r.rank, r.backend, info.backend
            )));
        }
        self.rv.joined_group.lock().unwrap_or_else(|e| e.into_inner())[r.rank as usize] = true;
        self.rv.joined.notify_all();
        tracing::info!(rank = r.rank, "rank joined the learner group");
        Ok(Response::new(pb::JoinGroupResponse {
            world_size: info.world as u32,
            backend: info.backend.clone(),
            nccl_unique_id: info.nccl_unique_id.clone(),
            tcp_port: info.tcp_port as u32,
        }))
    }

    type FollowStepsStream = FollowStream;

    async fn follow_steps(&self, req: Request<pb::FollowStepsRequest>) -> std::result::Result<Response<FollowStream>, Status> {
        let rank = self.check_rank(req.into_inner().rank)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut f = self.rv.lock();
        if f[rank].as_ref().is_some_and(|t| !t.is_closed()) {
            return Err(Status::failed_precondition(format!("rank {rank} already follows the steps: two processes were given rank {rank}")));
        }
        f[rank] = Some(tx);
        drop(f);
        self.rv.followed.notify_all();
        tracing::info!(rank, "rank follows the steps");
        Ok(Response::new(Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))))
    }
}

/// Serves `LearnerRendezvous` on `listener` until `shutdown` resolves and the step streams ended.
pub async fn serve_rendezvous(rv: Arc<Rendezvous>, listener: TcpListener, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<()> {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE * 2))
        .add_service(LearnerRendezvousServer::new(RendezvousSvc { rv }))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| LearnerError::io(addr, format!("rendezvous server: {e}")))
}

async fn client(master: &str, timeout: Duration) -> Result<LearnerRendezvousClient<tonic::transport::Channel>> {
    let uri = if master.contains("://") { master.to_string() } else { format!("http://{master}") };
    let ep = tonic::transport::Endpoint::from_shared(uri).map_err(|e| LearnerError::InvalidArgument { arg: "master address".into(), msg: format!("`{master}`: {e}") })?;
    let ch = ep
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE * 2)
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|e| LearnerError::Collective { op: "join".into(), rank: 0, msg: format!("rendezvous {master}: {e}") })?;
    Ok(LearnerRendezvousClient::new(ch).max_decoding_message_size(MAX_MESSAGE))
}

/// Rank `rank` (> 0) joins rank 0's group at `master` ("host:port"): retries while rank 0 is not
/// up yet, until `timeout`; a refusal (world size, rank, backend) is returned at once.
pub async fn join_group(master: &str, rank: usize, world: usize, backend: &str, timeout: Duration) -> Result<GroupInfo> {
    let deadline = Instant::now() + timeout;
    let err = |msg: String| LearnerError::Collective { op: "join".into(), rank, msg };
    loop {
        let attempt = async {
            let mut c = client(master, timeout).await.map_err(|e| (true, e.to_string()))?;
            let mut req = Request::new(pb::JoinGroupRequest { rank: rank as u32, world_size: world as u32, backend: backend.into() });
            req.set_timeout(Duration::from_secs(10));
            c.join_group(req).await.map_err(|s| {
                let retry = matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown);
                (retry, format!("{}: {}", s.code(), s.message()))
            })
        };
        match attempt.await {
            Ok(r) => {
                let r = r.into_inner();
                return Ok(GroupInfo { world: r.world_size as usize, backend: r.backend, nccl_unique_id: r.nccl_unique_id, tcp_port: r.tcp_port as u16 });
            }
            Err((false, msg)) => return Err(err(format!("rank 0 at {master} refused: {msg}"))),
            Err((true, msg)) if Instant::now() >= deadline => {
                return Err(LearnerError::CollectiveTimeout { op: "join".into(), rank, waited_ms: timeout.as_millis() as u64, msg: format!("rank 0 at {master} did not answer: {msg}") })
            }
            Err((true, msg)) => {
                tracing::debug!(master, error = %msg, "rank 0 not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Rank 0's trainer: sends each step's groups to the followers, then trains on the same bytes.
pub struct LeaderTrainer {
    pub inner: PolicyTrainer,
    rv: Arc<Rendezvous>,
    timeout: Duration,
}

impl LeaderTrainer {
    /// `timeout`: how long the first step waits for every follower's step stream.
    pub fn new(inner: PolicyTrainer, rv: Arc<Rendezvous>, timeout: Duration) -> Self {
        LeaderTrainer { inner, rv, timeout }
    }
}

fn decode_groups(json: &[u8]) -> Result<Vec<Group>> {
    serde_json::from_slice(json).map_err(|e| LearnerError::InvalidArgument { arg: "step groups".into(), msg: format!("decoding the JSON sent by rank 0: {e}") })
}

impl Trainer for LeaderTrainer {
    fn train_step(&mut self, groups: Vec<Group>) -> Result<StepReport> {
        let json = serde_json::to_vec(&groups).map_err(|e| LearnerError::InvalidArgument { arg: "step groups".into(), msg: format!("encoding as JSON: {e}") })?;
        // train on what the followers decode, so every rank plans the same batch bit for bit
        let same = decode_groups(&json)?;
        let l = &self.inner.learner;
        self.rv.send_step(l.step, l.policy_version, &json, self.timeout)?;
        self.inner.train_step(same)
    }
    fn export_weights(&self) -> Result<Vec<u8>> {
        self.inner.export_weights()
    }
    fn config_json(&self) -> String {
        self.inner.config_json()
    }
    fn policy_version(&self) -> u64 {
        self.inner.policy_version()
    }
    fn save_checkpoint(&mut self, root: &std::path::Path, keep: usize) -> Result<Option<std::path::PathBuf>> {
        self.inner.save_checkpoint(root, keep)
    }
    fn restore_checkpoint(&mut self, root: &std::path::Path) -> Result<Option<std::path::PathBuf>> {
        self.inner.restore_checkpoint(root)
    }
    fn renumber(&mut self, version: u64) -> Result<()> {
        self.inner.renumber(version)
    }
}

/// Whether a step error breaks the rank group (then every rank stops) rather than one step.
pub fn is_fatal(e: &LearnerError) -> bool {
    matches!(e, LearnerError::Collective { .. } | LearnerError::CollectiveTimeout { .. })
}

/// How a follower ended.
#[derive(Debug, PartialEq)]
pub enum FollowEnd {
    /// Rank 0 stopped cleanly.
    LeaderStopped,
    /// This process was asked to stop (`stop` became true).
    Signal,
}

/// Rank `rank` (> 0): follows rank 0's steps at `master`, training `trainer` (whose learner holds
/// the group's collective) on each, until rank 0 stops or `stop` becomes true. Blocks the calling
/// thread (tensor work runs here, never on the async runtime; `rt` only drives the stream).
pub fn follow_steps(rt: &tokio::runtime::Handle, master: &str, rank: usize, trainer: &mut PolicyTrainer, mut stop: watch::Receiver<bool>) -> Result<FollowEnd> {
    let err = |msg: String| LearnerError::Collective { op: "follow steps".into(), rank, msg };
    let mut stream = rt.block_on(async {
        let mut c = client(master, Duration::from_secs(30)).await?;
        c.follow_steps(pb::FollowStepsRequest { rank: rank as u32 }).await.map_err(|s| err(format!("rank 0 at {master}: {}: {}", s.code(), s.message())))
    })?
    .into_inner();
    tracing::info!(rank, master, "following rank 0's steps");
    let mut buf = Vec::new();
    loop {
        let next = rt.block_on(async {
            tokio::select! {
                m = stream.message() => Some(m),
                _ = stop.wait_for(|s| *s) => None,
            }
        });
        let event = match next {
            None => return Ok(FollowEnd::Signal),
            Some(Ok(Some(m))) => m.event,
            Some(Ok(None)) => return Err(err("rank 0 closed the step stream without a stop message (it crashed or was killed)".into())),
            Some(Err(s)) => return Err(err(format!("step stream from rank 0 failed (rank 0 gone?): {}: {}", s.code(), s.message()))),
        };
        match event {
            Some(pb::follow_steps_response::Event::Stop(s)) if s.error.is_empty() => return Ok(FollowEnd::LeaderStopped),
            Some(pb::follow_steps_response::Event::Stop(s)) => return Err(err(format!("rank 0 stopped with an error: {}", s.error))),
            None => return Err(err("an empty message from rank 0".into())),
            Some(pb::follow_steps_response::Event::Step(piece)) => {
                buf.extend_from_slice(&piece.groups_json);
                if !piece.last {
                    continue;
                }
                let json = std::mem::take(&mut buf);
                let l = &mut trainer.learner;
                if l.step != piece.step {
                    return Err(err(format!(
                        "this rank is at step {} but rank 0 is at step {}: every rank must start from the same checkpoint (give all ranks the same checkpoint_dir, on a shared volume)",
                        l.step, piece.step
                    )));
                }
                // rank 0 may have renumbered its version on resume; staleness is judged against it
                l.policy_version = piece.policy_version;
                match trainer.train_step(decode_groups(&json)?) {
                    Ok(r) => tracing::debug!(rank, step = r.step, "step done"),
                    Err(e) if is_fatal(&e) => return Err(e),
                    // rank 0 got the same error on the same groups and goes on too
                    Err(e) => tracing::warn!(rank, error = %e, "step skipped"),
                }
            }
        }
    }
}

/// Resolves "host:port" (first address).
pub async fn resolve(addr: &str) -> Result<SocketAddr> {
    let bad = |msg: String| LearnerError::InvalidArgument { arg: "master address".into(), msg: format!("`{addr}`: {msg}") };
    tokio::net::lookup_host(addr).await.map_err(|e| bad(e.to_string()))?.next().ok_or_else(|| bad("resolves to no address".into()))
}
