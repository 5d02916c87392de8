//! Every scheduling decision of the coordinator as a pure function (style.md §10).
//!
//! Each takes plain numbers (and the clock as `now`, unix milliseconds, where time matters) and
//! returns the decision with a human-readable reason, so the handlers only decode, call and
//! encode, and each rule is pinned by unit tests with hand-made numbers:
//! - [`filter_verdict`]: the hard-problem filter (spec §7, Pass1@K ≤ δ or < δ);
//! - [`cache_admission`]: the released and the paper rule for the solution cache (spec §7);
//! - [`lease_expiry`] and [`extended_deadline`]: lease lifetimes;
//! - [`next_mode`] and [`work_order`]: which work a problem needs next, and in what order;
//! - [`fair_grant`]: how many items an actor gets, given capacities.

use crate::config::{CacheRule, Pipeline, Refilter};
use crate::record::{Mode, ProblemRecord, Status};

/// A decision and why it was taken.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision<T> {
    pub value: T,
    pub reason: String,
}

impl<T> Decision<T> {
    fn new(value: T, reason: String) -> Self {
        Decision { value, reason }
    }
}

/// The filter's verdict on one Pass1@K measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FilterVerdict {
    /// Pass1@K passes the threshold: the problem stays in (or enters) the hard set.
    Keep,
    /// The policy solves it often enough: retire it.
    Retire,
    /// No verified sample (all verifier errors): no verdict; the item is re-run.
    Undetermined,
}

/// Spec §7: keep for search iff Pass1@K = correct / samples ≤ δ (`strict`: < δ).
pub fn filter_verdict(samples: u32, correct: u32, delta: f64, strict: bool) -> Decision<FilterVerdict> {
    if samples == 0 {
        return Decision::new(
            FilterVerdict::Undetermined,
            "no verified sample (all verifier errors)".into(),
        );
    }
    let pass1 = f64::from(correct) / f64::from(samples);
    let (keep, op) = if strict { (pass1 < delta, "<") } else { (pass1 <= delta, "<=") };
    let verdict = if keep { FilterVerdict::Keep } else { FilterVerdict::Retire };
    let word = if keep { "keep" } else { "retire" };
    Decision::new(
        verdict,
        format!("{word}: pass1@{samples} = {correct}/{samples} = {pass1:.4}; rule pass1 {op} {delta}"),
    )
}

/// Inputs of [`cache_admission`] from one accepted search result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchResult {
    /// Training rollouts of the search group (verifier errors excluded).
    pub samples: u32,
    /// Correct ones among them.
    pub correct: u32,
    /// The search found a correct terminal.
    pub solved: bool,
    /// Verified correct solutions the actor sent.
    pub solutions: usize,
}

/// Spec §7 solution-cache admission.
/// - `Released`: 0 < correct / samples ≤ `released_max_fraction`;
/// - `Paper`: a correct solution was found and Pass1@K (`pass1_at_k`, the latest filter
///   measurement) < δ.
///
/// Either way there must be at least one verified solution to cache.
pub fn cache_admission(
    rule: CacheRule,
    released_max_fraction: f64,
    delta: f64,
    result: SearchResult,
    pass1_at_k: Option<f64>,
) -> Decision<bool> {
    if result.solutions == 0 {
        return Decision::new(false, "no verified solution to cache".into());
    }
    match rule {
        CacheRule::Released => {
            if result.samples == 0 {
                return Decision::new(false, "released rule: no verified rollout".into());
            }
            let frac = f64::from(result.correct) / f64::from(result.samples);
            let admit = frac > 0.0 && frac <= released_max_fraction;
            Decision::new(
                admit,
                format!(
                    "released rule: correct fraction {}/{} = {frac:.4}, admit iff 0 < f <= {released_max_fraction}",
                    result.correct, result.samples
                ),
            )
        }
        CacheRule::Paper => {
            let found = result.solved || result.correct > 0;
            match pass1_at_k {
                None => Decision::new(false, "paper rule: no pass1@k measured".into()),
                Some(p) => Decision::new(
                    found && p < delta,
                    format!("paper rule: solution found = {found}, pass1@k = {p:.4}, admit iff found and pass1@k < {delta}"),
                ),
            }
        }
    }
}

