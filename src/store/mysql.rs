//! MySQL 8 / MariaDB 10.6+ store.
//!
//! MariaDB has `SKIP LOCKED` but no `UPDATE … RETURNING` (MySQL has neither RETURNING),
//! so a claim selects ids `FOR UPDATE SKIP LOCKED`, updates them and reads them back,
//! all in one transaction. Sessions run at READ COMMITTED so range scans take no gap
//! locks that would stall concurrent enqueues. Unique keys use a generated column that
//! holds the key only while the job is live (MariaDB has no partial indexes). The claim
//! names its index: with a million finished rows the optimizer sometimes chose another
//! and a claim took seconds.

use std::collections::HashMap;
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
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Executor, MySql, MySqlPool, QueryBuilder};
use std::str::FromStr;
use uuid::Uuid;

use super::db_clock::DbClock;
use super::error::SqlxResultExt;
use super::flow::{self, KeyCursor};
use super::hygiene::release_clean;
use super::listing::{page_from_rows, push_list_filters};
use super::row::{
    JobRow, LiveRow, aged_cutoff, counts_from_rows, into_jobs_in_claim_order, job_columns,
    leases_from_rows, live_counts_from_rows, nodes_from_rows, parse_id, parse_status,
};
use super::workflow::prune::{self, prunable};
use super::workflow::{insert, read, settle};
use super::write::{
    AckWrite, InsertRow, duration_ms, insert_rows, lease_expired_error, node_dead_error,
};
use kyu_actors::fair_share::{FairClocks, FairShare};

/// The database clock in epoch ms.
const SQL_NOW: &str = "SELECT CAST(ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED)";

const INSERT_CHUNK: usize = 2000;

/// Acks per UPDATE (9 binds each).
const ACK_CHUNK: usize = 500;

type Tx = sqlx::Transaction<'static, MySql>;

/// A MySQL/MariaDB-backed [`Store`].
#[derive(Clone, Debug)]
pub struct MySqlStore {
    pool: MySqlPool,
    clock: Option<SharedClock>,
    db_clock: Arc<DbClock>,
    /// Where the keyed part of the next claim starts walking keys.
    key_cursor: Arc<KeyCursor>,
    /// Tenants' fair clocks: where new jobs stand in line.
    fair: Arc<FairClocks>,
}

impl MySqlStore {
    /// Places new jobs by these fair-share settings (default: 1,000 jobs/s a tenant).
    pub fn with_fair_share(mut self, config: FairShare) -> Self {
        self.fair = Arc::new(FairClocks::new(config));
        self
    }

