//! The `deepsearch` binary. Each subcommand lives in its own `cmd_*.rs` file with an `Args`
//! struct and a `run(args)` function; this file only dispatches.

use clap::{Parser, Subcommand};

mod cmd_generate;
mod cmd_verify;

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.cmd {
        Cmd::Generate(a) => cmd_generate::run(a),
        Cmd::Verify(a) => cmd_verify::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
