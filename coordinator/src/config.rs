//! Typed coordinator configuration (design.md "Formats users already have"; style.md §7).
//!
//! Every knob is a field with its default in the doc comment; unknown fields are errors so a typo
//! in a config file never silently falls back to a default. Durations are humantime strings
//! ("5s", "30m").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Top-level configuration of the coordinator role.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    /// gRPC listen address, used when the binary binds the socket itself.
    /// Default "127.0.0.1:50051" (loopback unless told otherwise).
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listen address; unset = no metrics listener. Default unset.
    pub metrics_listen: Option<SocketAddr>,
    /// Directory of the durable state; the redb file is `<state_dir>/coordinator.redb`.
    /// Default "state/coordinator".
    pub state_dir: PathBuf,
    /// Problem sources loaded at start; problems already in the store keep their records.
    /// Default: none (problems may also be added through [`crate::Coordinator::add_problems`]).
    pub sources: Vec<crate::sources::SourceConfig>,
    /// Hard-problem filter (spec §7).
    pub filter: FilterConfig,
    /// Solution cache (spec §7).
    pub cache: CacheConfig,
    /// Leases, heartbeats and rounds.
    pub schedule: ScheduleConfig,
    /// gRPC server limits and TLS.
    pub server: ServerConfig,
    /// Admin authentication.
    pub admin: AdminConfig,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_listen: None,
            state_dir: PathBuf::from("state/coordinator"),
            sources: Vec::new(),
            filter: FilterConfig::default(),
            cache: CacheConfig::default(),
            schedule: ScheduleConfig::default(),
            server: ServerConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

impl CoordinatorConfig {
    /// A configuration for tests: state in `state_dir`, short leases and timeouts so expiry can be
    /// observed in well under a second, admin token read from `<state_dir>/admin.token` (the test
    /// writes it).
    pub fn for_test(state_dir: &Path) -> Self {
        CoordinatorConfig {
            state_dir: state_dir.to_path_buf(),
            schedule: ScheduleConfig {
                lease_ttl: Duration::from_millis(400),
                lease_max: Duration::from_secs(5),
                actor_timeout: Duration::from_secs(5),
                heartbeat_interval: Duration::from_millis(100),
                sweep_interval: Duration::from_millis(50),
                retry_after: Duration::from_millis(20),
                ..ScheduleConfig::default()
            },
            server: ServerConfig {
                request_timeout: Duration::from_secs(5),
                ..ServerConfig::default()
            },
            admin: AdminConfig {
                token_file: Some(state_dir.join("admin.token")),
                token_env: None,
            },
            ..CoordinatorConfig::default()
        }
    }

    /// Reads a TOML file; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: CoordinatorConfig = toml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges that serde cannot express.
    pub fn validate(&self) -> Result<(), Error> {
        self.filter.validate()?;
        if self.cache.max_solutions == 0 {
            return Err(Error::Config("cache.max_solutions must be >= 1".into()));
        }
        if !(0.0..=1.0).contains(&self.cache.released_max_fraction) {
            return Err(Error::Config("cache.released_max_fraction must be in [0, 1]".into()));
        }
        if self.schedule.group_size == 0 {
            return Err(Error::Config("schedule.group_size must be >= 1".into()));
        }
        if self.schedule.lease_ttl.is_zero() || self.schedule.lease_max < self.schedule.lease_ttl {
            return Err(Error::Config(
                "schedule.lease_ttl must be > 0 and <= schedule.lease_max".into(),
            ));
        }
        if self.server.max_message_bytes < 1024 {
            return Err(Error::Config("server.max_message_bytes must be >= 1024".into()));
        }
        Ok(())
    }

    /// Path of the redb file inside `state_dir`.
    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join("coordinator.redb")
    }
}

/// Whether `Pass1@K == δ` keeps a problem (spec §7: "≤" in the released data, "<" as option).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Direct samples per filter pass. Default 4.
    pub k: u32,
    /// Keep a problem for search when Pass1@K ≤ delta (or < delta when `strict`). Default 0.25.
    pub delta: f64,
    /// Use "<" instead of "≤". Default false.
    pub strict: bool,
    /// When problems are re-filtered: `per_round` (each round re-filters the previous hard set with
    /// the newest policy, spec §7) or `continuous` (a problem is re-filtered as soon as a newer
    /// policy version than its last filter exists). Default `per_round`.
    pub refilter: Refilter,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            k: 4,
            delta: 0.25,
            strict: false,
            refilter: Refilter::PerRound,
        }
    }
}

impl FilterConfig {
    /// Checks `k >= 1` and `delta` in [0, 1].
    pub fn validate(&self) -> Result<(), Error> {
        if self.k == 0 {
            return Err(Error::Config("filter.k must be >= 1".into()));
        }
        if !(0.0..=1.0).contains(&self.delta) || self.delta.is_nan() {
            return Err(Error::Config(format!(
                "filter.delta must be in [0, 1], got {}",
                self.delta
            )));
        }
        Ok(())
    }
}

/// See [`FilterConfig::refilter`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Refilter {
    PerRound,
    Continuous,
}

