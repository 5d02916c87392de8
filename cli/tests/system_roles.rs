//! System tests over real sockets (issue #6 "Must show"): the coordinator and the learner run by
//! their real `run` functions on 127.0.0.1:0 (or the learner as a `deepsearch learner` process),
//! actors as real `deepsearch actor` processes on a tiny random Qwen2 with the real engine.
//!
//! - the full loop: filter → search → trajectories → learner step → new version → the actor
//!   downloads, verifies and swaps it, and trajectories of the new version reach the learner;
//! - kill -9 of an actor mid-search: its leases come back after the lease deadline, another actor
//!   runs them, and the learner gets no duplicate and no partial group;
//! - kill -9 of the learner: restarted on its checkpoint folder it continues at the checkpoint's
//!   version, the actor reconnects and training goes on;
//! - a peer that accepts connections and never answers: deadline errors and retries, and a clean
//!   exit on SIGTERM, never a hang.
//!
//! The tests run one at a time ([`system_support::serial`]); every wait has a generous deadline
//! (the machine may be loaded) while the configs use short leases and heartbeats.

mod system_support;

use std::time::Duration;

use system_support::*;

fn learner_metrics(text: &str) -> (f64, f64, f64, f64, f64) {
    let t = |d: &str| metric(text, &format!("deepsearch_learner_trajectories_total{{disposition=\"{d}\"}}"));
    (t("accepted"), t("duplicate"), t("rejected"), t("stale"), metric(text, "deepsearch_learner_pending_groups"))
}

