//! Durable job stores over sqlx: SQLite (the embedded default), PostgreSQL and
//! MySQL/MariaDB. Each implements [`kyu_actors::Store`] with its own SQL; the shared
//! pieces are the row type, the write values and the listing.

pub mod circuit;
pub mod claim_plan;
mod db_clock;
mod error;
pub mod failpoint;
mod flow;
mod hygiene;
mod listing;
pub mod metered;
pub mod mysql;
mod pg_vacuum;
pub mod postgres;
mod row;
pub mod sqlite;
mod sqlite_checkpoint;
mod sqlite_plans;
pub mod testdb;
mod workflow;
mod write;

use std::sync::Arc;

use kyu_actors::{SharedClock, Store, StoreError};

pub use mysql::MySqlStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Which backend a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    /// Reads the scheme of `url`: `sqlite:`, `postgres://`/`postgresql://`, `mysql://`/`mariadb://`.
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "mysql" | "mariadb" => Ok(Backend::MySql),
            _ => Err(StoreError::Invalid {
                field: "database_url",
                message: format!(
                    "unsupported scheme `{scheme}`: expected sqlite:, postgres:// or mysql://"
                ),
            }),
        }
    }
}

/// Options for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Largest pool size (SQLite uses at most 4).
    pub max_connections: u32,
    /// For SQLite, the clock; for PostgreSQL and MariaDB, a test clock that replaces the
    /// database's (`None` in production: due and lease decisions use the database clock).
    pub clock: Option<SharedClock>,
    /// Apply migrations on open.
    pub migrate: bool,
    /// Where new jobs stand in line per tenant (`kyu_fair_share_*`).
    pub fair_share: kyu_actors::fair_share::FairShare,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            clock: None,
            migrate: true,
            fair_share: Default::default(),
        }
    }
}

/// Opens the store `url` names, migrating it if asked.
pub async fn open(url: &str, opts: StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match Backend::from_url(url)? {
        Backend::Sqlite => {
            let clock = opts
                .clock
                .unwrap_or_else(|| Arc::new(kyu_actors::SystemClock));
            let s = SqliteStore::connect(url, clock)
                .await?
                .with_fair_share(opts.fair_share);
            if opts.migrate {
                s.migrate().await?;
            }
            Arc::new(s)
        }
        Backend::Postgres => {
            let s = PgStore::connect(url, opts.max_connections, opts.clock)
                .await?
                .with_fair_share(opts.fair_share);
            if opts.migrate {
                s.migrate().await?;
            }
            Arc::new(s)
        }
        Backend::MySql => {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let s = MySqlStore::connect(&url, opts.max_connections, opts.clock)
                .await?
                .with_fair_share(opts.fair_share);
            if opts.migrate {
                s.migrate().await?;
            }
            Arc::new(s)
        }
    })
}
