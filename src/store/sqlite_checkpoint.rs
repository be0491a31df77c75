//! SQLite's WAL checkpoints, moved off the write path.
//!
//! Left to itself SQLite checkpoints inside whichever commit grows the WAL past
//! `wal_autocheckpoint` (1,000 pages): that commit copies ~4 MB of pages into the
//! database file and syncs both files while it holds the writer lock, and every enqueue,
//! claim and ack queued behind it waits — traced during the bench's steady 200 jobs/s,
//! about once a second, which was the enqueue-to-start p99. Here a task of its own
//! checkpoints `PASSIVE` (it neither waits for nor blocks writers) on its own
//! connection, so a commit only appends to the WAL. The automatic checkpoint stays, at
//! [`FALLBACK_PAGES`], for a WAL the task cannot keep up with.

use std::sync::Weak;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// The automatic checkpoint's threshold while this task runs (40 MB of 4 KiB pages).
pub(crate) const FALLBACK_PAGES: &str = "10000";

/// How often the WAL is copied back while writes keep coming.
const BUSY_EVERY: Duration = Duration::from_millis(100);

/// How often an idle WAL is looked at.
const IDLE_EVERY: Duration = Duration::from_millis(500);

/// Checkpoints the database of `opts` until `alive` has no strong reference left (the
/// store and all its clones are gone); on an in-memory database each round does
/// nothing. A failure (a full disk, say) is logged once until a round succeeds again,
/// and the next round retries; the automatic checkpoint still bounds the WAL meanwhile.
pub(crate) fn spawn(opts: SqliteConnectOptions, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut conn = None;
        let mut last_frames = 0;
        let mut failing = false;
        while alive.strong_count() > 0 {
            if conn.is_none() {
                conn = opts
                    .connect()
                    .await
                    .inspect_err(|e| {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(error = %e, "sqlite checkpointer: connect");
                        }
                    })
                    .ok();
            }
            let mut pause = IDLE_EVERY;
            if let Some(c) = conn.as_mut() {
                // (busy, frames in the WAL, frames copied back): -1s for a database
                // not in WAL mode. The WAL grew or restarted since the last look: writes
                // are coming, look again soon.
                match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&mut *c)
                    .await
                {
                    Ok((_, frames, _)) => {
                        failing = false;
                        if frames != last_frames {
                            pause = BUSY_EVERY;
                        }
                        last_frames = frames;
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(error = %e, "sqlite checkpointer: checkpoint");
                        }
                        if let Some(c) = conn.take() {
                            let _ = c.close().await;
                        }
                    }
                }
            }
            tokio::time::sleep(pause).await;
        }
        if let Some(c) = conn {
            let _ = c.close().await;
        }
    });
}
