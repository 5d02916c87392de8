//! Typed configuration of one search actor (style.md §7): where its peers are, how much it runs
//! at once, the search knobs, and every deadline and backoff. Durations are humantime strings
//! ("5s"); unknown fields are errors naming the field.

use std::net::SocketAddr;
use std::time::Duration;

use deepsearch_tasks::PoolConfig;
use serde::{Deserialize, Serialize};

use crate::config::SearchConfig;

/// One actor's configuration (the `[actor]` part of `deepsearch actor --config FILE`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActorConfig {
    /// Stable actor name; re-registering with it resumes the same actor id. Default "" (the
    /// coordinator picks an id).
    pub name: String,
    /// Coordinator address, "host:port" or a URI. Default "127.0.0.1:50051".
    pub coordinator: String,
    /// Learner (rank 0) address. Default "127.0.0.1:50052".
    pub learner: String,
    /// Work items leased and run together (trees searched in one forest). Default 16 (spec §8).
    pub capacity: u32,
    /// Tree search and sampling knobs (spec §1–§6); `search.seed` is the run seed.
    pub search: SearchConfig,
    /// Verifier threads and deadline (spec §2: a timeout is an error, never a wrong answer).
    pub verifier: PoolConfig,
    /// Deadline of every unary RPC. Default "10s".
    #[serde(with = "humantime_serde")]
    pub rpc_timeout: Duration,
    /// TCP connect deadline. Default "5s".
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// First reconnect / retry pause; doubles up to `backoff_max`. Default "100ms".
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Longest reconnect / retry pause. Default "10s".
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Attempts of one outcome report before the lease is left to expire. Default 5.
    pub report_attempts: u32,
    /// Trajectories queued for the learner before the actor stops leasing (backpressure).
    /// Default 256.
    pub push_queue: usize,
    /// Unacknowledged trajectories allowed before the learner's first answer grants credits.
    /// Default 0 (the learner opens each stream with a response granting credits).
    pub initial_credits: u32,
    /// With trajectories in flight and no acknowledgement for this long, the stream is
    /// considered dead and reopened (unacknowledged ones are re-sent). Default "30s".
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// At exit, how long to wait for the learner to acknowledge what is queued. Default "30s".
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// Download new policy versions and swap them in between batches. Default true.
    pub follow_policy: bool,
    /// Deadline of one weights download. Default "10m".
    #[serde(with = "humantime_serde")]
    pub weights_timeout: Duration,
    /// Preferred weights chunk size in bytes (0 = the learner's default). Default 4 MiB.
    pub weights_chunk_bytes: u32,
    /// Largest gRPC message sent or accepted. Default 64 MiB.
    pub max_message_bytes: usize,
    /// Verified solutions sent with a search report (the coordinator's cache keeps at most its
    /// `cache.max_solutions`, default 8). Default 8.
    pub max_solutions: usize,
    /// Prometheus `/metrics` listen address (expansions, generated tokens, tree depth and
    /// frontier, verifier latency and errors, policy version and lag); none = not served.
    /// Default none.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ActorConfig {
    fn default() -> Self {
        ActorConfig {
            name: String::new(),
            coordinator: "127.0.0.1:50051".into(),
            learner: "127.0.0.1:50052".into(),
            capacity: 16,
            search: SearchConfig::default(),
            verifier: PoolConfig::default(),
            rpc_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            report_attempts: 5,
            push_queue: 256,
            initial_credits: 0,
            ack_timeout: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(30),
            follow_policy: true,
            weights_timeout: Duration::from_secs(600),
            weights_chunk_bytes: 4 << 20,
            max_message_bytes: 64 << 20,
            max_solutions: 8,
            metrics_listen: None,
        }
    }
}

/// A config value the actor cannot run with.
#[derive(Debug, thiserror::Error)]
#[error("invalid actor config field `{field}`: {reason}")]
pub struct ActorConfigError {
    pub field: String,
    pub reason: String,
}

impl ActorConfig {
    /// Small, fast settings for tests: `SearchConfig::for_test`, capacity 4, short deadlines.
    pub fn for_test(coordinator: &str, learner: &str) -> Self {
        ActorConfig {
            name: "test-actor".into(),
            coordinator: coordinator.into(),
            learner: learner.into(),
            capacity: 4,
            search: SearchConfig::for_test(),
            rpc_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
            ack_timeout: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(5),
            weights_timeout: Duration::from_secs(10),
            weights_chunk_bytes: 64,
            ..ActorConfig::default()
        }
    }

    /// Checks values serde cannot express.
    pub fn validate(&self) -> Result<(), ActorConfigError> {
        let err = |field: &str, reason: &str| {
            Err(ActorConfigError {
                field: field.into(),
                reason: reason.into(),
            })
        };
        if let Err(e) = self.search.validate() {
            return Err(ActorConfigError {
                field: format!("search.{}", e.field),
                reason: e.reason,
            });
        }
        if self.capacity == 0 {
            return err("capacity", "must be at least 1");
        }
        if self.coordinator.is_empty() {
            return err("coordinator", "is empty");
        }
        if self.learner.is_empty() {
            return err("learner", "is empty");
        }
        if self.rpc_timeout.is_zero()
            || self.connect_timeout.is_zero()
            || self.ack_timeout.is_zero()
        {
            return err("rpc_timeout", "deadlines must be > 0");
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return err("backoff_initial", "must be > 0 and <= backoff_max");
        }
        if self.report_attempts == 0 {
            return err("report_attempts", "must be at least 1");
        }
        if self.push_queue == 0 {
            return err("push_queue", "must be at least 1");
        }
        if self.max_message_bytes < 1024 {
            return err("max_message_bytes", "must be at least 1024");
        }
        if self.max_solutions == 0 {
            return err("max_solutions", "must be at least 1");
        }
        Ok(())
    }
}

/// Exponential backoff: `initial · 2^attempt`, capped at `max` (pure; attempt 0 = first retry).
pub fn backoff_delay(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(1));
        let got: Vec<u128> = (0..6).map(|a| backoff_delay(i, m, a).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff_delay(i, m, 1000), m);
    }

    #[test]
    fn config_parses_partially_and_rejects_typos() {
        let c: ActorConfig = serde_json::from_str(
            r#"{"capacity": 2, "rpc_timeout": "3s", "search": {"segment_tokens": 128}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.capacity, c.rpc_timeout, c.search.segment_tokens),
            (2, Duration::from_secs(3), 128)
        );
        assert!(c.validate().is_ok());
        let e = serde_json::from_str::<ActorConfig>(r#"{"capacty": 2}"#).unwrap_err();
        assert!(e.to_string().contains("capacty"), "{e}");
        let c = ActorConfig {
            capacity: 0,
            ..ActorConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "capacity");
        let mut c = ActorConfig::default();
        c.search.expansion_width = 0;
        assert_eq!(c.validate().unwrap_err().field, "search.expansion_width");
    }
}
