//! Typed async client of the coordinator (CoordinatorService + AdminService), used by the admin
//! CLI and by actors.
//!
//! Every call has a deadline: the `grpc-timeout` header tells the server, and the client itself
//! gives up with `DEADLINE_EXCEEDED` when no answer arrived in time, even if the peer accepted the
//! connection and then never spoke (design.md: "no hang is silent"). The channel connects lazily,
//! so constructing a client never blocks.

use std::future::Future;
use std::time::Duration;

use deepsearch_proto::v1 as pb;
use pb::admin_service_client::AdminServiceClient;
use pb::coordinator_service_client::CoordinatorServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::error::{Error, Result};

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Deadline of every call. Default 10 s.
    pub timeout: Duration,
    /// TCP connect deadline. Default 5 s.
    pub connect_timeout: Duration,
    /// Bearer token for admin calls (none = admin calls go out without one and are refused).
    pub admin_token: Option<String>,
    /// Largest message sent or accepted. Default 4 MiB.
    pub max_message_bytes: usize,
    /// PEM of the CA that signed the server certificate; set = connect with TLS.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// Server name to verify in TLS (default: the host of the address).
    pub tls_domain: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            admin_token: None,
            max_message_bytes: 4 * 1024 * 1024,
            tls_ca_pem: None,
            tls_domain: None,
        }
    }
}

/// A cloneable client of one coordinator.
#[derive(Clone)]
pub struct CoordinatorClient {
    coord: CoordinatorServiceClient<Channel>,
    admin: AdminServiceClient<Channel>,
    opts: ClientOptions,
}

impl CoordinatorClient {
    /// A client of `addr` ("host:port" or a URI); connects on first use. Must be called within
    /// a Tokio runtime (the channel spawns its connection task).
    pub fn connect_lazy(addr: &str, opts: ClientOptions) -> Result<Self> {
        let scheme = if opts.tls_ca_pem.is_some() { "https" } else { "http" };
        let uri = if addr.contains("://") { addr.to_string() } else { format!("{scheme}://{addr}") };
        let mut ep = Endpoint::from_shared(uri.clone())
            .map_err(|e| Error::InvalidArgument(format!("coordinator address {addr:?}: {e}")))?
            // No `Endpoint::timeout`: it reports CANCELLED; `within` gives DEADLINE_EXCEEDED.
            .connect_timeout(opts.connect_timeout);
        if let Some(ca) = &opts.tls_ca_pem {
            ep = tls_endpoint(ep, ca, opts.tls_domain.clone())?;
        }
        let channel = ep.connect_lazy();
        let max = opts.max_message_bytes;
        Ok(CoordinatorClient {
            coord: CoordinatorServiceClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            admin: AdminServiceClient::new(channel)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            opts,
        })
    }

    fn request<T>(&self, msg: T, admin: bool) -> Result<Request<T>, Status> {
        let mut r = Request::new(msg);
        r.set_timeout(self.opts.timeout);
        if admin {
            if let Some(t) = &self.opts.admin_token {
                let v = format!("Bearer {t}")
                    .parse()
                    .map_err(|_| Status::invalid_argument("admin token is not valid header text"))?;
                r.metadata_mut().insert("authorization", v);
            }
        }
        Ok(r)
    }

    async fn within<T>(&self, fut: impl Future<Output = Result<Response<T>, Status>>) -> Result<T, Status> {
        let started = std::time::Instant::now();
        let late = || {
            Status::deadline_exceeded(format!(
                "coordinator did not answer within {:?}",
                self.opts.timeout
            ))
        };
        match tokio::time::timeout(self.opts.timeout, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            // tonic's own enforcement of the grpc-timeout header reports CANCELLED.
            Ok(Err(s)) if s.code() == tonic::Code::Cancelled && started.elapsed() >= self.opts.timeout => {
                Err(late())
            }
            // A broken connection (e.g. the coordinator restarted) is retryable: UNAVAILABLE.
            Ok(Err(s)) if is_transport_error(&s) => {
                Err(Status::unavailable(format!("coordinator unreachable: {s}")))
            }
            Ok(Err(s)) => Err(s),
            Err(_) => Err(late()),
        }
    }

    /// `RegisterActor`.
    pub async fn register_actor(&self, actor_name: &str, capacity: u32, policy_version: u64) -> Result<pb::RegisterActorResponse, Status> {
        let req = self.request(
            pb::RegisterActorRequest { actor_name: actor_name.into(), capacity, policy_version },
            false,
        )?;
        let mut c = self.coord.clone();
        self.within(c.register_actor(req)).await
    }

    /// `Heartbeat`.
    pub async fn heartbeat(&self, actor_id: &str, lease_ids: Vec<String>, policy_version: u64) -> Result<pb::HeartbeatResponse, Status> {
        let req = self.request(pb::HeartbeatRequest { actor_id: actor_id.into(), lease_ids, policy_version }, false)?;
        let mut c = self.coord.clone();
        self.within(c.heartbeat(req)).await
    }

