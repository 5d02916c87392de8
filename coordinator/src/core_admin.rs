//! Admin operations on the [`Core`] (issue #6 item 5): status, problem show, cache export and
//! import, pause / resume / drain, live filter changes. They return wire messages directly since
//! they exist only to be shown to an operator.

use deepsearch_proto::v1 as pb;

use crate::config::FilterConfig;
use crate::convert::{self, ImportEntry};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::record::{FilterOverride, ProblemRecord, SchedState, Status};
use crate::store::Batch;

impl Core {
    /// The status snapshot of `GetStatus`.
    pub fn status(&mut self, now: u64) -> Result<pb::GetStatusResponse> {
        self.sweep(now)?;
        let mut by_status = std::collections::HashMap::new();
        for s in Status::ALL {
            by_status.insert(s.as_str().to_string(), 0u64);
        }
        let (mut cache_problems, mut cache_solutions) = (0, 0);
        for r in self.problems.values() {
            *by_status.entry(r.status.as_str().to_string()).or_default() += 1;
            if r.status == Status::Cached {
                cache_problems += 1;
                cache_solutions += r.solutions.len() as u64;
            }
        }
        let mut queue_depth = std::collections::HashMap::new();
        for (_, _, m) in self.candidates() {
            *queue_depth.entry(m.as_str().to_string()).or_default() += 1u64;
        }
        let mut actors: Vec<pb::ActorStatus> = self
            .actors
            .iter()
            .map(|(id, a)| pb::ActorStatus {
                actor_id: id.clone(),
                capacity: a.capacity,
                lease_ids: self.leases_of(id).into_iter().map(|l| l.id.clone()).collect(),
                last_seen_ms_ago: now.saturating_sub(a.last_seen_unix_ms),
                policy_version: a.policy_version,
            })
            .collect();
        actors.sort_by(|a, b| a.actor_id.cmp(&b.actor_id));
        let window_s = 60.0;
        let tokens: u64 = self.stats.recent.iter().map(|&(_, t)| t).sum();
        Ok(pb::GetStatusResponse {
            problems_by_status: by_status,
            cache_problems,
            cache_solutions,
            cache_hit_rate: self.cache_hit_rate(),
            actors,
            leases_outstanding: self.live_by_problem.len() as u64,
            policy_version: self.meta.policy_version,
            round: self.meta.round,
            state: convert::state_to_pb(self.meta.state) as i32,
            results_per_second: self.stats.recent.len() as f64 / window_s,
            tokens_per_second: tokens as f64 / window_s,
            filter: Some(self.filter_pb()),
            queue_depth,
            results_accepted: self.stats.results_accepted,
        })
    }

    pub(crate) fn filter_pb(&self) -> pb::FilterSettings {
        pb::FilterSettings { delta: self.filter.delta, k: self.filter.k, strict: self.filter.strict }
    }

    /// One problem's record (`ShowProblem`).
    pub fn show_problem(&self, id: &str) -> Result<pb::ShowProblemResponse> {
        let r = self
            .problems
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("problem {id:?}")))?;
        Ok(pb::ShowProblemResponse {
            problem: Some(convert::problem_to_pb(&r.problem)),
            status: r.status.as_str().to_string(),
            history: r.history.iter().map(convert::pass_to_pb).collect(),
            attempts: r.attempts,
            results: r.results,
            cached_solutions: r.solutions.iter().map(convert::solution_to_pb).collect(),
            last_error: r.last_error.clone().unwrap_or_default(),
            lease_id: self.live_by_problem.get(id).cloned().unwrap_or_default(),
        })
    }

    /// Every cache entry (`ExportCache`), in problem id order.
    pub fn export_cache(&self) -> Vec<pb::CacheEntry> {
        self.problems
            .values()
            .filter(|r| r.status == Status::Cached)
            .map(convert::cache_entry_to_pb)
            .collect()
    }

    /// Imports cache entries (`ImportCache`); returns (imported, skipped).
    pub fn import_cache(&mut self, entries: Vec<ImportEntry>) -> Result<(u64, u64)> {
        let max = self.cfg.cache.max_solutions;
        let mut updated: Vec<ProblemRecord> = Vec::new();
        let mut skipped = 0;
        for e in entries {
            let base = self
                .problems
                .get(&e.problem_id)
                .cloned()
                .or_else(|| e.problem.clone().map(ProblemRecord::new));
            let Some(mut rec) = base else {
                tracing::warn!(problem_id = %e.problem_id, "cache import: unknown problem without its content; skipped");
                skipped += 1;
                continue;
            };
            rec.merge_solutions(&e.solutions, max);
            if rec.solutions.is_empty() {
                tracing::warn!(problem_id = %e.problem_id, "cache import: no correct solution; skipped");
                skipped += 1;
                continue;
            }
            rec.status = Status::Cached;
            rec.cache_reason = Some(format!("imported: {}", e.reason));
            rec.admitted_policy_version = Some(e.admitted_policy_version);
            updated.push(rec);
        }
        self.store.write(&Batch { problems: updated.iter().collect(), ..Batch::default() })?;
        let imported = updated.len() as u64;
        for r in updated {
            self.problems.insert(r.problem.id.clone(), r);
        }
        self.refresh_gauges();
        tracing::info!(imported, skipped, "cache imported");
        Ok((imported, skipped))
    }

    /// Pause, resume or drain; returns the new state and the outstanding lease count.
    pub fn set_state(&mut self, state: SchedState) -> Result<(SchedState, u64)> {
        let mut meta = self.meta.clone();
        meta.state = state;
        self.store.write(&Batch { meta: Some(&meta), ..Batch::default() })?;
        self.meta = meta;
        tracing::info!(state = ?state, "scheduling state changed");
        Ok((state, self.live_by_problem.len() as u64))
    }

    /// Changes δ, K or strictness live (persisted; wins over the config file after a restart).
    pub fn set_filter(&mut self, delta: Option<f64>, k: Option<u32>, strict: Option<bool>) -> Result<pb::FilterSettings> {
        let next = FilterOverride {
            k: k.unwrap_or(self.filter.k),
            delta: delta.unwrap_or(self.filter.delta),
            strict: strict.unwrap_or(self.filter.strict),
        };
        FilterConfig { k: next.k, delta: next.delta, strict: next.strict, refilter: self.cfg.filter.refilter }
            .validate()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut meta = self.meta.clone();
        meta.filter_override = Some(next);
        self.store.write(&Batch { meta: Some(&meta), ..Batch::default() })?;
        self.meta = meta;
        self.filter = next;
        tracing::info!(k = next.k, delta = next.delta, strict = next.strict, "filter changed");
        Ok(self.filter_pb())
    }
}
