//! The coordinator's state machine: the problem pool, leases, reports, rounds (spec §7).
//!
//! [`Core`] owns all mutable state and the store. It runs on one dedicated OS thread behind a
//! [`crate::handle::CoreHandle`], so every mutation is serialised, and the fsync of each durable
//! write blocks that thread only, never the async runtime (style.md §8–9). Decisions come from the
//! pure functions of [`crate::decide`]; this file applies them: it validates against state, writes
//! the batch durably, then updates memory (a failed write changes nothing).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use deepsearch_tasks::Problem;

use crate::config::{CoordinatorConfig, Refilter};
use crate::decide::{self, ActorLoad, FilterVerdict, RoundCtx, SearchResult};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::record::{
    Disposition, FilterOverride, Lease, LeaseState, Meta, Mode, Outcome, PassAtK, ProblemRecord,
    SchedState, SolutionRecord, Status,
};
use crate::store::{Batch, Store};

/// Milliseconds of a duration (saturating).
pub(crate) fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A registered actor (in memory only: after a coordinator restart actors register again).
#[derive(Clone, Debug)]
pub struct ActorState {
    pub capacity: u32,
    pub last_seen_unix_ms: u64,
    pub policy_version: u64,
}

/// Counters behind the status RPC's hit rate and throughput.
#[derive(Default)]
pub(crate) struct Stats {
    pub cache_hits: u64,
    pub cache_lookups: u64,
    pub results_accepted: u64,
    /// (accepted at, generated tokens) of the results of the last minute.
    pub recent: VecDeque<(u64, u64)>,
}

/// Reply of [`Core::register`].
#[derive(Clone, Debug)]
pub struct RegisterReply {
    pub actor_id: String,
    pub heartbeat_interval_ms: u64,
    pub actor_timeout_ms: u64,
    pub policy_version: u64,
}

/// Reply of [`Core::heartbeat`].
#[derive(Clone, Debug)]
pub struct HeartbeatReply {
    pub lost: Vec<String>,
    pub deadlines: Vec<u64>,
    pub policy_version: u64,
    pub state: SchedState,
}

/// One leased item with what the actor needs to run it.
#[derive(Clone, Debug)]
pub struct LeasedItem {
    pub lease: Lease,
    pub problem: Problem,
    pub group_size: u32,
    pub cached: Vec<SolutionRecord>,
}

/// Reply of [`Core::lease`].
#[derive(Clone, Debug)]
pub struct LeaseReply {
    pub items: Vec<LeasedItem>,
    pub retry_after_ms: u64,
    pub state: SchedState,
    pub exhausted: bool,
}

/// Reply of [`Core::report`].
#[derive(Clone, Debug)]
pub struct ReportReply {
    pub disposition: Disposition,
    pub status: Option<Status>,
    pub reason: String,
}

/// All mutable coordinator state.
pub struct Core {
    pub(crate) cfg: CoordinatorConfig,
    pub(crate) filter: FilterOverride,
    pub(crate) store: Store,
    pub(crate) problems: BTreeMap<String, ProblemRecord>,
    pub(crate) leases: HashMap<String, Lease>,
    /// problem id → its live lease id (at most one live lease per problem).
    pub(crate) live_by_problem: HashMap<String, String>,
    /// accepted lease id → problem id.
    pub(crate) accepted: HashMap<String, String>,
    pub(crate) actors: HashMap<String, ActorState>,
    pub(crate) meta: Meta,
    pub(crate) stats: Stats,
    pub(crate) metrics: Arc<Metrics>,
    /// Group commit: accepted results written lazily and not yet fsynced. The core thread
    /// fsyncs once for every job already queued, then sends the deferred replies
    /// ([`Core::flush`]); no reply says OK before its result is on disk.
    pub(crate) pending_flush: bool,
    pub(crate) deferred: Vec<Box<dyn FnOnce(Option<String>) + Send>>,
}

