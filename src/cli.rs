//! The `kyu` command line. Each subcommand is a thin call into the library.

use clap::{Args, Parser, Subcommand};

use crate::store::{self, StoreOptions};

/// Where kyu keeps its jobs when nothing else is said.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://kyu.db";

#[derive(Debug, Parser)]
#[command(name = "kyu", version, about = "A durable, actor-based job engine")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the database schema, then exit.
    Migrate(DbArgs),
    /// Run the engine alone (no API) until SIGTERM or SIGINT.
    Worker(DbArgs),
    /// Run a benchmark and print one JSON line.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// sqlite://FILE, postgres://…, or mysql://…
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Without `--store`: the engine workload of BENCH.md (W1 throughput, W2 latency).
    /// The store alone: batch enqueue, claim+ack with batches of 1 and 100, then the
    /// same beside `--finished` completed jobs. PostgreSQL and MySQL URLs name a server:
    /// the bench makes its own database there and drops it.
    #[arg(long)]
    pub store: bool,
    /// Omit for a SQLite file in the temp dir.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Jobs per measurement.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: u32,
    /// Finished jobs in the table for the store's "large table" measurements (0 to skip).
    #[arg(long, default_value_t = 1_000_000)]
    pub finished: u32,
    /// Engine workers (a fixed pool).
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Claimed-but-unstarted jobs kept per worker.
    #[arg(long, default_value_t = 20)]
    pub prefetch: u32,
    /// Repeats; medians and ranges are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(db) => {
            store::open(&db.database_url, StoreOptions::default()).await?;
            tracing::info!(database_url = %redact(&db.database_url), "schema is up to date");
            Ok(())
        }
        Command::Worker(db) => {
            let mut env = crate::config::Env::process();
            env.set("DATABASE_URL", &db.database_url);
            let settings = crate::config::Settings::from_env(&env)?;
            crate::worker::run(settings).await
        }
        Command::Bench(args) => {
            let line = if args.store {
                serde_json::to_string(&crate::bench::store::run(&args).await?)?
            } else {
                serde_json::to_string(&crate::bench::engine::run(&args).await?)?
            };
            println!("{line}");
            Ok(())
        }
    }
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