/// Why a lease expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryReason {
    /// `now` is at or past its deadline.
    DeadlinePassed,
    /// Its actor has been silent longer than the actor timeout.
    ActorLost,
}

/// Whether a live lease has expired at `now`. `actor_last_seen` is `None` when the holder is not
/// registered (e.g. after a coordinator restart): only the deadline counts then.
pub fn lease_expiry(
    deadline_unix_ms: u64,
    actor_last_seen_unix_ms: Option<u64>,
    actor_timeout_ms: u64,
    now: u64,
) -> Option<ExpiryReason> {
    if now >= deadline_unix_ms {
        return Some(ExpiryReason::DeadlinePassed);
    }
    match actor_last_seen_unix_ms {
        Some(seen) if now.saturating_sub(seen) > actor_timeout_ms => Some(ExpiryReason::ActorLost),
        _ => None,
    }
}

/// A heartbeat extends a lease to `now + ttl`, but never past `issued + max`, and never shortens it.
pub fn extended_deadline(issued: u64, current_deadline: u64, now: u64, ttl_ms: u64, max_ms: u64) -> u64 {
    let cap = issued.saturating_add(max_ms);
    current_deadline.max(now.saturating_add(ttl_ms).min(cap))
}

/// The round context work choice depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundCtx {
    pub round: u64,
    /// Newest policy version.
    pub policy_version: u64,
    pub refilter: Refilter,
    pub pipeline: Pipeline,
}

/// The work a problem needs next, if any (it must not hold a live lease; the caller checks).
///
/// DeepSearch pipeline: retired → nothing; a problem whose filter is due (never filtered, or not
/// in this round for `per_round`, or with an older policy than the newest for `continuous`) →
/// filter; else hard → search, cached → cached, once per round for `per_round` (every time for
/// `continuous`). GRPO pipeline: every non-retired problem → sample, once per round.
pub fn next_mode(rec: &ProblemRecord, ctx: RoundCtx) -> Option<Mode> {
    if rec.status == Status::Retired {
        return None;
    }
    if ctx.pipeline == Pipeline::Grpo {
        return (rec.worked_round != Some(ctx.round)).then_some(Mode::Sample);
    }
    let filter_due = match ctx.refilter {
        Refilter::PerRound => rec.filtered_round != Some(ctx.round),
        Refilter::Continuous => rec
            .filtered_policy_version
            .is_none_or(|v| v < ctx.policy_version),
    };
    if filter_due || rec.status == Status::Unfiltered {
        return Some(Mode::Filter);
    }
    if ctx.refilter == Refilter::PerRound && rec.worked_round == Some(ctx.round) {
        return None;
    }
    match rec.status {
        Status::Hard => Some(Mode::Search),
        Status::Cached => Some(Mode::Cached),
        Status::Unfiltered | Status::Retired => None,
    }
}

/// Sort key of candidate work: filters first (they gate the round), then least recently leased,
/// then problem id (deterministic).
pub fn work_order(mode: Mode, last_leased_unix_ms: u64) -> (u8, u64) {
    (u8::from(mode != Mode::Filter), last_leased_unix_ms)
}

/// Load of one actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActorLoad {
    pub capacity: u32,
    pub outstanding: u32,
}

