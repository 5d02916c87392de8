//! Bad input gets the right gRPC status and leaves everything else working (issue #6 "Must
//! show": malformed or oversized messages, unknown ids, wrong or missing admin token).

mod common;

use common::*;
use deepsearch_coordinator::{ClientOptions, CoordinatorClient};
use deepsearch_proto::v1 as pb;
use tonic::Code;

#[tokio::test]
async fn admin_token_is_required() {
    let (logs, _guard) = capture_logs();
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(dir.path()), problems(1)).await;
        let missing = client(server.addr, None);
        assert_eq!(missing.status().await.unwrap_err().code(), Code::Unauthenticated);
        assert_eq!(missing.pause().await.unwrap_err().code(), Code::Unauthenticated);
        let wrong = client(server.addr, Some("not-the-token"));
        assert_eq!(wrong.status().await.unwrap_err().code(), Code::Unauthenticated);
        assert_eq!(wrong.export_cache().await.unwrap_err().code(), Code::Unauthenticated);
        // Actor RPCs need no admin token, and the refused calls changed nothing.
        missing.register_actor("a", 1, 0).await.unwrap();
        assert_eq!(missing.lease_work("a", 1).await.unwrap().items.len(), 1);
        let status = server.client().status().await.unwrap();
        assert_eq!(status.state, pb::SchedulingState::Running as i32);
        server.stop().await;
    })
    .await;
    let text = logs.text();
    assert!(text.contains("admin call refused: missing bearer token"), "{text}");
    assert!(text.contains("admin call refused: wrong token"), "{text}");
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(dir.path()), problems(1)).await;
        let c = server.client();
        assert_eq!(c.lease_work("ghost", 1).await.unwrap_err().code(), Code::NotFound);
        assert_eq!(c.heartbeat("ghost", vec![], 0).await.unwrap_err().code(), Code::NotFound);
        c.register_actor("a", 1, 0).await.unwrap();
        let bogus = pb::ReportOutcomeRequest {
            actor_id: "a".into(),
            lease_id: "0123456789abcdef".into(),
            samples: 4,
            ..Default::default()
        };
        assert_eq!(c.report_outcome(bogus).await.unwrap_err().code(), Code::NotFound);
        assert_eq!(c.show_problem("nope").await.unwrap_err().code(), Code::NotFound);
        // A lease reported by another actor is refused, and the holder can still report it.
        let item = c.lease_work("a", 1).await.unwrap().items.remove(0);
        c.register_actor("b", 1, 0).await.unwrap();
        let err = c.report_outcome(report("b", &item, 4, 0)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        c.report_outcome(report("a", &item, 4, 0)).await.unwrap();
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn malformed_requests_are_invalid_argument() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(config(dir.path()), problems(1)).await;
        let c = server.client();
        assert_eq!(c.register_actor("a", 0, 0).await.unwrap_err().code(), Code::InvalidArgument);
        c.register_actor("a", 1, 0).await.unwrap();
        assert_eq!(c.lease_work("a", 0).await.unwrap_err().code(), Code::InvalidArgument);
        let item = c.lease_work("a", 1).await.unwrap().items.remove(0);
        // correct > samples; missing lease id; more samples than asked; a wrong "solution".
        let bad = [
            report("a", &item, 2, 3),
            pb::ReportOutcomeRequest { lease_id: String::new(), ..report("a", &item, 4, 0) },
            report("a", &item, 9, 0),
            pb::ReportOutcomeRequest {
                solutions: vec![pb::Solution { verdict: pb::Verdict::Wrong as i32, ..solution("x") }],
                ..report("a", &item, 4, 0)
            },
        ];
        for r in bad {
            assert_eq!(c.report_outcome(r).await.unwrap_err().code(), Code::InvalidArgument);
        }
        assert_eq!(c.set_filter(Some(1.5), None, None).await.unwrap_err().code(), Code::InvalidArgument);
        assert_eq!(c.set_filter(None, Some(0), None).await.unwrap_err().code(), Code::InvalidArgument);
        // None of that touched the lease: the valid report is accepted.
        let ok = c.report_outcome(report("a", &item, 4, 1)).await.unwrap();
        assert_eq!(disposition(&ok), pb::ReportDisposition::Accepted);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn oversized_message_is_refused() {
    let (logs, _guard) = capture_logs();
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.server.max_message_bytes = 64 * 1024;
        let server = TestServer::start(cfg, problems(1)).await;
        // The client allows 1 MiB so the server's 64 KiB limit is what refuses it.
        let big_client = CoordinatorClient::connect_lazy(
            &server.addr.to_string(),
            ClientOptions { max_message_bytes: 1 << 20, admin_token: Some(TOKEN.into()), ..ClientOptions::default() },
        )
        .unwrap();
        big_client.register_actor("a", 1, 0).await.unwrap();
        let item = big_client.lease_work("a", 1).await.unwrap().items.remove(0);
        let mut r = report("a", &item, 4, 1);
        r.error = "x".repeat(200 * 1024);
        // tonic answers a too-large message with OUT_OF_RANGE.
        assert_eq!(big_client.report_outcome(r).await.unwrap_err().code(), Code::OutOfRange);
        let ok = big_client.report_outcome(report("a", &item, 4, 1)).await.unwrap();
        assert_eq!(disposition(&ok), pb::ReportDisposition::Accepted);
        server.stop().await;
    })
    .await;
    // The refusal happens before any handler runs; the log layer writes its line (11 = OUT_OF_RANGE).
    let text = logs.text();
    assert!(text.contains("rpc answered with an error status") && text.contains("grpc_status=11"), "{text}");
}