    pub async fn connect(
        url: &str,
        max_connections: u32,
        clock: Option<SharedClock>,
    ) -> Result<Self, StoreError> {
        let opts = MySqlConnectOptions::from_str(url).store_err()?;
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_release(release_clean::<MySql>)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .store_err()?;
        Ok(MySqlStore {
            pool,
            clock,
            db_clock: Arc::default(),
            key_cursor: Arc::default(),
            fair: Arc::default(),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/mysql")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Epoch ms by the database's clock (or the test clock).
    async fn now(&self) -> Result<i64, StoreError> {
        match &self.clock {
            Some(c) => Ok(to_millis(c.now())),
            None => {
                self.db_clock
                    .now(|| async {
                        let mut conn = self.pool.acquire().await.store_err()?;
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

    async fn fetch_job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        sqlx::query_as::<_, JobRow>(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .store_err()?
        .map(Job::try_from)
        .transpose()
    }

    /// A connection whose next transaction runs at READ COMMITTED: its range reads and
    /// deletes lock the rows they touch, not the gaps beside them, where other
    /// transactions insert.
    async fn read_committed(&self) -> Result<PoolConnection<MySql>, StoreError> {
        let mut conn = self.pool.acquire().await.store_err()?;
        conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .await
            .store_err()?;
        Ok(conn)
    }

    async fn claim_once(&self, p: &ClaimParams) -> Result<Vec<Job>, StoreError> {
        if p.types.is_empty() || p.limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now().await?;
        let paused: Vec<String> = sqlx::query_scalar("SELECT name FROM queues WHERE paused")
            .fetch_all(&self.pool)
            .await
            .store_err()?;
        // READ COMMITTED: the claim's range reads lock the rows they return, not the
        // gaps and next keys around them (REPEATABLE READ would, once per type, and
        // those next keys are running jobs' index entries that acks must rewrite).
        let mut conn = self.read_committed().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.store_err()?;

        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM jobs FORCE INDEX (jobs_due) WHERE scheduled_at <= ? \
             ORDER BY scheduled_at LIMIT 1000 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .store_err()?;
        if !due.is_empty() {
            let mut qb = QueryBuilder::<MySql>::new(
                "UPDATE jobs SET status = 'queued', fair_at = run_at * 1000, updated_at = ",
            );
            qb.push_bind(now)
                .push(" WHERE status = 'scheduled' AND id IN ");
            push_id_list(&mut qb, &due);
            qb.build().execute(&mut *tx).await.store_err()?;
        }

        let cutoff = aged_cutoff(now, p.aged_before);
        let limit = i64::from(p.limit);
        // Keyed jobs first (bounded by their keys' limits), under the flow_locks row
        // every keyed claim takes, held to this transaction's end.
        let mut ids: Vec<String> = Vec::new();
        if flow::any_queued::<MySql>(&mut tx).await? {
            sqlx::query("SELECT name FROM flow_locks WHERE name = 'concurrency' FOR UPDATE")
                .execute(&mut *tx)
                .await
                .store_err()?;
            ids = flow::pick::<MySql>(&mut tx, p, &self.key_cursor, limit).await?;
        }
        // Which of the claim's types have queued jobs, and since when, taking no lock
        // (see `push_present_probe`). Only the types found get a locking range read, so
        // a type with nothing queued costs no lock (each range read locks the index
        // entry after it: a running job's, which its ack rewrites).
        let mut qb = QueryBuilder::<MySql>::new("");
        push_present_probe(&mut qb, &p.types);
        let present: Vec<(String, i64)> = qb
            .build_query_as::<(String, Option<i64>)>()
            .fetch_all(&mut *tx)
            .await
            .store_err()?
            .into_iter()
            .filter_map(|(t, oldest)| oldest.map(|o| (t, o)))
            .collect();
        for band in [ClaimBand::Aged(cutoff), ClaimBand::Fresh(cutoff)] {
            let left = limit - ids.len() as i64;
            if left <= 0 || (matches!(band, ClaimBand::Aged(_)) && p.aged_before.is_none()) {
                continue;
            }
            let types: Vec<String> = present
                .iter()
                .filter(|(_, oldest)| matches!(band, ClaimBand::Fresh(_)) || *oldest <= cutoff)
                .map(|(t, _)| t.clone())
                .collect();
            if types.is_empty() {
                continue;
            }
            let mut qb = QueryBuilder::<MySql>::new("");
            push_claim_branches(&mut qb, &types, p.queues.as_deref(), &paused, band, left);
            let rows: Vec<(String, i32, i64)> =
                qb.build_query_as().fetch_all(&mut *tx).await.store_err()?;
            ids.extend(best_ids(rows, band, left));
        }
        if ids.is_empty() {
            tx.commit().await.store_err()?;
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::<MySql>::new(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, progress = 0, lease_owner = ",
        );
        qb.push_bind(p.owner.clone())
            .push(", lease_expires_at = ")
            .push_bind(now.saturating_add(duration_ms(p.lease)))
            .push(", started_at = ")
            .push_bind(now)
            .push(", updated_at = ")
            .push_bind(now)
            .push(" WHERE id IN ");
        push_id_list(&mut qb, &ids);
        qb.build().execute(&mut *tx).await.store_err()?;
        let mut qb = QueryBuilder::<MySql>::new(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id IN "
        ));
        push_id_list(&mut qb, &ids);
        let rows: Vec<JobRow> = qb.build_query_as().fetch_all(&mut *tx).await.store_err()?;
        tx.commit().await.store_err()?;
        into_jobs_in_claim_order(rows, cutoff)
    }

    /// Two statements per renewal, not two per lease (a node renews every job it
    /// holds ahead, up to a thousand): lock the rows and check each lease's fence
    /// (attempt, owner, running) here, then move every held lease in one UPDATE.
    async fn extend_leases_once(
        &self,
        leases: &[JobLease],
        lease: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        let now = self.now().await?;
        let until = now.saturating_add(duration_ms(lease));
        let mut tx = self.pool.begin().await.store_err()?;
        let ids: Vec<String> = leases.iter().map(|l| l.id.to_string()).collect();
        let fences = lock_fences(&mut tx, &ids).await?;
        let out: Vec<LeaseState> = leases
            .iter()
            .zip(&ids)
            .map(|(l, id)| {
                let hit = fences.get(id).filter(|f| f.holds(l));
                LeaseState {
                    id: l.id,
                    held: hit.is_some(),
                    cancel_requested: hit.is_some_and(|f| f.cancel_requested),
                }
            })
            .collect();
        let held: Vec<String> = out
            .iter()
            .filter(|s| s.held)
            .map(|s| s.id.to_string())
            .collect();
        if !held.is_empty() {
            let mut qb = QueryBuilder::<MySql>::new("UPDATE jobs SET lease_expires_at = ");
            qb.push_bind(until)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE id IN ");
            push_id_list(&mut qb, &held);
            qb.build().execute(&mut *tx).await.store_err()?;
        }
        tx.commit().await.store_err()?;
        Ok(out)
    }

    /// READ COMMITTED: under REPEATABLE READ the range delete gap-locks the newest
    /// finished entries of `jobs_finished`, exactly where every ack inserts, and InnoDB
    /// broke the tie by killing one of them (seen draining a million jobs).
    async fn prune_once(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let mut conn = self.read_committed().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.store_err()?;
        let done = sqlx::query(concat!(
            "DELETE FROM jobs WHERE status IN ('completed', 'failed', 'canceled') \
             AND finished_at < ?",
            prunable!(),
            " ORDER BY finished_at LIMIT ?"
        ))
        .bind(to_millis(before))
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .store_err()?;
        prune::prune_workflows::<MySql>(&mut *tx, limit).await?;
        tx.commit().await.store_err()?;
        Ok(done.rows_affected())
    }

    async fn ack_once(&self, acks: &[Ack]) -> Result<Vec<bool>, StoreError> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now().await?;
        let mut tx = self.pool.begin().await.store_err()?;
        // Two statements per batch, not one per ack: lock the rows and check each
        // ack's fence (attempt, owner, running) here, then write every ack that holds
        // in one UPDATE joined to the batch's values.
        let ids: Vec<String> = acks.iter().map(|a| a.lease.id.to_string()).collect();
        let mut fences = lock_fences(&mut tx, &ids).await?;
        let mut out = Vec::with_capacity(acks.len());
        let mut finished: Vec<String> = Vec::new();
        let mut writes: Vec<(String, AckWrite)> = Vec::new();
        for (a, id) in acks.iter().zip(ids) {
            let applied = fences.get_mut(&id).is_some_and(|f| {
                let ok = f.holds(&a.lease);
                // A second ack of the same attempt in this batch finds it written.
                f.running &= !ok;
                ok
            });
            out.push(applied);
            if applied {
                let w = AckWrite::new(&a.outcome, now);
                if w.finished_at.is_some() {
                    finished.push(id.clone());
                }
                writes.push((id, w));
            }
        }
        for chunk in writes.chunks(ACK_CHUNK) {
            let mut qb = QueryBuilder::<MySql>::new("UPDATE jobs JOIN (");
            for (n, (id, w)) in chunk.iter().enumerate() {
                qb.push(if n == 0 {
                    "SELECT "
                } else {
                    " UNION ALL SELECT "
                });
                let mut sep = qb.separated(", ");
                sep.push_bind(id.clone()).push_unseparated(" AS id");
                sep.push_bind(w.status).push_unseparated(" AS st");
                sep.push_bind(w.result.clone()).push_unseparated(" AS res");
                sep.push_bind(w.error.clone()).push_unseparated(" AS err");
                sep.push_bind(w.run_at).push_unseparated(" AS due");
                sep.push_bind(w.finished_at).push_unseparated(" AS fin");
                sep.push_bind(w.uncount).push_unseparated(" AS unc");
                sep.push_bind(w.progress_done).push_unseparated(" AS done");
            }
            qb.push(
                ") u ON jobs.id = u.id SET jobs.status = u.st, \
                 jobs.result = COALESCE(u.res, jobs.result), \
                 jobs.errors = CASE WHEN u.err IS NULL THEN jobs.errors \
                   ELSE JSON_ARRAY_APPEND(jobs.errors, '$', JSON_EXTRACT(u.err, '$')) END, \
                 jobs.run_at = COALESCE(u.due, jobs.run_at), jobs.finished_at = u.fin, \
                 jobs.attempts = jobs.attempts - u.unc, \
                 jobs.progress = CASE WHEN u.done THEN 100 ELSE jobs.progress END, \
                 jobs.lease_owner = NULL, jobs.lease_expires_at = NULL, jobs.updated_at = ",
            )
            .push_bind(now);
            qb.build().execute(&mut *tx).await.store_err()?;
        }
        let settled = settle::settle::<MySql>(&mut tx, &finished, now).await?;
        tx.commit().await.store_err()?;
        settled.record();
        Ok(out)
    }

    async fn status_for_update(tx: &mut Tx, id: Uuid) -> Result<JobStatus, StoreError> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE id = ? FOR UPDATE")
                .bind(id.to_string())
                .fetch_optional(&mut **tx)
                .await
                .store_err()?;
        parse_status(status.ok_or(StoreError::NotFound(id))?)
    }
}

/// InnoDB picks a victim when claims and acks lock index records in different
/// orders; the victim's transaction rolled back whole, so it is safe to run again.
async fn retry_deadlocks<T, F, Fut>(mut f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut tries = 0;
    loop {
        match f().await {
            Err(StoreError::Unavailable(m)) if m.contains("1213") && tries < 5 => tries += 1,
            other => return other,
        }
    }
}

/// Pushes `(?, ?, …)` binding each id.
fn push_id_list(qb: &mut QueryBuilder<MySql>, ids: &[String]) {
    qb.push("(");
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(id.clone());
    }
    sep.push_unseparated(")");
}

/// Live jobs per queue and status (`Store::live_counts`; `kyu bench --metrics` explains it).
pub const LIVE_COUNTS_SQL: &str = "SELECT queue, status, COUNT(*), MIN(run_at) FROM jobs FORCE INDEX (jobs_live) \
     WHERE status IN ('waiting', 'queued', 'scheduled', 'running') GROUP BY status, queue";

/// Which part of the claim order a claim query reads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ClaimBand {
    /// Due at or before the cutoff (epoch ms): oldest first.
    Aged(i64),
    /// Due after the cutoff: best priority first.
    Fresh(i64),
}

/// A job's fence as a batch (acks, renewals) locked it: what a lease must match.
struct Fence {
    attempts: i32,
    owner: Option<String>,
    running: bool,
    cancel_requested: bool,
}

impl Fence {
    fn holds(&self, l: &JobLease) -> bool {
        self.running
            && self.attempts == l.attempt as i32
            && self.owner.as_deref() == Some(l.owner.as_str())
    }
}

/// Locks the rows of `ids` (`FOR UPDATE`) and reads their fences, by id: one
/// statement for a whole batch, whose fences are then checked in Rust.
async fn lock_fences(tx: &mut Tx, ids: &[String]) -> Result<HashMap<String, Fence>, StoreError> {
    let mut qb = QueryBuilder::<MySql>::new(
        "SELECT id, attempts, lease_owner, status, cancel_requested FROM jobs WHERE id IN ",
    );
    push_id_list(&mut qb, ids);
    qb.push(" FOR UPDATE");
    let rows: Vec<(String, i32, Option<String>, String, bool)> =
        qb.build_query_as().fetch_all(&mut **tx).await.store_err()?;
    Ok(rows
        .into_iter()
        .map(|(id, attempts, owner, status, cancel_requested)| {
            let fence = Fence {
                attempts,
                owner,
                running: status == "running",
                cancel_requested,
            };
            (id, fence)
        })
        .collect())
}

/// Per type, the oldest `fair_at` of its queued plain jobs (NULL: none): the MIN of
/// `jobs_aged` under its constant prefix (`claim_type`: the type of a queued plain job),
/// which MariaDB answers from one index dive ("Select tables optimized away"). One
/// `GROUP BY job_type` over the types read every queued entry instead (no loose scan
/// past the IS NULL key part): 73 ms per claim with 94,000 jobs queued.
pub(crate) fn push_present_probe(qb: &mut QueryBuilder<MySql>, types: &[String]) {
    for (i, t) in types.iter().enumerate() {
        if i > 0 {
            qb.push(" UNION ALL ");
        }
        qb.push("SELECT ")
            .push_bind(t.clone())
            .push(", MIN(fair_at) FROM jobs FORCE INDEX (jobs_aged) WHERE claim_type = ")
            .push_bind(t.clone());
    }
}

/// One claim query: per type, a range of its own index (`jobs_aged` or `jobs_claim`,
/// led by `claim_type`, the type of a queued plain job) bounded by `limit` and locked
/// with SKIP LOCKED, the branches joined by UNION ALL. So a claim reads O(limit × types)
/// index entries, never the backlog, however many jobs wait or however old they are.
/// Rows are (id, priority, run_at); [`best_ids`] keeps the best `limit`.
pub(crate) fn push_claim_branches(
    qb: &mut QueryBuilder<MySql>,
    types: &[String],
    queues: Option<&[String]>,
    paused: &[String],
    band: ClaimBand,
    limit: i64,
) {
    // The aged band's order has no priority, and reading it would cost every
    // candidate a primary-key lookup (jobs_aged does not hold it): 0 keeps it covering.
    let (index, priority, order) = match band {
        ClaimBand::Aged(_) => ("jobs_aged", "0", "fair_at, id"),
        ClaimBand::Fresh(_) => ("jobs_claim", "priority", "priority DESC, fair_at, id"),
    };
    for (i, t) in types.iter().enumerate() {
        if i > 0 {
            qb.push(" UNION ALL ");
        }
        qb.push("(SELECT id, ")
            .push(priority)
            .push(", fair_at FROM jobs FORCE INDEX (")
            .push(index)
            .push(") WHERE claim_type = ")
            .push_bind(t.clone());
        match band {
            ClaimBand::Aged(cutoff) => qb.push(" AND fair_at <= ").push_bind(cutoff),
            ClaimBand::Fresh(cutoff) => qb.push(" AND fair_at > ").push_bind(cutoff),
        };
        if !paused.is_empty() {
            qb.push(" AND queue NOT IN ");
            push_id_list(qb, paused);
        }
        if let Some(queues) = queues.filter(|q| !q.is_empty()) {
            qb.push(" AND queue IN ");
            push_id_list(qb, queues);
        }
        qb.push(" ORDER BY ")
            .push(order)
            .push(" LIMIT ")
            .push_bind(limit)
            .push(" FOR UPDATE SKIP LOCKED)");
    }
}

/// The ids of the best `limit` candidates of one band, in claim order.
fn best_ids(mut rows: Vec<(String, i32, i64)>, band: ClaimBand, limit: i64) -> Vec<String> {
    match band {
        ClaimBand::Aged(_) => rows.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0))),
        ClaimBand::Fresh(_) => {
            rows.sort_by(|a, b| (b.1, a.2, &a.0).cmp(&(a.1, b.2, &b.0)));
        }
    }
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    rows.into_iter().map(|r| r.0).collect()
}

#[async_trait]
impl Store for MySqlStore {
    fn backend(&self) -> &'static str {
        "mysql"
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        let now = self.now().await?;
        let rows = insert_rows(&jobs, now, &self.fair)?;
        let mut out: Vec<Option<Enqueued>> = vec![None; rows.len()];
        let mut tx = self.pool.begin().await.store_err()?;

