//! gRPC handlers of `CoordinatorService` and `AdminService`: decode, call the core, encode.
//!
//! Validation happens in [`crate::convert`]; decisions in [`crate::decide`] via the core; errors
//! map to statuses (and log lines) in [`Error::into_status`]. The admin service is wrapped in a
//! bearer-token interceptor ([`BearerAuth`]).

use std::pin::Pin;

use deepsearch_proto::v1 as pb;
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::convert;
use crate::error::Error;
use crate::handle::{now_ms, CoreHandle};
use crate::record::{Disposition, SchedState};

/// Most cache entries accepted by one `ImportCache` stream.
pub const MAX_IMPORT_ENTRIES: usize = 1_000_000;

/// `CoordinatorService` implementation.
#[derive(Clone)]
pub struct CoordinatorSvc {
    pub(crate) core: CoreHandle,
    pub(crate) max_solutions: usize,
}

fn status_of(rpc: &'static str) -> impl Fn(Error) -> Status {
    move |e| e.into_status(rpc)
}

#[tonic::async_trait]
impl pb::coordinator_service_server::CoordinatorService for CoordinatorSvc {
    async fn register_actor(
        &self,
        req: Request<pb::RegisterActorRequest>,
    ) -> Result<Response<pb::RegisterActorResponse>, Status> {
        let r = req.into_inner();
        let err = status_of("RegisterActor");
        if r.capacity == 0 {
            return Err(err(Error::InvalidArgument("capacity must be >= 1".into())));
        }
        if r.actor_name.len() > convert::MAX_ID_LEN {
            return Err(err(Error::InvalidArgument("actor_name is too long".into())));
        }
        let reply = self
            .core
            .call(move |c| c.register(&r.actor_name, r.capacity, r.policy_version, now_ms()))
            .await
            .map_err(&err)?;
        Ok(Response::new(pb::RegisterActorResponse {
            actor_id: reply.actor_id,
            heartbeat_interval_ms: reply.heartbeat_interval_ms,
            actor_timeout_ms: reply.actor_timeout_ms,
            policy_version: reply.policy_version,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let err = status_of("Heartbeat");
        let actor = convert::id_field("actor_id", &r.actor_id).map_err(&err)?;
        let reply = self
            .core
            .try_call(move |c| c.heartbeat(&actor, &r.lease_ids, r.policy_version, now_ms()))
            .await
            .map_err(&err)?;
        Ok(Response::new(pb::HeartbeatResponse {
            lost_lease_ids: reply.lost,
            lease_deadlines_unix_ms: reply.deadlines,
            policy_version: reply.policy_version,
            state: convert::state_to_pb(reply.state) as i32,
        }))
    }

    async fn lease_work(
        &self,
        req: Request<pb::LeaseWorkRequest>,
    ) -> Result<Response<pb::LeaseWorkResponse>, Status> {
        let r = req.into_inner();
        let err = status_of("LeaseWork");
        let actor = convert::id_field("actor_id", &r.actor_id).map_err(&err)?;
        if r.max_items == 0 {
            return Err(err(Error::InvalidArgument("max_items must be >= 1".into())));
        }
        let reply = self
            .core
            .try_call(move |c| c.lease(&actor, r.max_items, now_ms()))
            .await
            .map_err(&err)?;
        let items = reply
            .items
            .into_iter()
            .map(|it| pb::WorkItem {
                lease_id: it.lease.id,
                problem: Some(convert::problem_to_pb(&it.problem)),
                mode: convert::mode_to_pb(it.lease.mode) as i32,
                num_samples: it.lease.num_samples,
                group_size: it.group_size,
                cached_solutions: it.cached.iter().map(convert::solution_to_pb).collect(),
                deadline_unix_ms: it.lease.deadline_unix_ms,
                policy_version: it.lease.policy_version,
                round: it.lease.round,
            })
            .collect();
        Ok(Response::new(pb::LeaseWorkResponse {
            items,
            retry_after_ms: reply.retry_after_ms,
            state: convert::state_to_pb(reply.state) as i32,
            exhausted: reply.exhausted,
        }))
    }

    async fn report_outcome(
        &self,
        req: Request<pb::ReportOutcomeRequest>,
    ) -> Result<Response<pb::ReportOutcomeResponse>, Status> {
        let err = status_of("ReportOutcome");
        let outcome = convert::outcome_from_pb(req.into_inner(), self.max_solutions).map_err(&err)?;
        let reply = self
            .core
            .try_call_durable(move |c| c.report(outcome, now_ms()))
            .await
            .map_err(&err)?;
        let disposition = match reply.disposition {
            Disposition::Accepted => pb::ReportDisposition::Accepted,
            Disposition::Duplicate => pb::ReportDisposition::Duplicate,
            Disposition::Expired => pb::ReportDisposition::Expired,
            Disposition::Failed => pb::ReportDisposition::Failed,
        };
        Ok(Response::new(pb::ReportOutcomeResponse {
            disposition: disposition as i32,
            problem_status: reply.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
            reason: reply.reason,
        }))
    }

    async fn get_policy_version(
        &self,
        _req: Request<pb::GetPolicyVersionRequest>,
    ) -> Result<Response<pb::GetPolicyVersionResponse>, Status> {
        let (policy_version, round) = self
            .core
            .call(|c| (c.meta.policy_version, c.meta.round))
            .await
            .map_err(status_of("GetPolicyVersion"))?;
        Ok(Response::new(pb::GetPolicyVersionResponse { policy_version, round }))
    }

    async fn publish_policy_version(
        &self,
        req: Request<pb::PublishPolicyVersionRequest>,
    ) -> Result<Response<pb::PublishPolicyVersionResponse>, Status> {
        let r = req.into_inner();
        tracing::debug!(policy_version = r.policy_version, location = %r.location, "publish policy version");
        let policy_version = self
            .core
            .try_call(move |c| c.publish_version(r.policy_version))
            .await
            .map_err(status_of("PublishPolicyVersion"))?;
        Ok(Response::new(pb::PublishPolicyVersionResponse { policy_version }))
    }
}

/// `AdminService` implementation (behind [`BearerAuth`]).
#[derive(Clone)]
pub struct AdminSvc {
    pub(crate) core: CoreHandle,
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportCacheResponse, Status>> + Send>>;

impl AdminSvc {
    async fn set_state(&self, state: SchedState, rpc: &'static str) -> Result<(i32, u64), Status> {
        let (s, n) = self
            .core
            .try_call(move |c| c.set_state(state))
            .await
            .map_err(status_of(rpc))?;
        Ok((convert::state_to_pb(s) as i32, n))
    }
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for AdminSvc {
    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let s = self
            .core
            .try_call(|c| c.status(now_ms()))
            .await
            .map_err(status_of("GetStatus"))?;
        Ok(Response::new(s))
    }

    async fn show_problem(
        &self,
        req: Request<pb::ShowProblemRequest>,
    ) -> Result<Response<pb::ShowProblemResponse>, Status> {
        let err = status_of("ShowProblem");
        let id = convert::id_field("problem_id", &req.into_inner().problem_id).map_err(&err)?;
        let r = self.core.try_call(move |c| c.show_problem(&id)).await.map_err(&err)?;
        Ok(Response::new(r))
    }

    type ExportCacheStream = ExportStream;

    async fn export_cache(
        &self,
        _req: Request<pb::ExportCacheRequest>,
    ) -> Result<Response<Self::ExportCacheStream>, Status> {
        let entries = self
            .core
            .call(|c| c.export_cache())
            .await
            .map_err(status_of("ExportCache"))?;
        tracing::info!(entries = entries.len(), "cache export");
        let stream = futures::stream::iter(
            entries.into_iter().map(|entry| Ok(pb::ExportCacheResponse { entry: Some(entry) })),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn import_cache(
        &self,
        req: Request<Streaming<pb::ImportCacheRequest>>,
    ) -> Result<Response<pb::ImportCacheResponse>, Status> {
        let err = status_of("ImportCache");
        let mut stream = req.into_inner();
        let mut entries = Vec::new();
        while let Some(msg) = stream.message().await? {
            if entries.len() >= MAX_IMPORT_ENTRIES {
                return Err(err(Error::InvalidArgument(format!(
                    "more than {MAX_IMPORT_ENTRIES} entries in one import"
                ))));
            }
            let entry = msg.entry.ok_or_else(|| {
                err(Error::InvalidArgument(format!("message {} has no entry", entries.len())))
            })?;
            entries.push(convert::import_entry_from_pb(entry).map_err(&err)?);
        }
        let (imported, skipped) = self
            .core
            .try_call(move |c| c.import_cache(entries))
            .await
            .map_err(&err)?;
        Ok(Response::new(pb::ImportCacheResponse { imported, skipped }))
    }

    async fn pause(&self, _req: Request<pb::PauseRequest>) -> Result<Response<pb::PauseResponse>, Status> {
        let (state, _) = self.set_state(SchedState::Paused, "Pause").await?;
        Ok(Response::new(pb::PauseResponse { state }))
    }

    async fn resume(&self, _req: Request<pb::ResumeRequest>) -> Result<Response<pb::ResumeResponse>, Status> {
        let (state, _) = self.set_state(SchedState::Running, "Resume").await?;
        Ok(Response::new(pb::ResumeResponse { state }))
    }

    async fn drain(&self, _req: Request<pb::DrainRequest>) -> Result<Response<pb::DrainResponse>, Status> {
        let (state, leases_outstanding) = self.set_state(SchedState::Draining, "Drain").await?;
        Ok(Response::new(pb::DrainResponse { state, leases_outstanding }))
    }

    async fn set_filter(
        &self,
        req: Request<pb::SetFilterRequest>,
    ) -> Result<Response<pb::SetFilterResponse>, Status> {
        let r = req.into_inner();
        let filter = self
            .core
            .try_call(move |c| c.set_filter(r.delta, r.k, r.strict))
            .await
            .map_err(status_of("SetFilter"))?;
        Ok(Response::new(pb::SetFilterResponse { filter: Some(filter) }))
    }
}

/// Bearer-token check for the admin service: `authorization: Bearer <token>` must match the
/// configured token. With no token configured every call is refused.
#[derive(Clone)]
pub struct BearerAuth {
    expected: Option<std::sync::Arc<str>>,
}

impl BearerAuth {
    /// Checks against `token` (`None` = refuse everything).
    pub fn new(token: Option<String>) -> Self {
        BearerAuth { expected: token.map(std::sync::Arc::from) }
    }
}

/// Equality in time independent of where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            tracing::warn!("admin call refused: no admin token configured");
            return Err(Status::unauthenticated("admin is disabled: no token configured"));
        };
        let got = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match got {
            Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(req),
            Some(_) => {
                tracing::warn!(remote = ?req.remote_addr(), "admin call refused: wrong token");
                Err(Status::unauthenticated("wrong admin token"))
            }
            None => {
                tracing::warn!(remote = ?req.remote_addr(), "admin call refused: missing bearer token");
                Err(Status::unauthenticated("missing `authorization: Bearer <token>`"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn bearer_auth_accepts_only_the_token() {
        let mut auth = BearerAuth::new(Some("s3cret".into()));
        let mut req = Request::new(());
        req.metadata_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(auth.call(req).is_ok());
        let mut req = Request::new(());
        req.metadata_mut().insert("authorization", "Bearer s3cre7".parse().unwrap());
        assert_eq!(auth.call(req).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(auth.call(Request::new(())).unwrap_err().code(), tonic::Code::Unauthenticated);
        let mut none = BearerAuth::new(None);
        assert_eq!(none.call(Request::new(())).unwrap_err().code(), tonic::Code::Unauthenticated);
    }
}