/// Solution-cache admission (spec §7).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `released` (0 < correct fraction among the training rollouts ≤ `released_max_fraction`) or
    /// `paper` (a correct solution was found and Pass1@K < delta). Default `released`.
    pub rule: CacheRule,
    /// Upper bound of the released rule's correct fraction. Default 0.25.
    pub released_max_fraction: f64,
    /// Cached solutions kept per problem (= cached group members, spec §7: up to 8). Default 8.
    pub max_solutions: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            rule: CacheRule::Released,
            released_max_fraction: 0.25,
            max_solutions: 8,
        }
    }
}

/// See [`CacheConfig::rule`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CacheRule {
    Released,
    Paper,
}

/// What work the coordinator hands out.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Pipeline {
    /// Filter, then search hard problems or replay cached ones (DeepSearch, spec §7).
    Deepsearch,
    /// GRPO/DAPO baseline: every active problem gets `sample` items, no filter, no cache.
    Grpo,
}

/// Leases, heartbeats and rounds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Work to hand out. Default `deepsearch`.
    pub pipeline: Pipeline,
    /// Trajectories per prompt (spec §6: 8). Default 8.
    pub group_size: u32,
    /// A lease expires this long after it was issued or last extended by a heartbeat. Default "120s".
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Heartbeats never extend a lease past this long after it was issued. Default "30m".
    #[serde(with = "humantime_serde")]
    pub lease_max: Duration,
    /// An actor silent this long is dropped and its leases expire. Default "60s".
    #[serde(with = "humantime_serde")]
    pub actor_timeout: Duration,
    /// Heartbeat period told to actors. Default "10s".
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How often expired leases and silent actors are swept. Default "1s".
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Told to actors that got no work: ask again after this long. Default "1s".
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Expired lease ids are remembered this long, so a late report is answered "expired" rather
    /// than NOT_FOUND. Default "24h".
    #[serde(with = "humantime_serde")]
    pub expired_lease_retention: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            pipeline: Pipeline::Deepsearch,
            group_size: 8,
            lease_ttl: Duration::from_secs(120),
            lease_max: Duration::from_secs(30 * 60),
            actor_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
            expired_lease_retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// gRPC server limits and TLS.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Server-side deadline of every RPC. Default "30s".
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest message accepted or sent, in bytes (bigger → RESOURCE_EXHAUSTED/OUT_OF_RANGE).
    /// Default 4194304 (4 MiB).
    pub max_message_bytes: usize,
    /// TLS certificate and key (PEM); unset = plaintext. Default unset.
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            request_timeout: Duration::from_secs(30),
            max_message_bytes: 4 * 1024 * 1024,
            tls: None,
        }
    }
}

/// PEM files for the server's TLS identity.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// Where the admin bearer token comes from. The file wins over the environment variable.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// File holding the token (surrounding whitespace trimmed). Default unset.
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the token. Default "DEEPSEARCH_ADMIN_TOKEN".
    /// With neither set, every admin call is refused (UNAUTHENTICATED).
    pub token_env: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token_file: None,
            token_env: Some("DEEPSEARCH_ADMIN_TOKEN".into()),
        }
    }
}

impl AdminConfig {
    /// Resolves the token: the file if set, else the environment variable; `None` if neither
    /// yields a non-empty token.
    pub fn resolve_token(&self) -> Result<Option<String>, Error> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(Error::Config(format!("{}: admin token file is empty", path.display())));
            }
            return Ok(Some(token));
        }
        if let Some(var) = &self.token_env {
            if let Ok(v) = std::env::var(var) {
                let v = v.trim().to_string();
                if !v.is_empty() {
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_rejects_unknown_fields() {
        let cfg: CoordinatorConfig = toml::from_str(
            r#"
            state_dir = "/tmp/x"
            [filter]
            k = 8
            delta = 0.125
            strict = true
            refilter = "continuous"
            [schedule]
            lease_ttl = "5s"
            lease_max = "1m"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.filter.k, 8);
        assert_eq!(cfg.filter.refilter, Refilter::Continuous);
        assert_eq!(cfg.schedule.lease_ttl, Duration::from_secs(5));
        assert_eq!(cfg.schedule.lease_max, Duration::from_secs(60));
        assert_eq!(cfg.cache.max_solutions, 8);
        cfg.validate().unwrap();

        let err = toml::from_str::<CoordinatorConfig>("[filter]\ndelt = 0.3\n").unwrap_err();
        assert!(err.to_string().contains("delt"), "{err}");
    }

    #[test]
    fn shipped_example_parses_and_matches_defaults() {
        let cfg: CoordinatorConfig = toml::from_str(include_str!("../config.example.toml")).unwrap();
        cfg.validate().unwrap();
        let d = CoordinatorConfig::default();
        assert_eq!((cfg.listen, &cfg.state_dir), (d.listen, &d.state_dir));
        assert_eq!((&cfg.filter, &cfg.cache, &cfg.server), (&d.filter, &d.cache, &d.server));
        assert_eq!(cfg.admin, d.admin);
        assert_eq!(cfg.schedule, d.schedule);
        assert_eq!(cfg.sources.len(), 1);
    }

    #[test]
    fn validate_rejects_bad_ranges() {
        let mut cfg = CoordinatorConfig::default();
        cfg.filter.delta = 1.5;
        assert!(cfg.validate().is_err());
        let mut cfg = CoordinatorConfig::default();
        cfg.filter.k = 0;
        assert!(cfg.validate().is_err());
        let mut cfg = CoordinatorConfig::default();
        cfg.schedule.lease_max = Duration::from_secs(1);
        assert!(cfg.validate().is_err());
    }
}
