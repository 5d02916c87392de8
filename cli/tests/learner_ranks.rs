//! Multi-process data parallelism (issue #5): `deepsearch learner --world-size 2` as two real
//! processes on a tiny model, rank 0 fed one step of trajectories over gRPC.
//!
//! - the weights rank 0 publishes after the step equal (within float tolerance) those of a
//!   single-process `deepsearch learner` fed the same trajectories, and SIGTERM to rank 0 stops
//!   both ranks cleanly;
//! - kill -9 of rank 1: rank 0's next step fails with an error naming rank 1 and the process exits
//!   within the collective timeout, instead of hanging;
//! - a world size above 1 without a rendezvous address is a clear error.

mod system_support;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use deepsearch_proto::v1 as pb;
use pb::learner_service_client::LearnerServiceClient;
use system_support::*;

/// Learner config: 2 prompts per step of 4 trajectories, one update, a 5 s collective deadline.
fn learner_file(dir: &Path, model: &Path) -> PathBuf {
    let p = dir.join("learner.toml");
    let text = format!(
        r#"[model]
path = {model:?}
[learner]
lr = 1e-3
warmup_steps = 1
prompts_per_step = 2
mini_batches = 1
micro_batch_size = 8
logprob_chunk = 16
collective_timeout = "5s"
[runtime]
prompts_per_step = 2
max_queued_trajectories = 64
"#,
        model = model.display().to_string()
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// Spawns `deepsearch learner` with `extra` arguments on 127.0.0.1:0.
fn spawn_learner(cfg: &Path, extra: &[&str]) -> ChildProc {
    let mut args = vec!["learner", "--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    ChildProc::spawn(&args)
}

/// Trajectory `i` of group `g` (4 per group, 2 correct and 2 wrong, responses of 3–6 tokens).
fn traj(g: usize, i: usize) -> pb::Trajectory {
    let len = 3 + (g + i) % 4;
    let correct = i.is_multiple_of(2);
    let response: Vec<u32> = (0..len).map(|k| 3 + ((g * 5 + i * 3 + k) % 9) as u32).collect();
    let score = if correct { 1.0 } else { -1.0 };
    pb::Trajectory {
        trajectory_id: format!("t{g}-{i}"),
        problem_id: format!("p{g}"),
        group_id: format!("g{g}"),
        group_size: 4,
        prompt_tokens: vec![4 + g as u32, 5, 6],
        segment_ends: vec![2, len as u32],
        sampling_logprobs: (0..len).map(|k| -0.5 - 0.25 * ((k + i) % 5) as f32).collect(),
        entropies: vec![1.0; len],
        token_scores: (0..len).map(|k| if k < 2 { 0.3 * score } else { score }).collect(),
        terminal_score: score,
        verdict: if correct { pb::Verdict::Correct } else { pb::Verdict::Wrong } as i32,
        source: pb::TrajectorySource::Search as i32,
        policy_version: 0,
        actor_id: "test".into(),
        response_tokens: response,
    }
}

/// Pushes one step's worth (2 groups × 4) to the learner at `addr` and waits for the acks.
async fn push_step(addr: std::net::SocketAddr) {
    let mut c = LearnerServiceClient::connect(format!("http://{addr}")).await.unwrap();
    let msgs: Vec<pb::PushTrajectoriesRequest> = (0..8).map(|n| pb::PushTrajectoriesRequest { sequence: n as u64 + 1, trajectory: Some(traj(n / 4, n % 4)) }).collect();
    let mut acks = c.push_trajectories(tokio_stream::iter(msgs)).await.unwrap().into_inner();
    let acked = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(r) = acks.message().await.unwrap() {
            assert_eq!((r.rejected_invalid, r.dropped_stale), (0, 0), "{r:?}");
            if r.acked_sequence == 8 {
                return;
            }
        }
        panic!("the learner closed the stream before acknowledging every trajectory");
    })
    .await;
    assert!(acked.is_ok(), "no acknowledgement of the 8 trajectories within 30 s");
}

/// Waits for policy version 1 at `addr` and downloads (and verifies) its weights.
async fn weights_after_step(addr: std::net::SocketAddr) -> Vec<(String, Vec<f32>)> {
    let mut c = LearnerServiceClient::connect(format!("http://{addr}")).await.unwrap();
    let cr = &c;
    wait_for(60, "policy version 1", || {
        let mut c = cr.clone();
        async move {
            let v = c.get_policy_version(pb::GetLearnerPolicyVersionRequest::default()).await.ok()?.into_inner().policy_version;
            (v >= 1).then_some(())
        }
    })
    .await;
    let (v, bytes) = deepsearch_proto::weights::download_and_verify(&mut c, 1).await.unwrap();
    assert_eq!(v, 1);
    tensors(&bytes)
}

/// The f32 tensors of a safetensors file, sorted by name.
fn tensors(bytes: &[u8]) -> Vec<(String, Vec<f32>)> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|((na, x), (nb, y))| {
            assert_eq!(na, nb);
            x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max)
        })
        .fold(0.0, f32::max)
}

