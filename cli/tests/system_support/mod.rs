//! Shared pieces of the system tests (issue #6 "Must show"): a tiny Countdown policy saved as a
//! Hugging Face folder, the coordinator and the learner served in-process by their real `run`
//! functions on 127.0.0.1:0, actors (and a learner) as real `deepsearch` child processes, and
//! readers for `/metrics` and for addresses printed in the children's logs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deepsearch_coordinator::{Coordinator, CoordinatorConfig};
use deepsearch_learner::runtime::{run_learner_with, CoordinatorLink, LearnerRuntimeConfig, PolicyTrainer, Trainer};
use deepsearch_learner::{Learner, LearnerConfig, SingleProcess, StepReport};
use deepsearch_policy::checkpoint::{PolicyModel, SaveOptions};
use deepsearch_policy::config::Qwen2Config;
use deepsearch_policy::tokenizer::PolicyTokenizer;
use deepsearch_search::Group;
use deepsearch_tasks::{countdown, registry};

/// One system test at a time: each runs several processes on 2 shared cores.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the [`SERIAL`] lock (async-aware, and a failed test does not poison the others).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// A tiny random Qwen2 over the Countdown alphabet, saved in HF layout under `dir`.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let alphabet = registry::alphabet(countdown::TASK).expect("countdown has an alphabet");
    let tok = PolicyTokenizer::char_level(alphabet).unwrap();
    let mut cfg = Qwen2Config::tiny(tok.vocab_size() as i64);
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    let out = dir.join("model");
    PolicyModel::init_random(&cfg, tok, 5).unwrap().save(&out, &SaveOptions::default()).unwrap();
    out
}

/// Polls `f` every 50 ms until it returns Some, or panics with `what` after `secs` seconds.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /metrics` as text (None if the endpoint does not answer).
pub fn scrape(addr: SocketAddr) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1.1 200").then_some(body)
}

/// The value of the sample `name` (with its labels, e.g. `x_total{mode="search"}`) in a scrape;
/// 0 when absent (Prometheus omits label sets never touched).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Scrapes `addr` and reads several metrics at once.
pub fn metrics_of(addr: SocketAddr, names: &[&str]) -> Option<HashMap<String, f64>> {
    let text = scrape(addr)?;
    Some(names.iter().map(|n| (n.to_string(), metric(&text, n))).collect())
}

/// The coordinator config of the tests: short leases and heartbeats, K = 2, groups of 4.
pub fn coordinator_config(state: &Path) -> CoordinatorConfig {
    let mut c = CoordinatorConfig::for_test(state);
    c.filter.k = 2;
    c.schedule.group_size = 4;
    c.schedule.lease_ttl = Duration::from_secs(2);
    c.schedule.lease_max = Duration::from_secs(60);
    c.schedule.heartbeat_interval = Duration::from_millis(200);
    c.schedule.actor_timeout = Duration::from_secs(4);
    c.admin.token_file = None;
    c
}

/// A coordinator served in-process by its real `serve`, with `/metrics`.
pub struct CoordinatorProc {
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<deepsearch_coordinator::Result<()>>,
}

impl CoordinatorProc {
    /// Opens a coordinator on `cfg` with `problems` Countdown problems of 3 numbers.
    pub async fn start(cfg: CoordinatorConfig, problems: usize) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ml = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, metrics) = (l.local_addr().unwrap(), ml.local_addr().unwrap());
        let c = Coordinator::open(cfg).await.unwrap();
        let ps = countdown::generate(&countdown::CountdownConfig::with_numbers(3), 17, problems).unwrap();
        assert_eq!(c.add_problems(ps).await.unwrap(), problems);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(c.serve(l, Some(ml), async move {
            let _ = rx.await;
        }));
        CoordinatorProc { addr, metrics, stop: Some(tx), task }
    }

    pub fn scrape(&self) -> String {
        scrape(self.metrics).expect("coordinator /metrics answers")
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.task).await.expect("coordinator stops").unwrap().unwrap();
    }
}

/// What the learner trained on, step by step: (version after the step, the policy versions of
/// the step's trajectories).
pub type Steps = Arc<Mutex<Vec<(u64, Vec<u64>)>>>;

/// [`PolicyTrainer`] recording every step.
pub struct Recording {
    pub inner: PolicyTrainer,
    pub steps: Steps,
}

impl Trainer for Recording {
    fn train_step(&mut self, groups: Vec<Group>) -> deepsearch_learner::Result<StepReport> {
        let versions: Vec<u64> = groups.iter().flat_map(|g| g.trajectories.iter().map(|t| t.policy_version)).collect();
        let r = self.inner.train_step(groups)?;
        self.steps.lock().unwrap().push((r.policy_version, versions));
        Ok(r)
    }
    fn export_weights(&self) -> deepsearch_learner::Result<Vec<u8>> {
        self.inner.export_weights()
    }
    fn config_json(&self) -> String {
        self.inner.config_json()
    }
    fn policy_version(&self) -> u64 {
        self.inner.policy_version()
    }
}

/// The learner config of the tests: 2 prompts per step, one update per step.
pub fn learner_config() -> LearnerConfig {
    LearnerConfig { prompts_per_step: 2, mini_batches: 1, micro_batch_size: 8, ..LearnerConfig::for_test() }
}

/// A learner served in-process by the real `run_learner_with` on the real Tree-GRPO learner.
pub struct LearnerProc {
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub steps: Steps,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<deepsearch_learner::Result<()>>,
}

