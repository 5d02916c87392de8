//! Trajectory ingest on rank 0 (spec §6; design.md "rank 0 ingests, groups by prompt"): the pure
//! state machine behind `PushTrajectories`.
//!
//! - Validation at the edge: [`Incoming::try_from`] turns a wire `pb::Trajectory` into the domain
//!   [`Trajectory`] or an [`Invalid`] naming the field (lengths agree, segments increase and end at
//!   the response length, finite scores and log-probs, a verdict that carries a reward) through
//!   the actor runtime's `WireTrajectory` conversion, the one definition both ends share.
//! - Exactly-once: trajectory ids (and completed group ids) are remembered in a bounded window, so
//!   a trajectory re-sent after a reconnect is acknowledged but ignored.
//! - Grouping: trajectories wait under their `group_id` until `group_size` arrived; complete
//!   groups wait for a step.
//! - Staleness = learner version − trajectory version. Over `max_staleness`: dropped and counted,
//!   on arrival, on every new version, and again when a step is assembled.
//! - Memory bound: one slot of `capacity` per trajectory held or credit granted. Streams
//!   [`Ingest::reserve`] slots before granting credits; an admitted trajectory keeps its slot until
//!   its group goes to the trainer (or is dropped); anything else gives it back at once.
//!
//! No clock is read here: callers pass `now`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use deepsearch_proto::v1 as pb;
use deepsearch_search::runtime::WireTrajectory;
use deepsearch_search::{Group, GroupStats, Source, Trajectory};

/// Why a wire trajectory was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The offending field of `pb::Trajectory`.
    pub field: String,
    pub msg: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.msg)
    }
}

fn invalid(field: &str, msg: impl Into<String>) -> Invalid {
    Invalid { field: field.into(), msg: msg.into() }
}

/// A validated trajectory with its routing keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    pub trajectory_id: String,
    pub group_id: String,
    pub group_size: u32,
    pub actor_id: String,
    pub trajectory: Trajectory,
}

/// Validation is the actor runtime's ([`WireTrajectory`]'s `TryFrom`: one definition of a
/// well-formed wire trajectory for both ends); the learner only adds its routing keys.
impl TryFrom<pb::Trajectory> for Incoming {
    type Error = Invalid;

    fn try_from(t: pb::Trajectory) -> Result<Self, Invalid> {
        let w = WireTrajectory::try_from(t).map_err(|e| Invalid { field: e.field, msg: e.reason })?;
        Ok(Incoming {
            trajectory_id: w.trajectory_id,
            group_id: w.group_id,
            group_size: w.group_size,
            actor_id: w.actor_id,
            trajectory: w.trajectory,
        })
    }
}

/// What happened to one pushed trajectory.
#[derive(Clone, Debug, PartialEq)]
pub enum Disposition {
    /// Held in its group (which is still incomplete).
    Queued,
    /// Held, and its group is now complete and waits for a step.
    GroupComplete,
    /// Seen before (or its group already completed): acknowledged, ignored.
    Duplicate,
    /// More than `max_staleness` versions behind: dropped.
    Stale { staleness: u64 },
    /// Malformed: dropped.
    Rejected(Invalid),
}

/// Limits of the ingest state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IngestLimits {
    /// Slots (trajectories held + credits granted).
    pub capacity: usize,
    pub max_staleness: u64,
    pub group_timeout: Duration,
    pub dedupe_window: usize,
}

/// Counters since start (the metrics mirror them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestCounts {
    pub accepted: u64,
    pub rejected_invalid: u64,
    pub dropped_stale: u64,
    pub duplicates: u64,
    pub groups_completed: u64,
    /// Groups (pending or complete) dropped because a member became stale after arrival.
    pub groups_stale: u64,
    /// Incomplete groups dropped after `group_timeout`.
    pub groups_expired: u64,
    /// Groups handed to the trainer.
    pub groups_trained: u64,
}

#[derive(Debug)]
struct PendingGroup {
    size: u32,
    problem_id: String,
    started: Instant,
    members: Vec<Trajectory>,
}

/// The ingest state (one per learner, behind a lock; every method is short and never blocks).
#[derive(Debug)]
pub struct Ingest {
    lim: IngestLimits,
    version: u64,
    free: usize,
    /// Trajectories held (pending + ready).
    held: usize,
    pending: HashMap<String, PendingGroup>,
    ready: VecDeque<Vec<Trajectory>>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    pub counts: IngestCounts,
}

