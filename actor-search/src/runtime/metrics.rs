//! Counters of one actor (search-specific metrics, design.md complaint #7), readable in-process
//! ([`ActorMetrics::snapshot`]) and in the Prometheus text format ([`ActorMetrics::render`]).

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
                    let kind = if stringify!($name) == "policy_version" { "gauge" } else { "counter" };
                    s.push_str(&format!(
                        "# TYPE deepsearch_actor_{} {}\ndeepsearch_actor_{} {}\n",
                        stringify!($name), kind, stringify!($name), self.$name.load(Ordering::Relaxed)
                    ));
                )*
                s
            }
        }
    };
}

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
}

impl ActorMetrics {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
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
    }
}
