//! Backpressure (issue #6 item 4): with a tiny queue and a slow trainer, pushers never exceed
//! their credits, credits drop to 0 while the queue is full, the learner never holds more than
//! `max_queued_trajectories`, and every trajectory is still trained exactly once.

mod runtime_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deepsearch_learner::runtime::LearnerRuntimeConfig;
use runtime_support::*;

#[tokio::test]
async fn tiny_queue_and_slow_trainer_bound_what_is_in_flight() {
    within(60, async {
        let cfg = LearnerRuntimeConfig {
            prompts_per_step: 1,
            max_queued_trajectories: 8,
            stream_credits: 4,
            // The pushers stamp every trajectory with version 0; keep them all fresh for 12 steps.
            max_staleness: 100,
            ..LearnerRuntimeConfig::for_test()
        };
        let (trainer, seen) = VecTrainer::new(8, Duration::from_millis(60));
        let lr = start(cfg, trainer).await;
        let done = Arc::new(AtomicBool::new(false));
        // Sample the learner's queue while the pushers run.
        let sampler = {
            let (addr, done) = (lr.metrics_addr, done.clone());
            tokio::spawn(async move {
                let mut max_held = 0.0f64;
                let mut min_free = f64::MAX;
                while !done.load(Ordering::Relaxed) {
                    let m = metrics(addr).await;
                    max_held = max_held.max(m["deepsearch_learner_queue_depth"]);
                    min_free = min_free.min(m["deepsearch_learner_free_slots"]);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (max_held, min_free)
            })
        };
        let mut pushers = Vec::new();
        for a in 0..2 {
            let addr = lr.addr;
            pushers.push(tokio::spawn(async move {
                let mut c = client(addr).await;
                let mut p = Pusher::open(&mut c).await;
                for g in 0..6 {
                    for k in 0..2 {
                        // Pusher::send waits for a credit; read() asserts acks never pass what was sent.
                        p.send(Some(traj(&format!("a{a}g{g}k{k}"), &format!("a{a}g{g}"), 2, 0))).await;
                        let in_flight = p.sent - p.last.acked_sequence;
                        assert!(in_flight <= 4, "more in flight than the stream window");
                    }
                }
                p.flush().await;
                p.saw_zero_credits
            }));
        }
        let mut zero = false;
        for p in pushers {
            zero |= p.await.unwrap();
        }
        // 12 groups, one per step; the last steps finish after the pushers' last acks.
        while seen.lock().unwrap().len() < 12 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        done.store(true, Ordering::Relaxed);
        let (max_held, min_free) = sampler.await.unwrap();
        assert!(max_held <= 8.0, "held {max_held} > max_queued_trajectories");
        assert!(min_free >= 0.0);
        assert!(zero, "the queue never filled: backpressure was not exercised");
        let steps = seen.lock().unwrap().clone();
        assert_eq!(steps, vec![vec![2]; 12], "every group trained exactly once");
        let m = metrics(lr.metrics_addr).await;
        assert_eq!(m["deepsearch_learner_trajectories_total{disposition=\"accepted\"}"], 24.0);
        assert_eq!(m["deepsearch_learner_queue_depth"], 0.0);
        lr.stop().await.unwrap();
    })
    .await
}
