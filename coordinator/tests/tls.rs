//! TLS on every service when certificates are given (issue #6 item 5). Fixture from
//! tests/fixtures/gen-tls.sh (self-signed for localhost / 127.0.0.1).
#![cfg(feature = "tls")]

mod common;

use std::path::PathBuf;

use common::*;
use deepsearch_coordinator::config::TlsConfig;
use deepsearch_coordinator::{ClientOptions, CoordinatorClient};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[tokio::test]
async fn tls_server_accepts_tls_clients_only() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.server.tls = Some(TlsConfig { cert: fixture("tls-test.pem"), key: fixture("tls-test.key") });
        let server = TestServer::start(cfg, problems(1)).await;
        let tls = CoordinatorClient::connect_lazy(
            &format!("localhost:{}", server.addr.port()),
            ClientOptions {
                tls_ca_pem: Some(std::fs::read(fixture("tls-test.pem")).unwrap()),
                admin_token: Some(TOKEN.into()),
                ..ClientOptions::default()
            },
        )
        .unwrap();
        tls.register_actor("a", 1, 0).await.unwrap();
        assert_eq!(tls.lease_work("a", 1).await.unwrap().items.len(), 1);
        tls.status().await.unwrap();
        // A plaintext client cannot talk to it.
        let plain = client(server.addr, Some(TOKEN));
        assert!(plain.register_actor("b", 1, 0).await.is_err());
        server.stop().await;
    })
    .await;
}
