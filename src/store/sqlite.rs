//! The embedded default store: SQLite in WAL mode.
//!
//! SQLite has no `SKIP LOCKED`; every write that reads before it writes (claim, ack,
//! enqueue with unique keys) runs in a `BEGIN IMMEDIATE` transaction, which takes the
//! single writer lock up front, so two pools on one file never claim the same job.
//! Time comes from the injected [`Clock`](kyu_actors::Clock): one process owns the file.
//!
//! The claim and the scans name their partial index (`INDEXED BY`): without statistics
//! SQLite would pick `(status, id)` and sort every queued job on each claim.
//!
//! Durability: writes a client waits on (enqueue, cancel, retry, pause) commit with
//! `synchronous = FULL`, so a 2xx survives power loss. The engine's own writes (claim,
//! ack, lease) use `NORMAL`: in WAL mode they survive a process crash, and a power cut
//! can only undo the last few, which puts their jobs back through lease rescue — at
//! least once, as after any node death. The next FULL commit syncs them too.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

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
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, QueryBuilder, Sqlite, SqlitePool};
use uuid::Uuid;

use super::error::SqlxResultExt;
use super::flow::{self, KeyCursor};
use super::hygiene::release_clean;
use super::listing::{page_from_rows, push_list_filters};
use super::row::{
    JobRow, LiveRow, NodeRow, aged_cutoff, claim_order, counts_from_rows, into_jobs_in_claim_order,
    job_columns, leases_from_rows, live_counts_from_rows, nodes_from_rows, parse_id, parse_status,
};
use super::sqlite_checkpoint;
use super::sqlite_plans::stable_plans;
use super::workflow::prune::{self, prunable};
use super::workflow::{insert, read, settle};
use super::write::{
    AckWrite, InsertRow, duration_ms, insert_rows, lease_expired_error, node_dead_error,
};
use kyu_actors::fair_share::{FairClocks, FairShare};

/// The `jobs` columns as a JSON array element, in [`JobRow`] order (booleans as JSON).
macro_rules! sqlite_json_columns {
    () => {
        "id, queue, job_type, provider, priority, payload, status, progress, result, errors, \
         attempts, max_attempts, run_at, timeout_ms, unique_key, owner, lease_owner, \
         lease_expires_at, json(CASE WHEN cancel_requested THEN 'true' ELSE 'false' END), \
         created_at, started_at, finished_at, updated_at, workflow_id, workflow_key, concurrency_key, fair_at"
    };
}

type WriteGuard = tokio::sync::OwnedMutexGuard<()>;

/// Rows per multi-row INSERT (14 binds each, under SQLite's 32,766 limit).
const INSERT_CHUNK: usize = 1000;

/// The ack's write: one UPDATE for a batch given as a JSON array of
/// `[id, attempt, owner, status, result, error, run_at, finished_at, uncount, done]`,
/// fenced by (id, attempt, lease owner, running). MATERIALIZED parses the batch once.
/// The `+` keeps `status` out of the plan: without statistics SQLite otherwise walks
/// every running job by a status index and scans the batch for each (cost grew with the
/// jobs held ahead: 40 µs per acked job while draining); with it, each batch row is
/// one lookup by key (`claim_plan::sqlite_ack_plan` shows the plan).
pub const ACK_SQL: &str = "WITH u AS MATERIALIZED (SELECT value ->> 0 AS id, value ->> 1 AS attempt, \
       value ->> 2 AS owner, value ->> 3 AS status, value ->> 4 AS result, \
       value ->> 5 AS error, value ->> 6 AS run_at, value ->> 7 AS finished_at, \
       value ->> 8 AS uncount, value ->> 9 AS done FROM json_each($1)) \
     UPDATE jobs SET status = u.status, result = COALESCE(u.result, jobs.result), \
     errors = CASE WHEN u.error IS NULL THEN jobs.errors \
              ELSE json_insert(jobs.errors, '$[#]', json(u.error)) END, \
     run_at = COALESCE(u.run_at, jobs.run_at), finished_at = u.finished_at, \
     attempts = jobs.attempts - u.uncount, \
     progress = CASE WHEN u.done THEN 100 ELSE jobs.progress END, \
     lease_owner = NULL, lease_expires_at = NULL, updated_at = $2 \
     FROM u WHERE jobs.id = u.id AND jobs.attempts = u.attempt \
       AND jobs.lease_owner = u.owner AND +jobs.status = 'running'";