fn leases_expired(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("deepsearch_coordinator_leases_expired_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_loop_filter_search_step_new_version_actor_swaps() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let coord = CoordinatorProc::start(coordinator_config(&dir.path().join("coord")), 6).await;
    let learner = LearnerProc::start(&model, coord.addr).await;
    let cfg = actor_config(dir.path(), "a0", &model, &coord.addr.to_string(), &learner.addr.to_string(), "", SEARCH);
    let mut actor = ActorProc::spawn(&cfg).await;

    let (ar, lr) = (&actor, &learner);
    let c = wait_for(120, "a swapped policy version and a step trained on it", || async move {
        let c = ar.counters()?;
        let new_version_trained = lr.steps.lock().unwrap().iter().any(|(_, vs)| vs.iter().any(|&v| v >= 1));
        (a(&c, "weight_swaps") >= 1.0 && a(&c, "policy_version") >= 1.0 && new_version_trained).then_some(c)
    })
    .await;

    // filter → search happened on the coordinator
    let ct = coord.scrape();
    assert!(metric(&ct, "deepsearch_coordinator_leases_issued_total{mode=\"filter\"}") >= 1.0, "{ct}");
    assert!(metric(&ct, "deepsearch_coordinator_leases_issued_total{mode=\"search\"}") >= 1.0, "{ct}");
    assert!(metric(&ct, "deepsearch_coordinator_policy_version") >= 1.0, "the learner did not publish to the coordinator: {ct}");
    // the actor searched trees and its metrics endpoint shows the search inputs
    assert!(a(&c, "trees") >= 1.0 && a(&c, "expansions") >= 1.0 && a(&c, "generated_tokens") > 0.0, "{c:?}");
    let text = scrape(actor.metrics).unwrap();
    for name in ["deepsearch_actor_tree_depth_total", "deepsearch_actor_verifier_seconds_count", "deepsearch_actor_policy_lag"] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(metric(&text, "deepsearch_actor_verifier_seconds_count") >= 1.0, "{text}");
    // every trajectory the learner trained on is well-versioned, nothing was rejected or duplicated
    let (accepted, dup, rejected, _, _) = learner_metrics(&learner.scrape());
    assert!(accepted >= 4.0 && dup == 0.0 && rejected == 0.0, "accepted {accepted} duplicate {dup} rejected {rejected}");
    for (v, vs) in learner.steps.lock().unwrap().iter() {
        assert!(vs.iter().all(|t| t < v), "step to version {v} trained on a trajectory from the future: {vs:?}");
    }

    assert!(actor.proc.terminate(30), "the actor did not exit cleanly on SIGTERM:\n{}", actor.proc.log());
    learner.stop().await;
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_actor_leases_return_and_no_trajectory_is_lost_or_duplicated() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let coord = CoordinatorProc::start(coordinator_config(&dir.path().join("coord")), 4).await;
    let learner = LearnerProc::start(&model, coord.addr).await;
    let (caddr, laddr) = (coord.addr.to_string(), learner.addr.to_string());

    // Actor A filters, then gets killed as soon as it holds search leases (its trees take seconds).
    let a_cfg = actor_config(dir.path(), "victim", &model, &caddr, &laddr, "", SLOW_SEARCH);
    let mut victim = ActorProc::spawn(&a_cfg).await;
    let (cr, vr) = (&coord, &victim);
    wait_for(90, "actor A to lease search work", || async move {
        let leased = metric(&cr.scrape(), "deepsearch_coordinator_leases_issued_total{mode=\"search\"}") >= 1.0;
        let c = vr.counters()?;
        // mid-search: no tree of A finished, nothing streamed
        assert_eq!((a(&c, "trees"), a(&c, "trajectories_queued")), (0.0, 0.0), "A finished a search before the kill");
        leased.then_some(())
    })
    .await;
    victim.proc.kill9();
    let search_leases = metric(&coord.scrape(), "deepsearch_coordinator_leases_issued_total{mode=\"search\"}");

    // Actor B comes up; A's leases expire after the lease deadline and B runs them.
    let b_cfg = actor_config(dir.path(), "rescuer", &model, &caddr, &laddr, "", SEARCH);
    let mut rescuer = ActorProc::spawn(&b_cfg).await;
    let br = &rescuer;
    wait_for(120, "A's leases to expire and B to search and stream", || async move {
        let ct = cr.scrape();
        let c = br.counters()?;
        let reissued = metric(&ct, "deepsearch_coordinator_leases_issued_total{mode=\"search\"}") > search_leases;
        (leases_expired(&ct) >= 1.0 && reissued && a(&c, "trees") >= 2.0 && a(&c, "trajectories_acked") >= 4.0).then_some(())
    })
    .await;

    // Stop B cleanly: it flushes what it queued; its final counters are in its log.
    assert!(rescuer.proc.terminate(30), "B did not exit cleanly:\n{}", rescuer.proc.log());
    let log = rescuer.proc.log();
    let field = |name: &str| -> f64 {
        let line = log.lines().find(|l| l.contains("actor finished")).unwrap_or_else(|| panic!("no final line:\n{log}"));
        let rest = &line[line.find(&format!("{name}=")).unwrap() + name.len() + 1..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (queued, acked) = (field("trajectories_queued"), field("trajectories_acked"));
    let (accepted, dup, rejected, stale, pending) = learner_metrics(&learner.scrape());
    let lt = learner.scrape();
    // A was killed before it streamed anything (filter items have no trajectories), so the
    // learner holds exactly B's trajectories: none lost, none twice, no partial group.
    assert_eq!(queued, acked, "B exited with unacknowledged trajectories");
    assert_eq!(accepted, queued, "learner accepted {accepted} ({stale} stale) of {queued} queued by B");
    assert_eq!((dup, rejected, pending), (0.0, 0.0, 0.0), "{lt}");
    assert_eq!(metric(&lt, "deepsearch_learner_groups_total{disposition=\"expired\"}"), 0.0, "{lt}");

    learner.stop().await;
    coord.stop().await;
}

/// The learner's config file for the process tests.
fn learner_file(dir: &std::path::Path, model: &std::path::Path, coordinator: &str) -> std::path::PathBuf {
    let p = dir.join("learner.toml");
    let text = format!(
        r#"[model]
path = {model:?}
[learner]
lr = 1e-3
warmup_steps = 1
prompts_per_step = 2
mini_batches = 1
micro_batch_size = 8
logprob_chunk = 16
[runtime]
prompts_per_step = 2
max_queued_trajectories = 256
[runtime.coordinator]
address = "{coordinator}"
timeout = "2s"
backoff = "100ms"
"#,
        model = model.display().to_string()
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn checkpoint_version(dir: &std::path::Path) -> u64 {
    let latest = deepsearch_learner::latest_checkpoint(dir).unwrap().expect("a checkpoint");
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(latest.join("trainer_state.json")).unwrap()).unwrap();
    state["policy_version"].as_u64().unwrap()
}

fn logged_version(log: &str) -> u64 {
    let line = log.lines().find(|l| l.contains("learner listening")).expect("listening line");
    let rest = &line[line.find("version=").expect("version field") + 8..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_learner_resumes_from_its_checkpoint_and_training_continues() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let ckpt = dir.path().join("ckpt");
    let coord = CoordinatorProc::start(coordinator_config(&dir.path().join("coord")), 6).await;
    let lfile = learner_file(dir.path(), &model, &coord.addr.to_string());
    let args = |listen: &str| {
        let v = ["learner", "--config", lfile.to_str().unwrap(), "--listen", listen, "--metrics-listen", "127.0.0.1:0", "--checkpoint-dir", ckpt.to_str().unwrap()];
        v.map(String::from)
    };
    let spawn = |listen: &str| {
        let a = args(listen);
        ChildProc::spawn(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let mut first = spawn("127.0.0.1:0");
    let laddr = first.logged_addr("learner listening").await;
    let lmetrics = first.logged_addr("metrics listening").await;
    assert_eq!(logged_version(&first.log()), 0);
    let cfg = actor_config(dir.path(), "a0", &model, &coord.addr.to_string(), &laddr.to_string(), "", SEARCH);
    let actor = ActorProc::spawn(&cfg).await;

    wait_for(120, "the first learner step", || async move {
        (metric(&scrape(lmetrics)?, "deepsearch_learner_steps_total") >= 1.0).then_some(())
    })
    .await;
    first.kill9();
    let v_ckpt = checkpoint_version(&ckpt);
    assert!(v_ckpt >= 1, "checkpoint at version {v_ckpt}");

    // Restarted on the same address and folder: the version continues from the checkpoint.
    let second = spawn(&laddr.to_string());
    let m2 = second.logged_addr("metrics listening").await;
    second.logged_addr("learner listening").await;
    assert_eq!(logged_version(&second.log()), v_ckpt, "{}", second.log());
    assert!(second.log().contains("resumed"), "{}", second.log());
    let ar = &actor;
    wait_for(120, "training to continue past the checkpoint and the actor to follow", || async move {
        let v = metric(&scrape(m2)?, "deepsearch_learner_policy_version");
        let c = ar.counters()?;
        (v > v_ckpt as f64 && a(&c, "policy_version") > v_ckpt as f64).then_some(())
    })
    .await;
    let (_, dup, rejected, _, _) = learner_metrics(&scrape(m2).unwrap());
    assert_eq!((dup, rejected), (0.0, 0.0));
    drop(second);
    drop(actor);
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_gives_deadline_errors_and_a_clean_exit_not_a_hang() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    // Accepts TCP connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept() {
            held.push(s);
        }
    });
    let cfg = actor_config(dir.path(), "a0", &model, &addr, &addr, "", SEARCH);
    // rpc_timeout 3 s in the file; here 500 ms
    let text = std::fs::read_to_string(&cfg).unwrap().replace("rpc_timeout = \"3s\"", "rpc_timeout = \"500ms\"");
    std::fs::write(&cfg, text).unwrap();
    let mut actor = ActorProc::spawn(&cfg).await;
    let pr = &actor.proc;
    let started = std::time::Instant::now();
    wait_for(60, "two deadline errors", || async move {
        let log = pr.log();
        let failures = log.lines().filter(|l| l.contains("registering with the coordinator failed") && l.contains("did not answer within 500ms")).count();
        (failures >= 2).then_some(())
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(actor.proc.terminate(10), "the actor did not exit cleanly:\n{}", actor.proc.log());
    assert!(actor.proc.log().contains("actor finished"), "{}", actor.proc.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_coordinator_restarts_with_its_records_and_the_actor_reconnects() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let cfile = dir.path().join("coordinator.toml");
    std::fs::write(
        &cfile,
        format!(
            r#"state_dir = {state:?}
[[sources]]
kind = "countdown"
count = 4
seed = 3
config = {{ min_numbers = 3, max_numbers = 3 }}
[filter]
k = 2
[schedule]
group_size = 4
lease_ttl = "2s"
heartbeat_interval = "200ms"
sweep_interval = "50ms"
retry_after = "50ms"
[admin]
token_env = "DEEPSEARCH_SYSTEM_TEST_NO_TOKEN"
"#,
            state = dir.path().join("coord").display().to_string()
        ),
    )
    .unwrap();
    let spawn = |listen: &str| ChildProc::spawn(&["coordinator", "--config", cfile.to_str().unwrap(), "--listen", listen, "--metrics-listen", "127.0.0.1:0"]);
    let mut first = spawn("127.0.0.1:0");
    let caddr = first.logged_addr("coordinator starting").await;
    let m1 = first.logged_addr("metrics listening").await;
    let learner = LearnerProc::start(&model, caddr).await;
    let cfg = actor_config(dir.path(), "a0", &model, &caddr.to_string(), &learner.addr.to_string(), "", SEARCH);
    let actor = ActorProc::spawn(&cfg).await;

    // wait until every problem was filtered (each now hard or retired) and some searches ran
    let filtered = |t: &str| 4.0 - metric(t, "deepsearch_coordinator_problems{status=\"unfiltered\"}");
    let before = wait_for(120, "the filter pass and a search", || async move {
        let t = scrape(m1)?;
        let searched = metric(&t, "deepsearch_coordinator_leases_issued_total{mode=\"search\"}") >= 1.0;
        let statuses = ["hard", "retired", "cached"].map(|s| metric(&t, &format!("deepsearch_coordinator_problems{{status=\"{s}\"}}")));
        (filtered(&t) == 4.0 && searched).then_some(statuses)
    })
    .await;
    first.kill9();

    // Restarted on the same state and address: the records are intact, the actor carries on.
    let second = spawn(&caddr.to_string());
    let m2 = second.logged_addr("metrics listening").await;
    let ar = &actor;
    let leased_before = a(&actor.counters().unwrap(), "items_leased");
    wait_for(120, "the actor to report to the restarted coordinator", || async move {
        let t = scrape(m2)?;
        let c = ar.counters()?;
        let accepted = metric(&t, "deepsearch_coordinator_reports_total{disposition=\"accepted\"}");
        (accepted >= 1.0 && a(&c, "items_leased") > leased_before).then_some(())
    })
    .await;
    let t = scrape(m2).unwrap();
    assert_eq!(filtered(&t), 4.0, "filter results lost in the crash:\n{t}");
    // hard problems may only move on (to cached or retired), never back
    let after = ["hard", "retired", "cached"].map(|s| metric(&t, &format!("deepsearch_coordinator_problems{{status=\"{s}\"}}")));
    assert!(after[1] >= before[1] && after[2] >= before[2], "before {before:?} after {after:?}");
    drop(actor);
    drop(second);
    learner.stop().await;
}
