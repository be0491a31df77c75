//! SQLite re-plans a prepared statement whenever a bound value its plan looked at
//! changes. The bundled SQLite is built with `SQLITE_ENABLE_STAT4`, and with it a bound
//! `LIMIT ?` counts as such a value: every claim (a `LIMIT` per type) and every batch
//! rebinds it, so each step began by re-parsing and re-planning the statement —
//! `sqlite3Reprepare` was 28.6 % of kyu's CPU while draining a backlog. kyu pins its
//! plans (`INDEXED BY`) and keeps no statistics for value-dependent plans to use, so
//! each connection turns on the query planner stability guarantee
//! (`SQLITE_DBCONFIG_ENABLE_QPSG`): one plan per statement, prepared once.

use std::ffi::c_int;

use futures::future::BoxFuture;
use sqlx::SqliteConnection;
use sqlx::pool::PoolConnectionMetadata;

/// `after_connect` for every SQLite pool.
pub fn stable_plans(
    conn: &mut SqliteConnection,
    _meta: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        let mut handle = conn.lock_handle().await?;
        let db = handle.as_raw_handle().as_ptr();
        // SAFETY: `db` is this connection's open handle, held locked for the call;
        // SQLITE_DBCONFIG_ENABLE_QPSG takes an int and an optional `int*` for the
        // new setting (NULL: not wanted).
        let rc = unsafe {
            libsqlite3_sys::sqlite3_db_config(
                db,
                libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                1 as c_int,
                std::ptr::null_mut::<c_int>(),
            )
        };
        if rc != libsqlite3_sys::SQLITE_OK {
            return Err(sqlx::Error::Configuration(
                format!("sqlite3_db_config(ENABLE_QPSG) returned {rc}").into(),
            ));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::c_int;
    use std::sync::Arc;

    use crate::store::sqlite::SqliteStore;

    /// Every pooled connection has the guarantee on (asked with -1: "leave it, tell me").
    #[tokio::test]
    async fn every_connection_plans_once() {
        let store = SqliteStore::connect("sqlite::memory:", Arc::new(kyu_actors::SystemClock))
            .await
            .expect("connect");
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(store.pool().acquire().await.expect("acquire"));
        }
        for conn in &mut conns {
            let mut handle = conn.lock_handle().await.expect("lock");
            let mut on: c_int = -1;
            // SAFETY: an open, locked handle; the out pointer lives across the call.
            let rc = unsafe {
                libsqlite3_sys::sqlite3_db_config(
                    handle.as_raw_handle().as_ptr(),
                    libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                    -1 as c_int,
                    &mut on as *mut c_int,
                )
            };
            assert_eq!(rc, libsqlite3_sys::SQLITE_OK);
            assert_eq!(on, 1, "a connection plans by bound values");
        }
    }
}
