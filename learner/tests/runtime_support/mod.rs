//! Shared pieces of the runtime tests: a trainer double (a vector "model" whose weights change
//! every step), a learner on 127.0.0.1:0, wire trajectories, a credit-respecting pusher and a
//! `/metrics` reader.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deepsearch_learner::runtime::{run_learner_with, LearnerRuntimeConfig, Trainer};
use deepsearch_learner::{Result, StepReport};
use deepsearch_proto::v1 as pb;
use deepsearch_search::Group;
use pb::learner_service_client::LearnerServiceClient;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;

/// A trainer double: `weights` grow by 1 per step; each step's group sizes are recorded.
pub struct VecTrainer {
    pub weights: Vec<f32>,
    pub version: u64,
    pub delay: Duration,
    pub seen: Arc<Mutex<Vec<Vec<usize>>>>,
}

impl VecTrainer {
    pub fn new(n: usize, delay: Duration) -> (Self, Arc<Mutex<Vec<Vec<usize>>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        (VecTrainer { weights: (0..n).map(|i| i as f32).collect(), version: 0, delay, seen: seen.clone() }, seen)
    }
}

impl Trainer for VecTrainer {
    fn train_step(&mut self, groups: Vec<Group>) -> Result<StepReport> {
        std::thread::sleep(self.delay);
        self.seen.lock().unwrap().push(groups.iter().map(|g| g.trajectories.len()).collect());
        for w in &mut self.weights {
            *w += 1.0;
        }
        self.version += 1;
        Ok(StepReport { step: self.version, policy_version: self.version, ..Default::default() })
    }

    fn export_weights(&self) -> Result<Vec<u8>> {
        let bytes: Vec<u8> = self.weights.iter().flat_map(|w| w.to_le_bytes()).collect();
        let bias = [1u8, 2, 3, 4];
        let views = vec![
            ("model.w".to_string(), TensorView::new(Dtype::F32, vec![self.weights.len()], &bytes).unwrap()),
            ("model.b".to_string(), TensorView::new(Dtype::U8, vec![4], &bias).unwrap()),
        ];
        Ok(safetensors::serialize(views, &None).unwrap())
    }

    fn config_json(&self) -> String {
        r#"{"model_type":"vec"}"#.into()
    }

    fn policy_version(&self) -> u64 {
        self.version
    }
}

/// The `model.w` tensor of a downloaded file.
pub fn weights_of(bytes: &[u8]) -> Vec<f32> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    st.tensor("model.w").unwrap().data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// A running learner.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Running {
    /// Stops the learner and returns its result.
    pub async fn stop(mut self) -> Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap()
    }
}

pub async fn start<T: Trainer>(cfg: LearnerRuntimeConfig, trainer: T) -> Running {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let m = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, metrics_addr) = (l.local_addr().unwrap(), m.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run_learner_with(cfg, trainer, l, Some(m), async move {
        let _ = rx.await;
    }));
    Running { addr, metrics_addr, stop: Some(tx), task }
}

pub async fn client(addr: SocketAddr) -> LearnerServiceClient<Channel> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    LearnerServiceClient::new(ch).max_decoding_message_size(64 << 20)
}

/// A valid wire trajectory (3 response tokens in 2 segments).
pub fn traj(id: &str, group: &str, size: u32, version: u64) -> pb::Trajectory {
    pb::Trajectory {
        trajectory_id: id.into(),
        problem_id: format!("p-{group}"),
        group_id: group.into(),
        group_size: size,
        prompt_tokens: vec![1, 2],
        response_tokens: vec![3, 4, 5],
        segment_ends: vec![2, 3],
        sampling_logprobs: vec![-0.5; 3],
        entropies: vec![0.1; 3],
        token_scores: vec![0.5; 3],
        terminal_score: 1.0,
        verdict: pb::Verdict::Correct as i32,
        source: pb::TrajectorySource::Search as i32,
        policy_version: version,
        actor_id: "actor-0".into(),
    }
}

/// One `PushTrajectories` stream that never sends beyond its credits.
pub struct Pusher {
    tx: mpsc::Sender<pb::PushTrajectoriesRequest>,
    rx: tonic::Streaming<pb::PushTrajectoriesResponse>,
    pub sent: u64,
    pub last: pb::PushTrajectoriesResponse,
    /// Whether a response ever granted 0 credits with nothing in flight (backpressure engaged).
    pub saw_zero_credits: bool,
}

impl Pusher {
    pub async fn open(client: &mut LearnerServiceClient<Channel>) -> Pusher {
        let (tx, rx) = mpsc::channel(1024);
        let mut rx = client.push_trajectories(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
        let last = rx.message().await.unwrap().expect("initial credits");
        assert_eq!(last.acked_sequence, 0);
        Pusher { saw_zero_credits: last.credits == 0, tx, rx, sent: 0, last }
    }

    /// Reads one response (acks are cumulative and never go back).
    pub async fn read(&mut self) -> std::result::Result<(), tonic::Status> {
        let r = self.rx.message().await?.expect("learner closed the stream");
        assert!(r.acked_sequence >= self.last.acked_sequence);
        assert!(r.acked_sequence <= self.sent);
        self.saw_zero_credits |= r.credits == 0 && r.acked_sequence == self.sent;
        self.last = r;
        Ok(())
    }

    /// Sends `t` as the next sequence number, first waiting for a credit.
    pub async fn send(&mut self, t: Option<pb::Trajectory>) {
        while self.sent >= self.last.acked_sequence + u64::from(self.last.credits) {
            self.read().await.unwrap();
        }
        self.sent += 1;
        self.tx.send(pb::PushTrajectoriesRequest { sequence: self.sent, trajectory: t }).await.unwrap();
    }

    /// Sends with an explicit sequence number (protocol tests).
    pub async fn send_raw(&mut self, sequence: u64, t: pb::Trajectory) {
        self.tx.send(pb::PushTrajectoriesRequest { sequence, trajectory: Some(t) }).await.unwrap();
    }

    /// Waits until everything sent is acknowledged.
    pub async fn flush(&mut self) -> &pb::PushTrajectoriesResponse {
        while self.last.acked_sequence < self.sent {
            self.read().await.unwrap();
        }
        &self.last
    }
}

/// `GET /metrics` as `name{labels}` → value.
pub async fn metrics(addr: SocketAddr) -> HashMap<String, f64> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body.lines()
        .filter(|l| l.starts_with("deepsearch_learner_"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect()
}

/// Runs `f` under a deadline (every async test).
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f).await.expect("test timed out")
}
