//! The learner-group rendezvous and step hand-off (issue #5; `runtime::ranks`) over real gRPC on
//! 127.0.0.1: joining checks world size, rank and backend; rank 0's [`LeaderTrainer`] hands
//! each step's groups to a follower, and both ranks (thread collectives) end with the weights of
//! one rank trained on everything; a stop from rank 0 ends the follower cleanly; a follower that
//! resumed another checkpoint is refused with an error saying so, and rank 0 does not hang.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deepsearch_learner::runtime::ranks::{self, FollowEnd, GroupInfo, LeaderTrainer, Rendezvous};
use deepsearch_learner::runtime::{PolicyTrainer, Trainer};
use deepsearch_learner::{Learner, SingleProcess, ThreadGroup};

fn info(world: usize) -> GroupInfo {
    GroupInfo { world, backend: ranks::BACKEND_TCP.into(), nccl_unique_id: Vec::new(), tcp_port: 4242 }
}

/// Serves a rendezvous on 127.0.0.1:0; returns its address and the stop switch.
async fn serve(rv: Arc<Rendezvous>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ranks::serve_rendezvous(rv, l, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_checks_world_size_rank_and_backend() {
    let rv = Rendezvous::new(info(2));
    let (addr, _stop) = serve(rv.clone()).await;
    let t = Duration::from_secs(20);
    let got = ranks::join_group(&addr, 1, 2, ranks::BACKEND_TCP, t).await.unwrap();
    assert_eq!(got, info(2));
    rv.wait_joined(Duration::from_secs(1)).unwrap();
    let e = ranks::join_group(&addr, 1, 3, ranks::BACKEND_TCP, t).await.unwrap_err().to_string();
    assert!(e.contains("joined with world size 3, but rank 0 runs world size 2"), "{e}");
    let e = ranks::join_group(&addr, 2, 2, ranks::BACKEND_TCP, t).await.unwrap_err().to_string();
    assert!(e.contains("rank 2 is out of range 1..2"), "{e}");
    let e = ranks::join_group(&addr, 1, 2, ranks::BACKEND_NCCL, t).await.unwrap_err().to_string();
    assert!(e.contains("uses the `nccl` collective, rank 0 uses `tcp`"), "{e}");

    // nobody at the address: retried until the deadline, then a deadline error naming it
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let t0 = Instant::now();
    let e = ranks::join_group(&dead, 1, 2, ranks::BACKEND_TCP, Duration::from_millis(800)).await.unwrap_err().to_string();
    assert!(e.contains("deadline of 800 ms") && e.contains(&dead), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());

    // rank 0 waiting for a rank that never joins
    let lonely = Rendezvous::new(info(3));
    let e = lonely.wait_joined(Duration::from_millis(200)).unwrap_err().to_string();
    assert!(e.contains("ranks [1, 2] never joined"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_trains_on_rank_0s_steps_and_stops_with_it() {
    let steps: Vec<_> = (0..2).map(|s| common::synthetic_groups(300 + s, 4, 4, 0)).collect();
    // the reference: one rank, all of every step
    let mut single = Learner::new(common::cfg(), common::tiny_model(7), Box::new(SingleProcess)).unwrap();
    for g in &steps {
        single.policy_version = 0; // the synthetic groups are of version 0; keep them fresh
        single.train_on_groups(g).unwrap();
    }
    let want = common::weights(&single);

    let rv = Rendezvous::new(info(2));
    let (addr, _stop) = serve(rv.clone()).await;
    let mut cs = ThreadGroup::new(2, Duration::from_secs(60), 1000);
    let (c1, c0) = (cs.pop().unwrap(), cs.pop().unwrap());
    let rt = tokio::runtime::Handle::current();
    let follower = std::thread::spawn(move || {
        // rank 1 starts from other weights: Learner::new's broadcast aligns them
        let l = Learner::new(common::cfg(), common::tiny_model(8), Box::new(c1)).unwrap();
        let mut t = PolicyTrainer::new(l, "{}".into());
        let (_never, stop) = tokio::sync::watch::channel(false);
        let end = ranks::follow_steps(&rt, &addr, 1, &mut t, stop);
        (end, common::weights(&t.learner), t.learner.step)
    });
    let leader_rv = rv.clone();
    let leader = tokio::task::spawn_blocking(move || {
        let l = Learner::new(common::cfg(), common::tiny_model(7), Box::new(c0)).unwrap();
        let mut t = LeaderTrainer::new(PolicyTrainer::new(l, "{}".into()), leader_rv, Duration::from_secs(60));
        for g in steps {
            t.inner.learner.policy_version = 0;
            t.train_step(g).unwrap();
        }
        common::weights(&t.inner.learner)
    });
    let got0 = leader.await.unwrap();
    rv.stop(None);
    let (end, got1, step1) = follower.join().unwrap();
    assert_eq!(end.unwrap(), FollowEnd::LeaderStopped);
    assert_eq!(step1, 2, "the follower ran both steps");
    assert_eq!(common::max_diff(&got0, &got1), 0.0, "ranks must hold identical weights");
    let d = common::max_diff(&got0, &want);
    assert!(d < 2e-5, "2 ranks vs 1 rank: max weight difference {d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_from_another_checkpoint_is_a_clear_error_on_both_ranks() {
    let rv = Rendezvous::new(info(2));
    let (addr, _stop) = serve(rv.clone()).await;
    let mut cs = ThreadGroup::new(2, Duration::from_secs(3), 1000);
    let (c1, c0) = (cs.pop().unwrap(), cs.pop().unwrap());
    let rt = tokio::runtime::Handle::current();
    let follower = std::thread::spawn(move || {
        let mut l = Learner::new(common::cfg(), common::tiny_model(7), Box::new(c1)).unwrap();
        l.step = 5; // as if it had restored a newer checkpoint than rank 0
        let mut t = PolicyTrainer::new(l, "{}".into());
        let (_never, stop) = tokio::sync::watch::channel(false);
        ranks::follow_steps(&rt, &addr, 1, &mut t, stop)
    });
    let leader = tokio::task::spawn_blocking(move || {
        let l = Learner::new(common::cfg(), common::tiny_model(7), Box::new(c0)).unwrap();
        let mut t = LeaderTrainer::new(PolicyTrainer::new(l, "{}".into()), rv, Duration::from_secs(30));
        t.train_step(common::synthetic_groups(5, 4, 4, 0))
    });
    let e = follower.join().unwrap().unwrap_err().to_string();
    assert!(e.contains("this rank is at step 5 but rank 0 is at step 0") && e.contains("checkpoint_dir"), "{e}");
    // rank 0 is not left waiting: its all-reduce fails within the collective deadline
    let e = leader.await.unwrap().unwrap_err().to_string();
    assert!(e.contains("all_reduce") && e.contains("[1]"), "{e}");
}