/// A SQLite-backed [`Store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// The WAL checkpointer runs while any clone of the store is alive.
    _checkpointing: Arc<()>,
    /// One writer at a time, queued fairly here: SQLite's own busy handler sleeps in
    /// coarse steps (1, 2, 5 … 100 ms) and turned writer contention into latency.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Engine writes and reads (`synchronous = NORMAL`).
    pool: SqlitePool,
    /// Client-facing writes (`synchronous = FULL`).
    durable: SqlitePool,
    clock: SharedClock,
    /// Where the keyed part of the next claim starts walking keys.
    key_cursor: Arc<KeyCursor>,
    /// Tenants' fair clocks: where new jobs stand in line.
    fair: Arc<FairClocks>,
}

/// Most time spent waiting for another process to switch a new file into WAL mode.
const WAL_SWITCH_WAIT: Duration = Duration::from_secs(10);

/// Puts the file in WAL mode on one connection before any pool opens, retrying while
/// another process holds the lock. The switch takes an exclusive lock that SQLite's
/// busy handler does not wait for: processes starting together on one new file got
/// "database is locked" at once (about 1 in 30 rounds of eight `kyu migrate` on a busy
/// machine). Once the file is in WAL mode, the pools' own `journal_mode` pragma only
/// reads the header, which the busy timeout covers.
async fn switch_to_wal(opts: &SqliteConnectOptions) -> Result<(), StoreError> {
    use sqlx::ConnectOptions;
    let deadline = tokio::time::Instant::now() + WAL_SWITCH_WAIT;
    let mut pause = Duration::from_millis(2);
    loop {
        let tried = match opts.connect().await {
            Ok(conn) => conn.close().await,
            Err(e) => Err(e),
        };
        match tried {
            Err(sqlx::Error::Database(e))
                if super::error::is_sqlite_busy(e.as_ref())
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other.store_err(),
        }
    }
}

