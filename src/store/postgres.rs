//! PostgreSQL store: several kyu processes may share one database.
//!
//! Claims lock candidate rows with `FOR UPDATE SKIP LOCKED`, so concurrent claimers
//! never wait on or take each other's jobs. Acks and lease extensions of a whole batch
//! are one `UPDATE … FROM UNNEST(…)` each: one round trip per batch. "Now" is the
//! database's clock (one clock for every node), unless a test clock is injected.
//!
//! Durability: client writes (enqueue, cancel, retry, pause) commit synchronously, so a
//! 2xx survives a database crash. The engine's own writes (claim, ack, leases) use
//! `synchronous_commit = off`: a database crash can undo the last few, which puts their
//! jobs back through lease rescue — at least once, as after any node death.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kyu_actors::clock::{from_millis, to_millis};
use kyu_actors::store::{
    Ack, CancelOutcome, ClaimParams, Enqueued, JobLease, JobPage, LeaseState, ListJobs, MAX_PAGE,
    QueueCount, QueueState,
};
use kyu_actors::workflow::{Dependency, ListWorkflows, WorkflowPage};
use kyu_actors::{
    Job, JobStatus, NewJob, NewWorkflow, NodeInfo, NodeRecord, SharedClock, Store, StoreError,
    WorkflowCreated, WorkflowRecord,
};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool, Postgres, QueryBuilder, Transaction};
use uuid::Uuid;

use super::db_clock::DbClock;
use super::error::SqlxResultExt;
use super::flow::{self, KeyCursor};
use super::hygiene::release_clean;
use super::listing::{page_from_rows, push_list_filters};
use super::row::{
    JobRow, LiveRow, NodeRow, aged_cutoff, counts_from_rows, into_jobs_in_claim_order, job_columns,
    leases_from_rows, live_counts_from_rows, nodes_from_rows, parse_id, parse_status,
};
use super::workflow::prune::{self, prunable};
use super::workflow::{insert, read, settle};
use super::write::{
    AckWrite, InsertRow, duration_ms, insert_rows, lease_expired_error, node_dead_error,
};
use kyu_actors::fair_share::{FairClocks, FairShare};

/// The database clock in epoch ms.
const SQL_NOW: &str = "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint";

const INSERT_CHUNK: usize = 2000;

/// A node that stalls (SIGSTOP, a long pause) inside a transaction would hold its row
/// locks, and so block the rescue of its own jobs, for as long as it stalls; the server
/// ends such a session after this long, so the rescue proceeds.
const IDLE_IN_TRANSACTION: &str = "SET idle_in_transaction_session_timeout = '5s'";

/// How long a client-facing write (enqueue, cancel, retry, pause: the `durable` pool)
/// waits for a connection while the pool cannot open one. While the server is
/// unreachable each acquire retries the connect until this passes; the API answers 503
/// after it, well before a client's timeout, and the store circuit answers at once from
/// then on. The engine's pool waits 10 s: a busy moment there costs latency, not an error.
pub const CLIENT_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a client-facing write waits while every connection of its pool is busy:
/// that is load, not an outage, and is waited out as before.
const CLIENT_BUSY_WAIT: Duration = Duration::from_secs(10);

/// A PostgreSQL-backed [`Store`].
#[derive(Clone, Debug)]
pub struct PgStore {
    /// Engine writes and reads (`synchronous_commit = off`).
    pool: PgPool,
    /// Client-facing writes (synchronous commit).
    durable: PgPool,
    clock: Option<SharedClock>,
    db_clock: Arc<DbClock>,
    /// Where the keyed part of the next claim starts walking keys.
    key_cursor: Arc<KeyCursor>,
    /// Tenants' fair clocks: where new jobs stand in line.
    fair: Arc<FairClocks>,
}

impl PgStore {
    /// Places new jobs by these fair-share settings (default: 1,000 jobs/s a tenant).
    pub fn with_fair_share(mut self, config: FairShare) -> Self {
        self.fair = Arc::new(FairClocks::new(config));
        self
    }

