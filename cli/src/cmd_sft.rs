//! `deepsearch sft`: supervised bootstrapping of a policy on solution traces (design, "Embedded
//! default": a tiny model is first taught the answer format by SFT on generated easy solutions).
//!
//! Input: `--data FILE`, JSONL with one `{"prompt": str, "response": str}` per line (the prompt
//! gets the model's chat template if it has one; EOS is appended to the response). The model is
//! either an existing Hugging Face folder (`--model DIR`) or a fresh tiny character-level Qwen2
//! for a built-in task (`--init countdown|arithmetic`, hidden 96, 3 layers, ~0.3M parameters: the
//! size design.md measured as best at a few minutes of CPU). The result is written to `--out DIR`
//! in Hugging Face layout.

use anyhow::Context;
use deepsearch_learner::sft::{read_examples, train_sft, SftConfig};
use deepsearch_policy::checkpoint::{PolicyModel, SaveOptions};
use deepsearch_policy::{PolicyTokenizer, Qwen2Config};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Hugging Face folder to start from.
    #[arg(long, conflicts_with = "init", required_unless_present = "init")]
    model: Option<PathBuf>,
    /// Start from a fresh tiny character-level model for this built-in task's alphabet.
    #[arg(long, value_parser = ["countdown", "arithmetic"])]
    init: Option<String>,
    /// JSONL training data: {"prompt": ..., "response": ...} per line.
    #[arg(long)]
    data: PathBuf,
    /// Output folder (Hugging Face layout).
    #[arg(long)]
    out: PathBuf,
    /// Passes over the data.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Stop after this many updates (0 = no cap).
    #[arg(long, default_value_t = 0)]
    max_steps: u64,
    /// Stop after this many seconds (0 = no cap).
    #[arg(long, default_value_t = 0.0)]
    max_seconds: f64,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    #[arg(long, default_value_t = 20)]
    warmup_steps: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// libtorch intra-op threads (0 = libtorch's default). On a loaded small machine 1 is often
    /// much faster than oversubscribed cores.
    #[arg(long, default_value_t = 0)]
    threads: i32,
}

/// The fresh tiny model of `--init`.
pub(crate) fn init_model(task: &str, seed: u64) -> anyhow::Result<PolicyModel> {
    let alphabet = match task {
        "countdown" => deepsearch_tasks::countdown::alphabet(),
        _ => deepsearch_tasks::arithmetic::alphabet(),
    };
    let tok = PolicyTokenizer::char_level(alphabet)?;
    let cfg = Qwen2Config::bootstrap(tok.vocab_size() as i64);
    Ok(PolicyModel::init_random(&cfg, tok, seed)?)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let mut model = match (&args.model, &args.init) {
        (Some(dir), _) => {
            PolicyModel::load_with(dir, &args.device, "f32").with_context(|| format!("loading {}", dir.display()))?
        }
        (None, Some(task)) => init_model(task, args.seed)?,
        (None, None) => anyhow::bail!("give --model DIR or --init TASK"),
    };
    let examples = read_examples(&args.data, &model)?;
    let cfg = SftConfig {
        lr: args.lr,
        warmup_steps: args.warmup_steps,
        batch_size: args.batch_size,
        epochs: args.epochs,
        max_steps: args.max_steps,
        max_seconds: args.max_seconds,
        seed: args.seed,
        ..Default::default()
    };
    tracing::info!(
        examples = examples.len(),
        parameters = model.num_parameters(),
        "sft start"
    );
    let report = train_sft(&mut model, &examples, &cfg, |step, loss| {
        if step % 50 == 0 {
            tracing::info!(step, loss, "sft");
        }
    })?;
    model
        .save(&args.out, &SaveOptions::default())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "sft: {} updates, loss {:.4} -> {:.4}, {:.0} tokens/s, saved to {}",
        report.updates,
        report.first_loss,
        report.last_loss,
        report.tokens as f64 / report.seconds.max(1e-9),
        args.out.display()
    );
    Ok(())
}