impl Core {
    /// Opens the store and restores every record, lease and accepted id.
    pub fn open(cfg: CoordinatorConfig, metrics: Arc<Metrics>) -> Result<Core> {
        cfg.validate()?;
        let store = Store::open(&cfg.db_path())?;
        let loaded = store.load()?;
        let meta = loaded.meta.unwrap_or_default();
        let filter = meta.filter_override.unwrap_or(FilterOverride {
            k: cfg.filter.k,
            delta: cfg.filter.delta,
            strict: cfg.filter.strict,
        });
        let problems: BTreeMap<_, _> = loaded
            .problems
            .into_iter()
            .map(|r| (r.problem.id.clone(), r))
            .collect();
        let mut live_by_problem = HashMap::new();
        let leases: HashMap<_, _> = loaded
            .leases
            .into_iter()
            .map(|l| {
                if l.state == LeaseState::Live {
                    live_by_problem.insert(l.problem_id.clone(), l.id.clone());
                }
                (l.id.clone(), l)
            })
            .collect();
        tracing::info!(
            db = %cfg.db_path().display(),
            problems = problems.len(),
            live_leases = live_by_problem.len(),
            accepted = loaded.accepted.len(),
            round = meta.round,
            policy_version = meta.policy_version,
            "coordinator state loaded"
        );
        let core = Core {
            cfg,
            filter,
            store,
            problems,
            leases,
            live_by_problem,
            accepted: loaded.accepted,
            actors: HashMap::new(),
            meta,
            stats: Stats::default(),
            metrics,
            pending_flush: false,
            deferred: Vec::new(),
        };
        core.refresh_gauges();
        Ok(core)
    }

    /// Adds problems not yet known (as unfiltered); known ids keep their records. Returns how
    /// many were new.
    pub fn add_problems(&mut self, problems: Vec<Problem>) -> Result<usize> {
        let mut new = Vec::new();
        for p in problems {
            match self.problems.get(&p.id) {
                Some(r) if r.problem != p => {
                    tracing::warn!(problem_id = %p.id, "problem id already known with different content; keeping the stored one");
                }
                Some(_) => {}
                None => new.push(ProblemRecord::new(p)),
            }
        }
        self.store.write(&Batch { problems: new.iter().collect(), ..Batch::default() })?;
        let n = new.len();
        for r in new {
            self.problems.insert(r.problem.id.clone(), r);
        }
        self.refresh_gauges();
        Ok(n)
    }

    /// Registers (or re-registers) an actor.
    pub fn register(&mut self, name: &str, capacity: u32, policy_version: u64, now: u64) -> RegisterReply {
        let actor_id = if name.is_empty() {
            format!("actor-{:016x}", rand::random::<u64>())
        } else {
            name.to_string()
        };
        let again = self
            .actors
            .insert(
                actor_id.clone(),
                ActorState { capacity, last_seen_unix_ms: now, policy_version },
            )
            .is_some();
        tracing::info!(actor_id = %actor_id, capacity, policy_version, again, "actor registered");
        self.metrics.actors.set(self.actors.len() as i64);
        RegisterReply {
            actor_id,
            heartbeat_interval_ms: ms(self.cfg.schedule.heartbeat_interval),
            actor_timeout_ms: ms(self.cfg.schedule.actor_timeout),
            policy_version: self.meta.policy_version,
        }
    }

    fn touch(&mut self, actor_id: &str, now: u64) -> Result<&mut ActorState> {
        let a = self.actors.get_mut(actor_id).ok_or_else(|| {
            Error::NotFound(format!("actor {actor_id:?} is not registered (register again)"))
        })?;
        a.last_seen_unix_ms = now;
        Ok(a)
    }

    /// Keeps an actor alive and extends its leases; lists the ones it lost.
    pub fn heartbeat(&mut self, actor_id: &str, lease_ids: &[String], policy_version: u64, now: u64) -> Result<HeartbeatReply> {
        self.touch(actor_id, now)?.policy_version = policy_version;
        self.expire(now)?;
        let (ttl, max) = (ms(self.cfg.schedule.lease_ttl), ms(self.cfg.schedule.lease_max));
        let mut lost = Vec::new();
        let mut deadlines = Vec::new();
        for id in lease_ids {
            match self.leases.get_mut(id) {
                Some(l) if l.state == LeaseState::Live && l.actor_id == actor_id => {
                    l.deadline_unix_ms =
                        decide::extended_deadline(l.issued_unix_ms, l.deadline_unix_ms, now, ttl, max);
                    deadlines.push(l.deadline_unix_ms);
                }
                _ => lost.push(id.clone()),
            }
        }
        Ok(HeartbeatReply { lost, deadlines, policy_version: self.meta.policy_version, state: self.meta.state })
    }

