//! The sd-worker binary: `generate` images from the command line or `serve` them over HTTP.

mod cli;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let _ = cli;
    Ok(())
}
