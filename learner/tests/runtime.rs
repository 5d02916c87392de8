//! Learner runtime over real sockets (issue #6 item 4): push → acks/credits → a step when a step's
//! worth of groups is complete → the version announced → weights downloaded and verified;
//! malformed, stale and duplicate trajectories counted while the stream goes on; health.

mod runtime_support;

use std::time::Duration;

use deepsearch_learner::runtime::LearnerRuntimeConfig;
use deepsearch_proto::v1 as pb;
use deepsearch_proto::weights::download_and_verify;
use runtime_support::*;

#[tokio::test]
async fn push_step_announce_download() {
    within(30, async {
        let (trainer, seen) = VecTrainer::new(100, Duration::ZERO);
        let lr = start(LearnerRuntimeConfig::for_test(), trainer).await;
        let mut c = client(lr.addr).await;

        let mut watch = c.watch_policy_versions(pb::WatchPolicyVersionsRequest { after_version: 0 }).await.unwrap().into_inner();
        let v0 = watch.message().await.unwrap().unwrap();
        assert_eq!(v0.policy_version, 0);
        // Before any step the newest version is the trainer's initial weights.
        let (v, initial) = download_and_verify(&mut c, 0).await.unwrap();
        assert_eq!((v, weights_of(&initial)[..2].to_vec()), (0, vec![0.0, 1.0]));

        let mut p = Pusher::open(&mut c).await;
        assert_eq!(p.last.credits, 8);
        // Two complete groups of 2 (prompts_per_step = 2) plus one member of a third.
        for (id, g) in [("a1", "ga"), ("b1", "gb"), ("a2", "ga"), ("c1", "gc")] {
            p.send(Some(traj(id, g, 2, 0))).await;
        }
        let last = *p.flush().await;
        assert_eq!((last.acked_sequence, last.rejected_invalid, last.dropped_stale), (4, 0, 0));
        assert!(seen.lock().unwrap().is_empty(), "no step before 2 complete groups");
        p.send(Some(traj("b2", "gb", 2, 0))).await;
        p.flush().await;

        let v1 = watch.message().await.unwrap().unwrap();
        assert_eq!(v1.policy_version, 1);
        assert_eq!(seen.lock().unwrap().clone(), vec![vec![2, 2]]);

        let (v, bytes) = download_and_verify(&mut c, 0).await.unwrap();
        assert_eq!(v, 1);
        assert_eq!(bytes.len() as u64, v1.total_bytes);
        assert_eq!(deepsearch_proto::weights::sha256_hex(&bytes), v1.sha256);
        assert_eq!(weights_of(&bytes)[..3], [1.0, 2.0, 3.0]);
        let (_, by_number) = download_and_verify(&mut c, 1).await.unwrap();
        assert_eq!(by_number, bytes);
        let got = c.get_policy_version(pb::GetLearnerPolicyVersionRequest {}).await.unwrap().into_inner();
        assert_eq!((got.policy_version, got.step), (1, 1));

        // Two more steps: keep_versions = 2, so version 1 is gone (0 was gone after step 2).
        for s in 0..2 {
            for g in 0..2 {
                for k in 0..2 {
                    p.send(Some(traj(&format!("s{s}g{g}k{k}"), &format!("s{s}g{g}"), 2, 1 + s))).await;
                }
            }
            p.flush().await;
            assert_eq!(watch.message().await.unwrap().unwrap().policy_version, 2 + s);
        }
        let err = download_and_verify(&mut c, 1).await.unwrap_err().to_string();
        assert!(err.contains("not kept"), "{err}");
        let (v, b) = download_and_verify(&mut c, 3).await.unwrap();
        assert_eq!((v, weights_of(&b)[0]), (3, 3.0));

        let m = metrics(lr.metrics_addr).await;
        assert_eq!(m["deepsearch_learner_trajectories_total{disposition=\"accepted\"}"], 13.0);
        assert_eq!(m["deepsearch_learner_steps_total"], 3.0);
        assert_eq!(m["deepsearch_learner_policy_version"], 3.0);
        assert_eq!(m["deepsearch_learner_queue_depth"], 1.0, "c1 waits for its group");

        let mut health = tonic_health::pb::health_client::HealthClient::new(
            tonic::transport::Endpoint::from_shared(format!("http://{}", lr.addr)).unwrap().connect_lazy(),
        );
        let h = health
            .check(tonic_health::pb::HealthCheckRequest { service: "deepsearch.v1.LearnerService".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(h.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
        drop(p);
        lr.stop().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn malformed_stale_and_duplicates_are_counted_and_the_stream_goes_on() {
    within(30, async {
        let cfg = LearnerRuntimeConfig { prompts_per_step: 1, max_staleness: 0, ..LearnerRuntimeConfig::for_test() };
        let (trainer, seen) = VecTrainer::new(4, Duration::ZERO);
        let lr = start(cfg, trainer).await;
        let mut c = client(lr.addr).await;
        let mut watch = c.watch_policy_versions(pb::WatchPolicyVersionsRequest { after_version: 0 }).await.unwrap().into_inner();
        watch.message().await.unwrap();
        let mut p = Pusher::open(&mut c).await;

        let mut bad = traj("x1", "gx", 1, 0);
        bad.token_scores.pop();
        p.send(Some(bad)).await;
        let mut no_verdict = traj("x2", "gx", 1, 0);
        no_verdict.verdict = pb::Verdict::Unspecified as i32;
        p.send(Some(no_verdict)).await;
        p.send(None).await;
        let future = traj("x3", "gx", 1, 7);
        p.send(Some(future)).await;
        let r = *p.flush().await;
        assert_eq!((r.acked_sequence, r.rejected_invalid), (4, 4));

        // The stream still works: a group of one → a step → version 1.
        p.send(Some(traj("ok1", "g1", 1, 0))).await;
        p.flush().await;
        assert_eq!(watch.message().await.unwrap().unwrap().policy_version, 1);
        // Version 0 is now stale (max_staleness 0): dropped and counted.
        p.send(Some(traj("old", "g2", 1, 0))).await;
        assert_eq!(p.flush().await.dropped_stale, 1);

        // Exactly-once: re-sent after a reconnect, acknowledged but ignored.
        drop(p);
        let mut p = Pusher::open(&mut c).await;
        p.send(Some(traj("ok1", "g1", 1, 0))).await;
        p.send(Some(traj("ok2", "g3", 2, 1))).await;
        p.send(Some(traj("ok2", "g3", 2, 1))).await;
        let r = *p.flush().await;
        assert_eq!((r.acked_sequence, r.rejected_invalid, r.dropped_stale), (3, 0, 0));
        assert_eq!(seen.lock().unwrap().len(), 1, "no second step: g3 has one distinct member");
        let m = metrics(lr.metrics_addr).await;
        assert_eq!(m["deepsearch_learner_trajectories_total{disposition=\"duplicate\"}"], 2.0);
        assert_eq!(m["deepsearch_learner_trajectories_total{disposition=\"rejected\"}"], 4.0);
        assert_eq!(m["deepsearch_learner_trajectories_total{disposition=\"stale\"}"], 1.0);
        assert_eq!(m["deepsearch_learner_queue_depth"], 1.0);

        // A sequence gap ends the stream with INVALID_ARGUMENT.
        p.send_raw(9, traj("gap", "g4", 1, 1)).await;
        let err = loop {
            match p.read().await {
                Ok(()) => continue,
                Err(s) => break s,
            }
        };
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        lr.stop().await.unwrap();
    })
    .await
}