    /// `LeaseWork`.
    pub async fn lease_work(&self, actor_id: &str, max_items: u32) -> Result<pb::LeaseWorkResponse, Status> {
        let req = self.request(pb::LeaseWorkRequest { actor_id: actor_id.into(), max_items }, false)?;
        let mut c = self.coord.clone();
        self.within(c.lease_work(req)).await
    }

    /// `ReportOutcome`.
    pub async fn report_outcome(&self, report: pb::ReportOutcomeRequest) -> Result<pb::ReportOutcomeResponse, Status> {
        let req = self.request(report, false)?;
        let mut c = self.coord.clone();
        self.within(c.report_outcome(req)).await
    }

    /// `GetPolicyVersion`.
    pub async fn get_policy_version(&self) -> Result<pb::GetPolicyVersionResponse, Status> {
        let req = self.request(pb::GetPolicyVersionRequest {}, false)?;
        let mut c = self.coord.clone();
        self.within(c.get_policy_version(req)).await
    }

    /// `PublishPolicyVersion`.
    pub async fn publish_policy_version(&self, policy_version: u64, location: &str) -> Result<pb::PublishPolicyVersionResponse, Status> {
        let req = self.request(
            pb::PublishPolicyVersionRequest { policy_version, location: location.into() },
            false,
        )?;
        let mut c = self.coord.clone();
        self.within(c.publish_policy_version(req)).await
    }

    /// Admin `GetStatus`.
    pub async fn status(&self) -> Result<pb::GetStatusResponse, Status> {
        let req = self.request(pb::GetStatusRequest {}, true)?;
        let mut c = self.admin.clone();
        self.within(c.get_status(req)).await
    }

    /// Admin `ShowProblem`.
    pub async fn show_problem(&self, problem_id: &str) -> Result<pb::ShowProblemResponse, Status> {
        let req = self.request(pb::ShowProblemRequest { problem_id: problem_id.into() }, true)?;
        let mut c = self.admin.clone();
        self.within(c.show_problem(req)).await
    }

    /// Admin `ExportCache`: every entry, collected within the deadline.
    pub async fn export_cache(&self) -> Result<Vec<pb::CacheEntry>, Status> {
        let req = self.request(pb::ExportCacheRequest {}, true)?;
        let mut c = self.admin.clone();
        let fut = async move {
            let mut stream = c.export_cache(req).await?.into_inner();
            let mut out = Vec::new();
            while let Some(msg) = stream.message().await? {
                if let Some(e) = msg.entry {
                    out.push(e);
                }
            }
            Ok(Response::new(out))
        };
        self.within(fut).await
    }

    /// Admin `ImportCache`; returns (imported, skipped).
    pub async fn import_cache(&self, entries: Vec<pb::CacheEntry>) -> Result<pb::ImportCacheResponse, Status> {
        let msgs = entries.into_iter().map(|e| pb::ImportCacheRequest { entry: Some(e) });
        let req = self.request(futures::stream::iter(msgs), true)?;
        let mut c = self.admin.clone();
        self.within(c.import_cache(req)).await
    }

    /// Admin `Pause`.
    pub async fn pause(&self) -> Result<pb::PauseResponse, Status> {
        let req = self.request(pb::PauseRequest {}, true)?;
        let mut c = self.admin.clone();
        self.within(c.pause(req)).await
    }

    /// Admin `Resume`.
    pub async fn resume(&self) -> Result<pb::ResumeResponse, Status> {
        let req = self.request(pb::ResumeRequest {}, true)?;
        let mut c = self.admin.clone();
        self.within(c.resume(req)).await
    }

    /// Admin `Drain`.
    pub async fn drain(&self) -> Result<pb::DrainResponse, Status> {
        let req = self.request(pb::DrainRequest {}, true)?;
        let mut c = self.admin.clone();
        self.within(c.drain(req)).await
    }

    /// Admin `SetFilter`.
    pub async fn set_filter(&self, delta: Option<f64>, k: Option<u32>, strict: Option<bool>) -> Result<pb::SetFilterResponse, Status> {
        let req = self.request(pb::SetFilterRequest { delta, k, strict }, true)?;
        let mut c = self.admin.clone();
        self.within(c.set_filter(req)).await
    }
}

/// Whether tonic produced this status from a transport failure rather than the server.
fn is_transport_error(s: &Status) -> bool {
    use std::error::Error as _;
    s.code() == tonic::Code::Unknown
        && s.source().is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some())
}

#[cfg(feature = "tls")]
fn tls_endpoint(ep: Endpoint, ca: &[u8], domain: Option<String>) -> Result<Endpoint> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca));
    if let Some(d) = domain {
        tls = tls.domain_name(d);
    }
    Ok(ep.tls_config(tls)?)
}

#[cfg(not(feature = "tls"))]
fn tls_endpoint(_ep: Endpoint, _ca: &[u8], _domain: Option<String>) -> Result<Endpoint> {
    Err(Error::Config("TLS requested but this build lacks the `tls` feature".into()))
}