impl SqliteStore {
    /// Places new jobs by these fair-share settings (default: 1,000 jobs/s a tenant).
    pub fn with_fair_share(mut self, config: FairShare) -> Self {
        self.fair = Arc::new(FairClocks::new(config));
        self
    }

    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://kyu.db`.
    pub async fn connect(url: &str, clock: SharedClock) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .store_err()?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            // Reads through a memory map and a larger page cache: without them each
            // claim re-reads its pages with pread(2) once another connection wrote.
            .pragma("mmap_size", "268435456")
            .pragma("cache_size", "-32000")
            .pragma("wal_autocheckpoint", sqlite_checkpoint::FALLBACK_PAGES);
        switch_to_wal(&opts).await?;
        let durable = SqlitePoolOptions::new()
            .max_connections(2)
            .after_connect(stable_plans)
            .after_release(release_clean::<Sqlite>)
            .connect_with(opts.clone().synchronous(SqliteSynchronous::Full))
            .await
            .store_err()?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .after_connect(stable_plans)
            .after_release(release_clean::<Sqlite>)
            .connect_with(opts.clone().synchronous(SqliteSynchronous::Normal))
            .await
            .store_err()?;
        let alive = Arc::new(());
        sqlite_checkpoint::spawn(
            opts.synchronous(SqliteSynchronous::Normal),
            Arc::downgrade(&alive),
        );
        Ok(SqliteStore {
            _checkpointing: alive,
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            pool,
            durable,
            clock,
            key_cursor: Arc::default(),
            fair: Arc::default(),
        })
    }

    /// Applies the embedded migrations, holding the database's writer lock throughout.
    ///
    /// sqlx takes no migration lock on SQLite: two processes starting on one fresh file
    /// both saw no migration applied and both ran `0001` ("table jobs already exists").
    /// Here the whole run is one `BEGIN IMMEDIATE` transaction (each migration a
    /// savepoint inside it), so a second process waits for the first (up to the busy
    /// timeout), then finds every migration applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let failed = |e: sqlx::migrate::MigrateError| StoreError::Backend(e.to_string());
        let _turn = self.write_turn().await;
        let mut conn = self.pool.acquire().await.store_err()?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.store_err()?;
        sqlx::migrate!("migrations/sqlite")
            .run_direct(None, &mut *tx, false)
            .await
            .map_err(failed)?;
        tx.commit().await.store_err()
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn now(&self) -> i64 {
        to_millis(self.clock.now())
    }

    /// An engine write transaction (takes the writer lock up front).
    async fn begin_write(
        &self,
    ) -> Result<(WriteGuard, sqlx::Transaction<'static, Sqlite>), StoreError> {
        let guard = self.write_lock.clone().lock_owned().await;
        Ok((
            guard,
            self.pool.begin_with("BEGIN IMMEDIATE").await.store_err()?,
        ))
    }

    /// A client write transaction, synced to disk on commit.
    async fn begin_durable(
        &self,
    ) -> Result<(WriteGuard, sqlx::Transaction<'static, Sqlite>), StoreError> {
        let guard = self.write_lock.clone().lock_owned().await;
        Ok((
            guard,
            self.durable
                .begin_with("BEGIN IMMEDIATE")
                .await
                .store_err()?,
        ))
    }

    /// The writer turn for a single-statement write.
    async fn write_turn(&self) -> WriteGuard {
        self.write_lock.clone().lock_owned().await
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

/// The claim's pick, as one JSON array of full rows. Per type, two index range scans
/// bounded by the claim's limit: its aged jobs (due at or before `cutoff`, oldest first,
/// `jobs_queued_age`), then — only as many as the aged ones leave room for — its best
/// fresh jobs (`jobs_claim`). So a claim reads O(limit × types) index entries, never
/// the backlog, however many jobs wait or however long they have waited. The candidates
/// carry only (id, priority, run_at) from the covering indexes; the best `limit` are
/// chosen in SQL and only those rows are read in full.
pub(crate) fn push_claim_pick(qb: &mut QueryBuilder<Sqlite>, p: &ClaimParams, cutoff: i64) {
    let limit = i64::from(p.limit);
    let filters = |qb: &mut QueryBuilder<Sqlite>| {
        qb.push(flow::NOT_PAUSED);
        if let Some(queues) = &p.queues {
            push_queue_filter(qb, " IN ", queues);
        }
    };
    qb.push("WITH aged AS MATERIALIZED (");
    for (i, t) in p.types.iter().enumerate() {
        if i > 0 {
            qb.push(" UNION ALL ");
        }
        qb.push(
            "SELECT * FROM (SELECT id, fair_at FROM jobs INDEXED BY jobs_queued_age \
             WHERE status = 'queued' AND concurrency_key IS NULL AND job_type = ",
        )
        .push_bind(t.clone())
        .push(" AND fair_at <= ")
        .push_bind(cutoff);
        filters(qb);
        qb.push(" ORDER BY fair_at, id LIMIT ")
            .push_bind(limit)
            .push(")");
    }
    qb.push("), room AS MATERIALIZED (SELECT max(0, ")
        .push_bind(limit)
        .push(" - count(*)) AS n FROM aged), picked AS (SELECT id FROM (SELECT id, 0 AS band, 0 AS prio, fair_at FROM aged");
    for t in &p.types {
        qb.push(
            " UNION ALL SELECT * FROM (SELECT id, 1, priority, fair_at FROM jobs INDEXED BY jobs_claim \
             WHERE status = 'queued' AND concurrency_key IS NULL AND job_type = ",
        )
        .push_bind(t.clone())
        .push(" AND fair_at > ")
        .push_bind(cutoff);
        filters(qb);
        qb.push(" ORDER BY priority DESC, fair_at, id LIMIT (SELECT n FROM room))");
    }
    qb.push(") ORDER BY band, prio DESC, fair_at, id LIMIT ")
        .push_bind(limit)
        .push(concat!(
            ") SELECT json_group_array(json_array(",
            sqlite_json_columns!(),
            ")) FROM jobs WHERE id IN (SELECT id FROM picked)"
        ));
}

/// The rows of a `json_group_array` of job columns (none for NULL).
fn json_rows(picked: Option<String>) -> Result<Vec<JobRow>, StoreError> {
    match picked {
        Some(json) => {
            serde_json::from_str(&json).map_err(|e| StoreError::Backend(format!("claim rows: {e}")))
        }
        None => Ok(Vec::new()),
    }
}

/// ` AND queue <op> (…)` for a non-empty list of queue names.
fn push_queue_filter(qb: &mut QueryBuilder<Sqlite>, op: &str, queues: &[String]) {
    if queues.is_empty() {
        return;
    }
    qb.push(" AND queue").push(op).push("(");
    let mut sep = qb.separated(", ");
    for q in queues {
        sep.push_bind(q.clone());
    }
    sep.push_unseparated(")");
}

/// Live jobs per queue and status (`Store::live_counts`; `kyu bench --metrics` explains it).
pub const LIVE_COUNTS_SQL: &str = "SELECT queue, status, COUNT(*), MIN(run_at) FROM jobs INDEXED BY jobs_live \
     WHERE status IN ('waiting', 'queued', 'scheduled', 'running') GROUP BY queue, status";

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    /// Rewrites the one `store_probe` row, synced: succeeds only once the disk has
    /// room for a WAL frame again.
    async fn probe_write(&self) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO store_probe (id, at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )
        .bind(self.now())
        .execute(&self.durable)
        .await
        .store_err()?;
        Ok(())
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        let now = self.now();
        let rows = insert_rows(&jobs, now, &self.fair)?;
        let mut out: Vec<Option<Enqueued>> = vec![None; rows.len()];
        let (_turn, mut tx) = self.begin_durable().await?;

        let plain: Vec<(usize, &InsertRow)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.unique_key.is_none())
            .collect();
        for chunk in plain.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO jobs (id, queue, job_type, provider, priority, payload, status, \
                 max_attempts, run_at, timeout_ms, unique_key, owner, concurrency_key, concurrency_limit, fair_at, created_at, updated_at) ",
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
                    .push_bind(r.concurrency_key.clone())
                    .push_bind(r.concurrency_limit)
                    .push_bind(r.fair_at)
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
        if p.types.is_empty() || p.limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        let (_turn, mut tx) = self.begin_write().await?;
        // At most 1,000 due jobs per claim, as on the other backends: a million coming
        // due at once must not hold the writer lock for one huge UPDATE.
        sqlx::query(
            "UPDATE jobs SET status = 'queued', fair_at = run_at * 1000, updated_at = $1 \
             WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_scheduled \
               WHERE status = 'scheduled' AND run_at <= $1 ORDER BY run_at LIMIT 1000)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .store_err()?;
        let cutoff = aged_cutoff(now, p.aged_before);
        // Keyed jobs first (bounded by their keys' limits); the writer lock makes the
        // count and the claim one step.
        let keyed = flow::pick::<Sqlite>(&mut tx, p, &self.key_cursor, i64::from(p.limit)).await?;
        let mut rows = if keyed.is_empty() {
            Vec::new()
        } else {
            json_rows(
                sqlx::query_scalar(concat!(
                    "SELECT json_group_array(json_array(",
                    sqlite_json_columns!(),
                    ")) FROM jobs WHERE id IN (SELECT value FROM json_each($1))"
                ))
                .bind(serde_json::to_string(&keyed).unwrap_or_default())
                .fetch_one(&mut *tx)
                .await
                .store_err()?,
            )?
        };
        let plain = ClaimParams {
            limit: p.limit.saturating_sub(keyed.len() as u32),
            ..p.clone()
        };
        if plain.limit > 0 {
            // One row holding every picked job as JSON: sqlx hands each result row
            // across a thread, so a batch costs a few round trips instead of one per job.
            let mut qb = QueryBuilder::<Sqlite>::new("");
            push_claim_pick(&mut qb, &plain, cutoff);
            rows.extend(json_rows(
                qb.build_query_scalar()
                    .fetch_one(&mut *tx)
                    .await
                    .store_err()?,
            )?);
        }
        let mut rows = claim_order(rows, cutoff, p.limit);
        if rows.is_empty() {
            tx.commit().await.store_err()?;
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let lease_expires_at = now.saturating_add(duration_ms(p.lease));
        sqlx::query(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, progress = 0, \
             lease_owner = $1, lease_expires_at = $2, started_at = $3, updated_at = $3 \
             WHERE id IN (SELECT value FROM json_each($4))",
        )
        .bind(&p.owner)
        .bind(lease_expires_at)
        .bind(now)
        .bind(serde_json::to_string(&ids).unwrap_or_default())
        .execute(&mut *tx)
        .await
        .store_err()?;
        tx.commit().await.store_err()?;
        for r in &mut rows {
            r.status = JobStatus::Running.as_str().to_owned();
            r.attempts += 1;
            r.progress = 0;
            r.lease_owner = Some(p.owner.clone());
            r.lease_expires_at = Some(lease_expires_at);
            r.started_at = Some(now);
            r.updated_at = now;
        }
        let mut jobs = into_jobs_in_claim_order(rows, cutoff)?;
        if jobs.iter().any(|j| j.workflow_id.is_some()) {
            let mut conn = self.pool.acquire().await.store_err()?;
            read::attach_results::<Sqlite>(&mut conn, &mut jobs).await?;
        }
        Ok(jobs)
    }

    async fn extend_leases(
        &self,
        leases: &[JobLease],
        lease: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        let now = self.now();
        let until = now.saturating_add(duration_ms(lease));
        let (_turn, mut tx) = self.begin_write().await?;
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
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let (_turn, mut tx) = self.begin_write().await?;
        // Under the writer lock nothing changes between this read and the update, so
        // the fence is decided here (and repeated in the UPDATE's WHERE).
        let ids: Vec<String> = acks.iter().map(|a| a.lease.id.to_string()).collect();
        let held: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(id, attempts, lease_owner, workflow_id)) FROM jobs \
             WHERE status = 'running' AND id IN (SELECT value FROM json_each($1))",
        )
        .bind(serde_json::to_string(&ids).unwrap_or_default())
        .fetch_one(&mut *tx)
        .await
        .store_err()?;
        // The workflow id says which finished jobs have dependents to settle. Keyed by
        // id: a batch of 500 acks matched by a linear search was 125,000 comparisons.
        let held: Vec<(String, u32, Option<String>, Option<String>)> = serde_json::from_str(&held)
            .map_err(|e| StoreError::Backend(format!("ack fence rows: {e}")))?;
        let mut held: std::collections::HashMap<String, (u32, Option<String>, Option<String>)> =
            held.into_iter()
                .map(|(id, att, owner, wf)| (id, (att, owner, wf)))
                .collect();
        let mut applied = Vec::with_capacity(acks.len());
        let mut batch = Vec::new();
        let mut finished: Vec<String> = Vec::new();
        for (a, id) in acks.iter().zip(&ids) {
            let holds = held.get(id).is_some_and(|(att, owner, _)| {
                *att == a.lease.attempt && owner.as_deref() == Some(&a.lease.owner)
            });
            applied.push(holds);
            // one outcome per attempt: a held row is used once
            if let Some((_, _, workflow)) = holds.then(|| held.remove(id)).flatten() {
                let in_workflow = workflow.is_some();
                let w = AckWrite::new(&a.outcome, now);
                if in_workflow && w.finished_at.is_some() {
                    finished.push(id.clone());
                }
                batch.push(serde_json::json!([
                    id,
                    a.lease.attempt,
                    a.lease.owner,
                    w.status,
                    w.result,
                    w.error,
                    w.run_at,
                    w.finished_at,
                    w.uncount,
                    w.progress_done
                ]));
            }
        }
        if !batch.is_empty() {
            sqlx::query(ACK_SQL)
                .bind(serde_json::Value::Array(batch).to_string())
                .bind(now)
                .execute(&mut *tx)
                .await
                .store_err()?;
        }
        let settled = settle::settle::<Sqlite>(&mut tx, &finished, now).await?;
        tx.commit().await.store_err()?;
        settled.record();
        Ok(applied)
    }

    async fn set_progress(&self, l: &JobLease, progress: u8) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
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
        let (_turn, mut tx) = self.begin_durable().await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .store_err()?;
        let status = parse_status(status.ok_or(StoreError::NotFound(id))?)?;
        let mut settled = settle::Settled::default();
        let canceled = match status {
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
                settled = settle::settle::<Sqlite>(&mut tx, &[id.to_string()], now).await?;
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
        settled.record();
        let job = self.fetch_job(id).await?.ok_or(StoreError::NotFound(id))?;
        Ok(if canceled {
            CancelOutcome::Canceled(job)
        } else {
            CancelOutcome::Requested(job)
        })
    }

    async fn retry(&self, id: Uuid) -> Result<Job, StoreError> {
        let now = self.now();
        let (_turn, mut tx) = self.begin_durable().await?;
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
            "UPDATE jobs SET status = 'queued', run_at = $1, fair_at = $1 * 1000, finished_at = NULL, \
             cancel_requested = 0, max_attempts = MAX(max_attempts, attempts + 1), updated_at = $1 \
             WHERE id = $2",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .store_err()?;
        settle::reopen::<Sqlite>(&mut tx, &id.to_string(), now).await?;
        tx.commit().await.store_err()?;
        self.fetch_job(id).await?.ok_or(StoreError::NotFound(id))
    }

    async fn find_expired(&self, limit: u32) -> Result<Vec<JobLease>, StoreError> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT id, attempts, lease_owner FROM jobs INDEXED BY jobs_leases \
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
        let (_turn, mut tx) = self.begin_write().await?;
        let mut rescued = Vec::new();
        for l in leases {
            let done = sqlx::query(
                "UPDATE jobs SET \
                   status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
                   finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE $1 END, \
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
        let ids: Vec<String> = rescued.iter().map(Uuid::to_string).collect();
        let settled = settle::settle::<Sqlite>(&mut tx, &ids, now).await?;
        tx.commit().await.store_err()?;
        settled.record();
        Ok(rescued)
    }

    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(run_at) FROM jobs INDEXED BY jobs_scheduled WHERE status = 'scheduled'",
        )
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

    /// Through jobs_live, a partial index of live jobs only (forced: it must never become a scan).
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
        flow::key_states::<Sqlite>(&mut conn, after.as_deref().unwrap_or(""), limit).await
    }
    async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO queues (name, paused, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
        )
        .bind(queue)
        .bind(paused)
        .bind(self.now())
        .execute(&self.durable)
        .await
        .store_err()?;
        Ok(())
    }

    async fn queues(&self) -> Result<Vec<QueueState>, StoreError> {
        let rows: Vec<(String, bool)> = sqlx::query_as(
            // The distinct queue names by a loose index scan (one index probe per queue
            // through jobs_queue_id), not a scan of every job.
            "WITH RECURSIVE names(name) AS (SELECT MIN(queue) FROM jobs \
               UNION ALL SELECT (SELECT MIN(queue) FROM jobs WHERE queue > names.name) \
               FROM names WHERE names.name IS NOT NULL) \
             SELECT name, paused FROM queues \
             UNION SELECT name, 0 FROM names \
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
        let _turn = self.write_turn().await;
        let mut conn = self.pool.acquire().await.store_err()?;
        let done = sqlx::query(concat!(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_finished \
             WHERE status IN ('completed', 'failed', 'canceled') AND finished_at < $1",
            prunable!(),
            " ORDER BY finished_at LIMIT $2)"
        ))
        .bind(to_millis(before))
        .bind(i64::from(limit))
        .execute(&mut *conn)
        .await
        .store_err()?;
        prune::prune_workflows::<Sqlite>(&mut conn, limit).await?;
        Ok(done.rows_affected())
    }

    async fn heartbeat(&self, node: &NodeInfo) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
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
        .bind(i64::from(node.pool_size))
        .bind(to_millis(node.started_at))
        .bind(self.now())
        .execute(&self.pool)
        .await
        .store_err()?;
        Ok(())
    }

    async fn nodes(&self, dead_after: Duration) -> Result<Vec<NodeRecord>, StoreError> {
        let now = self.now();
        let rows: Vec<NodeRow> = sqlx::query_as(
            "SELECT n.id, n.host, n.version, n.role, n.pool_size, n.started_at, n.heartbeat_at, \
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
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.durable)
            .await
            .store_err()?;
        Ok(())
    }

    async fn prune_nodes(&self, dead_for: Duration) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM nodes WHERE heartbeat_at < $1")
            .bind(self.now().saturating_sub(duration_ms(dead_for)))
            .execute(&self.pool)
            .await
            .store_err()?;
        Ok(done.rows_affected())
    }

    async fn acquire_leadership(
        &self,
        name: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let _turn = self.write_turn().await;
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
        .fetch_optional(&self.durable)
        .await
        .store_err()?;
        Ok(holder.as_deref() == Some(node))
    }

    async fn release_leadership(&self, name: &str, node: &str) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM leaders WHERE name = $1 AND node = $2")
            .bind(name)
            .bind(node)
            .execute(&self.durable)
            .await
            .store_err()?;
        Ok(done.rows_affected() == 1)
    }

    async fn find_orphaned(
        &self,
        dead_after: Duration,
        limit: u32,
    ) -> Result<Vec<JobLease>, StoreError> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT j.id, j.attempts, j.lease_owner FROM nodes n \
             JOIN jobs j ON j.lease_owner = n.id AND j.status = 'running' \
             WHERE n.heartbeat_at < $1 ORDER BY j.lease_expires_at LIMIT $2",
        )
        .bind(self.now().saturating_sub(duration_ms(dead_after)))
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
        let now = self.now();
        let cutoff = now.saturating_sub(duration_ms(dead_after));
        let (_turn, mut tx) = self.begin_write().await?;
        let mut rescued = Vec::new();
        for l in leases {
            let done = sqlx::query(
                "UPDATE jobs SET \
                   status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
                   finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE $1 END, \
                   errors = json_insert(errors, '$[#]', json($2)), \
                   lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
                 WHERE id = $3 AND attempts = $4 AND lease_owner = $5 AND status = 'running' \
                   AND EXISTS (SELECT 1 FROM nodes WHERE id = $5 AND heartbeat_at < $6)",
            )
            .bind(now)
            .bind(node_dead_error(l.attempt as i32, now))
            .bind(l.id.to_string())
            .bind(l.attempt as i64)
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
        let settled = settle::settle::<Sqlite>(&mut tx, &ids, now).await?;
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
        let now = self.now();
        let id = job.id;
        let row = InsertRow::new(&job, now)?;
        let (_turn, mut tx) = self.begin_durable().await?;
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
        let now = self.now();
        let (_turn, mut tx) = self.begin_durable().await?;
        let created = insert::insert_workflow::<Sqlite>(&mut tx, &wf, now).await?;
        tx.commit().await.store_err()?;
        Ok(created)
    }

    async fn workflow(&self, id: Uuid) -> Result<Option<WorkflowRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.store_err()?;
        read::workflow::<Sqlite>(&mut conn, id).await
    }

    async fn list_workflows(&self, q: &ListWorkflows) -> Result<WorkflowPage, StoreError> {
        let mut conn = self.pool.acquire().await.store_err()?;
        read::list_workflows::<Sqlite>(&mut conn, q).await
    }

    async fn cancel_workflow(&self, id: Uuid) -> Result<u64, StoreError> {
        let now = self.now();
        let (_turn, mut tx) = self.begin_durable().await?;
        let (n, settled) = settle::cancel_workflow::<Sqlite>(&mut tx, &id.to_string(), now).await?;
        tx.commit().await.store_err()?;
        settled.record();
        Ok(n)
    }

    async fn dependencies(&self, id: Uuid) -> Result<Vec<Dependency>, StoreError> {
        let mut conn = self.pool.acquire().await.store_err()?;
        read::dependencies::<Sqlite>(&mut conn, id).await
    }
}

/// Inserts one row, or names the live job that holds its unique key (a row without a
/// key never conflicts).
async fn insert_keyed(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    r: &InsertRow,
    id: Uuid,
) -> Result<Enqueued, StoreError> {
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
    let live: String = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE unique_key = $1 \
         AND status IN ('queued', 'scheduled', 'running')",
    )
    .bind(&r.unique_key)
    .fetch_one(&mut **tx)
    .await
    .store_err()?;
    Ok(Enqueued {
        id: parse_id(&live)?,
        duplicate: true,
    })
}
