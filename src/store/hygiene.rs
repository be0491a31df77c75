//! Every pooled connection goes back clean. A transaction that ends in an error is
//! rolled back when it is dropped, but that rollback can itself fail: after
//! SQLITE_FULL or an I/O error SQLite has already rolled the transaction back, its
//! `ROLLBACK` answers "no transaction is active", and sqlx keeps counting the
//! connection as inside a transaction, so every later `BEGIN` on it failed with
//! "attempted to call begin_with at non-zero transaction depth" until a restart.
//!
//! [`release_clean`] runs on every release, on every pool of all three backends: a
//! connection still inside a transaction once its queued rollback has run is closed,
//! never handed out again, and the pool opens a fresh one when it needs one.

use futures::future::BoxFuture;
use kyu_actors::telemetry::STORE_CONNECTIONS_DISCARDED;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::{Connection, Database};

/// `after_release` for every pool: keep the connection only if it is outside any
/// transaction.
pub fn release_clean<DB: Database>(
    conn: &mut DB::Connection,
    _meta: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        // A dropped transaction's rollback may still be queued (SQLite hands it to the
        // connection's worker thread); a ping runs after it.
        conn.ping().await?;
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        tracing::warn!(
            "a pooled connection is still inside a transaction after an error; closing it"
        );
        metrics::counter!(STORE_CONNECTIONS_DISCARDED).increment(1);
        Ok(false)
    })
}
