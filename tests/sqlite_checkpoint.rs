//! The SQLite store copies its WAL back into the database file from a task of its own,
//! not inside the commit that grows the WAL past SQLite's automatic threshold (1,000
//! pages): that commit held the writer lock while it copied ~4 MB and synced two files,
//! and every enqueue, claim and ack behind it waited.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kyu::engine::{NewJob, Store};
use kyu::store::testdb;
use serde_json::json;

fn file_len(path: &PathBuf) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_past_the_automatic_threshold_reaches_the_database_file() {
    let (store, _other, _guard) = testdb::sqlite_file(Arc::new(kyu_actors::SystemClock)).await;
    let (_, _, main): (i64, String, String) = sqlx::query_as("PRAGMA database_list")
        .fetch_one(store.pool())
        .await
        .expect("database file");
    let main = PathBuf::from(main);
    let wal = PathBuf::from(format!("{}-wal", main.display()));

    // Commits never checkpoint below the fallback threshold: the task does.
    let threshold: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(store.pool())
        .await
        .expect("threshold");
    assert_eq!(threshold, 10_000);

    // ~8 MB of jobs: about 2,000 pages, twice SQLite's own threshold.
    let before = file_len(&main);
    let pad = "x".repeat(4_000);
    for chunk in 0..4 {
        let jobs: Vec<NewJob> = (0..500)
            .map(|i| NewJob::new("noop", json!({ "i": chunk * 500 + i, "pad": pad })))
            .collect();
        store.enqueue_many(jobs).await.expect("enqueue");
    }
    // In WAL mode only a checkpoint writes the database file. (How large the WAL is
    // now says nothing: the task may have checkpointed between the batches, and the
    // next commit then rewrote the WAL from its start.)
    assert!(file_len(&wal) > 0, "the jobs went through the WAL");

    let deadline = Instant::now() + Duration::from_secs(10);
    while file_len(&main) < before + 4_000_000 {
        assert!(
            Instant::now() < deadline,
            "the database file did not receive the WAL: {} bytes (WAL {})",
            file_len(&main),
            file_len(&wal)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
