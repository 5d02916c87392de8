//! A peer that stops answering gives a deadline error, not a hang (issue #6 "Must show").

mod common;

use std::time::Duration;

use common::with_timeout;
use deepsearch_coordinator::{ClientOptions, CoordinatorClient};
use tonic::Code;

#[tokio::test]
async fn silent_peer_gives_deadline_exceeded() {
    with_timeout(async {
        // Accepts TCP connections and never says a word.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let timeout = Duration::from_millis(300);
        let c = CoordinatorClient::connect_lazy(
            &addr.to_string(),
            ClientOptions { timeout, ..ClientOptions::default() },
        )
        .unwrap();
        let start = std::time::Instant::now();
        let err = c.register_actor("a", 1, 0).await.unwrap_err();
        let took = start.elapsed();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
        // Well below the 30 s test timeout: an error, not a hang (slack for a loaded machine).
        assert!(took >= timeout && took < timeout * 10, "took {took:?}");
        let err = c.lease_work("a", 1).await.unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
        hold.abort();
    })
    .await;
}
