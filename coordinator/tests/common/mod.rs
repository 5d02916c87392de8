//! Shared helpers of the coordinator's integration tests: an in-process server on 127.0.0.1:0,
//! clients, problems and a poll-with-timeout helper (no sleeps to wait for things).
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use deepsearch_coordinator::{ClientOptions, Coordinator, CoordinatorClient, CoordinatorConfig};
use deepsearch_proto::v1 as pb;
use deepsearch_tasks::Problem;

/// The admin token every test server uses.
pub const TOKEN: &str = "test-token-123";

/// Upper bound of any single test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `f` under [`TEST_TIMEOUT`].
pub async fn with_timeout<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f).await.expect("test timed out");
}

/// `CoordinatorConfig::for_test` with the admin token file written.
pub fn config(dir: &Path) -> CoordinatorConfig {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).unwrap();
    CoordinatorConfig::for_test(dir)
}

/// `n` problems with ids p0..p{n-1}.
pub fn problems(n: usize) -> Vec<Problem> {
    (0..n)
        .map(|i| Problem::new(format!("p{i}"), "arithmetic", format!("what is {i} + 1?"), format!("{}", i + 1)))
        .collect()
}

/// A coordinator served in-process.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<deepsearch_coordinator::Result<()>>,
}

impl TestServer {
    /// Opens the coordinator, adds `problems` and serves on a fresh loopback port.
    pub async fn start(cfg: CoordinatorConfig, problems: Vec<Problem>) -> TestServer {
        Self::start_with_metrics(cfg, problems, None).await
    }

    /// Like [`TestServer::start`] with a metrics listener.
    pub async fn start_with_metrics(
        cfg: CoordinatorConfig,
        problems: Vec<Problem>,
        metrics: Option<tokio::net::TcpListener>,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let c = Coordinator::open(cfg).await.unwrap();
        c.add_problems(problems).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let join = tokio::spawn(c.serve(listener, metrics, async {
            let _ = rx.await;
        }));
        TestServer { addr, stop: Some(tx), join }
    }

    /// Shuts down and waits until the database is closed.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.join.await.unwrap().unwrap();
    }

    /// A client with the right admin token.
    pub fn client(&self) -> CoordinatorClient {
        client(self.addr, Some(TOKEN))
    }
}

/// A client of `addr` with an optional admin token and a 5 s deadline.
pub fn client(addr: SocketAddr, token: Option<&str>) -> CoordinatorClient {
    CoordinatorClient::connect_lazy(
        &addr.to_string(),
        ClientOptions {
            timeout: Duration::from_secs(5),
            admin_token: token.map(str::to_string),
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

/// A filter/sample/cached report with `samples` and `correct`.
pub fn report(actor: &str, item: &pb::WorkItem, samples: u32, correct: u32) -> pb::ReportOutcomeRequest {
    pb::ReportOutcomeRequest {
        actor_id: actor.into(),
        lease_id: item.lease_id.clone(),
        policy_version: item.policy_version,
        samples,
        correct,
        generated_tokens: 100,
        ..Default::default()
    }
}

/// A correct solution.
pub fn solution(text: &str) -> pb::Solution {
    pb::Solution {
        text: text.into(),
        tokens: vec![1, 2, 3],
        policy_version: 0,
        verdict: pb::Verdict::Correct as i32,
    }
}

/// Calls `f` until it returns `Some`, at most for `limit`, pausing `every` between tries.
pub async fn poll<T, Fut: Future<Output = Option<T>>>(limit: Duration, every: Duration, mut f: impl FnMut() -> Fut) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {limit:?}");
        tokio::time::sleep(every).await;
    }
}

/// The mode of a work item.
pub fn mode(item: &pb::WorkItem) -> pb::WorkMode {
    pb::WorkMode::try_from(item.mode).unwrap()
}

/// The disposition of a report response.
pub fn disposition(r: &pb::ReportOutcomeResponse) -> pb::ReportDisposition {
    pb::ReportDisposition::try_from(r.disposition).unwrap()
}

/// Log lines written while a [`capture_logs`] guard is alive (on this thread: tests run on a
/// current-thread runtime, so the in-process server logs here too).
#[derive(Clone, Default)]
pub struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuf {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

/// Captures INFO and above on this thread until the guard drops.
pub fn capture_logs() -> (LogBuf, tracing::subscriber::DefaultGuard) {
    let buf = LogBuf::default();
    let sub = tracing_subscriber::fmt()
        .with_writer(buf.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (buf, tracing::subscriber::set_default(sub))
}
