//! Weights download integrity (issue #5 item 5): a man-in-the-middle LearnerService that flips a
//! byte of one chunk, or drops one, is caught by `download_and_verify`; the honest path passes.

mod runtime_support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use deepsearch_learner::runtime::LearnerRuntimeConfig;
use deepsearch_proto::v1 as pb;
use deepsearch_proto::weights::{download_and_verify, WeightsError};
use futures::{Stream, StreamExt};
use pb::download_weights_response::Part;
use pb::learner_service_server::{LearnerService, LearnerServiceServer};
use runtime_support::*;
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone, Copy)]
enum Tamper {
    FlipByte,
    DropChunk,
}

/// Proxies DownloadWeights to the real learner, tampering with the second chunk.
struct Mitm {
    upstream: SocketAddr,
    tamper: Tamper,
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl LearnerService for Mitm {
    type PushTrajectoriesStream = Boxed<pb::PushTrajectoriesResponse>;
    type WatchPolicyVersionsStream = Boxed<pb::WatchPolicyVersionsResponse>;
    type DownloadWeightsStream = Boxed<pb::DownloadWeightsResponse>;

    async fn push_trajectories(&self, _: Request<Streaming<pb::PushTrajectoriesRequest>>) -> Result<Response<Self::PushTrajectoriesStream>, Status> {
        Err(Status::unimplemented("mitm"))
    }
    async fn watch_policy_versions(&self, _: Request<pb::WatchPolicyVersionsRequest>) -> Result<Response<Self::WatchPolicyVersionsStream>, Status> {
        Err(Status::unimplemented("mitm"))
    }
    async fn get_policy_version(&self, _: Request<pb::GetLearnerPolicyVersionRequest>) -> Result<Response<pb::GetLearnerPolicyVersionResponse>, Status> {
        Err(Status::unimplemented("mitm"))
    }
    async fn download_weights(&self, req: Request<pb::DownloadWeightsRequest>) -> Result<Response<Self::DownloadWeightsStream>, Status> {
        let mut up = client(self.upstream).await;
        let inner = up.download_weights(req.into_inner()).await?.into_inner();
        let tamper = self.tamper;
        let mut chunks = 0;
        let s = inner.filter_map(move |m| {
            let out = match m {
                Ok(mut m) => {
                    let mut keep = true;
                    if let Some(Part::Chunk(c)) = &mut m.part {
                        chunks += 1;
                        if chunks == 2 {
                            match tamper {
                                Tamper::FlipByte => c.data[0] ^= 0x10,
                                Tamper::DropChunk => keep = false,
                            }
                        }
                    }
                    keep.then_some(Ok(m))
                }
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        });
        Ok(Response::new(Box::pin(s)))
    }
}

async fn mitm(upstream: SocketAddr, tamper: Tamper) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LearnerServiceServer::new(Mitm { upstream, tamper }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    addr
}

#[tokio::test]
async fn tampered_downloads_are_rejected() {
    within(30, async {
        let (trainer, _) = VecTrainer::new(64, Duration::ZERO);
        let lr = start(LearnerRuntimeConfig::for_test(), trainer).await; // 64-byte chunks
        let honest = download_and_verify(&mut client(lr.addr).await, 0).await.unwrap();
        assert_eq!(honest.0, 0);

        let flip = mitm(lr.addr, Tamper::FlipByte).await;
        let err = download_and_verify(&mut client(flip).await, 0).await.unwrap_err();
        assert!(matches!(err, WeightsError::Checksum { version: 0, .. }), "{err}");

        let drop = mitm(lr.addr, Tamper::DropChunk).await;
        let err = download_and_verify(&mut client(drop).await, 0).await.unwrap_err();
        assert!(matches!(err, WeightsError::Protocol { .. }), "{err}");
        assert!(err.to_string().contains("offset"), "{err}");

        let err = download_and_verify(&mut client(lr.addr).await, 5).await.unwrap_err();
        assert!(matches!(&err, WeightsError::Rpc { status, .. } if status.code() == tonic::Code::NotFound), "{err}");
        lr.stop().await.unwrap();
    })
    .await
}
