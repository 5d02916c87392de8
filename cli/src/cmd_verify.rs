//! `deepsearch verify` (placeholder until implemented).
#[derive(clap::Args, Debug)]
pub struct Args {}
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`deepsearch verify` is not implemented yet")
}
