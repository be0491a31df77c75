//! PostgreSQL keeps a claimed job's old entry in the claim indexes (`jobs_claim`,
//! `jobs_queued_age`, `jobs_key_queued`: partial on `status = 'queued'`) until the
//! table is vacuumed. Claims read those indexes from the head, which is exactly where
//! a drain leaves its dead entries, so between two vacuums every claim walks all the
//! jobs claimed since the last one. Autovacuum visits a database once a minute at
//! most (`autovacuum_naptime`) and only after a fifth of the table changed: a backlog
//! of 100,000 jobs aged past the aging bound drained at half the rate of a fresh one,
//! its claims reading ~1,500 index pages each.
//!
//! The leader therefore vacuums `jobs` itself once the dead rows reach
//! [`MIN_DEAD`] plus a fiftieth of the live ones: often enough that the dead prefix
//! stays short, seldom enough that a large table's vacuum (which reads every index)
//! stays a small share of the database's time.
//!
//! It also gives the planner statistics. Without any (a new database, its first minute
//! or more until autovacuum's first ANALYZE), PostgreSQL planned the claim's per-type
//! range reads as a bitmap AND of the `job_type` and `status` indexes and a sort — every
//! entry of the type, dead ones included — instead of the claim index's range: after a
//! drain of 20,000 jobs each W2 claim took ~6 ms to execute instead of ~0.3 ms.

use sqlx::PgPool;

use super::error::SqlxResultExt;
use kyu_actors::StoreError;

/// Dead rows below which a vacuum is not worth its index scans.
const MIN_DEAD: i64 = 10_000;

/// Rows from which a table never analyzed is analyzed at once.
const MIN_ROWS_FOR_STATISTICS: i64 = 1_000;

/// Vacuums `jobs` if enough dead rows gathered, and analyzes it then or when it was
/// never analyzed; says whether it vacuumed. `SKIP_LOCKED`: an autovacuum already at
/// work makes this one a no-op instead of a wait. `INDEX_CLEANUP ON`: the dead index
/// entries are the point, so PostgreSQL may not skip them as it does when few heap
/// pages hold dead rows. `TRUNCATE OFF`: a drained table ends in empty pages, and
/// giving them back needs an ACCESS EXCLUSIVE lock that every claim and ack would queue
/// behind — sampled during a PostgreSQL drain, the vacuum spent most of its time
/// waiting to truncate — for pages the next enqueues fill again. `ANALYZE`: the
/// statistics then describe the table as the drain left it (a sample of at most 30,000
/// rows, small beside the vacuum's pass over every index).
pub async fn vacuum_jobs_if_due(pool: &PgPool) -> Result<bool, StoreError> {
    // `may`: kyu's user owns the table (or is a superuser); anyone else's VACUUM is
    // skipped with a warning in the server's log, which once a second is only noise.
    let (dead, live, may, analyzed): (i64, i64, bool, bool) = sqlx::query_as(
        "SELECT COALESCE(s.n_dead_tup, 0), COALESCE(s.n_live_tup, 0), \
           pg_has_role(c.relowner, 'USAGE'), \
           s.last_analyze IS NOT NULL OR s.last_autoanalyze IS NOT NULL \
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.relid = 'jobs'::regclass",
    )
    .fetch_optional(pool)
    .await
    .store_err()?
    .unwrap_or((0, 0, false, true));
    if !may {
        return Ok(false);
    }
    if dead >= MIN_DEAD + live / 50 {
        sqlx::raw_sql("VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON, TRUNCATE OFF, ANALYZE) jobs")
            .execute(pool)
            .await
            .store_err()?;
        tracing::debug!(dead, live, "vacuumed and analyzed jobs");
        return Ok(true);
    }
    if !analyzed && live + dead >= MIN_ROWS_FOR_STATISTICS {
        sqlx::raw_sql("ANALYZE (SKIP_LOCKED) jobs")
            .execute(pool)
            .await
            .store_err()?;
        tracing::debug!(dead, live, "analyzed jobs, never analyzed before");
    }
    Ok(false)
}