    /// Connects; `clock` replaces the database clock (tests only).
    pub async fn connect(
        url: &str,
        max_connections: u32,
        clock: Option<SharedClock>,
    ) -> Result<Self, StoreError> {
        let durable = PgPoolOptions::new()
            .max_connections(max_connections.div_ceil(2).max(1))
            .acquire_timeout(CLIENT_ACQUIRE_TIMEOUT)
            .after_release(release_clean::<Postgres>)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(IDLE_IN_TRANSACTION).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .store_err()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_release(release_clean::<Postgres>)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(IDLE_IN_TRANSACTION).await?;
                    conn.execute("SET synchronous_commit = off").await?;
                    // A generic plan cannot see the claim's LIMIT and sorts every
                    // queued job; custom plans use the claim index and stop early.
                    conn.execute("SET plan_cache_mode = force_custom_plan")
                        .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .store_err()?;
        Ok(PgStore {
            pool,
            durable,
            clock,
            db_clock: Arc::default(),
            key_cursor: Arc::default(),
            fair: Arc::default(),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether every connection of the client pool exists and is in use (so a timed-out
    /// acquire was load, not an unreachable server).
    fn client_pool_busy(&self) -> bool {
        self.durable.size() >= self.durable.options().get_max_connections()
            && self.durable.num_idle() == 0
    }

    /// A connection of the client pool: gives up after [`CLIENT_ACQUIRE_TIMEOUT`] when
    /// the pool could not open one, waits up to [`CLIENT_BUSY_WAIT`] when all are busy.
    async fn client_conn(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        let started = Instant::now();
        loop {
            match self.durable.acquire().await {
                Err(sqlx::Error::PoolTimedOut) if !self.client_pool_busy() => {
                    return Err(StoreError::Unavailable(
                        "no connection could be opened to the database".into(),
                    ));
                }
                Err(sqlx::Error::PoolTimedOut) if started.elapsed() < CLIENT_BUSY_WAIT => {}
                r => return r.store_err(),
            }
        }
    }

    /// A transaction of the client pool, acquired like [`PgStore::client_conn`].
    async fn begin_client(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let started = Instant::now();
        loop {
            match self.durable.begin().await {
                Err(sqlx::Error::PoolTimedOut) if !self.client_pool_busy() => {
                    return Err(StoreError::Unavailable(
                        "no connection could be opened to the database".into(),
                    ));
                }
                Err(sqlx::Error::PoolTimedOut) if started.elapsed() < CLIENT_BUSY_WAIT => {}
                r => return r.store_err(),
            }
        }
    }

    /// Epoch ms from the database (or the test clock).
    /// Epoch ms by the database's clock (or the test clock).
    async fn now(&self) -> Result<i64, StoreError> {
        match &self.clock {
            Some(c) => Ok(to_millis(c.now())),
            None => {
                // Through the client pool: enqueues read this clock, and must not wait
                // longer for it than for their own connection.
                self.db_clock
                    .now(|| async {
                        let mut conn = self.client_conn().await?;
                        let sent = std::time::Instant::now();
                        let db = sqlx::query_scalar(SQL_NOW)
                            .fetch_one(&mut *conn)
                            .await
                            .store_err()?;
                        Ok((db, sent))
                    })
                    .await
            }
        }
    }

    /// The keyed part of a claim, in its own transaction under an advisory lock that
    /// every keyed claim takes: counting a key's running jobs and starting more is then
    /// one step, on any number of nodes.
    async fn claim_keyed(
        &self,
        p: &ClaimParams,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        let mut tx = self.pool.begin().await.store_err()?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(KEYED_CLAIM_LOCK)
            .execute(&mut *tx)
            .await
            .store_err()?;
        let ids = flow::pick::<Postgres>(&mut tx, p, &self.key_cursor, i64::from(p.limit)).await?;
        let rows: Vec<JobRow> = if ids.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(concat!(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, progress = 0, \
                 lease_owner = $1, lease_expires_at = $2, started_at = $3, updated_at = $3 \
                 WHERE id = ANY($4) AND status = 'queued' RETURNING ",
                job_columns!()
            ))
            .bind(&p.owner)
            .bind(lease_until)
            .bind(now)
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await
            .store_err()?
        };
        tx.commit().await.store_err()?;
        Ok(rows)
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

    async fn status_for_update(
        tx: &mut sqlx::Transaction<'static, Postgres>,
        id: Uuid,
    ) -> Result<JobStatus, StoreError> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1 FOR UPDATE")
                .bind(id.to_string())
                .fetch_optional(&mut **tx)
                .await
                .store_err()?;
        parse_status(status.ok_or(StoreError::NotFound(id))?)
    }
}

/// Live jobs per queue and status (`Store::live_counts`; `kyu bench --metrics` explains it).
pub const LIVE_COUNTS_SQL: &str = "SELECT queue, status, COUNT(*), MIN(run_at) FROM jobs \
     WHERE status IN ('waiting', 'queued', 'scheduled', 'running') GROUP BY queue, status";

/// Lease renewal of a batch, one statement: `$1` new expiry, `$2` now, `$3..$5` the
/// leases (id, attempt, owner) as arrays; returns the held ones and their cancel flag.
pub const EXTEND_LEASES_SQL: &str = "UPDATE jobs AS j SET lease_expires_at = $1, updated_at = $2 \
     FROM UNNEST($3::text[], $4::int[], $5::text[]) AS u(id, attempt, owner) \
     WHERE j.id = u.id AND j.attempts = u.attempt AND j.lease_owner = u.owner \
       AND j.status = 'running' \
     RETURNING u.id, u.attempt, u.owner, j.cancel_requested";

/// The outcomes of a batch, one statement: `$1` now, `$2..$11` per ack (id, attempt,
/// owner, status, result, error, run_at, finished_at, uncount, done) as arrays; returns
/// the applied ones (the others were fenced).
pub const ACK_SQL: &str = "UPDATE jobs AS j SET status = u.status, result = COALESCE(u.result, j.result), \
               errors = CASE WHEN u.error IS NULL THEN j.errors \
                        ELSE (j.errors::jsonb || jsonb_build_array(u.error::jsonb))::text END, \
               run_at = COALESCE(u.run_at, j.run_at), finished_at = u.finished_at, \
               attempts = j.attempts - u.uncount, \
               progress = CASE WHEN u.done THEN 100 ELSE j.progress END, \
               lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
             FROM UNNEST($2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], \
                         $8::bigint[], $9::bigint[], $10::int[], $11::bool[]) \
                  AS u(id, attempt, owner, status, result, error, run_at, finished_at, uncount, done) \
             WHERE j.id = u.id AND j.attempts = u.attempt AND j.lease_owner = u.owner \
               AND j.status = 'running' \
             RETURNING u.id, u.attempt, u.owner, \
               (j.workflow_id IS NOT NULL AND u.finished_at IS NOT NULL) AS settle";

/// The advisory lock every keyed claim holds while it counts and claims.
const KEYED_CLAIM_LOCK: i64 = 0x6b79_755f_636b;

/// The claim, one statement. Per type (`$6`), two index range scans bounded by the
/// limit (`$4`), each row locked with SKIP LOCKED so concurrent claimers never wait on
/// each other: its aged jobs (due at or before `$5`, oldest first, `jobs_queued_age`),
/// then — only as many as the aged ones leave room for — its best fresh jobs
/// (`jobs_claim`). A claim so reads O(limit × types) index entries, never the backlog,
/// once the table has statistics: without them PostgreSQL planned these reads as a
/// bitmap AND of the type and status indexes and a sort over every job of the type,
/// which is why the leader's tidy analyzes a table never analyzed (`pg_vacuum`).
/// `$7`: only these queues.
pub const CLAIM_SQL: &str = concat!(
    "WITH aged AS (SELECT a.id, a.fair_at FROM unnest($6::text[]) AS t(job_type) \
       CROSS JOIN LATERAL (SELECT id, fair_at FROM jobs \
         WHERE status = 'queued' AND concurrency_key IS NULL AND jobs.job_type = t.job_type \
           AND fair_at <= $5 \
           AND ($7::text[] IS NULL OR queue = ANY($7)) \
           AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = jobs.queue AND q.paused) \
         ORDER BY fair_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) a), \
     room AS (SELECT GREATEST(0, $4 - count(*)) AS n FROM aged), \
     fresh AS (SELECT f.id, f.priority, f.fair_at FROM unnest($6::text[]) AS t(job_type) \
       CROSS JOIN LATERAL (SELECT id, priority, fair_at FROM jobs \
         WHERE status = 'queued' AND concurrency_key IS NULL AND jobs.job_type = t.job_type \
           AND fair_at > $5 \
           AND ($7::text[] IS NULL OR queue = ANY($7)) \
           AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = jobs.queue AND q.paused) \
         ORDER BY priority DESC, fair_at, id LIMIT (SELECT n FROM room) FOR UPDATE SKIP LOCKED) f), \
     picked AS (SELECT id AS picked_id FROM \
       (SELECT id, 0 AS band, 0 AS prio, fair_at FROM aged \
        UNION ALL SELECT id, 1, priority, fair_at FROM fresh) u \
       ORDER BY band, prio DESC, fair_at, id LIMIT $4) \
     UPDATE jobs SET status = 'running', attempts = attempts + 1, progress = 0, \
       lease_owner = $2, lease_expires_at = $3, started_at = $1, updated_at = $1 \
     FROM picked WHERE jobs.id = picked.picked_id RETURNING ",
    job_columns!()
);

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        let now = self.now().await?;
        let rows = insert_rows(&jobs, now, &self.fair)?;
        if let [r] = rows.as_slice()
            && r.unique_key.is_none()
        {
            // One row needs no transaction: the INSERT commits by itself.
            insert_plain(&mut *self.client_conn().await?, &[(0, r)]).await?;
            return Ok(vec![Enqueued {
                id: jobs[0].id,
                duplicate: false,
            }]);
        }
        let mut out: Vec<Option<Enqueued>> = vec![None; rows.len()];
        let mut tx = self.begin_client().await?;

        let plain: Vec<(usize, &InsertRow)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.unique_key.is_none())
            .collect();
        for chunk in plain.chunks(INSERT_CHUNK) {
            insert_plain(&mut *tx, chunk).await?;
            for (i, _) in chunk {
                out[*i] = Some(Enqueued {
                    id: jobs[*i].id,
                    duplicate: false,
                });
            }
        }

