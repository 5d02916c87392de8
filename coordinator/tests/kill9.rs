//! Fault test: kill -9 the coordinator process and restart it on the same state directory and
//! port. Every record, cached solution and accepted result is intact, the lease in flight at the
//! crash can still be reported, and the actor's client reconnects (issue #6 "Must show").

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use deepsearch_proto::v1 as pb;
use tonic::Code;

/// Kills the child on drop, so a failing test leaves no process behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(config: &Path, listen: &str) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coordinator-server"))
        .args(["--config", config.to_str().unwrap(), "--listen", listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening ").expect("listening line").to_string();
    (Proc(child), addr)
}

#[tokio::test]
async fn kill_dash_nine_loses_nothing_acknowledged() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin.token"), TOKEN).unwrap();
        let cfg_path = dir.path().join("coordinator.toml");
        std::fs::write(
            &cfg_path,
            format!(
                r#"
state_dir = "{d}"
[[sources]]
kind = "arithmetic"
count = 3
seed = 11
[schedule]
lease_ttl = "20s"
[admin]
token_file = "{d}/admin.token"
"#,
                d = dir.path().display()
            ),
        )
        .unwrap();

        let (mut proc1, addr) = spawn(&cfg_path, "127.0.0.1:0");
        let c = client(addr.parse().unwrap(), Some(TOKEN));
        c.register_actor("actor-0", 4, 0).await.unwrap();
        let items = c.lease_work("actor-0", 3).await.unwrap().items;
        assert_eq!(items.len(), 3);
        // Two accepted results: one hard, one retired. The third lease is in flight at the crash.
        assert_eq!(c.report_outcome(report("actor-0", &items[0], 4, 0)).await.unwrap().problem_status, "hard");
        assert_eq!(c.report_outcome(report("actor-0", &items[1], 4, 4)).await.unwrap().problem_status, "retired");
        // Then the hard one is searched and cached.
        let search = c.lease_work("actor-0", 1).await.unwrap().items.remove(0);
        assert_eq!(mode(&search), pb::WorkMode::Search);
        let mut rep = report("actor-0", &search, 8, 1);
        rep.solutions = vec![solution("cached answer")];
        assert_eq!(c.report_outcome(rep).await.unwrap().problem_status, "cached");

        proc1.0.kill().unwrap(); // SIGKILL
        proc1.0.wait().unwrap();

        let (_proc2, addr2) = spawn(&cfg_path, &addr);
        assert_eq!(addr2, addr);
        // The same client reconnects; the restarted coordinator does not know the actor yet.
        let err = poll(Duration::from_secs(10), Duration::from_millis(50), || async {
            match c.heartbeat("actor-0", vec![items[2].lease_id.clone()], 0).await {
                Err(s) if s.code() == Code::Unavailable => None,
                other => Some(other),
            }
        })
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        c.register_actor("actor-0", 4, 0).await.unwrap();
        // The lease in flight at the crash is still valid and its result is accepted once.
        let hb = c.heartbeat("actor-0", vec![items[2].lease_id.clone()], 0).await.unwrap();
        assert!(hb.lost_lease_ids.is_empty());
        let r = c.report_outcome(report("actor-0", &items[2], 4, 1)).await.unwrap();
        assert_eq!(disposition(&r), pb::ReportDisposition::Accepted);
        // Results accepted before the crash stay accepted exactly once.
        let dup = c.report_outcome(report("actor-0", &items[0], 4, 0)).await.unwrap();
        assert_eq!(disposition(&dup), pb::ReportDisposition::Duplicate);

        let status = c.status().await.unwrap();
        assert_eq!(status.problems_by_status["cached"], 1);
        assert_eq!(status.problems_by_status["retired"], 1);
        assert_eq!(status.problems_by_status["hard"], 1);
        let cache = c.export_cache().await.unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(cache[0].solutions[0].text, "cached answer");
        let shown = c.show_problem(&search.problem.as_ref().unwrap().id).await.unwrap();
        assert_eq!((shown.results, shown.history.len()), (2, 1));
    })
    .await;
}