/// Waits up to `secs` for the child to exit.
fn wait_exit(p: &mut ChildProc, secs: u64) -> Option<ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(s) = p.child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Starts rank 0 and rank 1 of a world of 2; returns them with rank 0's LearnerService address.
async fn start_pair(cfg: &Path) -> (ChildProc, ChildProc, std::net::SocketAddr) {
    let rank0 = spawn_learner(cfg, &["--world-size", "2", "--rank", "0", "--master-addr", "127.0.0.1:0"]);
    let master = rank0.logged_addr("rendezvous listening").await.to_string();
    let rank1 = spawn_learner(cfg, &["--world-size", "2", "--rank", "1", "--master-addr", &master]);
    let addr = rank0.logged_addr("learner listening").await;
    let r1 = &rank1;
    wait_for(60, "rank 1 to follow the steps", || async move { r1.log().contains("following rank 0's steps").then_some(()) }).await;
    (rank0, rank1, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_learner_processes_reach_the_weights_of_one() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let cfg = learner_file(dir.path(), &model);
    let initial = tensors(&std::fs::read(model.join("model.safetensors")).unwrap());

    // one process
    let mut single = spawn_learner(&cfg, &[]);
    let addr = single.logged_addr("learner listening").await;
    push_step(addr).await;
    let want = weights_after_step(addr).await;
    assert!(single.terminate(30), "the single learner did not stop cleanly:\n{}", single.log());
    assert!(max_diff(&initial, &want) > 1e-4, "the step must change the weights");

    // two processes, same trajectories to rank 0
    let (mut rank0, mut rank1, addr) = start_pair(&cfg).await;
    push_step(addr).await;
    let got = weights_after_step(addr).await;
    let d = max_diff(&got, &want);
    assert!(d < 2e-5, "2 processes vs 1: max weight difference {d}\nrank 0:\n{}\nrank 1:\n{}", rank0.log(), rank1.log());

    // SIGTERM to rank 0: both exit cleanly
    assert!(rank0.terminate(30), "rank 0 did not stop cleanly:\n{}", rank0.log());
    let s = wait_exit(&mut rank1, 30).unwrap_or_else(|| panic!("rank 1 did not exit after rank 0 stopped:\n{}", rank1.log()));
    assert!(s.success(), "rank 1 failed:\n{}", rank1.log());
    assert!(rank1.log().contains("LeaderStopped"), "{}", rank1.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_rank_1_makes_rank_0_fail_naming_it_instead_of_hanging() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let cfg = learner_file(dir.path(), &model);
    let (mut rank0, mut rank1, addr) = start_pair(&cfg).await;
    rank1.kill9();
    push_step(addr).await;
    let t0 = Instant::now();
    // the collective timeout is 5 s; the step itself takes well under a second
    let s = wait_exit(&mut rank0, 30).unwrap_or_else(|| panic!("rank 0 still runs 30 s after rank 1 died:\n{}", rank0.log()));
    let log = rank0.log();
    assert!(!s.success(), "rank 0 exited successfully without its peer:\n{log}");
    let last = log.lines().rev().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no final error line:\n{log}"));
    assert!(last.contains("rank 1") && last.contains("collective"), "{last}");
    assert!(t0.elapsed() < Duration::from_secs(15), "took {:?}", t0.elapsed());
}

#[test]
fn a_world_without_a_rendezvous_address_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = learner_file(dir.path(), &dir.path().join("no-model"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deepsearch"))
        .args(["learner", "--config", cfg.to_str().unwrap(), "--world-size", "2", "--rank", "1"])
        .env_remove("MASTER_ADDR")
        .env_remove("MASTER_PORT")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--master-addr HOST:PORT") && err.contains("MASTER_ADDR"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deepsearch"))
        .args(["learner", "--config", cfg.to_str().unwrap(), "--world-size", "2", "--rank", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--rank 2 must be below --world-size 2"), "{err}");
}
