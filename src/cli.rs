//! The `kyu` command line. Each subcommand is a thin call into the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::{EnqueueArgs, StatusArgs};
use crate::config::{Env, Settings};
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
    /// Run the HTTP API and the engine until SIGTERM or SIGINT (migrates on start).
    Serve(ServeArgs),
    /// Run the HTTP API alone (jobs run on `kyu worker` processes).
    Api(ServeArgs),
    /// Run the engine alone (no API) until SIGTERM or SIGINT.
    Worker(ConfigArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate(ConfigArgs),
    /// Create a job through a running kyu's API and print it.
    Enqueue(EnqueueArgs),
    /// Print a job.
    Status(StatusArgs),
    /// Make an API token: prints the token (give it to the client) and the
    /// `KYU_API_TOKENS` entry (give it to kyu; it holds only the token's hash).
    Token(TokenArgs),
    /// Run a benchmark and print one JSON line.
    Bench(BenchArgs),
}

/// Where settings come from: the file, then the environment, then these flags.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// sqlite://FILE (default sqlite://kyu.db), postgres://…, or mysql://…
    /// [env: DATABASE_URL]
    #[arg(long)]
    pub database_url: Option<String>,
    /// A TOML settings file (see config/kyu.toml) [env: KYU_CONFIG]
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:7878) [env: KYU_BIND]
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

impl ConfigArgs {
    /// The settings: defaults, then the file, then the environment, then flags.
    pub fn settings(&self, bind: Option<SocketAddr>) -> anyhow::Result<Settings> {
        let mut env = Env::process();
        let file = self
            .config
            .clone()
            .or_else(|| std::env::var_os("KYU_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            env = env.with_file(&path)?;
        }
        if let Some(url) = &self.database_url {
            env.set("DATABASE_URL", url);
        }
        if let Some(bind) = bind {
            env.set("KYU_BIND", &bind.to_string());
        }
        Ok(Settings::from_env(&env)?)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TokenRole {
    Admin,
    User,
    /// A remote worker process: fetch and report jobs, nothing else.
    Worker,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Who holds the token; jobs it creates are owned by this name.
    pub name: String,
    #[arg(long, value_enum, default_value = "user")]
    pub role: TokenRole,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The HTTP workload: create and get latency under `--clients` concurrent
    /// clients, and batch enqueue over HTTP, against an in-process `kyu serve`.
    #[arg(long, conflicts_with = "store")]
    pub http: bool,
    /// The observability cost: the queue sampler's query (and its plan) and the
    /// `/metrics` render time, beside `--finished` completed and `--jobs` live jobs.
    #[arg(long, conflicts_with_all = ["store", "http"])]
    pub metrics: bool,
    /// The worker protocol: a real `kyu serve` (default settings) drained by one remote
    /// worker over HTTP (`--concurrency` slots, batched fetches and acks).
    #[arg(long, conflicts_with_all = ["store", "http", "metrics"])]
    pub remote: bool,
    /// The claim beside a backlog: p50/p99 of one claim of 100 with `--backlog` queued
    /// jobs (each size in its own scratch database), all past the aging bound.
    #[arg(long, conflicts_with_all = ["store", "http", "metrics"])]
    pub claim: bool,
    /// Backlog sizes for `--claim`, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000")]
    pub backlog: Vec<u64>,
    /// Timed claims per backlog size for `--claim`.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Concurrent HTTP clients for `--http`.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Without `--store`: the engine workload (W1: throughput draining `--jobs` no-op
    /// jobs; W2: enqueue-to-start latency at 200 jobs/s; see docs/benchmarks.md).
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
    /// Claimed-but-unstarted jobs kept per worker, fixed (a tuned run: label its
    /// figures so). Omit for kyu's default, the measured appetite.
    #[arg(long)]
    pub prefetch: Option<u32>,
    /// Most jobs one claim takes (a tuned run). Omit for kyu's default.
    #[arg(long)]
    pub claim_batch: Option<u32>,
    /// Repeats; medians and ranges are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// Logs to stderr: levels from `KYU_LOG` (or `RUST_LOG`, default `info`), JSON lines
/// with `KYU_LOG_FORMAT=json` (see [`crate::telemetry::logging`]).
pub fn init_tracing() {
    crate::telemetry::logging::init();
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => crate::serve::run(a.config.settings(a.bind)?, true).await,
        Command::Api(a) => crate::serve::run(a.config.settings(a.bind)?, false).await,
        Command::Worker(c) => crate::worker::run(c.settings(None)?).await,
        Command::Migrate(c) => {
            let s = c.settings(None)?;
            store::open(&s.database_url, StoreOptions::default()).await?;
            tracing::info!(database_url = %redact(&s.database_url), "schema is up to date");
            Ok(())
        }
        Command::Enqueue(a) => crate::client::enqueue(a).await,
        Command::Status(a) => crate::client::status(a).await,
        Command::Token(a) => {
            let token = crate::api::auth::new_token();
            let entry = crate::api::auth::TokenEntry {
                name: a.name,
                role: match a.role {
                    TokenRole::Admin => crate::api::auth::Role::Admin,
                    TokenRole::User => crate::api::auth::Role::User,
                    TokenRole::Worker => crate::api::auth::Role::Worker,
                },
                hash: crate::api::auth::hash_token(&token),
            };
            println!("token (give to the client, shown once): {token}");
            println!(
                "KYU_API_TOKENS entry (give to kyu):    {}",
                entry.to_config()
            );
            Ok(())
        }
        Command::Bench(args) => {
            let line = if args.metrics {
                serde_json::to_string(&crate::bench::metrics::run(&args).await?)?
            } else if args.remote {
                serde_json::to_string(&crate::bench::remote::run(&args).await?)?
            } else if args.claim {
                serde_json::to_string(&crate::bench::claim::run(&args).await?)?
            } else if args.http {
                serde_json::to_string(&crate::bench::http::run(&args).await?)?
            } else if args.store {
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
