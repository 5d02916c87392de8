//! Load test of the learner runtime (issue #6 "Must show"): N simulated actors (default 64), each
//! with its own connection, stream trajectories as fast as their credits allow for a fixed time.
//! Reports accepted trajectories/s, acknowledgement latency (client side: send → cumulative ack
//! covering it) p50/p99/max, steps and the process's peak RSS (learner and actors share it).
//!
//! `cargo run --release -p deepsearch-learner --example load_64_actors -- --seconds 60`

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use deepsearch_learner::runtime::{run_learner_with, LearnerRuntimeConfig, Trainer};
use deepsearch_learner::{Result, StepReport};
use deepsearch_proto::v1 as pb;
use deepsearch_search::Group;
use pb::learner_service_client::LearnerServiceClient;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use tokio::sync::{mpsc, watch};

#[derive(Parser, Debug)]
struct Args {
    /// How long the actors push.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    #[arg(long, default_value_t = 64)]
    actors: usize,
    /// Trajectories per group.
    #[arg(long, default_value_t = 8)]
    group_size: u32,
    #[arg(long, default_value_t = 256)]
    response_tokens: usize,
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 32)]
    prompts_per_step: usize,
    #[arg(long, default_value_t = 8192)]
    max_queued: usize,
    #[arg(long, default_value_t = 64)]
    stream_credits: u32,
    /// The trivial trainer steps far faster than a real one (tens of versions per second), so
    /// the staleness bound is lifted by default to measure ingest alone.
    #[arg(long, default_value_t = 1_000_000)]
    max_staleness: u64,
}

/// A trivial trainer: 64K f32 weights, +1 per step.
struct Counter {
    w: Vec<f32>,
    version: u64,
}

impl Trainer for Counter {
    fn train_step(&mut self, _groups: Vec<Group>) -> Result<StepReport> {
        self.w.iter_mut().for_each(|w| *w += 1.0);
        self.version += 1;
        Ok(StepReport { step: self.version, policy_version: self.version, ..Default::default() })
    }
    fn export_weights(&self) -> Result<Vec<u8>> {
        let b: Vec<u8> = self.w.iter().flat_map(|w| w.to_le_bytes()).collect();
        let v = vec![("w".to_string(), TensorView::new(Dtype::F32, vec![self.w.len()], &b).unwrap())];
        Ok(safetensors::serialize(v, &None).unwrap())
    }
    fn config_json(&self) -> String {
        "{}".into()
    }
    fn policy_version(&self) -> u64 {
        self.version
    }
}

fn trajectory(a: &Args, actor: usize, group: u64, k: u32, version: u64) -> pb::Trajectory {
    let n = a.response_tokens;
    let seg = (n / 4).max(1) as u32;
    let mut ends: Vec<u32> = (1..4).map(|i| i * seg).filter(|&e| (e as usize) < n).collect();
    ends.push(n as u32);
    pb::Trajectory {
        trajectory_id: format!("a{actor}/g{group}/{k}"),
        problem_id: format!("p{group}"),
        group_id: format!("a{actor}/g{group}"),
        group_size: a.group_size,
        prompt_tokens: vec![7; a.prompt_tokens],
        response_tokens: (0..n as u32).collect(),
        segment_ends: ends,
        sampling_logprobs: vec![-0.7; n],
        entropies: vec![0.3; n],
        token_scores: vec![if k.is_multiple_of(2) { 1.0 } else { -1.0 }; n],
        terminal_score: if k.is_multiple_of(2) { 1.0 } else { -1.0 },
        verdict: if k.is_multiple_of(2) { pb::Verdict::Correct } else { pb::Verdict::Wrong } as i32,
        source: pb::TrajectorySource::Search as i32,
        policy_version: version,
        actor_id: format!("a{actor}"),
    }
}

