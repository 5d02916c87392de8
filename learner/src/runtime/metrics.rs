//! Prometheus metrics of the learner runtime and the `/metrics` endpoint (issue #6; design.md
//! "Prometheus /metrics on every role"): trajectories by disposition, groups, queue depth, credits,
//! streams, steps, policy version, acknowledgement latency and step time.


use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Every learner-runtime metric, in its own registry (prefix `deepsearch_learner_`).
pub struct Metrics {
    pub registry: Registry,
    /// `trajectories_total{disposition}`: accepted | rejected | stale | duplicate.
    pub trajectories: IntCounterVec,
    /// `groups_total{disposition}`: completed | stale | expired | trained.
    pub groups: IntCounterVec,
    /// Trajectories held (incomplete + complete groups).
    pub queue_depth: IntGauge,
    /// Complete groups waiting for a step.
    pub ready_groups: IntGauge,
    /// Incomplete groups (members still to come).
    pub pending_groups: IntGauge,
    /// Free slots (neither held nor granted as credits).
    pub free_slots: IntGauge,
    /// Open `PushTrajectories` streams.
    pub streams: IntGauge,
    pub steps: IntCounter,
    /// Steps the trainer failed (no version published).
    pub step_failures: IntCounter,
    pub policy_version: IntGauge,
    /// Seconds from a trajectory's arrival to its acknowledgement being queued for sending.
    pub ack_latency: Histogram,
    /// Seconds per training step (trainer thread, weights export and manifest included).
    pub step_seconds: Histogram,
    /// Failed `PublishPolicyVersion` attempts.
    pub coordinator_publish_failures: IntCounter,
    /// Checkpoints written.
    pub checkpoints: IntCounter,
    /// Checkpoints that failed (training went on).
    pub checkpoint_failures: IntCounter,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    // Names are unique constants, so registration cannot fail.
    r.register(Box::new(m.clone())).expect("unique metric name");
    m
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let r = Registry::new_custom(Some("deepsearch_learner".into()), None).expect("valid prefix");
        let g = |name: &str, help: &str| reg(&r, IntGauge::new(name, help).expect("valid metric"));
        let c = |name: &str, help: &str| reg(&r, IntCounter::new(name, help).expect("valid metric"));
        let cv = |name: &str, help: &str| reg(&r, IntCounterVec::new(Opts::new(name, help), &["disposition"]).expect("valid metric"));
        let h = |name: &str, help: &str, buckets: Vec<f64>| {
            reg(&r, Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric"))
        };
        Metrics {
            trajectories: cv("trajectories_total", "pushed trajectories by disposition"),
            groups: cv("groups_total", "groups by disposition"),
            queue_depth: g("queue_depth", "trajectories held"),
            ready_groups: g("ready_groups", "complete groups waiting for a step"),
            pending_groups: g("pending_groups", "incomplete groups"),
            free_slots: g("free_slots", "queue slots neither held nor granted"),
            streams: g("streams", "open trajectory streams"),
            steps: c("steps_total", "training steps"),
            step_failures: c("step_failures_total", "failed training steps"),
            policy_version: g("policy_version", "newest published policy version"),
            ack_latency: h(
                "ack_latency_seconds",
                "trajectory arrival to acknowledgement",
                prometheus::exponential_buckets(1e-5, 2.0, 20).expect("valid buckets"),
            ),
            step_seconds: h("step_seconds", "training step time", prometheus::exponential_buckets(0.01, 2.0, 16).expect("valid buckets")),
            coordinator_publish_failures: c("coordinator_publish_failures_total", "failed PublishPolicyVersion attempts"),
            checkpoints: c("checkpoints_total", "checkpoints written"),
            checkpoint_failures: c("checkpoint_failures_total", "failed checkpoints"),
            registry: r,
        }
    }

    /// The text exposition format of every metric.
    pub fn render(&self) -> String {
        deepsearch_coordinator::metrics::render_registry(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    metrics: std::sync::Arc<Metrics>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    deepsearch_coordinator::metrics::serve_text("learner", move || metrics.render(), listener, shutdown).await
}
