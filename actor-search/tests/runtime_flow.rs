//! The actor runtime against a REAL coordinator (in-process, 127.0.0.1:0) and a learner test
//! double, over real sockets: register → lease → filter / search / cached / sample → report →
//! stream trajectories with credits → follow a new policy version (a corrupted download is
//! rejected and the old weights stay) → reconnect after refused streams → exit on drain; and a
//! clean exit on shutdown.

mod common;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{HashVerifier, LmPolicy, RandomText};
use deepsearch_coordinator::{ClientOptions, Coordinator, CoordinatorClient, CoordinatorConfig};
use deepsearch_proto::v1 as pb;
use deepsearch_proto::weights::{download_stream, manifest_of, sha256_hex};
use deepsearch_search::policy::{ExpandRequest, Policy, PolicyError, PrefixKey, Segment};
use deepsearch_search::runtime::{
    run_actor, ActorConfig, ActorDeps, ActorMetrics, ActorPolicy, PromptEncoder, Reloadable,
    WireTrajectory,
};
use deepsearch_tasks::{PoolConfig, Problem, VerifierPool};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

const TOKEN: &str = "runtime-test-token";

// ---------- the policy double ----------

struct ScriptedActor {
    inner: LmPolicy<RandomText>,
    loaded: Arc<Mutex<Vec<u64>>>,
    released: Arc<Mutex<HashSet<PrefixKey>>>,
    requested: Arc<Mutex<HashSet<PrefixKey>>>,
}

impl Policy for ScriptedActor {
    fn expand(&mut self, reqs: &[ExpandRequest]) -> Vec<Result<Vec<Segment>, PolicyError>> {
        self.requested
            .lock()
            .unwrap()
            .extend(reqs.iter().map(|r| r.key));
        self.inner.expand(reqs)
    }
    fn release(&mut self, keys: &[PrefixKey]) {
        self.released.lock().unwrap().extend(keys.iter().copied());
    }
    fn decode(&self, tokens: &[u32]) -> String {
        self.inner.decode(tokens)
    }
    fn max_context(&self) -> usize {
        self.inner.max_context()
    }
}

impl PromptEncoder for ScriptedActor {
    fn encode_prompt(&self, p: &Problem) -> Result<Vec<u32>, String> {
        Ok(vec![100 + p.id.len() as u32 % 7; 3])
    }
}

impl Reloadable for ScriptedActor {
    fn load_safetensors(&mut self, bytes: &[u8], version: u64) -> Result<(), String> {
        if bytes != weights_of(version).as_slice() {
            return Err("unexpected bytes".into());
        }
        self.loaded.lock().unwrap().push(version);
        Ok(())
    }
}

// ---------- the learner double ----------

/// The weights file of a version: a real safetensors file with two 4-float tensors.
fn weights_of(v: u64) -> Vec<u8> {
    use safetensors::tensor::TensorView;
    let a: Vec<u8> = (0..4)
        .flat_map(|i| (v as f32 + i as f32).to_le_bytes())
        .collect();
    let b: Vec<u8> = (0..4)
        .flat_map(|i| (v as f32 * 10.0 - i as f32).to_le_bytes())
        .collect();
    let views = vec![
        (
            "a".to_string(),
            TensorView::new(safetensors::Dtype::F32, vec![4], &a).unwrap(),
        ),
        (
            "b".to_string(),
            TensorView::new(safetensors::Dtype::F32, vec![4], &b).unwrap(),
        ),
    ];
    safetensors::serialize(views, &None).unwrap()
}

#[derive(Default)]
struct LearnerState {
    received: Mutex<Vec<pb::Trajectory>>,
    ids: Mutex<HashSet<String>>,
    rejected: AtomicU64,
    version: AtomicU64,
    corrupt: AtomicBool,
    fail_streams: AtomicU32,
    streams: AtomicU32,
    downloads: AtomicU32,
    /// While true the learner takes trajectories but acknowledges none (backpressure).
    hold: Option<tokio::sync::watch::Receiver<bool>>,
}

#[derive(Clone)]
struct LearnerDouble(Arc<LearnerState>);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::learner_service_server::LearnerService for LearnerDouble {
    type PushTrajectoriesStream = BoxStream<pb::PushTrajectoriesResponse>;
    type WatchPolicyVersionsStream = BoxStream<pb::WatchPolicyVersionsResponse>;
    type DownloadWeightsStream = BoxStream<pb::DownloadWeightsResponse>;