fn oldest(ts: &[Trajectory]) -> u64 {
    ts.iter().map(|t| t.policy_version).min().unwrap_or(0)
}

impl Ingest {
    /// Empty state at policy version `version`.
    pub fn new(lim: IngestLimits, version: u64) -> Self {
        Ingest {
            free: lim.capacity,
            held: 0,
            lim,
            version,
            pending: HashMap::new(),
            ready: VecDeque::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            counts: IngestCounts::default(),
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Slots neither held nor granted.
    pub fn free(&self) -> usize {
        self.free
    }

    /// Trajectories held (in incomplete and complete groups).
    pub fn queued(&self) -> usize {
        debug_assert_eq!(
            self.held,
            self.pending.values().map(|g| g.members.len()).sum::<usize>() + self.ready.iter().map(Vec::len).sum::<usize>()
        );
        self.held
    }

    /// Complete groups waiting for a step.
    pub fn ready_groups(&self) -> usize {
        self.ready.len()
    }

    /// Incomplete groups.
    pub fn pending_groups(&self) -> usize {
        self.pending.len()
    }

    /// Takes up to `want` free slots (for credits); returns how many.
    pub fn reserve(&mut self, want: usize) -> usize {
        let n = want.min(self.free);
        self.free -= n;
        n
    }

    /// Gives `n` slots back.
    pub fn release(&mut self, n: usize) {
        self.free += n;
        debug_assert!(self.free <= self.lim.capacity, "more slots released than taken");
    }

    /// Held trajectories leave (trained or dropped): their slots are freed.
    fn release_held(&mut self, n: usize) {
        self.held -= n;
        self.release(n);
    }

    fn remember(&mut self, key: String) {
        if self.seen.insert(key.clone()) {
            self.seen_order.push_back(key);
            while self.seen_order.len() > self.lim.dedupe_window {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }

    /// Admits one trajectory that arrived on a credit: the caller holds one reserved slot, which
    /// the trajectory keeps if queued and which is given back otherwise.
    pub fn admit(&mut self, inc: Result<Incoming, Invalid>, now: Instant) -> Disposition {
        let d = self.decide(inc, now);
        match &d {
            Disposition::Queued | Disposition::GroupComplete => self.counts.accepted += 1,
            Disposition::Duplicate => {
                self.counts.duplicates += 1;
                self.release(1);
            }
            Disposition::Stale { .. } => {
                self.counts.dropped_stale += 1;
                self.release(1);
            }
            Disposition::Rejected(_) => {
                self.counts.rejected_invalid += 1;
                self.release(1);
            }
        }
        d
    }

    fn decide(&mut self, inc: Result<Incoming, Invalid>, now: Instant) -> Disposition {
        let inc = match inc {
            Ok(i) => i,
            Err(e) => return Disposition::Rejected(e),
        };
        let tid = format!("t/{}", inc.trajectory_id);
        let gid = format!("g/{}", inc.group_id);
        if self.seen.contains(&tid) || self.seen.contains(&gid) {
            return Disposition::Duplicate;
        }
        let v = inc.trajectory.policy_version;
        if v > self.version {
            return Disposition::Rejected(invalid("policy_version", format!("{v} is newer than the learner's {}", self.version)));
        }
        let staleness = self.version - v;
        if staleness > self.lim.max_staleness {
            self.remember(tid);
            return Disposition::Stale { staleness };
        }
        if inc.group_size as usize > self.lim.capacity / 2 {
            return Disposition::Rejected(invalid("group_size", format!("{} exceeds half the queue ({})", inc.group_size, self.lim.capacity)));
        }
        let g = self.pending.entry(inc.group_id.clone()).or_insert_with(|| PendingGroup {
            size: inc.group_size,
            problem_id: inc.trajectory.problem_id.clone(),
            started: now,
            members: Vec::new(),
        });
        if g.size != inc.group_size || g.problem_id != inc.trajectory.problem_id {
            let msg = format!("group `{}` was announced with size {} for problem `{}`", inc.group_id, g.size, g.problem_id);
            return Disposition::Rejected(invalid("group_size", msg));
        }
        g.members.push(inc.trajectory);
        self.held += 1;
        let complete = g.members.len() >= g.size as usize;
        self.remember(tid);
        if !complete {
            return Disposition::Queued;
        }
        let g = self.pending.remove(&inc.group_id).map(|g| g.members).unwrap_or_default();
        self.remember(gid);
        self.counts.groups_completed += 1;
        self.ready.push_back(g);
        Disposition::GroupComplete
    }

    fn drop_stale(&mut self) {
        let (version, max) = (self.version, self.lim.max_staleness);
        let fresh = |ts: &[Trajectory]| version - oldest(ts).min(version) <= max;
        let mut freed = 0;
        let mut groups = 0;
        self.ready.retain(|g| {
            let keep = fresh(g);
            if !keep {
                freed += g.len();
                groups += 1;
            }
            keep
        });
        self.pending.retain(|_, g| {
            let keep = fresh(&g.members);
            if !keep {
                freed += g.members.len();
                groups += 1;
            }
            keep
        });
        if groups > 0 {
            tracing::debug!(groups, trajectories = freed, version, "stale groups dropped");
        }
        self.counts.groups_stale += groups;
        self.counts.dropped_stale += freed as u64;
        self.release_held(freed);
    }

    /// The learner moved to `version`: groups now too stale are dropped.
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
        self.drop_stale();
    }

    /// Drops incomplete groups older than `group_timeout`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let timeout = self.lim.group_timeout;
        let mut freed = 0;
        let before = self.pending.len();
        self.pending.retain(|id, g| {
            let keep = now.saturating_duration_since(g.started) < timeout;
            if !keep {
                tracing::warn!(group = %id, have = g.members.len(), size = g.size, "incomplete group expired");
                freed += g.members.len();
            }
            keep
        });
        let n = before - self.pending.len();
        self.counts.groups_expired += n as u64;
        self.release_held(freed);
        n
    }

    /// The next step's groups if `n` fresh complete groups are ready (stale ones dropped first);
    /// their slots are freed (the trainer owns them now).
    pub fn take_step(&mut self, n: usize) -> Option<Vec<Group>> {
        self.drop_stale();
        if self.ready.len() < n {
            return None;
        }
        let groups: Vec<Group> = self.ready.drain(..n).map(to_group).collect();
        let held: usize = groups.iter().map(|g| g.trajectories.len()).sum();
        self.counts.groups_trained += n as u64;
        self.release_held(held);
        Some(groups)
    }
}

fn to_group(trajectories: Vec<Trajectory>) -> Group {
    let has = |s: Source| trajectories.iter().any(|t| t.source == s);
    let source = if has(Source::Cached) {
        Source::Cached
    } else if has(Source::Search) {
        Source::Search
    } else {
        Source::Direct
    };
    Group {
        problem_id: trajectories.first().map(|t| t.problem_id.clone()).unwrap_or_default(),
        source,
        trajectories,
        stats: GroupStats::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid wire trajectory of `len` response tokens in 2 segments.
    pub(crate) fn wire(id: &str, group: &str, size: u32, version: u64) -> pb::Trajectory {
        pb::Trajectory {
            trajectory_id: id.into(),
            problem_id: format!("p-{group}"),
            group_id: group.into(),
            group_size: size,
            prompt_tokens: vec![1, 2],
            response_tokens: vec![3, 4, 5],
            segment_ends: vec![2, 3],
            sampling_logprobs: vec![-0.5; 3],
            entropies: vec![],
            token_scores: vec![0.5; 3],
            terminal_score: 1.0,
            verdict: pb::Verdict::Correct as i32,
            source: pb::TrajectorySource::Search as i32,
            policy_version: version,
            actor_id: "a".into(),
        }
    }

    fn lim(capacity: usize) -> IngestLimits {
        IngestLimits { capacity, max_staleness: 2, group_timeout: Duration::from_secs(10), dedupe_window: 100 }
    }

    fn push(ing: &mut Ingest, t: pb::Trajectory, now: Instant) -> Disposition {
        assert_eq!(ing.reserve(1), 1, "no free slot");
        ing.admit(Incoming::try_from(t), now)
    }

    #[test]
    fn validation_names_the_field() {
        type Edit = Box<dyn Fn(&mut pb::Trajectory)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("token_scores", Box::new(|t: &mut pb::Trajectory| t.token_scores.pop().map(drop).unwrap_or(()))),
            ("sampling_logprobs", Box::new(|t: &mut pb::Trajectory| t.sampling_logprobs.push(-1.0))),
            ("segment_ends", Box::new(|t: &mut pb::Trajectory| t.segment_ends = vec![2, 2, 3])),
            ("segment_ends", Box::new(|t: &mut pb::Trajectory| t.segment_ends = vec![2])),
            ("token_scores", Box::new(|t: &mut pb::Trajectory| t.token_scores[1] = f32::NAN)),
            ("terminal_score", Box::new(|t: &mut pb::Trajectory| t.terminal_score = f32::INFINITY)),
            ("verdict", Box::new(|t: &mut pb::Trajectory| t.verdict = 0)),
            ("verdict", Box::new(|t: &mut pb::Trajectory| t.verdict = pb::Verdict::Error as i32)),
            ("source", Box::new(|t: &mut pb::Trajectory| t.source = 9)),
            ("group_size", Box::new(|t: &mut pb::Trajectory| t.group_size = 0)),
            ("sampling_logprobs", Box::new(|t: &mut pb::Trajectory| t.sampling_logprobs.clear())),
        ];
        for (field, f) in cases {
            let mut t = wire("t", "g", 1, 0);
            f(&mut t);
            assert_eq!(Incoming::try_from(t).unwrap_err().field, field);
        }
        let mut cached = wire("t", "g", 1, 0);
        cached.source = pb::TrajectorySource::Cached as i32;
        cached.sampling_logprobs.clear();
        let ok = Incoming::try_from(cached).unwrap();
        assert_eq!((ok.trajectory.source, ok.trajectory.terminal_score), (Source::Cached, 1.0));
    }

    #[test]
    fn groups_complete_duplicates_ignored_slots_accounted() {
        let now = Instant::now();
        let mut ing = Ingest::new(lim(10), 0);
        assert_eq!(push(&mut ing, wire("a", "g1", 2, 0), now), Disposition::Queued);
        assert_eq!(push(&mut ing, wire("a", "g1", 2, 0), now), Disposition::Duplicate);
        assert_eq!((ing.free(), ing.queued()), (9, 1));
        assert_eq!(push(&mut ing, wire("b", "g1", 2, 0), now), Disposition::GroupComplete);
        // A late member of a completed group is a duplicate too.
        assert_eq!(push(&mut ing, wire("c", "g1", 2, 0), now), Disposition::Duplicate);
        assert!(matches!(push(&mut ing, wire("d", "g2", 3, 0), now), Disposition::Queued));
        assert!(matches!(push(&mut ing, wire("e", "g2", 2, 0), now), Disposition::Rejected(Invalid { ref field, .. }) if field == "group_size"));
        assert_eq!((ing.free(), ing.queued(), ing.ready_groups()), (7, 3, 1));
        assert!(ing.take_step(2).is_none());
        let step = ing.take_step(1).unwrap();
        assert_eq!((step.len(), step[0].trajectories.len(), step[0].problem_id.as_str()), (1, 2, "p-g1"));
        assert_eq!((ing.free(), ing.queued()), (9, 1));
        let c = ing.counts;
        assert_eq!((c.accepted, c.duplicates, c.rejected_invalid, c.groups_completed, c.groups_trained), (3, 2, 1, 1, 1));
    }

    #[test]
    fn staleness_on_arrival_on_new_versions_and_future_versions() {
        let now = Instant::now();
        let mut ing = Ingest::new(lim(10), 5);
        // 5 − 2 = 3 > max 2
        assert_eq!(push(&mut ing, wire("a", "g1", 1, 2), now), Disposition::Stale { staleness: 3 });
        assert!(matches!(push(&mut ing, wire("b", "g1", 1, 6), now), Disposition::Rejected(Invalid { ref field, .. }) if field == "policy_version"));
        assert_eq!(push(&mut ing, wire("c", "g2", 1, 3), now), Disposition::GroupComplete);
        assert_eq!(push(&mut ing, wire("d", "g3", 2, 4), now), Disposition::Queued);
        ing.set_version(6); // g2 (version 3) is now 3 behind: dropped; g3 (4) stays
        assert_eq!((ing.ready_groups(), ing.queued(), ing.free()), (0, 1, 9));
        assert_eq!((ing.counts.dropped_stale, ing.counts.groups_stale), (2, 1));
        assert_eq!(ing.expire(now + Duration::from_secs(11)), 1);
        assert_eq!((ing.queued(), ing.free(), ing.counts.groups_expired), (0, 10, 1));
    }

    #[test]
    fn dedupe_window_is_bounded() {
        let now = Instant::now();
        let mut ing = Ingest::new(IngestLimits { dedupe_window: 3, ..lim(10) }, 0);
        for i in 0..5 {
            push(&mut ing, wire(&format!("t{i}"), &format!("g{i}"), 1, 0), now);
        }
        assert!(ing.seen.len() <= 3);
        ing.take_step(5).unwrap();
        assert_eq!(ing.free(), 10);
    }
}