    fn round_ctx(&self) -> RoundCtx {
        RoundCtx {
            round: self.meta.round,
            policy_version: self.meta.policy_version,
            refilter: self.cfg.filter.refilter,
            pipeline: self.cfg.schedule.pipeline,
        }
    }

    /// Work leasable now: (order key, problem id, mode), unsorted.
    pub(crate) fn candidates(&self) -> Vec<((u8, u64), &str, Mode)> {
        let ctx = self.round_ctx();
        self.problems
            .values()
            .filter(|r| !self.live_by_problem.contains_key(&r.problem.id))
            .filter_map(|r| {
                decide::next_mode(r, ctx)
                    .map(|m| (decide::work_order(m, r.last_leased_unix_ms), r.problem.id.as_str(), m))
            })
            .collect()
    }

    fn exhausted(&self) -> bool {
        !self.problems.is_empty() && self.problems.values().all(|r| r.status == Status::Retired)
    }

    /// Starts the next round when this one has no work left and no lease outstanding.
    fn maybe_advance_round(&mut self) -> Result<bool> {
        if self.cfg.filter.refilter == Refilter::Continuous && self.cfg.schedule.pipeline != crate::config::Pipeline::Grpo {
            return Ok(false);
        }
        if !self.live_by_problem.is_empty() || self.exhausted() || self.problems.is_empty() || !self.candidates().is_empty() {
            return Ok(false);
        }
        let mut meta = self.meta.clone();
        meta.round += 1;
        self.store.write(&Batch { meta: Some(&meta), ..Batch::default() })?;
        self.meta = meta;
        self.metrics.round.set(self.meta.round as i64);
        tracing::info!(round = self.meta.round, policy_version = self.meta.policy_version, "round started");
        Ok(true)
    }

    /// Leases up to `max_items` items to an actor (fair share, capacity, pause/drain).
    pub fn lease(&mut self, actor_id: &str, max_items: u32, now: u64) -> Result<LeaseReply> {
        let capacity = self.touch(actor_id, now)?.capacity;
        self.expire(now)?;
        let mut reply = LeaseReply {
            items: Vec::new(),
            retry_after_ms: ms(self.cfg.schedule.retry_after),
            state: self.meta.state,
            exhausted: self.exhausted(),
        };
        if self.meta.state != SchedState::Running {
            return Ok(reply);
        }
        self.maybe_advance_round()?;
        let mut cands = self.candidates();
        let outstanding = self.leases_of(actor_id).len() as u32;
        let total_capacity: u64 = self.actors.values().map(|a| u64::from(a.capacity)).sum();
        let grant = decide::fair_grant(
            max_items,
            ActorLoad { capacity, outstanding },
            total_capacity,
            self.live_by_problem.len() as u64,
            cands.len() as u64,
        );
        tracing::debug!(actor_id, grant = grant.value, reason = %grant.reason, "lease grant");
        if grant.value == 0 {
            return Ok(reply);
        }
        // Only the first `grant` in order are needed: select them in O(n), then sort those.
        let n = grant.value as usize;
        let by_order = |a: &((u8, u64), &str, Mode), b: &((u8, u64), &str, Mode)| (a.0, a.1).cmp(&(b.0, b.1));
        if n < cands.len() {
            cands.select_nth_unstable_by(n, by_order);
            cands.truncate(n);
        }
        cands.sort_unstable_by(by_order);
        let chosen: Vec<(String, Mode)> = cands.into_iter().map(|(_, id, m)| (id.to_string(), m)).collect();

        let (round, version, ttl) = (self.meta.round, self.meta.policy_version, ms(self.cfg.schedule.lease_ttl));
        let group = self.cfg.schedule.group_size;
        let mut leases = Vec::with_capacity(chosen.len());
        let mut records = Vec::with_capacity(chosen.len());
        for (pid, mode) in &chosen {
            let mut rec = self.problems[pid].clone();
            rec.attempts += 1;
            rec.last_leased_unix_ms = now;
            let cached = rec.solutions.len().min(group as usize) as u32;
            let num_samples = match mode {
                Mode::Filter => self.filter.k,
                Mode::Search => 0,
                Mode::Cached => group - cached,
                Mode::Sample => group,
            };
            leases.push(Lease {
                id: format!("{:032x}", rand::random::<u128>()),
                problem_id: pid.clone(),
                actor_id: actor_id.to_string(),
                mode: *mode,
                round,
                policy_version: version,
                num_samples,
                issued_unix_ms: now,
                deadline_unix_ms: now.saturating_add(ttl),
                state: LeaseState::Live,
            });
            records.push(rec);
        }
        self.store.write(&Batch {
            problems: records.iter().collect(),
            put_leases: leases.iter().collect(),
            lazy: true,
            ..Batch::default()
        })?;
        for (lease, rec) in leases.into_iter().zip(records) {
            self.metrics.leases_issued.with_label_values(&[lease.mode.as_str()]).inc();
            match lease.mode {
                Mode::Search => self.stats.cache_lookups += 1,
                Mode::Cached => {
                    self.stats.cache_lookups += 1;
                    self.stats.cache_hits += 1;
                }
                Mode::Filter | Mode::Sample => {}
            }
            let cached = if lease.mode == Mode::Cached {
                rec.solutions.iter().take(group as usize).cloned().collect()
            } else {
                Vec::new()
            };
            self.live_by_problem.insert(lease.problem_id.clone(), lease.id.clone());
            self.leases.insert(lease.id.clone(), lease.clone());
            reply.items.push(LeasedItem { lease, problem: rec.problem.clone(), group_size: group, cached });
            self.problems.insert(rec.problem.id.clone(), rec);
        }
        Ok(reply)
    }