impl LearnerProc {
    pub async fn start(model: &Path, coordinator: SocketAddr) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ml = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, metrics) = (l.local_addr().unwrap(), ml.local_addr().unwrap());
        let lcfg = learner_config();
        let rcfg = LearnerRuntimeConfig {
            listen: addr,
            prompts_per_step: lcfg.prompts_per_step,
            max_staleness: lcfg.max_staleness,
            max_queued_trajectories: 256,
            coordinator: Some(CoordinatorLink { address: coordinator.to_string(), ..CoordinatorLink::default() }),
            ..LearnerRuntimeConfig::default()
        };
        let policy = PolicyModel::load_with(model, "cpu", "f32").unwrap();
        let config_json = std::fs::read_to_string(model.join("config.json")).unwrap();
        let learner = Learner::new(lcfg, policy, Box::new(SingleProcess)).unwrap();
        let steps: Steps = Arc::default();
        let trainer = Recording { inner: PolicyTrainer::new(learner, config_json), steps: steps.clone() };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_learner_with(rcfg, trainer, l, Some(ml), async move {
            let _ = rx.await;
        }));
        LearnerProc { addr, metrics, steps, stop: Some(tx), task }
    }

    pub fn scrape(&self) -> String {
        scrape(self.metrics).expect("learner /metrics answers")
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.task).await.expect("learner stops").unwrap().unwrap();
    }
}

/// The `[actor.search]` of the tests: small trees (2 children per expansion, depth ≤ 4).
pub const SEARCH: &str = r#"
segment_tokens = 8
expansion_width = 2
max_depth = 4
trajectories_per_tree = 2
max_expansions = 6
[actor.search.overlong]
buffer_tokens = 8
"#;

/// Trees that take seconds even for the tiny model (an actor to kill mid-search).
pub const SLOW_SEARCH: &str = r#"
segment_tokens = 8
expansion_width = 2
max_depth = 16
trajectories_per_tree = 32
max_expansions = 400
[actor.search.overlong]
buffer_tokens = 8
"#;

/// Writes an actor config file and returns its path.
/// `extra` goes into `[actor]`, `search` is the `[actor.search]` section (e.g. [`SEARCH`]).
pub fn actor_config(dir: &Path, name: &str, model: &Path, coordinator: &str, learner: &str, extra: &str, search: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"[model]
dir = {model:?}

[actor]
name = "{name}"
coordinator = "{coordinator}"
learner = "{learner}"
capacity = 2
rpc_timeout = "3s"
connect_timeout = "1s"
backoff_initial = "50ms"
backoff_max = "500ms"
ack_timeout = "5s"
flush_timeout = "5s"
weights_timeout = "10s"
weights_chunk_bytes = 65536
metrics_listen = "127.0.0.1:0"
{extra}
[actor.search]
{search}
"#,
        model = model.display().to_string()
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// A `deepsearch` child process whose stderr is collected; killed (SIGKILL) on drop.
pub struct ChildProc {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ChildProc {
    /// Runs `deepsearch ARGS` with RUST_LOG=info and collects its stderr.
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deepsearch"))
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (err, l) = (child.stderr.take().unwrap(), log.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut g = l.lock().unwrap();
                g.push_str(&strip_ansi(&line));
                g.push('\n');
            }
        });
        ChildProc { child, log, reader: Some(reader) }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The address logged after `marker` as `addr=HOST:PORT` or `addr=Some(HOST:PORT)`.
    pub async fn logged_addr(&self, marker: &str) -> SocketAddr {
        wait_for(60, marker, || async { find_addr(&self.log(), marker) }).await
    }

    /// Sends SIGTERM and waits up to `secs` for a clean exit; returns whether it succeeded.
    pub fn terminate(&mut self, secs: u64) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.success();
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn find_addr(log: &str, marker: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let rest = &line[line.find("addr=")? + 5..];
    let rest = rest.strip_prefix("Some(").unwrap_or(rest);
    let end = rest.find(|c: char| c == ')' || c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A spawned actor with its `/metrics` address.
pub struct ActorProc {
    pub proc: ChildProc,
    pub metrics: SocketAddr,
}

impl ActorProc {
    pub async fn spawn(config: &Path) -> Self {
        let proc = ChildProc::spawn(&["actor", "--config", config.to_str().unwrap()]);
        let metrics = proc.logged_addr("metrics listening").await;
        ActorProc { proc, metrics }
    }

    /// The actor's counters (None when it no longer answers).
    pub fn counters(&self) -> Option<HashMap<String, f64>> {
        let names = [
            "deepsearch_actor_items_leased",
            "deepsearch_actor_batches",
            "deepsearch_actor_trees",
            "deepsearch_actor_expansions",
            "deepsearch_actor_generated_tokens",
            "deepsearch_actor_trajectories_queued",
            "deepsearch_actor_trajectories_acked",
            "deepsearch_actor_weight_swaps",
            "deepsearch_actor_policy_version",
            "deepsearch_actor_rpc_errors",
            "deepsearch_actor_reconnects",
        ];
        metrics_of(self.metrics, &names)
    }
}

/// `c["deepsearch_actor_<short>"]`.
pub fn a(c: &HashMap<String, f64>, short: &str) -> f64 {
    c[&format!("deepsearch_actor_{short}")]
}
