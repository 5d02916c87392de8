//! A tower layer that logs every RPC answered with a non-OK gRPC status in the response headers
//! (issue #6 "bad input ... gets the right gRPC status and a log line").
//!
//! Handler errors are already logged with their reason by [`crate::Error::into_status`]; this
//! layer adds the line for refusals that never reach a handler: oversized or undecodable
//! messages, a missing or wrong admin token, server-side timeouts.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::Service;

/// Wraps a service in [`LogErrors`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LogErrorsLayer;

impl<S> tower_layer::Layer<S> for LogErrorsLayer {
    type Service = LogErrors<S>;

    fn layer(&self, inner: S) -> LogErrors<S> {
        LogErrors { inner }
    }
}

/// See [`LogErrorsLayer`].
#[derive(Clone, Debug)]
pub struct LogErrors<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for LogErrors<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            if let Some(code) = resp.headers().get("grpc-status") {
                if code.as_bytes() != b"0" {
                    let code = code.to_str().unwrap_or("?").to_owned();
                    let message = resp
                        .headers()
                        .get("grpc-message")
                        .and_then(|m| m.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    tracing::info!(rpc = %path, grpc_status = %code, %message, "rpc answered with an error status");
                }
            }
            Ok(resp)
        })
    }
}
