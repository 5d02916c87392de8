//! `deepsearch generate` (placeholder until implemented).
#[derive(clap::Args, Debug)]
pub struct Args {}
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`deepsearch generate` is not implemented yet")
}