    async fn push_trajectories(
        &self,
        req: Request<Streaming<pb::PushTrajectoriesRequest>>,
    ) -> Result<Response<Self::PushTrajectoriesStream>, Status> {
        let st = self.0.clone();
        st.streams.fetch_add(1, Ordering::SeqCst);
        if st.fail_streams.load(Ordering::SeqCst) > 0 {
            st.fail_streams.fetch_sub(1, Ordering::SeqCst);
            return Err(Status::unavailable("learner warming up"));
        }
        let mut inbound = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut hold = st
            .hold
            .clone()
            .unwrap_or_else(|| tokio::sync::watch::channel(false).1);
        tokio::spawn(async move {
            // like the real learner: the first response grants the first credit
            let grant = pb::PushTrajectoriesResponse {
                credits: 1,
                ..Default::default()
            };
            if tx.send(Ok(grant)).await.is_err() {
                return;
            }
            let mut last = 0u64;
            loop {
                let held = *hold.borrow();
                tokio::select! {
                    m = inbound.message() => {
                        let Ok(Some(m)) = m else { break };
                        let t = m.trajectory.expect("trajectory present");
                        if WireTrajectory::try_from(t.clone()).is_ok() {
                            if st.ids.lock().unwrap().insert(t.trajectory_id.clone()) {
                                st.received.lock().unwrap().push(t);
                            }
                        } else {
                            st.rejected.fetch_add(1, Ordering::SeqCst);
                        }
                        last = m.sequence;
                        if held {
                            continue;
                        }
                    }
                    r = hold.changed(), if held => {
                        if r.is_err() {
                            break;
                        }
                        if last == 0 || *hold.borrow() {
                            continue;
                        }
                    }
                }
                let ack = pb::PushTrajectoriesResponse {
                    acked_sequence: last,
                    credits: 4,
                    dropped_stale: 0,
                    rejected_invalid: st.rejected.load(Ordering::SeqCst),
                    policy_version: st.version.load(Ordering::SeqCst),
                };
                if tx.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch_policy_versions(
        &self,
        _req: Request<pb::WatchPolicyVersionsRequest>,
    ) -> Result<Response<Self::WatchPolicyVersionsStream>, Status> {
        Err(Status::unimplemented("not in the double"))
    }

    async fn download_weights(
        &self,
        req: Request<pb::DownloadWeightsRequest>,
    ) -> Result<Response<Self::DownloadWeightsStream>, Status> {
        self.0.downloads.fetch_add(1, Ordering::SeqCst);
        let r = req.into_inner();
        let v = if r.policy_version == 0 {
            self.0.version.load(Ordering::SeqCst)
        } else {
            r.policy_version
        };
        let bytes = weights_of(v);
        let mut manifest = manifest_of(v, &bytes, "{}").unwrap();
        if self.0.corrupt.load(Ordering::SeqCst) {
            manifest.tensors[1].sha256 = sha256_hex(b"not these bytes");
        }
        let msgs: Vec<Result<pb::DownloadWeightsResponse, Status>> = download_stream(
            manifest,
            Arc::new(bytes),
            (r.chunk_bytes as usize).clamp(1, 16),
        )
        .map(Ok)
        .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }

    async fn get_policy_version(
        &self,
        _req: Request<pb::GetLearnerPolicyVersionRequest>,
    ) -> Result<Response<pb::GetLearnerPolicyVersionResponse>, Status> {
        Ok(Response::new(pb::GetLearnerPolicyVersionResponse {
            policy_version: self.0.version.load(Ordering::SeqCst),
            step: 0,
        }))
    }
}

// ---------- harness ----------

struct Harness {
    coord_addr: std::net::SocketAddr,
    learner_addr: std::net::SocketAddr,
    learner: Arc<LearnerState>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    coord: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<deepsearch_coordinator::Result<()>>,
    )>,
    delta: f64,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn start(problems: Vec<Problem>) -> Harness {
        Self::start_with(problems, LearnerState::default(), 1.0).await
    }

    /// `delta`: the filter keeps a problem when Pass1@4 <= delta (1.0 keeps every problem, so the
    /// pool is never exhausted while a test runs).
    async fn start_with(problems: Vec<Problem>, learner: LearnerState, delta: f64) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin.token"), TOKEN).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let coord_addr = listener.local_addr().unwrap();
        let coord = Some(serve_coordinator(dir.path(), delta, listener, problems).await);
        let learner = Arc::new(learner);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let learner_addr = l.local_addr().unwrap();
        let (tx2, rx2) = tokio::sync::oneshot::channel::<()>();
        let svc =
            pb::learner_service_server::LearnerServiceServer::new(LearnerDouble(learner.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(TcpListenerStream::new(l), async {
                    let _ = rx2.await;
                }),
        );
        Harness {
            coord_addr,
            learner_addr,
            learner,
            stops: vec![tx2],
            coord,
            delta,
            dir,
        }
    }

    /// Stops the coordinator (state closed) and serves it again on the same address and state.
    async fn restart_coordinator(&mut self) {
        let (stop, join) = self.coord.take().unwrap();
        stop.send(()).unwrap();
        join.await.unwrap().unwrap();
        let listener = tokio::net::TcpListener::bind(self.coord_addr)
            .await
            .unwrap();
        self.coord =
            Some(serve_coordinator(self.dir.path(), self.delta, listener, Vec::new()).await);
    }

    fn admin(&self) -> CoordinatorClient {
        CoordinatorClient::connect_lazy(
            &self.coord_addr.to_string(),
            ClientOptions {
                admin_token: Some(TOKEN.into()),
                ..ClientOptions::default()
            },
        )
        .unwrap()
    }

    fn actor_config(&self) -> ActorConfig {
        let mut c =
            ActorConfig::for_test(&self.coord_addr.to_string(), &self.learner_addr.to_string());
        c.search.segment_delimiter = Some("\n".into());
        c
    }
}

async fn serve_coordinator(
    dir: &std::path::Path,
    delta: f64,
    listener: tokio::net::TcpListener,
    problems: Vec<Problem>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<deepsearch_coordinator::Result<()>>,
) {
    let mut cfg = CoordinatorConfig::for_test(dir);
    cfg.filter.delta = delta;
    let c = Coordinator::open(cfg).await.unwrap();
    c.add_problems(problems).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let join = tokio::spawn(c.serve(listener, None, async {
        let _ = rx.await;
    }));
    (tx, join)
}

struct Handles {
    loaded: Arc<Mutex<Vec<u64>>>,
    released: Arc<Mutex<HashSet<PrefixKey>>>,
    requested: Arc<Mutex<HashSet<PrefixKey>>>,
}

fn deps(metrics: Arc<ActorMetrics>) -> (ActorDeps, Handles) {
    deps_with(metrics, 5)
}

/// `correct_mod`: one response in `correct_mod` is correct.
fn deps_with(metrics: Arc<ActorMetrics>, correct_mod: u64) -> (ActorDeps, Handles) {
    let h = Handles {
        loaded: Arc::default(),
        released: Arc::default(),
        requested: Arc::default(),
    };
    let (loaded, released, requested) = (h.loaded.clone(), h.released.clone(), h.requested.clone());
    let mut pool = VerifierPool::new(&PoolConfig::default()).unwrap();
    pool.register(
        "scripted",
        Arc::new(HashVerifier {
            correct_mod,
            error_mod: 0,
        }),
    );
    let deps = ActorDeps {
        policy: Box::new(move || {
            let p: Box<dyn ActorPolicy> = Box::new(ScriptedActor {
                inner: LmPolicy::new(RandomText {
                    p_eos: 0.08,
                    p_nl: 0.15,
                }),
                loaded,
                released,
                requested,
            });
            Ok(p)
        }),
        verifiers: pool,
        metrics,
        initial_version: 0,
    };
    (deps, h)
}

fn problems(n: usize) -> Vec<Problem> {
    (0..n)
        .map(|i| Problem::new(format!("q{i}"), "scripted", format!("question {i}"), ""))
        .collect()
}

/// Polls `f` every 20 ms until it is true, at most `limit`.
async fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------- tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_searches_streams_follows_versions_and_exits_on_drain() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let h = Harness::start(problems(6)).await;
        h.learner.fail_streams.store(2, Ordering::SeqCst); // the first two streams are refused
        h.learner.corrupt.store(true, Ordering::SeqCst);
        let metrics = Arc::new(ActorMetrics::default());
        let (deps, hd) = deps(metrics.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let actor = tokio::spawn(run_actor(h.actor_config(), deps, async {
            let _ = stop_rx.await;
        }));

        // filter + search work flows and trajectories reach the learner despite refused streams
        until(
            Duration::from_secs(30),
            "search trees and acked trajectories",
            || {
                let s = metrics.snapshot();
                s.trees >= 2 && s.trajectories_acked >= 8
            },
        )
        .await;
        assert!(
            metrics.snapshot().reconnects >= 2,
            "{:?}",
            metrics.snapshot()
        );

        // a new version: the corrupted download is rejected and the old weights stay
        let admin = h.admin();
        h.learner.version.store(1, Ordering::SeqCst);
        admin.publish_policy_version(1, "test").await.unwrap();
        until(Duration::from_secs(30), "a rejected download", || {
            metrics.snapshot().weight_failures >= 1
        })
        .await;
        assert!(hd.loaded.lock().unwrap().is_empty());
        h.learner.corrupt.store(false, Ordering::SeqCst);
        until(Duration::from_secs(30), "version 1 swapped in", || {
            metrics.snapshot().policy_version == 1
        })
        .await;
        assert_eq!(*hd.loaded.lock().unwrap(), vec![1]);
        until(Duration::from_secs(30), "trajectories of version 1", || {
            h.learner
                .received
                .lock()
                .unwrap()
                .iter()
                .any(|t| t.policy_version == 1)
        })
        .await;

        // drain: the actor finishes what it holds and exits by itself
        admin.drain().await.unwrap();
        let snap = tokio::time::timeout(Duration::from_secs(30), actor)
            .await
            .expect("actor exits on drain")
            .unwrap()
            .unwrap();
        drop(stop_tx);

        // every queued trajectory was acknowledged, none rejected as malformed
        assert_eq!(
            snap.trajectories_acked, snap.trajectories_queued,
            "{snap:?}"
        );
        assert_eq!(h.learner.rejected.load(Ordering::SeqCst), 0);
        let received = h.learner.received.lock().unwrap().clone();
        assert_eq!(received.len() as u64, snap.trajectories_queued);
        // groups: id = lease id, complete, ids <lease>/<i>, sources consistent
        let mut groups: HashMap<String, Vec<pb::Trajectory>> = HashMap::new();
        for t in received {
            groups.entry(t.group_id.clone()).or_default().push(t);
        }
        let mut sources = HashSet::new();
        for (gid, ts) in &groups {
            assert_eq!(ts.len() as u32, ts[0].group_size, "group {gid} incomplete");
            let mut idx: Vec<String> = ts.iter().map(|t| t.trajectory_id.clone()).collect();
            idx.sort();
            let mut want: Vec<String> = (0..ts.len()).map(|i| format!("{gid}/{i}")).collect();
            want.sort();
            assert_eq!(idx, want);
            for t in ts {
                assert_eq!(t.actor_id, "test-actor");
                assert!(t.policy_version <= 1);
                sources.insert(t.source);
            }
        }
        assert!(
            sources.contains(&(pb::TrajectorySource::Search as i32)),
            "{sources:?}"
        );
        // the coordinator saw the reports; prefix keys were all released
        let status = admin.status().await.unwrap();
        assert!(
            status.results_accepted >= snap.reports_accepted.min(1),
            "{status:?}"
        );
        assert!(
            snap.reports_accepted >= 8 && snap.items_failed == 0,
            "{snap:?}"
        );
        let (req, rel) = (
            hd.requested.lock().unwrap().clone(),
            hd.released.lock().unwrap().clone(),
        );
        assert!(
            req.is_subset(&rel),
            "{} prefix keys never released",
            req.difference(&rel).count()
        );
        assert!(snap.expansions > 0 && snap.generated_tokens > 0);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_cleanly_on_shutdown_while_idle() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let h = Harness::start(Vec::new()).await;
        let metrics = Arc::new(ActorMetrics::default());
        let (deps, _hd) = deps(metrics.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let actor = tokio::spawn(run_actor(h.actor_config(), deps, async {
            let _ = stop_rx.await;
        }));
        // registered and polling for work (nothing to lease)
        let admin = h.admin();
        let mut registered = false;
        for _ in 0..100 {
            if !admin.status().await.unwrap().actors.is_empty() {
                registered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(registered);
        stop_tx.send(()).unwrap();
        let snap = tokio::time::timeout(Duration::from_secs(5), actor)
            .await
            .expect("exits")
            .unwrap()
            .unwrap();
        assert_eq!(snap.items_leased, 0);
        drop(h.stops);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_bad_config_is_an_error_naming_the_field() {
    let metrics = Arc::new(ActorMetrics::default());
    let (deps, _) = deps(metrics);
    let mut cfg = ActorConfig::for_test("127.0.0.1:1", "127.0.0.1:2");
    cfg.capacity = 0;
    let e = run_actor(cfg, deps, async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("capacity"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_without_credits_stops_the_actor_from_leasing() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (hold_tx, hold_rx) = tokio::sync::watch::channel(true);
        let h = Harness::start_with(
            problems(8),
            LearnerState {
                hold: Some(hold_rx),
                ..LearnerState::default()
            },
            1.0,
        )
        .await;
        let metrics = Arc::new(ActorMetrics::default());
        let (deps, _hd) = deps(metrics.clone());
        let mut cfg = h.actor_config();
        cfg.push_queue = 2;
        cfg.ack_timeout = Duration::from_secs(60);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let actor = tokio::spawn(run_actor(cfg, deps, async {
            let _ = stop_rx.await;
        }));
        // one trajectory goes out on the first credit, then nothing is acknowledged: the queue
        // fills and the actor stops leasing
        until(Duration::from_secs(30), "the first trajectory", || {
            !h.learner.received.lock().unwrap().is_empty()
        })
        .await;
        let leased = |m: &ActorMetrics| m.snapshot().items_leased;
        let mut before = leased(&metrics);
        let mut stable = 0;
        while stable < 5 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = leased(&metrics);
            stable = if now == before { stable + 1 } else { 0 };
            before = now;
        }
        assert_eq!(
            h.learner.received.lock().unwrap().len(),
            1,
            "sent beyond the window"
        );
        assert_eq!(metrics.snapshot().trajectories_acked, 0);
        // credits again: the backlog drains and work resumes
        hold_tx.send(false).unwrap();
        until(Duration::from_secs(30), "acks and more leases", || {
            let s = metrics.snapshot();
            s.trajectories_acked >= 8 && s.items_leased > before
        })
        .await;
        stop_tx.send(()).unwrap();
        let snap = tokio::time::timeout(Duration::from_secs(30), actor)
            .await
            .expect("exits")
            .unwrap()
            .unwrap();
        assert_eq!(
            snap.trajectories_acked, snap.trajectories_queued,
            "{snap:?}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_by_itself_when_every_problem_is_retired() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let h = Harness::start_with(problems(3), LearnerState::default(), 0.25).await;
        let metrics = Arc::new(ActorMetrics::default());
        // every response is correct: Pass1@4 = 1 retires each problem at its first filter
        let (deps, _hd) = deps_with(metrics.clone(), 1);
        let snap = tokio::time::timeout(
            Duration::from_secs(30),
            run_actor(h.actor_config(), deps, std::future::pending()),
        )
        .await
        .expect("the actor exits once the pool is exhausted")
        .unwrap();
        assert_eq!(
            (snap.items_leased, snap.reports_accepted, snap.trees),
            (3, 3, 0),
            "{snap:?}"
        );
        let status = h.admin().status().await.unwrap();
        assert_eq!(status.problems_by_status["retired"], 3);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_coordinator_restart() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let mut h = Harness::start(problems(4)).await;
        let metrics = Arc::new(ActorMetrics::default());
        let (deps, _hd) = deps(metrics.clone());
        let actor = tokio::spawn(run_actor(h.actor_config(), deps, std::future::pending()));
        until(Duration::from_secs(30), "first reports", || {
            metrics.snapshot().reports_accepted >= 4
        })
        .await;
        h.restart_coordinator().await;
        let after = metrics.snapshot().reports_accepted;
        // the actor retries with backoff, finds the same coordinator state and goes on
        until(Duration::from_secs(30), "reports after the restart", || {
            metrics.snapshot().reports_accepted >= after + 4
        })
        .await;
        h.admin().drain().await.unwrap();
        let snap = tokio::time::timeout(Duration::from_secs(30), actor)
            .await
            .expect("exits on drain")
            .unwrap()
            .unwrap();
        assert_eq!(
            snap.trajectories_acked, snap.trajectories_queued,
            "{snap:?}"
        );
    })
    .await
    .expect("test timed out");
}