/// How many items an actor asking for `requested` gets.
///
/// Never more than its free capacity nor than `available`. When work is scarce (available plus
/// all outstanding leases below the total capacity of live actors), each actor is held to its
/// fair share, ⌈pool · capacity / total capacity⌉ with pool = available + total outstanding, so
/// a fast asker cannot starve the others.
pub fn fair_grant(
    requested: u32,
    actor: ActorLoad,
    total_capacity: u64,
    total_outstanding: u64,
    available: u64,
) -> Decision<u32> {
    let free = actor.capacity.saturating_sub(actor.outstanding);
    let pool = available + total_outstanding;
    let share = if total_capacity == 0 {
        u64::from(actor.capacity)
    } else {
        (pool * u64::from(actor.capacity)).div_ceil(total_capacity)
    };
    let share_left = share.saturating_sub(u64::from(actor.outstanding));
    let grant = u64::from(requested)
        .min(u64::from(free))
        .min(share_left)
        .min(available);
    Decision::new(
        u32::try_from(grant).unwrap_or(u32::MAX),
        format!(
            "requested {requested}, free capacity {free}, fair share {share} (pool {pool} x capacity {} / total {total_capacity}) minus outstanding {}, available {available}",
            actor.capacity, actor.outstanding
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use deepsearch_tasks::Problem;

    #[test]
    fn filter_non_strict_keeps_quarter_and_retires_half() {
        // K = 4, δ = 0.25: 1/4 = 0.25 ≤ 0.25 → keep; 2/4 = 0.5 → retire; 0/4 → keep.
        assert_eq!(filter_verdict(4, 1, 0.25, false).value, FilterVerdict::Keep);
        assert_eq!(filter_verdict(4, 0, 0.25, false).value, FilterVerdict::Keep);
        assert_eq!(filter_verdict(4, 2, 0.25, false).value, FilterVerdict::Retire);
        let d = filter_verdict(4, 1, 0.25, false);
        assert!(d.reason.contains("0.2500"), "{}", d.reason);
    }

    #[test]
    fn filter_strict_retires_exact_delta() {
        assert_eq!(filter_verdict(4, 1, 0.25, true).value, FilterVerdict::Retire);
        assert_eq!(filter_verdict(4, 0, 0.25, true).value, FilterVerdict::Keep);
        // 3 verified samples (one verifier error): 1/3 = 0.333 > 0.25 → retire.
        assert_eq!(filter_verdict(3, 1, 0.25, false).value, FilterVerdict::Retire);
        assert_eq!(filter_verdict(0, 0, 0.25, false).value, FilterVerdict::Undetermined);
    }

    fn sr(samples: u32, correct: u32, solved: bool, solutions: usize) -> SearchResult {
        SearchResult { samples, correct, solved, solutions }
    }

    #[test]
    fn released_rule_admits_rare_successes_only() {
        let admit = |r| cache_admission(CacheRule::Released, 0.25, 0.25, r, Some(0.0)).value;
        assert!(admit(sr(8, 1, true, 1))); // 1/8 = 0.125
        assert!(admit(sr(8, 2, true, 2))); // 2/8 = 0.25 (boundary is inclusive)
        assert!(!admit(sr(8, 3, true, 3))); // 3/8 = 0.375
        assert!(!admit(sr(8, 0, false, 0))); // nothing found
        assert!(!admit(sr(8, 1, true, 0))); // no solution sent: nothing to cache
    }

    #[test]
    fn paper_rule_needs_a_solution_and_pass1_below_delta() {
        let admit = |r, p| cache_admission(CacheRule::Paper, 0.25, 0.25, r, p).value;
        assert!(admit(sr(8, 5, true, 5), Some(0.0))); // fraction irrelevant under the paper rule
        assert!(!admit(sr(8, 5, true, 5), Some(0.25))); // 0.25 is not < 0.25
        assert!(!admit(sr(8, 1, true, 1), None));
        assert!(!admit(sr(8, 0, false, 0), Some(0.0)));
    }

    #[test]
    fn lease_expiry_by_deadline_or_silent_actor() {
        // Deadline 10_000, actor timeout 3_000.
        assert_eq!(lease_expiry(10_000, Some(9_000), 3_000, 9_999), None);
        assert_eq!(lease_expiry(10_000, Some(9_000), 3_000, 10_000), Some(ExpiryReason::DeadlinePassed));
        assert_eq!(lease_expiry(10_000, Some(5_000), 3_000, 8_001), Some(ExpiryReason::ActorLost));
        assert_eq!(lease_expiry(10_000, Some(5_000), 3_000, 8_000), None);
        assert_eq!(lease_expiry(10_000, None, 3_000, 9_999), None);
    }

    #[test]
    fn heartbeat_extension_is_capped_and_monotone() {
        // Issued at 1_000, ttl 500, max 2_000 → cap 3_000.
        assert_eq!(extended_deadline(1_000, 1_500, 1_200, 500, 2_000), 1_700);
        assert_eq!(extended_deadline(1_000, 2_900, 2_800, 500, 2_000), 3_000);
        assert_eq!(extended_deadline(1_000, 3_000, 2_000, 500, 2_000), 3_000);
    }

    fn rec(status: Status, filtered_round: Option<u64>, worked_round: Option<u64>) -> ProblemRecord {
        let mut r = ProblemRecord::new(Problem::new("p", "countdown", "q", "a"));
        r.status = status;
        r.filtered_round = filtered_round;
        r.filtered_policy_version = filtered_round;
        r.worked_round = worked_round;
        r
    }

    #[test]
    fn next_mode_per_round() {
        let ctx = RoundCtx { round: 2, policy_version: 2, refilter: Refilter::PerRound, pipeline: Pipeline::Deepsearch };
        assert_eq!(next_mode(&rec(Status::Unfiltered, None, None), ctx), Some(Mode::Filter));
        assert_eq!(next_mode(&rec(Status::Hard, Some(1), Some(1)), ctx), Some(Mode::Filter));
        assert_eq!(next_mode(&rec(Status::Hard, Some(2), Some(1)), ctx), Some(Mode::Search));
        assert_eq!(next_mode(&rec(Status::Cached, Some(2), None), ctx), Some(Mode::Cached));
        assert_eq!(next_mode(&rec(Status::Hard, Some(2), Some(2)), ctx), None);
        assert_eq!(next_mode(&rec(Status::Retired, Some(2), None), ctx), None);
    }

    #[test]
    fn next_mode_continuous_and_grpo() {
        let ctx = RoundCtx { round: 0, policy_version: 3, refilter: Refilter::Continuous, pipeline: Pipeline::Deepsearch };
        assert_eq!(next_mode(&rec(Status::Hard, Some(2), Some(0)), ctx), Some(Mode::Filter));
        assert_eq!(next_mode(&rec(Status::Hard, Some(3), Some(0)), ctx), Some(Mode::Search));
        let grpo = RoundCtx { pipeline: Pipeline::Grpo, round: 1, ..ctx };
        assert_eq!(next_mode(&rec(Status::Unfiltered, None, None), grpo), Some(Mode::Sample));
        assert_eq!(next_mode(&rec(Status::Unfiltered, None, Some(1)), grpo), None);
    }

    #[test]
    fn work_order_puts_filters_first_then_oldest() {
        let mut v = [(Mode::Search, 5), (Mode::Filter, 9), (Mode::Cached, 1), (Mode::Filter, 2)];
        v.sort_by_key(|&(m, t)| work_order(m, t));
        assert_eq!(v, [(Mode::Filter, 2), (Mode::Filter, 9), (Mode::Cached, 1), (Mode::Search, 5)]);
    }

    #[test]
    fn fair_grant_plenty_of_work_fills_free_capacity() {
        // Capacity 4 with 1 outstanding, 100 items available, total capacity 12.
        let d = fair_grant(8, ActorLoad { capacity: 4, outstanding: 1 }, 12, 5, 100);
        assert_eq!(d.value, 3);
        assert_eq!(fair_grant(2, ActorLoad { capacity: 4, outstanding: 1 }, 12, 5, 100).value, 2);
    }

    #[test]
    fn fair_grant_scarce_work_is_shared_by_capacity() {
        // Two actors, capacities 4 and 2 (total 6); 3 items available, none outstanding:
        // shares ⌈3·4/6⌉ = 2 and ⌈3·2/6⌉ = 1.
        assert_eq!(fair_grant(4, ActorLoad { capacity: 4, outstanding: 0 }, 6, 0, 3).value, 2);
        assert_eq!(fair_grant(4, ActorLoad { capacity: 2, outstanding: 0 }, 6, 0, 3).value, 1);
        // After the first took 2: pool = 1 available + 2 outstanding = 3, its share 2 is used up.
        assert_eq!(fair_grant(4, ActorLoad { capacity: 4, outstanding: 2 }, 6, 2, 1).value, 0);
        assert_eq!(fair_grant(4, ActorLoad { capacity: 2, outstanding: 0 }, 6, 2, 1).value, 1);
        // Full actor gets nothing.
        assert_eq!(fair_grant(1, ActorLoad { capacity: 2, outstanding: 2 }, 6, 2, 10).value, 0);
    }
}
