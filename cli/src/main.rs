//! The `deepsearch` binary. Each subcommand lives in its own `cmd_*.rs` file with an `Args`
//! struct and a `run(args)` function; this file only dispatches.

use clap::{Parser, Subcommand};

mod cmd_actor;
mod cmd_admin;
mod cmd_coordinator;
mod cmd_eval;
mod cmd_gen;
mod cmd_generate;
mod cmd_learner;
mod cmd_search;
mod cmd_sft;
mod cmd_train;
mod cmd_verify;
mod config_load;
mod report;
#[cfg(test)]
mod shipped_configs;
mod train;

#[derive(Parser, Debug)]
#[command(name = "deepsearch", version, about = "DeepSearch: MCTS inside RL training, in Rust")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Sample from a Hugging Face Qwen2 checkpoint.
    Generate(cmd_generate::Args),
    /// Verify responses against reference answers.
    Verify(cmd_verify::Args),
    /// Supervised bootstrapping of a policy on solution traces.
    Sft(cmd_sft::Args),
    /// Run the coordinator (problem pool, filter, cache, leases).
    Coordinator(cmd_coordinator::Args),
    /// Run the learner (rank 0 serves trajectories in, policy versions and weights out).
    Learner(cmd_learner::Args),
    /// Operate a running coordinator (status, problems, cache, pause/resume/drain, filter).
    Admin(cmd_admin::Args),
    /// Run one search actor (lease work, search, stream trajectories, follow policy versions).
    Actor(cmd_actor::Args),
    /// Search one problem with the real policy; write the tree as JSON and HTML.
    Search(cmd_search::Args),
    /// Write problems (or SFT solution traces) of a built-in task as JSONL.
    Gen(cmd_gen::Args),
    /// Run the whole system on one machine (coordinator, actors, learner): the embedded default.
    Train(cmd_train::Args),
    /// Pass@1 and unbiased pass@k of a policy on a problem set (optionally search-augmented).
    Eval(cmd_eval::Args),
    /// Draw report.html from one or more run folders (several runs on the same axes).
    Report(ReportArgs),
}

#[derive(clap::Args, Debug)]
struct ReportArgs {
    /// Run folders, each holding a metrics.jsonl.
    #[arg(required = true)]
    runs: Vec<std::path::PathBuf>,
    /// Output file (default: report.html in the first run folder, or ./report.html for several).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `train` sets up its own logging (a file in the run folder, warnings on stderr)
    if !matches!(cli.cmd, Cmd::Train(_)) {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match cli.cmd {
        Cmd::Generate(a) => cmd_generate::run(a),
        Cmd::Verify(a) => cmd_verify::run(a),
        Cmd::Sft(a) => cmd_sft::run(a),
        Cmd::Coordinator(a) => cmd_coordinator::run(a),
        Cmd::Learner(a) => cmd_learner::run(a),
        Cmd::Admin(a) => cmd_admin::run(a),
        Cmd::Actor(a) => cmd_actor::run(a),
        Cmd::Search(a) => cmd_search::run(a),
        Cmd::Gen(a) => cmd_gen::run(a),
        Cmd::Train(a) => cmd_train::run(a),
        Cmd::Eval(a) => cmd_eval::run(a),
        Cmd::Report(a) => {
            let out = a.out.unwrap_or_else(|| match a.runs.as_slice() {
                [one] => one.join("report.html"),
                _ => "report.html".into(),
            });
            report::write_report(&a.runs, &out).map(|()| println!("{}", out.display()))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
