//! The sd-worker binary: `generate` images from the command line or `serve` them over HTTP.

mod cli;
mod serve;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Serve(args) => serve::run(args, &cli.log),
        cli::Command::Generate(args) => {
            let _ = args;
            Ok(())
        }
    }
}
