//! Throw-away databases for tests and benchmarks: each call makes its own database (or SQLite file)
//! and removes it when the returned guard drops, even if the test panicked.
//!
//! PostgreSQL and MariaDB tests read their server from `KYU_TEST_POSTGRES_URL` and
//! `KYU_TEST_MYSQL_URL`. Unset means "skip", unless `KYU_REQUIRE_SERVICES=1`, which
//! turns a missing URL into a failure (CI sets it, so nothing is skipped there).

use std::sync::Arc;

use kyu_actors::testkit::{ManualClock, TestStore};
use kyu_actors::{SharedClock, Store};
use sqlx::Connection;
use uuid::Uuid;

use super::{MySqlStore, PgStore, SqliteStore};

pub const POSTGRES_URL_ENV: &str = "KYU_TEST_POSTGRES_URL";
pub const MYSQL_URL_ENV: &str = "KYU_TEST_MYSQL_URL";

/// The server URL in `env`, `None` to skip; panics if services are required.
pub fn service_url(env: &str) -> Option<String> {
    match std::env::var(env) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("KYU_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{env} is not set but KYU_REQUIRE_SERVICES=1")
        }
        _ => None,
    }
}

/// Replaces the database name (the path) of a server URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A database that exists until this guard drops.
pub struct DbGuard {
    drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl DbGuard {
    fn new(f: impl FnOnce() + Send + Sync + 'static) -> Self {
        DbGuard {
            drop: Some(Box::new(f)),
        }
    }
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let Some(f) = self.drop.take() {
            // Runs on its own thread and runtime: Drop may happen inside a runtime.
            let _ = std::thread::spawn(f).join();
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> Option<F::Output> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .map(|rt| rt.block_on(f))
}

fn unique_name() -> String {
    format!("kyu_scratch_{}", Uuid::now_v7().simple())
}

/// A fresh SQLite file in the temp dir.
pub async fn sqlite_file(clock: SharedClock) -> (SqliteStore, SqliteStore, DbGuard) {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name()));
    let url = format!("sqlite://{}", path.display());
    let a = SqliteStore::connect(&url, clock.clone())
        .await
        .expect("open sqlite");
    a.migrate().await.expect("migrate sqlite");
    let b = SqliteStore::connect(&url, clock)
        .await
        .expect("open sqlite");
    let guard = DbGuard::new(move || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    });
    (a, b, guard)
}

/// A fresh database on the PostgreSQL server `server`, dropped with the guard.
pub async fn scratch_postgres(server: &str) -> Result<(String, DbGuard), sqlx::Error> {
    let name = unique_name();
    let mut admin = sqlx::PgConnection::connect(server).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let _ = admin.close().await;
    let url = with_database(server, &name);
    let server = server.to_owned();
    let guard = DbGuard::new(move || {
        block_on(async move {
            if let Ok(mut c) = sqlx::PgConnection::connect(&server).await {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
            }
        });
    });
    Ok((url, guard))
}

/// A fresh database on the MySQL/MariaDB server `server`, dropped with the guard.
pub async fn scratch_mysql(server: &str) -> Result<(String, DbGuard), sqlx::Error> {
    let name = unique_name();
    let mut admin = sqlx::MySqlConnection::connect(server).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let _ = admin.close().await;
    let url = with_database(server, &name);
    let server = server.to_owned();
    let guard = DbGuard::new(move || {
        block_on(async move {
            if let Ok(mut c) = sqlx::MySqlConnection::connect(&server).await {
                let sql = format!("DROP DATABASE IF EXISTS {name}");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
            }
        });
    });
    Ok((url, guard))
}

/// A fresh PostgreSQL database for a test; `None` when the server is not configured.
pub async fn postgres_db() -> Option<(String, DbGuard)> {
    let server = service_url(POSTGRES_URL_ENV)?;
    Some(
        scratch_postgres(&server)
            .await
            .expect("create postgres test database"),
    )
}

/// A fresh MariaDB/MySQL database for a test; `None` when the server is not configured.
pub async fn mysql_db() -> Option<(String, DbGuard)> {
    let server = service_url(MYSQL_URL_ENV)?;
    Some(
        scratch_mysql(&server)
            .await
            .expect("create mysql test database"),
    )
}

fn test_store(
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    guard: DbGuard,
) -> TestStore {
    TestStore {
        store: a,
        other: b,
        clock,
        guard: Box::new(guard),
    }
}

/// Contract factory: SQLite, two pools on one file.
pub async fn sqlite() -> Option<TestStore> {
    let clock = Arc::new(ManualClock::fixed());
    let (a, b, guard) = sqlite_file(clock.clone()).await;
    Some(test_store(Arc::new(a), Arc::new(b), clock, guard))
}

/// Contract factory: PostgreSQL, two pools on one database, manual clock.
pub async fn postgres() -> Option<TestStore> {
    let (url, guard) = postgres_db().await?;
    let clock = Arc::new(ManualClock::fixed());
    let a = PgStore::connect(&url, 8, Some(clock.clone()))
        .await
        .expect("connect");
    a.migrate().await.expect("migrate postgres");
    let b = PgStore::connect(&url, 8, Some(clock.clone()))
        .await
        .expect("connect");
    // Pools close before the guard drops the database.
    Some(test_store(Arc::new(a), Arc::new(b), clock, guard))
}

/// Contract factory: MariaDB/MySQL, two pools on one database, manual clock.
pub async fn mysql() -> Option<TestStore> {
    let (url, guard) = mysql_db().await?;
    let clock = Arc::new(ManualClock::fixed());
    let a = MySqlStore::connect(&url, 8, Some(clock.clone()))
        .await
        .expect("connect");
    a.migrate().await.expect("migrate mysql");
    let b = MySqlStore::connect(&url, 8, Some(clock.clone()))
        .await
        .expect("connect");
    Some(test_store(Arc::new(a), Arc::new(b), clock, guard))
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database() {
        assert_eq!(
            with_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("mysql://root@h:3306", "x"),
            "mysql://root@h:3306/x"
        );
        assert_eq!(
            with_database("postgres://h/test?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