    /// Live leases of an actor.
    pub(crate) fn leases_of(&self, actor_id: &str) -> Vec<&Lease> {
        self.live_by_problem
            .values()
            .filter_map(|id| self.leases.get(id))
            .filter(|l| l.actor_id == actor_id)
            .collect()
    }

    /// Applies one outcome report exactly once (see the `ReportOutcome` RPC contract).
    pub fn report(&mut self, o: Outcome, now: u64) -> Result<ReportReply> {
        if let Some(actor) = self.actors.get_mut(&o.actor_id) {
            actor.last_seen_unix_ms = now;
        }
        if let Some(pid) = self.accepted.get(&o.lease_id) {
            self.metrics.reports.with_label_values(&["duplicate"]).inc();
            tracing::info!(lease_id = %o.lease_id, problem_id = %pid, "duplicate report ignored");
            let status = self.problems.get(pid).map(|r| r.status);
            return Ok(ReportReply { disposition: Disposition::Duplicate, status, reason: "already accepted".into() });
        }
        self.expire(now)?;
        let lease = self
            .leases
            .get(&o.lease_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("lease {:?} was never issued", o.lease_id)))?;
        if lease.actor_id != o.actor_id {
            return Err(Error::FailedPrecondition(format!(
                "lease {:?} is held by actor {:?}, not {:?}",
                lease.id, lease.actor_id, o.actor_id
            )));
        }
        let status = self.problems.get(&lease.problem_id).map(|r| r.status);
        if let LeaseState::Expired { .. } = lease.state {
            self.metrics.reports.with_label_values(&["expired"]).inc();
            tracing::info!(lease_id = %lease.id, problem_id = %lease.problem_id, "late report for an expired lease ignored");
            return Ok(ReportReply { disposition: Disposition::Expired, status, reason: "lease expired".into() });
        }
        if lease.mode != Mode::Search && o.samples + o.verifier_errors > lease.num_samples {
            return Err(Error::InvalidArgument(format!(
                "samples {} + verifier_errors {} exceed the {} asked for by lease {:?}",
                o.samples, o.verifier_errors, lease.num_samples, lease.id
            )));
        }
        let mut rec = self
            .problems
            .get(&lease.problem_id)
            .cloned()
            .ok_or_else(|| Error::Store(format!("lease {:?} names unknown problem {:?}", lease.id, lease.problem_id)))?;
        let (disposition, reason) = self.apply_outcome(&mut rec, &lease, &o, now);
        let label = if disposition == Disposition::Accepted { "accepted" } else { "failed" };
        self.store.write(&Batch {
            problems: vec![&rec],
            delete_leases: vec![lease.id.as_str()],
            accepted: vec![(lease.id.as_str(), lease.problem_id.as_str())],
            // Group commit: fsynced by `flush` before the reply leaves (see `CoreHandle::try_call_durable`).
            lazy: true,
            ..Batch::default()
        })?;
        self.pending_flush = true;
        self.metrics.reports.with_label_values(&[label]).inc();
        if disposition == Disposition::Accepted {
            self.stats.results_accepted += 1;
            self.stats.recent.push_back((now, o.generated_tokens));
            self.metrics.generated_tokens.inc_by(o.generated_tokens);
        }
        tracing::info!(lease_id = %lease.id, problem_id = %lease.problem_id, mode = lease.mode.as_str(), status = rec.status.as_str(), %reason, "report {label}");
        self.live_by_problem.remove(&lease.problem_id);
        self.leases.remove(&lease.id);
        self.accepted.insert(lease.id.clone(), lease.problem_id.clone());
        let status = rec.status;
        self.problems.insert(rec.problem.id.clone(), rec);
        Ok(ReportReply { disposition, status: Some(status), reason })
    }

    /// Updates a record copy from an outcome; returns the disposition and the reason.
    fn apply_outcome(&self, rec: &mut ProblemRecord, lease: &Lease, o: &Outcome, now: u64) -> (Disposition, String) {
        if let Some(err) = &o.error {
            rec.last_error = Some(err.clone());
            return (Disposition::Failed, format!("actor error: {err}"));
        }
        rec.results += 1;
        match lease.mode {
            Mode::Filter => {
                let d = decide::filter_verdict(o.samples, o.correct, self.filter.delta, self.filter.strict);
                match d.value {
                    FilterVerdict::Undetermined => {
                        rec.results -= 1;
                        rec.last_error = Some(format!("filter: {}", d.reason));
                        return (Disposition::Failed, d.reason);
                    }
                    FilterVerdict::Keep => {
                        if rec.status != Status::Cached {
                            rec.status = Status::Hard;
                        }
                    }
                    FilterVerdict::Retire => rec.status = Status::Retired,
                }
                rec.history.push(PassAtK {
                    policy_version: o.policy_version,
                    round: lease.round,
                    samples: o.samples,
                    correct: o.correct,
                    recorded_unix_ms: now,
                });
                rec.filtered_round = Some(lease.round);
                rec.filtered_policy_version = Some(lease.policy_version);
                (Disposition::Accepted, d.reason)
            }
            Mode::Search => {
                rec.worked_round = Some(lease.round);
                rec.merge_solutions(&o.solutions, self.cfg.cache.max_solutions);
                let d = decide::cache_admission(
                    self.cfg.cache.rule,
                    self.cfg.cache.released_max_fraction,
                    self.filter.delta,
                    SearchResult { samples: o.samples, correct: o.correct, solved: o.solved, solutions: o.solutions.len() },
                    rec.latest_pass1(),
                );
                if d.value && rec.status == Status::Hard {
                    rec.status = Status::Cached;
                    rec.cache_reason = Some(d.reason.clone());
                    rec.admitted_policy_version = Some(self.meta.policy_version);
                }
                (Disposition::Accepted, d.reason)
            }
            Mode::Cached | Mode::Sample => {
                rec.worked_round = Some(lease.round);
                (Disposition::Accepted, format!("{}: {}/{} correct", lease.mode.as_str(), o.correct, o.samples))
            }
        }
    }

    /// Expires overdue leases and forgets old expired ones (one durable write if anything changed).
    pub fn expire(&mut self, now: u64) -> Result<()> {
        let timeout = ms(self.cfg.schedule.actor_timeout);
        let retention = ms(self.cfg.schedule.expired_lease_retention);
        let mut expired = Vec::new();
        let mut prune = Vec::new();
        for l in self.leases.values() {
            match l.state {
                LeaseState::Live => {
                    let seen = self.actors.get(&l.actor_id).map(|a| a.last_seen_unix_ms);
                    if let Some(why) = decide::lease_expiry(l.deadline_unix_ms, seen, timeout, now) {
                        let mut e = l.clone();
                        e.state = LeaseState::Expired { at_unix_ms: now };
                        expired.push((e, why));
                    }
                }
                LeaseState::Expired { at_unix_ms } if now.saturating_sub(at_unix_ms) > retention => {
                    prune.push(l.id.clone());
                }
                LeaseState::Expired { .. } => {}
            }
        }
        if expired.is_empty() && prune.is_empty() {
            return Ok(());
        }
        self.store.write(&Batch {
            put_leases: expired.iter().map(|(l, _)| l).collect(),
            delete_leases: prune.iter().map(String::as_str).collect(),
            lazy: true,
            ..Batch::default()
        })?;
        for id in &prune {
            self.leases.remove(id);
        }
        for (l, why) in expired {
            let reason = match why {
                decide::ExpiryReason::DeadlinePassed => "deadline",
                decide::ExpiryReason::ActorLost => "actor_lost",
            };
            tracing::warn!(lease_id = %l.id, problem_id = %l.problem_id, actor_id = %l.actor_id, reason, "lease expired; problem will be re-leased");
            self.metrics.leases_expired.with_label_values(&[reason]).inc();
            self.live_by_problem.remove(&l.problem_id);
            self.leases.insert(l.id.clone(), l);
        }
        Ok(())
    }

    /// Makes every lazy write durable (one fsync) and sends the replies waiting for it. On an
    /// fsync failure memory and disk may disagree, so the process stops (fail-stop; a restart
    /// reloads the last durable state).
    pub fn flush(&mut self) {
        if !self.pending_flush && self.deferred.is_empty() {
            return;
        }
        let res = self.store.flush();
        self.pending_flush = false;
        let err = res.as_ref().err().map(|e| e.to_string());
        for reply in self.deferred.drain(..) {
            reply(err.clone());
        }
        if let Some(e) = err {
            tracing::error!(error = %e, "durable commit failed; stopping the coordinator");
            std::process::abort();
        }
    }

    /// Periodic housekeeping: expire leases, drop silent actors, refresh gauges.
    pub fn sweep(&mut self, now: u64) -> Result<()> {
        self.expire(now)?;
        let timeout = ms(self.cfg.schedule.actor_timeout);
        self.actors.retain(|id, a| {
            let alive = now.saturating_sub(a.last_seen_unix_ms) <= timeout;
            if !alive {
                tracing::warn!(actor_id = %id, "actor silent past its timeout; dropped");
            }
            alive
        });
        while self.stats.recent.front().is_some_and(|&(t, _)| now.saturating_sub(t) > 60_000) {
            self.stats.recent.pop_front();
        }
        self.refresh_gauges();
        Ok(())
    }

    /// Recomputes every gauge from state.
    pub(crate) fn refresh_gauges(&self) {
        let m = &self.metrics;
        let mut counts: HashMap<Status, i64> = HashMap::new();
        let mut cache_solutions = 0i64;
        for r in self.problems.values() {
            *counts.entry(r.status).or_default() += 1;
            if r.status == Status::Cached {
                cache_solutions += r.solutions.len() as i64;
            }
        }
        for s in Status::ALL {
            m.problems.with_label_values(&[s.as_str()]).set(counts.get(&s).copied().unwrap_or(0));
        }
        let cached = counts.get(&Status::Cached).copied().unwrap_or(0);
        m.hard_set_size.set(counts.get(&Status::Hard).copied().unwrap_or(0) + cached);
        m.cache_problems.set(cached);
        m.cache_solutions.set(cache_solutions);
        m.cache_hit_rate.set(self.cache_hit_rate());
        let mut depth: HashMap<Mode, i64> = HashMap::new();
        for (_, _, mode) in self.candidates() {
            *depth.entry(mode).or_default() += 1;
        }
        for mode in Mode::ALL {
            m.queue_depth.with_label_values(&[mode.as_str()]).set(depth.get(&mode).copied().unwrap_or(0));
        }
        m.leases_outstanding.set(self.live_by_problem.len() as i64);
        m.actors.set(self.actors.len() as i64);
        m.policy_version.set(self.meta.policy_version as i64);
        m.round.set(self.meta.round as i64);
    }

    /// Cached items / (search + cached) items leased since start (0 before any).
    pub fn cache_hit_rate(&self) -> f64 {
        if self.stats.cache_lookups == 0 {
            0.0
        } else {
            self.stats.cache_hits as f64 / self.stats.cache_lookups as f64
        }
    }

    /// Records a newer policy version (versions only move forward).
    pub fn publish_version(&mut self, version: u64) -> Result<u64> {
        if version < self.meta.policy_version {
            return Err(Error::FailedPrecondition(format!(
                "policy version {version} is older than the current {}",
                self.meta.policy_version
            )));
        }
        if version > self.meta.policy_version {
            let mut meta = self.meta.clone();
            meta.policy_version = version;
            self.store.write(&Batch { meta: Some(&meta), ..Batch::default() })?;
            self.meta = meta;
            self.metrics.policy_version.set(version as i64);
            tracing::info!(policy_version = version, "policy version published");
        }
        Ok(self.meta.policy_version)
    }
}