        let plain: Vec<(usize, &InsertRow)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.unique_key.is_none())
            .collect();
        for chunk in plain.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<MySql>::new(
                "INSERT INTO jobs (id, queue, job_type, provider, priority, payload, status, \
                 max_attempts, run_at, timeout_ms, unique_key, owner, concurrency_key, concurrency_limit, fair_at, created_at, updated_at, errors) ",
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
                    .push_bind(r.now)
                    .push("'[]'");
            });
            qb.build().execute(&mut *tx).await.store_err()?;
            for (i, _) in chunk {
                out[*i] = Some(Enqueued {
                    id: jobs[*i].id,
                    duplicate: false,
                });
            }
        }

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
        let mut qb = QueryBuilder::<MySql>::new(concat!(
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
        let mut jobs = retry_deadlocks(|| self.claim_once(p)).await?;
        if jobs.iter().any(|j| j.workflow_id.is_some()) {
            let mut conn = self.pool.acquire().await.store_err()?;
            read::attach_results::<MySql>(&mut conn, &mut jobs).await?;
        }
        Ok(jobs)
    }

    async fn ack(&self, acks: &[Ack]) -> Result<Vec<bool>, StoreError> {
        retry_deadlocks(|| self.ack_once(acks)).await
    }

    async fn extend_leases(
        &self,
        leases: &[JobLease],
        lease: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        retry_deadlocks(|| self.extend_leases_once(leases, lease)).await
    }

    async fn set_progress(&self, l: &JobLease, progress: u8) -> Result<bool, StoreError> {
        let now = self.now().await?;
        let done = sqlx::query(
            "UPDATE jobs SET progress = ?, updated_at = ? \
             WHERE id = ? AND attempts = ? AND lease_owner = ? AND status = 'running'",
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
        let mut tx = self.pool.begin().await.store_err()?;
        let mut settled = settle::Settled::default();
        let canceled = match Self::status_for_update(&mut tx, id).await? {
            JobStatus::Waiting | JobStatus::Queued | JobStatus::Scheduled => {
                sqlx::query(
                    "UPDATE jobs SET status = 'canceled', finished_at = ?, updated_at = ? WHERE id = ?",
                )
                .bind(now)
                .bind(now)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .store_err()?;
                settled = settle::settle::<MySql>(&mut tx, &[id.to_string()], now).await?;
                true
            }
            JobStatus::Running => {
                sqlx::query("UPDATE jobs SET cancel_requested = TRUE, updated_at = ? WHERE id = ?")
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
        let mut tx = self.pool.begin().await.store_err()?;
        let status = Self::status_for_update(&mut tx, id).await?;
        if !status.is_retryable_by_user() {
            return Err(StoreError::InvalidTransition {
                id,
                status,
                action: "retry",
            });
        }
        sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = ?, fair_at = run_at * 1000, finished_at = NULL, \
             cancel_requested = FALSE, max_attempts = GREATEST(max_attempts, attempts + 1), \
             updated_at = ? WHERE id = ?",
        )
        .bind(now)
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .store_err()?;
        settle::reopen::<MySql>(&mut tx, &id.to_string(), now).await?;
        tx.commit().await.store_err()?;
        self.fetch_job(id).await?.ok_or(StoreError::NotFound(id))
    }

    async fn find_expired(&self, limit: u32) -> Result<Vec<JobLease>, StoreError> {
        let now = self.now().await?;
        let rows: Vec<(String, i32, String)> = sqlx::query_as(
            "SELECT id, attempts, lease_owner FROM jobs \
             WHERE status = 'running' AND lease_expires_at < ? \
             ORDER BY lease_expires_at LIMIT ?",
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
            // MySQL applies SET left to right, so `status` goes last; the WHERE fence
            // is re-checked on the locked row.
            let done = sqlx::query(
                "UPDATE jobs SET \
                   finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE ? END, \
                   errors = JSON_ARRAY_APPEND(errors, '$', JSON_EXTRACT(?, '$')), \
                   lease_owner = NULL, lease_expires_at = NULL, updated_at = ?, \
                   status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END \
                 WHERE id = ? AND attempts = ? AND lease_owner = ? AND status = 'running' \
                   AND lease_expires_at < ?",
            )
            .bind(now)
            .bind(lease_expired_error(l.attempt as i32, now))
            .bind(now)
            .bind(l.id.to_string())
            .bind(l.attempt as i32)
            .bind(&l.owner)
            .bind(now)
            .execute(&mut *tx)
            .await
            .store_err()?;
            if done.rows_affected() == 1 {
                rescued.push(l.id);
            }
        }
        let ids: Vec<String> = rescued.iter().map(Uuid::to_string).collect();
        let settled = settle::settle::<MySql>(&mut tx, &ids, now).await?;
        tx.commit().await.store_err()?;
        settled.record();
        Ok(rescued)
    }

    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let t: Option<i64> = sqlx::query_scalar("SELECT MIN(scheduled_at) FROM jobs")
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
            "SELECT queue, status, COUNT(*) FROM jobs WHERE owner = ? \
             GROUP BY queue, status ORDER BY queue, status",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .store_err()?;
        counts_from_rows(rows)
    }

    /// Through a range of jobs_live (status, queue, run_at) over the live statuses: covering.
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
        flow::key_states::<MySql>(&mut conn, after.as_deref().unwrap_or(""), limit).await
    }
    async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        let now = self.now().await?;
        sqlx::query(
            "INSERT INTO queues (name, paused, updated_at) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE paused = VALUES(paused), updated_at = VALUES(updated_at)",
        )
        .bind(queue)
        .bind(paused)
        .bind(now)
        .execute(&self.pool)
        .await
        .store_err()?;
        Ok(())
    }

    async fn queues(&self) -> Result<Vec<QueueState>, StoreError> {
        let rows: Vec<(String, bool)> = sqlx::query_as(
            "SELECT name, paused FROM queues \
             UNION SELECT DISTINCT queue, FALSE FROM jobs WHERE queue NOT IN (SELECT name FROM queues) \
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
        retry_deadlocks(|| self.prune_once(before, limit)).await
    }

    async fn heartbeat(&self, node: &NodeInfo) -> Result<(), StoreError> {
        let now = self.now().await?;
        sqlx::query(
            "INSERT INTO nodes (id, host, version, role, pool_size, started_at, heartbeat_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
               host = VALUES(host), version = VALUES(version), role = VALUES(role), \
               pool_size = VALUES(pool_size), started_at = VALUES(started_at), \
               heartbeat_at = VALUES(heartbeat_at)",
        )
        .bind(&node.id)
        .bind(&node.host)
        .bind(&node.version)
        .bind(&node.role)
        .bind(i64::from(node.pool_size))
        .bind(to_millis(node.started_at))
        .bind(now)
        .execute(&self.pool)
        .await
        .store_err()?;
        Ok(())
    }

    async fn nodes(&self, dead_after: Duration) -> Result<Vec<NodeRecord>, StoreError> {
        let now = self.now().await?;
        type Row = (String, String, String, String, i64, i64, i64, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT n.id, n.host, n.version, n.role, CAST(n.pool_size AS SIGNED), n.started_at, \
               n.heartbeat_at, \
               CAST(EXISTS (SELECT 1 FROM leaders l WHERE l.node = n.id AND l.expires_at > ?) AS SIGNED) \
             FROM nodes n WHERE n.heartbeat_at >= ? ORDER BY n.id",
        )
        .bind(now)
        .bind(now.saturating_sub(duration_ms(dead_after)))
        .fetch_all(&self.pool)
        .await
        .store_err()?;
        Ok(nodes_from_rows(
            rows.into_iter()
                .map(|(a, b, c, d, e, f, g, leader)| (a, b, c, d, e, f, g, leader != 0))
                .collect(),
        ))
    }

    async fn deregister(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM nodes WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .store_err()?;
        Ok(())
    }

    async fn prune_nodes(&self, dead_for: Duration) -> Result<u64, StoreError> {
        let now = self.now().await?;
        let done = sqlx::query("DELETE FROM nodes WHERE heartbeat_at < ?")
            .bind(now.saturating_sub(duration_ms(dead_for)))
            .execute(&self.pool)
            .await
            .store_err()?;
        Ok(done.rows_affected())
    }

    /// One upsert decides (MySQL applies SET left to right: `node` first, then
    /// `expires_at` only if the row is now ours); the holder is read back in the same
    /// transaction.
    async fn acquire_leadership(
        &self,
        name: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now().await?;
        retry_deadlocks(|| async {
            let mut tx = self.pool.begin().await.store_err()?;
            sqlx::query(
                "INSERT INTO leaders (name, node, expires_at) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE \
                   node = IF(node = VALUES(node) OR expires_at <= ?, VALUES(node), node), \
                   expires_at = IF(node = VALUES(node), VALUES(expires_at), expires_at)",
            )
            .bind(name)
            .bind(node)
            .bind(now.saturating_add(duration_ms(ttl)))
            .bind(now)
            .execute(&mut *tx)
            .await
            .store_err()?;
            let holder: Option<String> =
                sqlx::query_scalar("SELECT node FROM leaders WHERE name = ?")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await
                    .store_err()?;
            tx.commit().await.store_err()?;
            Ok(holder.as_deref() == Some(node))
        })
        .await
    }

    async fn release_leadership(&self, name: &str, node: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM leaders WHERE name = ? AND node = ?")
            .bind(name)
            .bind(node)
            .execute(&self.pool)
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
             WHERE j.status = 'running' AND n.heartbeat_at < ? \
             ORDER BY j.lease_expires_at LIMIT ?",
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
                   finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE ? END, \
                   errors = JSON_ARRAY_APPEND(errors, '$', JSON_EXTRACT(?, '$')), \
                   lease_owner = NULL, lease_expires_at = NULL, updated_at = ?, \
                   status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END \
                 WHERE id = ? AND attempts = ? AND lease_owner = ? AND status = 'running' \
                   AND EXISTS (SELECT 1 FROM nodes WHERE id = ? AND heartbeat_at < ?)",
            )
            .bind(now)
            .bind(node_dead_error(l.attempt as i32, now))
            .bind(now)
            .bind(l.id.to_string())
            .bind(l.attempt as i32)
            .bind(&l.owner)
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
        let settled = settle::settle::<MySql>(&mut tx, &ids, now).await?;
        tx.commit().await.store_err()?;
        settled.record();
        Ok(rescued)
    }

    async fn cron_last_tick(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let t: Option<i64> = sqlx::query_scalar("SELECT last_tick FROM cron_ticks WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .store_err()?;
        Ok(t.map(from_millis))
    }

    /// The record row is locked (`FOR UPDATE`) for the whole transaction; two first
    /// inserts of one entry collide on its key, and the loser tries again.
    async fn enqueue_cron(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        job: NewJob,
    ) -> Result<Option<Enqueued>, StoreError> {
        let now = self.now().await?;
        let id = job.id;
        let row = InsertRow::new(&job, now)?;
        let tick = to_millis(tick);
        for _ in 0..5 {
            let mut tx = self.pool.begin().await.store_err()?;
            let last: Option<i64> =
                sqlx::query_scalar("SELECT last_tick FROM cron_ticks WHERE name = ? FOR UPDATE")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await
                    .store_err()?;
            let write = match last {
                Some(last) if last >= tick => return Ok(None),
                Some(_) => {
                    sqlx::query(
                        "UPDATE cron_ticks SET last_tick = ?, updated_at = ? WHERE name = ?",
                    )
                    .bind(tick)
                    .bind(now)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                }
                None => {
                    sqlx::query(
                        "INSERT INTO cron_ticks (name, last_tick, updated_at) VALUES (?, ?, ?)",
                    )
                    .bind(name)
                    .bind(tick)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                }
            };
            match write {
                Ok(_) => {}
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => continue,
                Err(e) => return Err(super::error::from_sqlx(e)),
            }
            let e = insert_keyed(&mut tx, &row, id).await?;
            tx.commit().await.store_err()?;
            return Ok(Some(e));
        }
        Err(StoreError::Unavailable(
            "cron tick record kept changing hands; try again".into(),
        ))
    }

    async fn enqueue_workflow(&self, wf: NewWorkflow) -> Result<WorkflowCreated, StoreError> {
        let now = self.now().await?;
        let mut tx = self.pool.begin().await.store_err()?;
        let created = insert::insert_workflow::<MySql>(&mut tx, &wf, now).await?;
        tx.commit().await.store_err()?;
        Ok(created)
    }

    async fn workflow(&self, id: Uuid) -> Result<Option<WorkflowRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.store_err()?;
        read::workflow::<MySql>(&mut conn, id).await
    }

    async fn list_workflows(&self, q: &ListWorkflows) -> Result<WorkflowPage, StoreError> {
        let mut conn = self.pool.acquire().await.store_err()?;
        read::list_workflows::<MySql>(&mut conn, q).await
    }

    async fn cancel_workflow(&self, id: Uuid) -> Result<u64, StoreError> {
        let now = self.now().await?;
        retry_deadlocks(|| async {
            let mut tx = self.pool.begin().await.store_err()?;
            let (n, settled) =
                settle::cancel_workflow::<MySql>(&mut tx, &id.to_string(), now).await?;
            tx.commit().await.store_err()?;
            settled.record();
            Ok(n)
        })
        .await
    }

    async fn dependencies(&self, id: Uuid) -> Result<Vec<Dependency>, StoreError> {
        let mut conn = self.pool.acquire().await.store_err()?;
        read::dependencies::<MySql>(&mut conn, id).await
    }
}

/// Inserts one keyed row, or names the live job that holds its key (see the PostgreSQL
/// store). A duplicate-key error fails only the statement, not the transaction.
async fn insert_keyed(tx: &mut Tx, r: &InsertRow, id: Uuid) -> Result<Enqueued, StoreError> {
    for _ in 0..5 {
        let res = sqlx::query(
            "INSERT INTO jobs (id, queue, job_type, provider, priority, payload, status, \
             max_attempts, run_at, timeout_ms, unique_key, owner, concurrency_key, concurrency_limit, fair_at, created_at, updated_at, errors) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]')",
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
        .bind(r.now)
        .execute(&mut **tx)
        .await;
        match res {
            Ok(_) => {
                return Ok(Enqueued {
                    id,
                    duplicate: false,
                });
            }
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {}
            Err(e) => return Err(super::error::from_sqlx(e)),
        }
        let live: Option<String> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE unique_live = ? LOCK IN SHARE MODE")
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