/// One actor: pushes until `until`, then waits for its last ack. Returns (acked, latencies in µs).
async fn actor(args: Arc<Args>, addr: std::net::SocketAddr, id: usize, until: Instant) -> (u64, Vec<u32>) {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    let mut c = LearnerServiceClient::new(ch);
    let (tx, rx) = mpsc::channel(256);
    let mut resp = c.push_trajectories(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let first = resp.message().await.unwrap().unwrap();
    // (acked, credits, learner version)
    let (state_tx, mut state) = watch::channel((first.acked_sequence, first.credits, first.policy_version));
    let sent_at: Arc<Mutex<VecDeque<(u64, Instant)>>> = Arc::default();
    let reader = {
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut lat = Vec::new();
            while let Ok(Some(r)) = resp.message().await {
                let now = Instant::now();
                let mut q = sent_at.lock().unwrap();
                while q.front().is_some_and(|(s, _)| *s <= r.acked_sequence) {
                    let (_, t) = q.pop_front().unwrap();
                    lat.push(now.duration_since(t).as_micros() as u32);
                }
                drop(q);
                let _ = state_tx.send((r.acked_sequence, r.credits, r.policy_version));
            }
            lat
        })
    };
    let mut seq = 0u64;
    let mut group = 0u64;
    'outer: while Instant::now() < until {
        let version = state.borrow().2;
        for k in 0..args.group_size {
            let ok = tokio::time::timeout_at(until.into(), state.wait_for(|(acked, credits, _)| seq < acked + u64::from(*credits)))
                .await
                .is_ok_and(|r| r.is_ok());
            if !ok {
                break 'outer;
            }
            seq += 1;
            sent_at.lock().unwrap().push_back((seq, Instant::now()));
            let t = trajectory(&args, id, group, k, version);
            if tx.send(pb::PushTrajectoriesRequest { sequence: seq, trajectory: Some(t) }).await.is_err() {
                break 'outer;
            }
        }
        group += 1;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), state.wait_for(|s| s.0 >= seq)).await;
    let acked = state.borrow().0;
    drop(tx);
    let lat = reader.await.unwrap_or_default();
    (acked, lat)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let cfg = LearnerRuntimeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        prompts_per_step: args.prompts_per_step,
        max_queued_trajectories: args.max_queued,
        stream_credits: args.stream_credits,
        max_staleness: args.max_staleness,
        ..Default::default()
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let ml = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let maddr = ml.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let trainer = Counter { w: vec![0.0; 1 << 16], version: 0 };
    let server = tokio::spawn(run_learner_with(cfg, trainer, l, Some(ml), async move {
        let _ = stop_rx.await;
    }));
    let rss0 = rss_mib();
    let peak = Arc::new(Mutex::new(rss0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let r = rss_mib();
                let mut p = peak.lock().unwrap();
                *p = p.max(r);
            }
        })
    };
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..args.actors).map(|i| tokio::spawn(actor(args.clone(), addr, i, until))).collect();
    let mut total = 0u64;
    let mut lat: Vec<u32> = Vec::new();
    for t in tasks {
        let (n, l) = t.await.unwrap();
        total += n;
        lat.extend(l);
    }
    let secs = start.elapsed().as_secs_f64();
    let mut c = LearnerServiceClient::new(tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy());
    let v = c.get_policy_version(pb::GetLearnerPolicyVersionRequest {}).await.unwrap().into_inner();
    sampler.abort();
    let counts = learner_counts(maddr).await;
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    lat.sort_unstable();
    let q = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1000.0;
    let bytes = {
        let t = trajectory(&args, 0, 0, 0, 0);
        prost::Message::encoded_len(&t)
    };
    println!(
        "actors {} | {:.1} s | acked {} trajectories ({} B each) = {:.0} trajectories/s ({:.1} MB/s) | steps {} (version {})",
        args.actors,
        secs,
        total,
        bytes,
        total as f64 / secs,
        total as f64 * bytes as f64 / secs / 1e6,
        v.step,
        v.policy_version
    );
    println!(
        "ack latency ms: p50 {:.2} p99 {:.2} max {:.2} ({} samples) | RSS start {:.0} MiB, peak {:.0} MiB",
        q(0.5),
        q(0.99),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0,
        lat.len(),
        rss0,
        *peak.lock().unwrap()
    );
    println!("learner: {counts}");
}

/// The learner's trajectory and group counters, from its `/metrics`.
async fn learner_counts(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut body = String::new();
    if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await;
        let _ = s.read_to_string(&mut body).await;
    }
    body.lines()
        .filter(|l| l.starts_with("deepsearch_learner_trajectories_total") || l.starts_with("deepsearch_learner_groups_total"))
        .map(|l| l.trim_start_matches("deepsearch_learner_"))
        .collect::<Vec<_>>()
        .join(" ")
}
