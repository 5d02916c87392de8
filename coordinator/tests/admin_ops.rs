//! Admin operations, metrics, health checking and reflection (issue #6 items 1, 5, 6).

mod common;

use std::time::Duration;

use common::*;
use deepsearch_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn cache_one(c: &deepsearch_coordinator::CoordinatorClient) -> String {
    c.register_actor("a", 1, 0).await.unwrap();
    let f = c.lease_work("a", 1).await.unwrap().items.remove(0);
    c.report_outcome(report("a", &f, 4, 0)).await.unwrap();
    let s = c.lease_work("a", 1).await.unwrap().items.remove(0);
    let mut rep = report("a", &s, 8, 2);
    rep.solutions = vec![solution("first"), solution("second")];
    assert_eq!(c.report_outcome(rep).await.unwrap().problem_status, "cached");
    s.problem.unwrap().id
}

#[tokio::test]
async fn cache_export_then_import_into_a_fresh_coordinator() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(&dir.path().join("a")), problems(1)).await;
        let id = cache_one(&server.client()).await;
        let exported = server.client().export_cache().await.unwrap();
        assert_eq!(exported.len(), 1);
        assert_eq!(exported[0].problem_id, id);
        assert_eq!(exported[0].solutions.len(), 2);
        assert!(exported[0].reason.contains("released rule"), "{}", exported[0].reason);
        server.stop().await;

        // A coordinator without the problem: the entry carries it, so it is added as cached.
        let fresh = TestServer::start(config(&dir.path().join("b")), vec![]).await;
        let c = fresh.client();
        let mut orphan = exported[0].clone();
        orphan.problem_id = "unknown".into();
        orphan.problem = None;
        let r = c.import_cache(vec![exported[0].clone(), orphan]).await.unwrap();
        assert_eq!((r.imported, r.skipped), (1, 1));
        let shown = c.show_problem(&id).await.unwrap();
        assert_eq!(shown.status, "cached");
        assert_eq!(shown.cached_solutions.len(), 2);
        fresh.stop().await;
    })
    .await;
}

#[tokio::test]
async fn metrics_health_and_reflection_are_served() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let maddr = metrics.local_addr().unwrap();
        let server = TestServer::start_with_metrics(config(dir.path()), problems(1), Some(metrics)).await;
        cache_one(&server.client()).await;

        // Gauges refresh on the sweep (every 50 ms in tests): poll until the cache shows up.
        let body = poll(Duration::from_secs(5), Duration::from_millis(50), || async {
            let mut s = tokio::net::TcpStream::connect(maddr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).await.unwrap();
            body.contains("deepsearch_coordinator_cache_problems 1").then_some(body)
        })
        .await;
        for needle in [
            "deepsearch_coordinator_problems{status=\"cached\"} 1",
            "deepsearch_coordinator_hard_set_size 1",
            "deepsearch_coordinator_queue_depth{mode=\"filter\"} 0",
            "deepsearch_coordinator_cache_hit_rate 0",
            "deepsearch_coordinator_reports_total{disposition=\"accepted\"} 2",
        ] {
            assert!(body.contains(needle), "missing {needle:?} in\n{body}");
        }

        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let resp = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "deepsearch.v1.CoordinatorService".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
            server_reflection_response::MessageResponse, ServerReflectionRequest,
        };
        let mut refl = ServerReflectionClient::new(channel);
        let req = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
        let mut stream = refl.server_reflection_info(futures::stream::iter([req])).await.unwrap().into_inner();
        let msg = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else { panic!("{msg:?}") };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        for s in ["deepsearch.v1.CoordinatorService", "deepsearch.v1.AdminService", "deepsearch.v1.LearnerService", "grpc.health.v1.Health"] {
            assert!(names.contains(&s), "{s} not in {names:?}");
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn grpo_pipeline_hands_out_sample_groups_per_round() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.schedule.pipeline = deepsearch_coordinator::config::Pipeline::Grpo;
        let server = TestServer::start(cfg, problems(2)).await;
        let c = server.client();
        c.register_actor("a", 2, 0).await.unwrap();
        for round in 0..2 {
            let items = c.lease_work("a", 2).await.unwrap().items;
            assert_eq!(items.len(), 2);
            for it in &items {
                assert_eq!((mode(it), it.num_samples, it.round), (pb::WorkMode::Sample, 8, round));
                c.report_outcome(report("a", it, 8, 3)).await.unwrap();
            }
        }
        assert_eq!(c.show_problem("p0").await.unwrap().results, 2);
        server.stop().await;
    })
    .await;
}
