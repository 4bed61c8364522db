//! The sd-worker binary: `generate` images from the command line, `serve` them over HTTP, or `work` for a
//! fleet (jobs from Redis).

mod bench;
mod cli;
mod fleet;
mod generate;
mod library;
mod model_options;
mod serve;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        cli::Command::Generate(args) => generate::run(*args),
        cli::Command::Serve(args) => serve::run(*args),
        cli::Command::Work(args) => fleet::work(*args),
        cli::Command::Bench(args) => bench::run(*args),
    }
}
