//! Workflows in SQL, written once for SQLite, PostgreSQL and MariaDB.
//!
//! The columns are portable (text ids, epoch-ms integers), so the statements are the
//! same on every backend; [`Dialect`] carries the little that differs (binding,
//! running a built query, the locking suffix). Each backend opens the transaction
//! and calls in: [`insert::insert_workflow`] on enqueue, [`settle::settle`] after any
//! write that can make a job final (ack, cancel, rescue), [`settle::reopen`] after a
//! retry. The rules themselves are in `kyu_actors::workflow`.

pub mod insert;
pub mod prune;
pub mod read;
pub mod settle;

use async_trait::async_trait;
use kyu_actors::StoreError;
use sqlx::{Database, QueryBuilder, Row};

use super::error::SqlxResultExt;

/// Ids per `IN (…)` list: well under every backend's bind limit.
pub(crate) const CHUNK: usize = 1000;

/// What differs between backends for the workflow statements.
#[async_trait]
pub(crate) trait Dialect: Database {
    /// Appended to a read whose rows the transaction then rewrites: `FOR UPDATE` on
    /// PostgreSQL and MariaDB; nothing on SQLite, whose writer lock serializes writes.
    const FOR_UPDATE: &'static str;
    /// Index hints after `FROM jobs <alias>` for a key's queued jobs and a key's running
    /// jobs (SQLite without statistics reads the status index otherwise, every row).
    const KEY_QUEUED: &'static str;
    const KEY_RUNNING: &'static str;

    fn bind_text(qb: &mut QueryBuilder<Self>, v: String);
    fn bind_opt_text(qb: &mut QueryBuilder<Self>, v: Option<String>);
    fn bind_int(qb: &mut QueryBuilder<Self>, v: i64);
    fn bind_opt_int(qb: &mut QueryBuilder<Self>, v: Option<i64>);

    /// Runs a write; returns the rows it matched.
    async fn execute(
        c: &mut Self::Connection,
        qb: &mut QueryBuilder<Self>,
    ) -> Result<u64, StoreError>;

    /// Runs a read whose columns are `cols` (text or integer, each nullable).
    async fn fetch(
        c: &mut Self::Connection,
        qb: &mut QueryBuilder<Self>,
        cols: &[Col],
    ) -> Result<Vec<Vec<Val>>, StoreError>;
}

/// The kind of one selected column.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Col {
    Text,
    Int,
}

/// One decoded value.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Text(Option<String>),
    Int(Option<i64>),
}

impl Val {
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Val::Text(t) => t.clone(),
            Val::Int(i) => i.map(|i| i.to_string()),
        }
    }

    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => *i,
            Val::Text(t) => t.as_deref().and_then(|t| t.parse().ok()),
        }
    }
}

/// Rows of `n` text columns.
pub(crate) async fn fetch_text<DB: Dialect>(
    c: &mut DB::Connection,
    qb: &mut QueryBuilder<DB>,
    n: usize,
) -> Result<Vec<Vec<Option<String>>>, StoreError> {
    let cols = vec![Col::Text; n];
    let rows = DB::fetch(c, qb, &cols).await?;
    Ok(rows
        .into_iter()
        .map(|r| r.iter().map(Val::text).collect())
        .collect())
}

/// A text value that must be there (`NOT NULL` columns).
pub(crate) fn required(v: &Option<String>) -> Result<&str, StoreError> {
    v.as_deref()
        .ok_or_else(|| StoreError::Backend("workflow row: unexpected NULL".into()))
}

macro_rules! dialect {
    ($db:ty, $for_update:expr, $key_queued:expr, $key_running:expr) => {
        #[async_trait]
        impl Dialect for $db {
            const FOR_UPDATE: &'static str = $for_update;
            const KEY_QUEUED: &'static str = $key_queued;
            const KEY_RUNNING: &'static str = $key_running;

            fn bind_text(qb: &mut QueryBuilder<Self>, v: String) {
                qb.push_bind(v);
            }

            fn bind_opt_text(qb: &mut QueryBuilder<Self>, v: Option<String>) {
                qb.push_bind(v);
            }

            fn bind_int(qb: &mut QueryBuilder<Self>, v: i64) {
                qb.push_bind(v);
            }

            fn bind_opt_int(qb: &mut QueryBuilder<Self>, v: Option<i64>) {
                qb.push_bind(v);
            }

            async fn execute(
                c: &mut <$db as Database>::Connection,
                qb: &mut QueryBuilder<Self>,
            ) -> Result<u64, StoreError> {
                Ok(qb
                    .build()
                    .execute(&mut *c)
                    .await
                    .store_err()?
                    .rows_affected())
            }

            async fn fetch(
                c: &mut <$db as Database>::Connection,
                qb: &mut QueryBuilder<Self>,
                cols: &[Col],
            ) -> Result<Vec<Vec<Val>>, StoreError> {
                let rows = qb.build().fetch_all(&mut *c).await.store_err()?;
                rows.iter()
                    .map(|row| {
                        cols.iter()
                            .enumerate()
                            .map(|(i, col)| match col {
                                Col::Text => row.try_get::<Option<String>, _>(i).map(Val::Text),
                                Col::Int => row.try_get::<Option<i64>, _>(i).map(Val::Int),
                            })
                            .collect::<Result<Vec<Val>, sqlx::Error>>()
                            .store_err()
                    })
                    .collect()
            }
        }
    };
}

dialect!(
    sqlx::Sqlite,
    "",
    " INDEXED BY jobs_key_queued",
    " INDEXED BY jobs_key_running"
);
dialect!(sqlx::Postgres, " FOR UPDATE", "", "");
dialect!(
    sqlx::MySql,
    " FOR UPDATE",
    " FORCE INDEX (jobs_key)",
    " FORCE INDEX (jobs_key)"
);

/// Appends `(?, ?, …)` binding each id.
pub(crate) fn push_ids<DB: Dialect>(qb: &mut QueryBuilder<DB>, ids: &[String]) {
    qb.push("(");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        DB::bind_text(qb, id.clone());
    }
    qb.push(")");
}
