//! Register → lease → report → exactly-once → expiry and re-lease → restart, over real gRPC on
//! 127.0.0.1:0 (issue #6 items 1–2).

mod common;

use std::time::Duration;

use common::*;
use deepsearch_proto::v1 as pb;

#[tokio::test]
async fn filter_search_cache_round_exactly_once_and_restart() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(dir.path()), problems(2)).await;
        let c = server.client();
        let reg = c.register_actor("a1", 4, 0).await.unwrap();
        assert_eq!(reg.actor_id, "a1");

        // Round 0: both problems need the filter first (K = 4 direct samples).
        let items = c.lease_work("a1", 4).await.unwrap().items;
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(|i| mode(i) == pb::WorkMode::Filter && i.num_samples == 4 && i.round == 0));
        let p0 = items.iter().find(|i| i.problem.as_ref().unwrap().id == "p0").unwrap().clone();
        let p1 = items.iter().find(|i| i.problem.as_ref().unwrap().id == "p1").unwrap().clone();

        // Pass1@4 = 1/4 = 0.25 ≤ δ → hard; 4/4 → retired.
        let r = c.report_outcome(report("a1", &p0, 4, 1)).await.unwrap();
        assert_eq!((disposition(&r), r.problem_status.as_str()), (pb::ReportDisposition::Accepted, "hard"));
        // The same report again: acknowledged and ignored.
        let dup = c.report_outcome(report("a1", &p0, 4, 1)).await.unwrap();
        assert_eq!(disposition(&dup), pb::ReportDisposition::Duplicate);
        let r = c.report_outcome(report("a1", &p1, 4, 4)).await.unwrap();
        assert_eq!(r.problem_status, "retired");

        // p0 is hard → search; 1 correct of 8 rollouts (0 < 1/8 ≤ 0.25) → cached (released rule).
        let items = c.lease_work("a1", 4).await.unwrap().items;
        assert_eq!(items.len(), 1);
        assert_eq!(mode(&items[0]), pb::WorkMode::Search);
        let mut rep = report("a1", &items[0], 8, 1);
        rep.solved = true;
        rep.solutions = vec![solution("p0 solution")];
        let r = c.report_outcome(rep).await.unwrap();
        assert_eq!(r.problem_status, "cached", "{}", r.reason);

        // Round 1: re-filter the hard set (cached included) with the newest policy, then replay.
        c.publish_policy_version(1, "test").await.unwrap();
        let items = c.lease_work("a1", 4).await.unwrap().items;
        assert_eq!(items.len(), 1);
        assert_eq!((mode(&items[0]), items[0].round, items[0].policy_version), (pb::WorkMode::Filter, 1, 1));
        let r = c.report_outcome(report("a1", &items[0], 4, 0)).await.unwrap();
        assert_eq!(r.problem_status, "cached");
        let items = c.lease_work("a1", 4).await.unwrap().items;
        assert_eq!(mode(&items[0]), pb::WorkMode::Cached);
        assert_eq!(items[0].cached_solutions.len(), 1);
        assert_eq!((items[0].num_samples, items[0].group_size), (7, 8));
        let last = items[0].clone();
        c.report_outcome(report("a1", &last, 7, 2)).await.unwrap();

        let status = c.status().await.unwrap();
        assert_eq!(status.problems_by_status["cached"], 1);
        assert_eq!(status.problems_by_status["retired"], 1);
        assert_eq!(status.cache_solutions, 1);
        assert_eq!(status.results_accepted, 5);
        // Leased search + cached items: 1 search, 1 cached → hit rate 0.5.
        assert!((status.cache_hit_rate - 0.5).abs() < 1e-9);

        // Restart on the same database: records, cache and accepted ids survive.
        server.stop().await;
        let server = TestServer::start(config(dir.path()), problems(2)).await;
        let c = server.client();
        let shown = c.show_problem("p0").await.unwrap();
        assert_eq!(shown.status, "cached");
        assert_eq!(shown.history.len(), 2);
        assert_eq!((shown.history[0].correct, shown.history[1].policy_version), (1, 1));
        assert_eq!(shown.cached_solutions.len(), 1);
        assert_eq!(shown.cached_solutions[0].text, "p0 solution");
        assert_eq!(shown.results, 4);
        assert_eq!(c.show_problem("p1").await.unwrap().status, "retired");
        assert_eq!(c.get_policy_version().await.unwrap().policy_version, 1);
        // A report of an already accepted lease is still a duplicate after the restart.
        c.register_actor("a1", 4, 1).await.unwrap();
        let dup = c.report_outcome(report("a1", &last, 7, 2)).await.unwrap();
        assert_eq!(disposition(&dup), pb::ReportDisposition::Duplicate);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn expired_lease_is_re_leased_and_late_report_ignored() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(dir.path()), problems(1)).await;
        let c = server.client();
        c.register_actor("slow", 1, 0).await.unwrap();
        c.register_actor("fast", 1, 0).await.unwrap();
        let first = c.lease_work("slow", 1).await.unwrap().items.remove(0);

        // No heartbeat from "slow": its 400 ms lease expires and "fast" gets the problem.
        let second = poll(Duration::from_secs(5), Duration::from_millis(20), || async {
            c.lease_work("fast", 1).await.unwrap().items.pop()
        })
        .await;
        assert_eq!(second.problem.as_ref().unwrap().id, "p0");
        assert_ne!(second.lease_id, first.lease_id);

        let late = c.report_outcome(report("slow", &first, 4, 0)).await.unwrap();
        assert_eq!(disposition(&late), pb::ReportDisposition::Expired);
        let hb = c.heartbeat("slow", vec![first.lease_id.clone()], 0).await.unwrap();
        assert_eq!(hb.lost_lease_ids, vec![first.lease_id.clone()]);
        let ok = c.report_outcome(report("fast", &second, 4, 0)).await.unwrap();
        assert_eq!(disposition(&ok), pb::ReportDisposition::Accepted);
        let shown = c.show_problem("p0").await.unwrap();
        assert_eq!((shown.attempts, shown.results, shown.history.len()), (2, 1, 1));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn heartbeats_keep_a_lease_past_its_ttl() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        // A 1 s TTL leaves room for a loaded CI machine to delay a heartbeat.
        let mut cfg = config(dir.path());
        cfg.schedule.lease_ttl = Duration::from_secs(1);
        let server = TestServer::start(cfg, problems(1)).await;
        let c = server.client();
        c.register_actor("a", 1, 0).await.unwrap();
        let item = c.lease_work("a", 1).await.unwrap().items.remove(0);
        let start = tokio::time::Instant::now();
        // 2.5 s of heartbeats every 100 ms: 2.5x the lease TTL.
        while start.elapsed() < Duration::from_millis(2500) {
            let hb = c.heartbeat("a", vec![item.lease_id.clone()], 0).await.unwrap();
            assert!(hb.lost_lease_ids.is_empty());
            assert!(hb.lease_deadlines_unix_ms[0] >= item.deadline_unix_ms);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = c.report_outcome(report("a", &item, 4, 0)).await.unwrap();
        assert_eq!(disposition(&r), pb::ReportDisposition::Accepted);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn fair_shares_pause_resume_drain() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(dir.path()), problems(3)).await;
        let c = server.client();
        c.register_actor("big", 4, 0).await.unwrap();
        c.register_actor("small", 2, 0).await.unwrap();
        // 3 items, capacities 4 + 2: shares ⌈3·4/6⌉ = 2 and ⌈3·2/6⌉ = 1.
        assert_eq!(c.lease_work("big", 4).await.unwrap().items.len(), 2);
        assert_eq!(c.lease_work("small", 4).await.unwrap().items.len(), 1);
        assert_eq!(c.lease_work("big", 4).await.unwrap().items.len(), 0);

        let paused = c.pause().await.unwrap();
        assert_eq!(paused.state, pb::SchedulingState::Paused as i32);
        let r = c.lease_work("small", 1).await.unwrap();
        assert!(r.items.is_empty());
        assert_eq!(r.state, pb::SchedulingState::Paused as i32);
        c.resume().await.unwrap();
        let d = c.drain().await.unwrap();
        assert_eq!((d.state, d.leases_outstanding), (pb::SchedulingState::Draining as i32, 3));
        let status = c.status().await.unwrap();
        assert_eq!(status.state, pb::SchedulingState::Draining as i32);
        assert_eq!(status.actors.len(), 2);
        assert_eq!(status.actors[0].lease_ids.len(), 2);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn live_filter_change_applies_to_next_reports() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(dir.path()), problems(2)).await;
        let c = server.client();
        c.register_actor("a", 2, 0).await.unwrap();
        let items = c.lease_work("a", 2).await.unwrap().items;
        // δ = 0.5, strict: 2/4 = 0.5 is not < 0.5 → retired; 1/4 → hard.
        let f = c.set_filter(Some(0.5), Some(4), Some(true)).await.unwrap().filter.unwrap();
        assert_eq!((f.delta, f.k, f.strict), (0.5, 4, true));
        assert_eq!(c.report_outcome(report("a", &items[0], 4, 2)).await.unwrap().problem_status, "retired");
        assert_eq!(c.report_outcome(report("a", &items[1], 4, 1)).await.unwrap().problem_status, "hard");
        // K = 8 from now on, and it survives a restart.
        c.set_filter(None, Some(8), None).await.unwrap();
        server.stop().await;
        let server = TestServer::start(config(dir.path()), vec![]).await;
        let f = server.client().status().await.unwrap().filter.unwrap();
        assert_eq!((f.delta, f.k, f.strict), (0.5, 8, true));
        server.stop().await;
    })
    .await;
}