        // Keyed rows one by one, in key order so concurrent batches lock keys alike.
        let mut keyed: Vec<(usize, &InsertRow)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.unique_key.is_some())
            .collect();
        keyed.sort_by(|a, b| a.1.unique_key.cmp(&b.1.unique_key));
        for (i, r) in keyed {
            out[i] = Some(insert_keyed(&mut tx, r, jobs[i].id).await?);
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
        let mut qb = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE TRUE"
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
        if p.types.is_empty() || p.limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now().await?;
        // Promotes due scheduled jobs, and says whether any keyed job waits.
        let keyed_waiting: bool = sqlx::query_scalar(
            "WITH due AS (SELECT id FROM jobs WHERE status = 'scheduled' AND run_at <= $1 \
               ORDER BY run_at LIMIT 1000 FOR UPDATE SKIP LOCKED), \
             promoted AS (UPDATE jobs SET status = 'queued', fair_at = jobs.run_at * 1000, \
               updated_at = $1 FROM due \
               WHERE jobs.id = due.id RETURNING jobs.concurrency_key) \
             SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued' \
               AND concurrency_key IS NOT NULL) \
               OR EXISTS (SELECT 1 FROM promoted WHERE concurrency_key IS NOT NULL)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .store_err()?;
        let cutoff = aged_cutoff(now, p.aged_before);
        let lease_until = now.saturating_add(duration_ms(p.lease));
        let mut rows = if keyed_waiting {
            self.claim_keyed(p, now, lease_until).await?
        } else {
            Vec::new()
        };
        let left = i64::from(p.limit) - rows.len() as i64;
        if left > 0 {
            rows.extend(
                sqlx::query_as::<_, JobRow>(CLAIM_SQL)
                    .bind(now)
                    .bind(&p.owner)
                    .bind(lease_until)
                    .bind(left)
                    .bind(cutoff)
                    .bind(&p.types)
                    .bind(p.queues.as_deref())
                    .fetch_all(&self.pool)
                    .await
                    .store_err()?,
            );
        }
        let mut jobs = into_jobs_in_claim_order(rows, cutoff)?;
        if jobs.iter().any(|j| j.workflow_id.is_some()) {
            let mut conn = self.pool.acquire().await.store_err()?;
            read::attach_results::<Postgres>(&mut conn, &mut jobs).await?;
        }
        Ok(jobs)
    }

    async fn extend_leases(
        &self,
        leases: &[JobLease],
        lease: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now().await?;
        let (ids, attempts, owners) = lease_columns(leases);
        let held: Vec<(String, i32, String, bool)> = sqlx::query_as(EXTEND_LEASES_SQL)
            .bind(now.saturating_add(duration_ms(lease)))
            .bind(now)
            .bind(ids)
            .bind(attempts)
            .bind(owners)
            .fetch_all(&self.pool)
            .await
            .store_err()?;
        // By id, not a search per lease: a node renews every job it holds ahead.
        let held: HashMap<String, (i32, String, bool)> = held
            .into_iter()
            .map(|(id, attempt, owner, cancel)| (id, (attempt, owner, cancel)))
            .collect();
        Ok(leases
            .iter()
            .map(|l| {
                let hit = held
                    .get(&l.id.to_string())
                    .filter(|(a, o, _)| *a as u32 == l.attempt && *o == l.owner);
                LeaseState {
                    id: l.id,
                    held: hit.is_some(),
                    cancel_requested: hit.is_some_and(|h| h.2),
                }
            })
            .collect())
    }

    async fn ack(&self, acks: &[Ack]) -> Result<Vec<bool>, StoreError> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now().await?;
        let leases: Vec<JobLease> = acks.iter().map(|a| a.lease.clone()).collect();
        let (ids, attempts, owners) = lease_columns(&leases);
        let writes: Vec<AckWrite> = acks
            .iter()
            .map(|a| AckWrite::new(&a.outcome, now))
            .collect();
        // One transaction: a workflow job's dependents settle with its outcome.
        let mut tx = self.pool.begin().await.store_err()?;
        let applied: Vec<(String, i32, String, bool)> = sqlx::query_as(ACK_SQL)
            .bind(now)
            .bind(ids)
            .bind(attempts)
            .bind(owners)
            .bind(
                writes
                    .iter()
                    .map(|w| w.status.to_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(writes.iter().map(|w| w.result.clone()).collect::<Vec<_>>())
            .bind(writes.iter().map(|w| w.error.clone()).collect::<Vec<_>>())
            .bind(writes.iter().map(|w| w.run_at).collect::<Vec<_>>())
            .bind(writes.iter().map(|w| w.finished_at).collect::<Vec<_>>())
            .bind(writes.iter().map(|w| w.uncount).collect::<Vec<_>>())
            .bind(writes.iter().map(|w| w.progress_done).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await
            .store_err()?;
        let finished: Vec<String> = applied
            .iter()
            .filter(|a| a.3)
            .map(|a| a.0.clone())
            .collect();
        let settled = if finished.is_empty() {
            settle::Settled::default()
        } else {
            settle::settle::<Postgres>(&mut tx, &finished, now).await?
        };
        tx.commit().await.store_err()?;
        settled.record();
        let applied: HashSet<(String, u32, String)> = applied
            .into_iter()
            .map(|(i, a, o, _)| (i, a as u32, o))
            .collect();
        Ok(leases
            .iter()
            .map(|l| applied.contains(&(l.id.to_string(), l.attempt, l.owner.clone())))
            .collect())
    }

    async fn set_progress(&self, l: &JobLease, progress: u8) -> Result<bool, StoreError> {
        let now = self.now().await?;
        let done = sqlx::query(
            "UPDATE jobs SET progress = $1, updated_at = $2 \
             WHERE id = $3 AND attempts = $4 AND lease_owner = $5 AND status = 'running'",
        )
        .bind(i32::from(progress.min(100)))
        .bind(now)
        .bind(l.id.to_string())
        .bind(l.attempt as i32)
        .bind(&l.owner)
        .execute(&self.pool)
        .await
        .store_err()?;
        Ok(done.rows_affected() == 1)
    }

    async fn request_cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        let now = self.now().await?;
        let mut tx = self.begin_client().await?;
        let mut settled = settle::Settled::default();
        let canceled = match Self::status_for_update(&mut tx, id).await? {
            JobStatus::Waiting | JobStatus::Queued | JobStatus::Scheduled => {
                sqlx::query(
                    "UPDATE jobs SET status = 'canceled', finished_at = $1, updated_at = $1 \
                     WHERE id = $2",
                )
                .bind(now)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .store_err()?;
                settled = settle::settle::<Postgres>(&mut tx, &[id.to_string()], now).await?;
                true
            }
            JobStatus::Running => {
                sqlx::query(
                    "UPDATE jobs SET cancel_requested = TRUE, updated_at = $1 WHERE id = $2",
                )
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
        settled.record();
        let job = self.fetch_job(id).await?.ok_or(StoreError::NotFound(id))?;
        Ok(if canceled {
            CancelOutcome::Canceled(job)
        } else {
            CancelOutcome::Requested(job)
        })
    }

    async fn retry(&self, id: Uuid) -> Result<Job, StoreError> {
        let now = self.now().await?;
        let mut tx = self.begin_client().await?;
        let status = Self::status_for_update(&mut tx, id).await?;
        if !status.is_retryable_by_user() {
            return Err(StoreError::InvalidTransition {
                id,
                status,
                action: "retry",
            });
        }
        sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = $1, fair_at = $1 * 1000, finished_at = NULL, \
             cancel_requested = FALSE, max_attempts = GREATEST(max_attempts, attempts + 1), \
             updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .store_err()?;
        settle::reopen::<Postgres>(&mut tx, &id.to_string(), now).await?;
        tx.commit().await.store_err()?;
        self.fetch_job(id).await?.ok_or(StoreError::NotFound(id))
    }

    async fn find_expired(&self, limit: u32) -> Result<Vec<JobLease>, StoreError> {
        let now = self.now().await?;
        let rows: Vec<(String, i32, String)> = sqlx::query_as(
            "SELECT id, attempts, lease_owner FROM jobs \
             WHERE status = 'running' AND lease_expires_at < $1 \
             ORDER BY lease_expires_at LIMIT $2",
        )
        .bind(now)
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
        let now = self.now().await?;
        let mut rescued = Vec::new();
        // One transaction: a workflow job that failed for good settles its dependents.
        let mut tx = self.pool.begin().await.store_err()?;
        for l in leases {
            // One statement per lease: the fence is re-checked on the row it updates.
            let done = sqlx::query(
                "UPDATE jobs SET \
                   status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
                   finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE $1 END, \
                   errors = (errors::jsonb || jsonb_build_array($2::jsonb))::text, \
                   lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
                 WHERE id = $3 AND attempts = $4 AND lease_owner = $5 AND status = 'running' \
                   AND lease_expires_at < $1",
            )
            .bind(now)
            .bind(lease_expired_error(l.attempt as i32, now))
            .bind(l.id.to_string())
            .bind(l.attempt as i32)
            .bind(&l.owner)
            .execute(&mut *tx)
            .await
            .store_err()?;
            if done.rows_affected() == 1 {
                rescued.push(l.id);
            }
        }
        let ids: Vec<String> = rescued.iter().map(Uuid::to_string).collect();
        let settled = settle::settle::<Postgres>(&mut tx, &ids, now).await?;
        tx.commit().await.store_err()?;
        settled.record();
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

    /// Through the `(owner, id)` index: one user's jobs only.
    async fn owner_counts(&self, owner: &str) -> Result<Vec<QueueCount>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT queue, status, COUNT(*) FROM jobs WHERE owner = $1 \
             GROUP BY queue, status ORDER BY queue, status",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .store_err()?;
        counts_from_rows(rows)
    }

    /// Through jobs_live, a partial index of live jobs only (an index-only scan).
    async fn live_counts(&self) -> Result<Vec<kyu_actors::LiveCount>, StoreError> {
        let rows: Vec<LiveRow> = sqlx::query_as(LIVE_COUNTS_SQL)
            .fetch_all(&self.pool)
            .await
            .store_err()?;
        live_counts_from_rows(rows)
    }

    async fn concurrency_keys(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<kyu_actors::store::KeyState>, StoreError> {
        let mut conn = self.pool.acquire().await.store_err()?;
        flow::key_states::<Postgres>(&mut conn, after.as_deref().unwrap_or(""), limit).await
    }
    async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        let now = self.now().await?;
        sqlx::query(
            "INSERT INTO queues (name, paused, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
        )
        .bind(queue)
        .bind(paused)
        .bind(now)
        .execute(&mut *self.client_conn().await?)
        .await
        .store_err()?;
        Ok(())
    }

    async fn queues(&self) -> Result<Vec<QueueState>, StoreError> {
        let rows: Vec<(String, bool)> = sqlx::query_as(
            // The distinct queue names by a loose index scan (one index probe per queue
            // through jobs_queue_status), not a scan of every job.
            "WITH RECURSIVE names(name) AS (SELECT MIN(queue) FROM jobs \
               UNION ALL SELECT (SELECT MIN(queue) FROM jobs WHERE queue > names.name) \
               FROM names WHERE names.name IS NOT NULL) \
             SELECT name, paused FROM queues \
             UNION SELECT name, FALSE FROM names \
               WHERE name IS NOT NULL AND name NOT IN (SELECT name FROM queues) \
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
        let mut conn = self.pool.acquire().await.store_err()?;
        let done = sqlx::query(concat!(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
             WHERE status IN ('completed', 'failed', 'canceled') AND finished_at < $1",
            prunable!(),
            " ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        ))
        .bind(to_millis(before))
        .bind(i64::from(limit))
        .execute(&mut *conn)
        .await
        .store_err()?;
        prune::prune_workflows::<Postgres>(&mut conn, limit).await?;
        Ok(done.rows_affected())
    }

    async fn heartbeat(&self, node: &NodeInfo) -> Result<(), StoreError> {
        let now = self.now().await?;
        sqlx::query(
            "INSERT INTO nodes (id, host, version, role, pool_size, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET \
               host = excluded.host, version = excluded.version, role = excluded.role, \
               pool_size = excluded.pool_size, started_at = excluded.started_at, \
               heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&node.id)
        .bind(&node.host)
        .bind(&node.version)
        .bind(&node.role)
        .bind(i32::try_from(node.pool_size).unwrap_or(i32::MAX))
        .bind(to_millis(node.started_at))
        .bind(now)
        .execute(&self.pool)
        .await
        .store_err()?;
        Ok(())
    }

    async fn nodes(&self, dead_after: Duration) -> Result<Vec<NodeRecord>, StoreError> {
        let now = self.now().await?;
        let rows: Vec<NodeRow> = sqlx::query_as(
            "SELECT n.id, n.host, n.version, n.role, n.pool_size::bigint, n.started_at, \
               n.heartbeat_at, \
               EXISTS (SELECT 1 FROM leaders l WHERE l.node = n.id AND l.expires_at > $1) \
             FROM nodes n WHERE n.heartbeat_at >= $2 ORDER BY n.id",
        )
        .bind(now)
        .bind(now.saturating_sub(duration_ms(dead_after)))
        .fetch_all(&self.pool)
        .await
        .store_err()?;
        Ok(nodes_from_rows(rows))
    }

    async fn deregister(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&mut *self.client_conn().await?)
            .await
            .store_err()?;
        Ok(())
    }

    async fn tidy_claim_indexes(&self) -> Result<bool, StoreError> {
        super::pg_vacuum::vacuum_jobs_if_due(&self.pool).await
    }

    async fn prune_nodes(&self, dead_for: Duration) -> Result<u64, StoreError> {
        let now = self.now().await?;
        let done = sqlx::query("DELETE FROM nodes WHERE heartbeat_at < $1")
            .bind(now.saturating_sub(duration_ms(dead_for)))
            .execute(&self.pool)
            .await
            .store_err()?;
        Ok(done.rows_affected())
    }

    /// One upsert: a concurrent first insert waits on the other's row lock, then
    /// re-checks the condition on the committed row.
    async fn acquire_leadership(
        &self,
        name: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now().await?;
        let holder: Option<String> = sqlx::query_scalar(
            "INSERT INTO leaders (name, node, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET node = excluded.node, expires_at = excluded.expires_at \
             WHERE leaders.node = excluded.node OR leaders.expires_at <= $4 \
             RETURNING node",
        )
        .bind(name)
        .bind(node)
        .bind(now.saturating_add(duration_ms(ttl)))
        .bind(now)
        .fetch_optional(&mut *self.client_conn().await?)
        .await
        .store_err()?;
        Ok(holder.as_deref() == Some(node))
    }

    async fn release_leadership(&self, name: &str, node: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM leaders WHERE name = $1 AND node = $2")
            .bind(name)
            .bind(node)
            .execute(&mut *self.client_conn().await?)
            .await
            .store_err()?;
        Ok(done.rows_affected() == 1)
    }

    async fn find_orphaned(
        &self,
        dead_after: Duration,
        limit: u32,
    ) -> Result<Vec<JobLease>, StoreError> {
        let now = self.now().await?;
        let rows: Vec<(String, i32, String)> = sqlx::query_as(
            "SELECT j.id, j.attempts, j.lease_owner FROM jobs j \
             JOIN nodes n ON n.id = j.lease_owner \
             WHERE j.status = 'running' AND n.heartbeat_at < $1 \
             ORDER BY j.lease_expires_at LIMIT $2",
        )
        .bind(now.saturating_sub(duration_ms(dead_after)))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .store_err()?;
        leases_from_rows(rows)
    }

    async fn rescue_orphaned(
        &self,
        leases: &[JobLease],
        dead_after: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        let now = self.now().await?;
        let cutoff = now.saturating_sub(duration_ms(dead_after));
        let mut rescued = Vec::new();
        let mut tx = self.pool.begin().await.store_err()?;
        for l in leases {
            let done = sqlx::query(
                "UPDATE jobs SET \
                   status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
                   finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE $1 END, \
                   errors = (errors::jsonb || jsonb_build_array($2::jsonb))::text, \
                   lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
                 WHERE id = $3 AND attempts = $4 AND lease_owner = $5 AND status = 'running' \
                   AND EXISTS (SELECT 1 FROM nodes WHERE id = $5 AND heartbeat_at < $6)",
            )
            .bind(now)
            .bind(node_dead_error(l.attempt as i32, now))
            .bind(l.id.to_string())
            .bind(l.attempt as i32)
            .bind(&l.owner)
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .store_err()?;
            if done.rows_affected() == 1 {
                rescued.push(l.id);
            }
        }
        let ids: Vec<String> = rescued.iter().map(Uuid::to_string).collect();
        let settled = settle::settle::<Postgres>(&mut tx, &ids, now).await?;
        tx.commit().await.store_err()?;
        settled.record();
        Ok(rescued)
    }

    async fn cron_last_tick(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let t: Option<i64> = sqlx::query_scalar("SELECT last_tick FROM cron_ticks WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .store_err()?;
        Ok(t.map(from_millis))
    }

    async fn enqueue_cron(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        job: NewJob,
    ) -> Result<Option<Enqueued>, StoreError> {
        let now = self.now().await?;
        let id = job.id;
        let row = InsertRow::new(&job, now)?;
        let mut tx = self.begin_client().await?;
        // Moves the record forward or returns nothing; a concurrent writer of the same
        // tick waits on the row lock, then finds the record already there.
        let advanced: Option<String> = sqlx::query_scalar(
            "INSERT INTO cron_ticks (name, last_tick, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick, \
               updated_at = excluded.updated_at \
             WHERE cron_ticks.last_tick < excluded.last_tick RETURNING name",
        )
        .bind(name)
        .bind(to_millis(tick))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .store_err()?;
        if advanced.is_none() {
            return Ok(None);
        }
        let e = insert_keyed(&mut tx, &row, id).await?;
        tx.commit().await.store_err()?;
        Ok(Some(e))
    }

    async fn enqueue_workflow(&self, wf: NewWorkflow) -> Result<WorkflowCreated, StoreError> {
        let now = self.now().await?;
        let mut tx = self.begin_client().await?;
        let created = insert::insert_workflow::<Postgres>(&mut tx, &wf, now).await?;
        tx.commit().await.store_err()?;
        Ok(created)
    }

    async fn workflow(&self, id: Uuid) -> Result<Option<WorkflowRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.store_err()?;
        read::workflow::<Postgres>(&mut conn, id).await
    }

    async fn list_workflows(&self, q: &ListWorkflows) -> Result<WorkflowPage, StoreError> {
        let mut conn = self.pool.acquire().await.store_err()?;
        read::list_workflows::<Postgres>(&mut conn, q).await
    }

    async fn cancel_workflow(&self, id: Uuid) -> Result<u64, StoreError> {
        let now = self.now().await?;
        let mut tx = self.begin_client().await?;
        let (n, settled) =
            settle::cancel_workflow::<Postgres>(&mut tx, &id.to_string(), now).await?;
        tx.commit().await.store_err()?;
        settled.record();
        Ok(n)
    }

    async fn dependencies(&self, id: Uuid) -> Result<Vec<Dependency>, StoreError> {
        let mut conn = self.pool.acquire().await.store_err()?;
        read::dependencies::<Postgres>(&mut conn, id).await
    }
}

/// Inserts one keyed row, or names the live job that holds its key. A holder that
/// rolls back frees the key (we wait on it, then insert); one that finishes between
/// our insert and our look-up frees it too, so we try again.
async fn insert_keyed(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    r: &InsertRow,
    id: Uuid,
) -> Result<Enqueued, StoreError> {
    for _ in 0..5 {
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO jobs (id, queue, job_type, provider, priority, payload, status, \
             max_attempts, run_at, timeout_ms, unique_key, owner, concurrency_key, concurrency_limit, fair_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16) \
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
        .bind(&r.concurrency_key)
        .bind(r.concurrency_limit)
        .bind(r.fair_at)
        .bind(r.now)
        .fetch_optional(&mut **tx)
        .await
        .store_err()?;
        if inserted.is_some() {
            return Ok(Enqueued {
                id,
                duplicate: false,
            });
        }
        let live: Option<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE unique_key = $1 \
             AND status IN ('queued', 'scheduled', 'running')",
        )
        .bind(&r.unique_key)
        .fetch_optional(&mut **tx)
        .await
        .store_err()?;
        if let Some(live) = live {
            return Ok(Enqueued {
                id: parse_id(&live)?,
                duplicate: true,
            });
        }
    }
    Err(StoreError::Unavailable(
        "unique key kept changing hands; try again".into(),
    ))
}

/// One multi-row INSERT of rows without a unique key.
async fn insert_plain<'e, E>(exec: E, rows: &[(usize, &InsertRow)]) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let mut qb = QueryBuilder::<Postgres>::new(
        "INSERT INTO jobs (id, queue, job_type, provider, priority, payload, status, \
         max_attempts, run_at, timeout_ms, unique_key, owner, concurrency_key, concurrency_limit, fair_at, created_at, updated_at) ",
    );
    qb.push_values(rows, |mut b, (_, r)| {
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
            .push_bind(r.concurrency_key.clone())
            .push_bind(r.concurrency_limit)
            .push_bind(r.fair_at)
            .push_bind(r.now)
            .push_bind(r.now);
    });
    qb.build().execute(exec).await.store_err()?;
    Ok(())
}

fn lease_columns(leases: &[JobLease]) -> (Vec<String>, Vec<i32>, Vec<String>) {
    (
        leases.iter().map(|l| l.id.to_string()).collect(),
        leases.iter().map(|l| l.attempt as i32).collect(),
        leases.iter().map(|l| l.owner.clone()).collect(),
    )
}
