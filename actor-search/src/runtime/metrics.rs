//! Counters of one actor (search-specific metrics, design.md complaint #7; issue #6 item 6),
//! readable in-process ([`ActorMetrics::snapshot`]) and in the Prometheus text format
//! ([`ActorMetrics::render`], served on `/metrics` when `ActorConfig::metrics_listen` is set).
//!
//! Rates are left to Prometheus: expansions/s = `rate(deepsearch_actor_expansions[1m])`,
//! generated tokens/s likewise; mean tree depth = `tree_depth_total / trees`; mean verifier
//! latency = `verifier_seconds_sum / verifier_seconds_count`; staleness of the held weights =
//! `policy_lag` (newest announced version − version held).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Every counter of an actor (monotonic unless noted).
        #[derive(Debug, Default)]
        pub struct ActorMetrics {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of [`ActorMetrics`] at one moment.
        #[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct MetricsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl ActorMetrics {
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }

            /// Prometheus text exposition, names prefixed `deepsearch_actor_`.
            pub fn render(&self) -> String {
                let mut s = String::new();
                $(
                    let name = stringify!($name);
                    if !HIDDEN.contains(&name) {
                        let kind = if GAUGES.contains(&name) { "gauge" } else { "counter" };
                        s.push_str(&format!(
                            "# TYPE deepsearch_actor_{name} {kind}\ndeepsearch_actor_{name} {}\n",
                            self.$name.load(Ordering::Relaxed)
                        ));
                    }
                )*
                self.render_derived(&mut s);
                s
            }
        }
    };
}

/// Metrics that are gauges (the rest are counters).
const GAUGES: &[&str] = &[
    "policy_version",
    "newest_policy_version",
    "last_tree_depth",
    "last_tree_frontier",
];

/// Raw counters rendered in another form by [`ActorMetrics::render_derived`].
const HIDDEN: &[&str] = &["verifier_micros", "verifier_calls"];

counters! {
    /// Batches run on the policy thread.
    batches,
    /// Work items leased.
    items_leased,
    /// Items whose report said the actor could not complete them.
    items_failed,
    /// Trees searched to the end.
    trees,
    /// Tree expansions (batched policy requests of searches).
    expansions,
    /// Tokens generated.
    generated_tokens,
    /// Responses whose verifier failed or timed out (dropped, spec §2).
    verifier_errors,
    /// Trajectories queued for the learner.
    trajectories_queued,
    /// Trajectories the learner acknowledged.
    trajectories_acked,
    /// Trajectories the learner reported dropped as too stale.
    trajectories_stale,
    /// Trajectories the learner rejected as malformed.
    trajectories_rejected,
    /// Results dropped because their lease was lost (expired or re-leased) before the report.
    results_lost_lease,
    /// Reports by disposition.
    reports_accepted,
    reports_duplicate,
    reports_expired,
    reports_failed,
    /// RPCs that failed (each retry counts).
    rpc_errors,
    /// Trajectory streams reopened.
    reconnects,
    /// Policy versions swapped in.
    weight_swaps,
    /// Downloads or loads that failed (the old weights stay).
    weight_failures,
    /// Policy version held now (gauge).
    policy_version,
    /// Newest policy version announced by the coordinator or the learner (gauge).
    newest_policy_version,
    /// Sum over finished trees of their deepest node (mean depth = this / `trees`).
    tree_depth_total,
    /// Sum over finished trees of their frontier size when they finished.
    tree_frontier_total,
    /// Deepest node of the last finished tree (gauge).
    last_tree_depth,
    /// Frontier size of the last finished tree (gauge).
    last_tree_frontier,
    /// Verifier calls and their summed wall time in microseconds (rendered as the summary
    /// `verifier_seconds`).
    verifier_calls,
    verifier_micros,
    /// Wall time of the policy thread's batches (generation, verification and search
    /// bookkeeping), microseconds, added when a batch ends.
    batch_micros,
    /// Of which batched generation calls (`Policy::expand`), microseconds, added with it.
    generate_micros,
}

impl ActorMetrics {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one verifier call that took `d`.
    pub fn observe_verifier(&self, d: std::time::Duration) {
        self.verifier_calls.fetch_add(1, Ordering::Relaxed);
        self.verifier_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Records a finished tree's depth and frontier size.
    pub fn observe_tree(&self, max_depth: u32, frontier: u32) {
        self.tree_depth_total.fetch_add(u64::from(max_depth), Ordering::Relaxed);
        self.tree_frontier_total.fetch_add(u64::from(frontier), Ordering::Relaxed);
        self.last_tree_depth.store(u64::from(max_depth), Ordering::Relaxed);
        self.last_tree_frontier.store(u64::from(frontier), Ordering::Relaxed);
    }

    /// The verifier latency summary and the policy lag.
    fn render_derived(&self, s: &mut String) {
        let calls = self.verifier_calls.load(Ordering::Relaxed);
        let secs = self.verifier_micros.load(Ordering::Relaxed) as f64 / 1e6;
        s.push_str(&format!(
            "# TYPE deepsearch_actor_verifier_seconds summary\ndeepsearch_actor_verifier_seconds_sum {secs}\ndeepsearch_actor_verifier_seconds_count {calls}\n"
        ));
        let lag = self
            .newest_policy_version
            .load(Ordering::Relaxed)
            .saturating_sub(self.policy_version.load(Ordering::Relaxed));
        s.push_str(&format!("# TYPE deepsearch_actor_policy_lag gauge\ndeepsearch_actor_policy_lag {lag}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_every_counter() {
        let m = ActorMetrics::default();
        ActorMetrics::add(&m.trees, 3);
        m.policy_version.store(7, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("deepsearch_actor_trees 3\n"), "{text}");
        assert!(text.contains(
            "# TYPE deepsearch_actor_policy_version gauge\ndeepsearch_actor_policy_version 7\n"
        ));
        assert_eq!(m.snapshot().trees, 3);
        m.newest_policy_version.store(9, Ordering::Relaxed);
        m.observe_verifier(std::time::Duration::from_millis(1500));
        m.observe_verifier(std::time::Duration::from_millis(500));
        m.observe_tree(4, 6);
        m.observe_tree(2, 1);
        let text = m.render();
        for want in [
            "deepsearch_actor_verifier_seconds_sum 2\n",
            "deepsearch_actor_verifier_seconds_count 2\n",
            "# TYPE deepsearch_actor_policy_lag gauge\ndeepsearch_actor_policy_lag 2\n",
            "deepsearch_actor_tree_depth_total 6\n",
            "deepsearch_actor_tree_frontier_total 7\n",
            "# TYPE deepsearch_actor_last_tree_depth gauge\ndeepsearch_actor_last_tree_depth 2\n",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
        assert!(!text.contains("verifier_micros"), "{text}");
    }
}
