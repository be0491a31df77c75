//! The `kyu` binary: parses the command line and runs it.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = kyu::cli::Cli::parse();
    kyu::cli::init_tracing();
    kyu::cli::run(cli).await
}
