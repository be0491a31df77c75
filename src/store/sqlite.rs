//! The embedded default store: SQLite in WAL mode.
//!
//! SQLite has no `SKIP LOCKED`; every write that reads before it writes (claim, ack,
//! enqueue with unique keys) runs in a `BEGIN IMMEDIATE` transaction, which takes the
//! single writer lock up front, so two pools on one file never claim the same job.
//! Time comes from the injected [`Clock`](kyu_actors::Clock): one process owns the file.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kyu_actors::clock::{from_millis, to_millis};
use kyu_actors::store::{
    Ack, CancelOutcome, ClaimParams, Enqueued, JobLease, JobPage, LeaseState, ListJobs, MAX_PAGE,
    QueueCount, QueueState,
};
use kyu_actors::{Job, JobStatus, NewJob, SharedClock, Store, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use uuid::Uuid;

use super::error::SqlxResultExt;
use super::listing::{page_from_rows, push_list_filters};
use super::row::{
    JobRow, counts_from_rows, into_jobs_in_claim_order, job_columns, parse_id, parse_status,
};
use super::write::{AckWrite, InsertRow, duration_ms, insert_rows, lease_expired_error};

/// Rows per multi-row INSERT (14 binds each, under SQLite's 32,766 limit).
const INSERT_CHUNK: usize = 1000;

/// A SQLite-backed [`Store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    clock: SharedClock,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://kyu.db`.
    pub async fn connect(url: &str, clock: SharedClock) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .store_err()?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit (and so a 2xx on enqueue) survives power loss, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .store_err()?;
        Ok(SqliteStore { pool, clock })
    }

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn now(&self) -> i64 {
        to_millis(self.clock.now())
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.store_err()
    }

    async fn fetch_job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        sqlx::query_as::<_, JobRow>(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .store_err()?
        .map(Job::try_from)
        .transpose()
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        let now = self.now();
        let rows = insert_rows(&jobs, now)?;
        let mut out: Vec<Option<Enqueued>> = vec![None; rows.len()];
        let mut tx = self.begin_write().await?;

        let plain: Vec<(usize, &InsertRow)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.unique_key.is_none())
            .collect();
        for chunk in plain.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO jobs (id, queue, job_type, provider, priority, payload, status, \
                 max_attempts, run_at, timeout_ms, unique_key, owner, created_at, updated_at) ",
            );
            qb.push_values(chunk, |mut b, (_, r)| {
                b.push_bind(r.id.clone())
                    .push_bind(r.queue.clone())
                    .push_bind(r.job_type.clone())
                    .push_bind(r.provider.clone())
                    .push_bind(r.priority)
                    .push_bind(r.payload.clone())
                    .push_bind(r.status)
                    .push_bind(r.max_attempts)
                    .push_bind(r.run_at)
                    .push_bind(r.timeout_ms)
                    .push_bind(r.unique_key.clone())
                    .push_bind(r.owner.clone())
                    .push_bind(r.now)
                    .push_bind(r.now);
            });
            qb.build().execute(&mut *tx).await.store_err()?;
            for (i, r) in chunk {
                out[*i] = Some(Enqueued {
                    id: jobs[*i].id,
                    duplicate: false,
                });
                debug_assert_eq!(r.id, jobs[*i].id.to_string());
            }
        }

        for (i, r) in rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.unique_key.is_some())
        {
            let inserted: Option<String> = sqlx::query_scalar(
                "INSERT INTO jobs (id, queue, job_type, provider, priority, payload, status, \
                 max_attempts, run_at, timeout_ms, unique_key, owner, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
                 ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL \
                 AND status IN ('queued', 'scheduled', 'running') DO NOTHING RETURNING id",
            )
            .bind(&r.id)
            .bind(&r.queue)
            .bind(&r.job_type)
            .bind(&r.provider)
            .bind(r.priority)
            .bind(&r.payload)
            .bind(r.status)
            .bind(r.max_attempts)
            .bind(r.run_at)
            .bind(r.timeout_ms)
            .bind(&r.unique_key)
            .bind(&r.owner)
            .bind(r.now)
            .fetch_optional(&mut *tx)
            .await
            .store_err()?;
            out[i] = Some(match inserted {
                Some(_) => Enqueued {
                    id: jobs[i].id,
                    duplicate: false,
                },
                None => {
                    let live: String = sqlx::query_scalar(
                        "SELECT id FROM jobs WHERE unique_key = $1 \
                         AND status IN ('queued', 'scheduled', 'running')",
                    )
                    .bind(&r.unique_key)
                    .fetch_one(&mut *tx)
                    .await
                    .store_err()?;
                    Enqueued {
                        id: parse_id(&live)?,
                        duplicate: true,
                    }
                }
            });
        }
        tx.commit().await.store_err()?;
        out.into_iter()
            .map(|e| e.ok_or_else(|| StoreError::Backend("enqueue lost a row".into())))
            .collect()
    }

    async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        self.fetch_job(id).await
    }

    async fn list(&self, q: &ListJobs) -> Result<JobPage, StoreError> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let mut qb = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE 1 = 1"
        ));
        push_list_filters(&mut qb, q);
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows: Vec<JobRow> = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .store_err()?;
        page_from_rows(rows, limit)
    }

    async fn claim(&self, p: &ClaimParams) -> Result<Vec<Job>, StoreError> {
        let now = self.now();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE jobs SET status = 'queued', updated_at = $1 \
             WHERE status = 'scheduled' AND run_at <= $1",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .store_err()?;
        let rows: Vec<JobRow> = sqlx::query_as(concat!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, progress = 0, \
             lease_owner = $2, lease_expires_at = $3, started_at = $1, updated_at = $1 \
             WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' \
               AND queue NOT IN (SELECT name FROM queues WHERE paused = 1) \
               ORDER BY priority DESC, run_at, id LIMIT $4) \
             RETURNING ",
            job_columns!()
        ))
        .bind(now)
        .bind(&p.owner)
        .bind(now.saturating_add(duration_ms(p.lease)))
        .bind(i64::from(p.limit))
        .fetch_all(&mut *tx)
        .await
        .store_err()?;
        tx.commit().await.store_err()?;
        into_jobs_in_claim_order(rows)
    }

    async fn extend_leases(
        &self,
        leases: &[JobLease],
        lease: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        let now = self.now();
        let until = now.saturating_add(duration_ms(lease));
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(leases.len());
        for l in leases {
            let cancel: Option<bool> = sqlx::query_scalar(
                "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 \
                 WHERE id = $3 AND attempts = $4 AND lease_owner = $5 AND status = 'running' \
                 RETURNING cancel_requested",
            )
            .bind(until)
            .bind(now)
            .bind(l.id.to_string())
            .bind(l.attempt as i64)
            .bind(&l.owner)
            .fetch_optional(&mut *tx)
            .await
            .store_err()?;
            out.push(LeaseState {
                id: l.id,
                held: cancel.is_some(),
                cancel_requested: cancel.unwrap_or(false),
            });
        }
        tx.commit().await.store_err()?;
        Ok(out)
    }

    async fn ack(&self, acks: &[Ack]) -> Result<Vec<bool>, StoreError> {
        let now = self.now();
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(acks.len());
        for a in acks {
            let w = AckWrite::new(&a.outcome, now);
            let done = sqlx::query(
                "UPDATE jobs SET status = $1, result = COALESCE($2, result), \
                 errors = CASE WHEN $3 IS NULL THEN errors ELSE json_insert(errors, '$[#]', json($3)) END, \
                 run_at = COALESCE($4, run_at), finished_at = $5, attempts = attempts - $6, \
                 progress = CASE WHEN $7 THEN 100 ELSE progress END, \
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = $8 \
                 WHERE id = $9 AND attempts = $10 AND lease_owner = $11 AND status = 'running'",
            )
            .bind(w.status)
            .bind(w.result)
            .bind(w.error)
            .bind(w.run_at)
            .bind(w.finished_at)
            .bind(w.uncount)
            .bind(w.progress_done)
            .bind(now)
            .bind(a.lease.id.to_string())
            .bind(a.lease.attempt as i64)
            .bind(&a.lease.owner)
            .execute(&mut *tx)
            .await
            .store_err()?;
            out.push(done.rows_affected() == 1);
        }
        tx.commit().await.store_err()?;
        Ok(out)
    }

    async fn set_progress(&self, l: &JobLease, progress: u8) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET progress = $1, updated_at = $2 \
             WHERE id = $3 AND attempts = $4 AND lease_owner = $5 AND status = 'running'",
        )
        .bind(i64::from(progress.min(100)))
        .bind(self.now())
        .bind(l.id.to_string())
        .bind(l.attempt as i64)
        .bind(&l.owner)
        .execute(&self.pool)
        .await
        .store_err()?;
        Ok(done.rows_affected() == 1)
    }

    async fn request_cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        let now = self.now();
        let mut tx = self.begin_write().await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .store_err()?;
        let status = parse_status(status.ok_or(StoreError::NotFound(id))?)?;
        let canceled = match status {
            JobStatus::Queued | JobStatus::Scheduled => {
                sqlx::query(
                    "UPDATE jobs SET status = 'canceled', finished_at = $1, updated_at = $1 \
                     WHERE id = $2",
                )
                .bind(now)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .store_err()?;
                true
            }
            JobStatus::Running => {
                sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .store_err()?;
                false
            }
            st => {
                return Err(StoreError::InvalidTransition {
                    id,
                    status: st,
                    action: "cancel",
                });
            }
        };
        tx.commit().await.store_err()?;
        let job = self.fetch_job(id).await?.ok_or(StoreError::NotFound(id))?;
        Ok(if canceled {
            CancelOutcome::Canceled(job)
        } else {
            CancelOutcome::Requested(job)
        })
    }

    async fn retry(&self, id: Uuid) -> Result<Job, StoreError> {
        let now = self.now();
        let mut tx = self.begin_write().await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .store_err()?;
        let status = parse_status(status.ok_or(StoreError::NotFound(id))?)?;
        if !status.is_retryable_by_user() {
            return Err(StoreError::InvalidTransition {
                id,
                status,
                action: "retry",
            });
        }
        sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = $1, finished_at = NULL, \
             cancel_requested = 0, max_attempts = MAX(max_attempts, attempts + 1), updated_at = $1 \
             WHERE id = $2",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .store_err()?;
        tx.commit().await.store_err()?;
        self.fetch_job(id).await?.ok_or(StoreError::NotFound(id))
    }

    async fn find_expired(&self, limit: u32) -> Result<Vec<JobLease>, StoreError> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT id, attempts, lease_owner FROM jobs \
             WHERE status = 'running' AND lease_expires_at < $1 \
             ORDER BY lease_expires_at LIMIT $2",
        )
        .bind(self.now())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .store_err()?;
        rows.into_iter()
            .map(|(id, attempt, owner)| {
                Ok(JobLease {
                    id: parse_id(&id)?,
                    attempt: attempt.max(0) as u32,
                    owner,
                })
            })
            .collect()
    }

    async fn rescue(&self, leases: &[JobLease]) -> Result<Vec<Uuid>, StoreError> {
        let now = self.now();
        let mut tx = self.begin_write().await?;
        let mut rescued = Vec::new();
        for l in leases {
            let done = sqlx::query(
                "UPDATE jobs SET \
                   status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
                   finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE $1 END, \
                   run_at = CASE WHEN attempts < max_attempts THEN $1 ELSE run_at END, \
                   errors = json_insert(errors, '$[#]', json($2)), \
                   lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
                 WHERE id = $3 AND attempts = $4 AND lease_owner = $5 AND status = 'running' \
                   AND lease_expires_at < $1",
            )
            .bind(now)
            .bind(lease_expired_error(l.attempt as i32, now))
            .bind(l.id.to_string())
            .bind(l.attempt as i64)
            .bind(&l.owner)
            .execute(&mut *tx)
            .await
            .store_err()?;
            if done.rows_affected() == 1 {
                rescued.push(l.id);
            }
        }
        tx.commit().await.store_err()?;
        Ok(rescued)
    }

    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let t: Option<i64> =
            sqlx::query_scalar("SELECT MIN(run_at) FROM jobs WHERE status = 'scheduled'")
                .fetch_one(&self.pool)
                .await
                .store_err()?;
        Ok(t.map(from_millis))
    }

    async fn counts(&self) -> Result<Vec<QueueCount>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT queue, status, COUNT(*) FROM jobs GROUP BY queue, status ORDER BY queue, status",
        )
        .fetch_all(&self.pool)
        .await
        .store_err()?;
        counts_from_rows(rows)
    }

    async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO queues (name, paused, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
        )
        .bind(queue)
        .bind(paused)
        .bind(self.now())
        .execute(&self.pool)
        .await
        .store_err()?;
        Ok(())
    }

    async fn queues(&self) -> Result<Vec<QueueState>, StoreError> {
        let rows: Vec<(String, bool)> = sqlx::query_as(
            "SELECT name, paused FROM queues \
             UNION SELECT DISTINCT queue, 0 FROM jobs WHERE queue NOT IN (SELECT name FROM queues) \
             ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .store_err()?;
        Ok(rows
            .into_iter()
            .map(|(name, paused)| QueueState { name, paused })
            .collect())
    }

    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
             WHERE status IN ('completed', 'failed', 'canceled') AND finished_at < $1 \
             ORDER BY finished_at LIMIT $2)",
        )
        .bind(to_millis(before))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .store_err()?;
        Ok(done.rows_affected())
    }
}
