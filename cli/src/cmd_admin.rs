//! `deepsearch admin --coordinator ADDR [--token-file F] <cmd>`: operate a running coordinator
//! (issue #6 item 5). The token comes from `--token-file` or `$DEEPSEARCH_ADMIN_TOKEN`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use deepsearch_coordinator::cache_file;
use deepsearch_coordinator::{ClientOptions, CoordinatorClient};
use deepsearch_proto::v1 as pb;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Coordinator address (host:port or URI).
    #[arg(long, default_value = "127.0.0.1:50051")]
    coordinator: String,
    /// File holding the admin bearer token (default: $DEEPSEARCH_ADMIN_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Deadline of each call.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// CA certificate (PEM): connect with TLS and verify the server against it.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Problems per status, cache, actors and leases, policy version, throughput.
    Status,
    /// Problem records.
    Problem {
        #[command(subcommand)]
        cmd: ProblemCmd,
    },
    /// The solution cache.
    Cache {
        #[command(subcommand)]
        cmd: CacheCmd,
    },
    /// Stop handing out leases.
    Pause,
    /// Hand out leases again.
    Resume,
    /// Stop handing out leases and report the outstanding ones.
    Drain,
    /// Change the hard-problem filter live.
    SetFilter {
        /// Pass1@K threshold in [0, 1].
        #[arg(long)]
        delta: Option<f64>,
        /// Direct samples per filter pass (>= 1).
        #[arg(long)]
        k: Option<u32>,
        /// true: keep when Pass1@K < delta; false: when <= delta.
        #[arg(long)]
        strict: Option<bool>,
    },
}

#[derive(clap::Subcommand, Debug)]
enum ProblemCmd {
    /// One problem's record, Pass1@K history and cached solutions.
    Show { id: String },
}

#[derive(clap::Subcommand, Debug)]
enum CacheCmd {
    /// Write every cache entry to a JSONL file.
    Export { file: PathBuf },
    /// Read cache entries from a JSONL file into the coordinator.
    Import { file: PathBuf },
}

fn token(args: &Args) -> anyhow::Result<Option<String>> {
    if let Some(f) = &args.token_file {
        let t = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(std::env::var("DEEPSEARCH_ADMIN_TOKEN").ok().map(|t| t.trim().to_string()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = ClientOptions {
        timeout: args.timeout,
        admin_token: token(&args)?,
        tls_ca_pem: match &args.tls_ca {
            Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
            None => None,
        },
        ..ClientOptions::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        // The channel spawns its connection task, so it is made inside the runtime.
        let client = CoordinatorClient::connect_lazy(&args.coordinator, opts)?;
        dispatch(&client, args.cmd).await
    })
}

async fn dispatch(c: &CoordinatorClient, cmd: Cmd) -> anyhow::Result<()> {
    let state = |s: i32| {
        pb::SchedulingState::try_from(s)
            .map(|s| s.as_str_name().trim_start_matches("SCHEDULING_STATE_").to_lowercase())
            .unwrap_or_else(|_| s.to_string())
    };
    match cmd {
        Cmd::Status => print_status(&c.status().await?),
        Cmd::Problem { cmd: ProblemCmd::Show { id } } => print_problem(&c.show_problem(&id).await?),
        Cmd::Cache { cmd: CacheCmd::Export { file } } => {
            let n = cache_file::write_jsonl(&file, c.export_cache().await?)?;
            println!("exported {n} cache entries to {}", file.display());
        }
        Cmd::Cache { cmd: CacheCmd::Import { file } } => {
            let r = c.import_cache(cache_file::read_jsonl(&file)?).await?;
            println!("imported {}, skipped {} (from {})", r.imported, r.skipped, file.display());
        }
        Cmd::Pause => println!("state: {}", state(c.pause().await?.state)),
        Cmd::Resume => println!("state: {}", state(c.resume().await?.state)),
        Cmd::Drain => {
            let d = c.drain().await?;
            println!("state: {}, leases outstanding: {}", state(d.state), d.leases_outstanding);
        }
        Cmd::SetFilter { delta, k, strict } => {
            let f = c.set_filter(delta, k, strict).await?.filter.unwrap_or_default();
            println!("filter: delta {} k {} strict {}", f.delta, f.k, f.strict);
        }
    }
    Ok(())
}

fn print_status(s: &pb::GetStatusResponse) {
    let state = pb::SchedulingState::try_from(s.state)
        .map(|s| s.as_str_name().trim_start_matches("SCHEDULING_STATE_").to_lowercase())
        .unwrap_or_default();
    println!("state           {state}");
    println!("round           {}", s.round);
    println!("policy version  {}", s.policy_version);
    let mut by: Vec<_> = s.problems_by_status.iter().collect();
    by.sort();
    let by: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("problems        {}", by.join(", "));
    println!("cache           {} problems, {} solutions, hit rate {:.3}", s.cache_problems, s.cache_solutions, s.cache_hit_rate);
    let mut q: Vec<_> = s.queue_depth.iter().collect();
    q.sort();
    let q: Vec<String> = q.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("queue           {}", q.join(", "));
    println!("leases          {} outstanding", s.leases_outstanding);
    println!("throughput      {:.2} results/s, {:.1} tokens/s (last minute); {} results accepted", s.results_per_second, s.tokens_per_second, s.results_accepted);
    if let Some(f) = &s.filter {
        println!("filter          pass1@{} {} {}", f.k, if f.strict { "<" } else { "<=" }, f.delta);
    }
    println!("actors          {}", s.actors.len());
    for a in &s.actors {
        println!(
            "  {:<24} capacity {:>3}  leases {:>3}  seen {} ms ago  policy v{}",
            a.actor_id, a.capacity, a.lease_ids.len(), a.last_seen_ms_ago, a.policy_version
        );
    }
}

fn print_problem(p: &pb::ShowProblemResponse) {
    if let Some(q) = &p.problem {
        println!("id        {}", q.id);
        println!("task      {}", q.task);
        println!("prompt    {}", q.prompt);
        println!("answer    {}", q.answer);
    }
    println!("status    {}", p.status);
    println!("attempts  {} leased, {} results", p.attempts, p.results);
    if !p.lease_id.is_empty() {
        println!("lease     {}", p.lease_id);
    }
    if !p.last_error.is_empty() {
        println!("error     {}", p.last_error);
    }
    println!("history   (policy version, round: correct/samples = pass1)");
    for h in &p.history {
        println!("  v{} r{}: {}/{} = {:.3}", h.policy_version, h.round, h.correct, h.samples, h.pass1);
    }
    println!("cached solutions: {}", p.cached_solutions.len());
    for (i, s) in p.cached_solutions.iter().enumerate() {
        println!("  [{i}] v{} {} tokens: {}", s.policy_version, s.tokens.len(), s.text);
    }
}
