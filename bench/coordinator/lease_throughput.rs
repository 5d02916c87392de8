//! Coordinator throughput over real gRPC on loopback: A actors lease and report filter items as
//! fast as they can (every accepted result fsynced before OK), then the coordinator is restarted
//! on the same database to time the reload.
//!
//! Run: `CARGO_TARGET_DIR=target-coord cargo run --release -p deepsearch-coordinator --example
//! lease_throughput -- [problems] [actors] [batch] [results]` (defaults 20000 16 16 8000).
//! Reference: paper-scale demand, 1000 actors x 16 trees finishing every ~60 s ≈ 267 results/s.

use std::time::{Duration, Instant};

use deepsearch_coordinator::{ClientOptions, Coordinator, CoordinatorClient, CoordinatorConfig};
use deepsearch_proto::v1 as pb;
use deepsearch_tasks::Problem;

const PAPER_DEMAND_PER_S: f64 = 1000.0 * 16.0 / 60.0;

fn arg(i: usize, default: usize) -> usize {
    std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

async fn serve(cfg: CoordinatorConfig, problems: Vec<Problem>) -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>, Duration) {
    let t = Instant::now();
    let c = Coordinator::open(cfg).await.unwrap();
    c.add_problems(problems).await.unwrap();
    let open = t.elapsed();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let join = tokio::spawn(async move {
        c.serve(l, None, async { let _ = rx.await; }).await.unwrap();
    });
    (addr, tx, join, open)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

#[tokio::main]
async fn main() {
    let (n_problems, n_actors, batch, n_results) = (arg(1, 20_000), arg(2, 16), arg(3, 16), arg(4, 8_000));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "t").unwrap();
    let mut cfg = CoordinatorConfig::for_test(dir.path());
    cfg.schedule.lease_ttl = Duration::from_secs(60);
    cfg.schedule.lease_max = Duration::from_secs(600);
    cfg.schedule.sweep_interval = Duration::from_secs(1);
    let problems: Vec<Problem> = (0..n_problems)
        .map(|i| Problem::new(format!("p{i}"), "arithmetic", format!("what is {i} + 1?"), (i + 1).to_string()))
        .collect();
    let (addr, stop, join, open) = serve(cfg.clone(), problems.clone()).await;
    println!("open + add {n_problems} problems: {:.2} s", open.as_secs_f64());

    let start = Instant::now();
    let per_actor = n_results / n_actors;
    let mut tasks = Vec::new();
    for a in 0..n_actors {
        let c = CoordinatorClient::connect_lazy(&addr, ClientOptions::default()).unwrap();
        tasks.push(tokio::spawn(async move {
            let id = c.register_actor(&format!("actor-{a}"), batch as u32, 0).await.unwrap().actor_id;
            let (mut done, mut lease_lat, mut report_lat) = (0, Vec::new(), Vec::new());
            while done < per_actor {
                let t = Instant::now();
                let items = c.lease_work(&id, batch as u32).await.unwrap().items;
                lease_lat.push(t.elapsed());
                for (j, it) in items.iter().enumerate() {
                    let t = Instant::now();
                    let r = c
                        .report_outcome(pb::ReportOutcomeRequest {
                            actor_id: id.clone(),
                            lease_id: it.lease_id.clone(),
                            samples: 4,
                            correct: (j % 3) as u32,
                            generated_tokens: 400,
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    report_lat.push(t.elapsed());
                    assert_eq!(r.disposition, pb::ReportDisposition::Accepted as i32);
                    done += 1;
                }
            }
            (done, lease_lat, report_lat)
        }));
    }
    let (mut total, mut lease_lat, mut report_lat) = (0, Vec::new(), Vec::new());
    for t in tasks {
        let (d, l, r) = t.await.unwrap();
        total += d;
        lease_lat.extend(l);
        report_lat.extend(r);
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = total as f64 / secs;
    println!("{total} results by {n_actors} actors (batch {batch}) in {secs:.2} s: {rate:.0} results/s");
    println!(
        "lease   p50 {:.2} ms  p99 {:.2} ms   (over {n_problems} problems)",
        pct(&mut lease_lat, 0.5).as_secs_f64() * 1e3,
        pct(&mut lease_lat, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "report  p50 {:.2} ms  p99 {:.2} ms   (durable before OK, group commit)",
        pct(&mut report_lat, 0.5).as_secs_f64() * 1e3,
        pct(&mut report_lat, 0.99).as_secs_f64() * 1e3
    );
    println!("ratio vs paper-scale demand ({PAPER_DEMAND_PER_S:.0} results/s): {:.1}x", rate / PAPER_DEMAND_PER_S);
    let _ = stop.send(());
    join.await.unwrap();
    let db = std::fs::metadata(cfg.db_path()).map(|m| m.len()).unwrap_or(0);
    let (_, stop, join, reopen) = serve(cfg, problems).await;
    println!("restart: reload {n_problems} records + {total} accepted ids: {:.2} s (db {:.1} MiB)", reopen.as_secs_f64(), db as f64 / 1048576.0);
    let _ = stop.send(());
    join.await.unwrap();
}
