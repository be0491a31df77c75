//! The `kyu` binary: parses the command line and runs it. A failure prints its causes on
//! one line (`error: … : …`) and exits 1; backtraces are for panics, not for bad input.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = kyu::cli::Cli::parse();
    kyu::cli::init_tracing();
    match kyu::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
