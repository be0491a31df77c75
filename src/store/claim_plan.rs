//! The claim's plan, for tests and bench: shows a claim reads O(limit) rows, however
//! many jobs wait and however long they have waited (issue 22).
//!
//! Each `*_plan` function asks the database how it runs the very query the store runs
//! (built by the store's own builders, never a copy of its SQL), inside a transaction
//! that is rolled back, so nothing is claimed. The `fill_*` functions write a backlog of
//! queued jobs by SQL alone (a recursive CTE, `generate_series`, MariaDB's sequence
//! engine): a million rows in seconds, not through the API.

use kyu_actors::store::ClaimParams;
use sqlx::{MySqlPool, PgPool, QueryBuilder, Row, Sqlite, SqlitePool};

use super::mysql::{ClaimBand, push_claim_branches, push_present_probe};
use super::postgres::{ACK_SQL, CLAIM_SQL, EXTEND_LEASES_SQL};
use super::sqlite::{self, push_claim_pick};

/// Types every fill writes jobs of, and every plan claims (the builtins, as `kyu serve`
/// claims them): the jobs are all `noop`, the other two ranges are empty.
pub const TYPES: [&str; 3] = ["delay_print", "echo", "noop"];

/// The aging bound the engine uses by default.
pub const AGING_MS: i64 = 60_000;

/// A claim of `limit` jobs of [`TYPES`] with the default aging bound.
pub fn params(limit: u32) -> ClaimParams {
    ClaimParams {
        owner: "plan".into(),
        limit,
        lease: std::time::Duration::from_secs(30),
        aged_before: Some(std::time::Duration::from_millis(AGING_MS as u64)),
        types: TYPES.iter().map(|t| (*t).to_owned()).collect(),
        queues: None,
    }
}

/// The claim's cutoff at `now` (epoch ms): jobs due at or before it are aged.
pub fn cutoff(now: i64) -> i64 {
    now - AGING_MS
}

/// Epoch ms by this machine's clock.
pub fn now_ms() -> i64 {
    kyu_actors::clock::to_millis(chrono::Utc::now())
}

/// `aged` queued `noop` jobs due between 10 and ~11 minutes before `now` (all past the
/// aging bound, oldest first by id), then `fresh` due 1 s before `now`, priorities mixed.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    pub aged: u64,
    pub fresh: u64,
    pub now: i64,
}

impl Backlog {
    fn total(&self) -> u64 {
        self.aged + self.fresh
    }
    /// run_at of row `x` (1-based), as SQL over the column `x`.
    fn run_at_sql(&self) -> String {
        format!(
            "CASE WHEN x <= {aged} THEN {old} + x ELSE {fresh} END",
            aged = self.aged,
            old = self.now - 600_000 - self.aged as i64,
            fresh = self.now - 1_000,
        )
    }
}

/// One `EXPLAIN QUERY PLAN` line: its id, its parent's id and the text.
#[derive(Debug, Clone)]
pub struct SqlitePlanLine {
    pub id: i64,
    pub parent: i64,
    pub detail: String,
}

/// `EXPLAIN QUERY PLAN` of the claim's pick ([`super::sqlite`]'s `push_claim_pick`).
pub async fn sqlite_plan(
    pool: &SqlitePool,
    p: &ClaimParams,
    now: i64,
) -> Result<Vec<SqlitePlanLine>, sqlx::Error> {
    let mut qb = QueryBuilder::<Sqlite>::new("EXPLAIN QUERY PLAN ");
    push_claim_pick(&mut qb, p, cutoff(now));
    let rows = qb.build().fetch_all(pool).await?;
    sqlite_plan_lines(&rows)
}

/// `EXPLAIN QUERY PLAN` of the ack's write ([`sqlite::ACK_SQL`]).
pub async fn sqlite_ack_plan(pool: &SqlitePool) -> Result<Vec<SqlitePlanLine>, sqlx::Error> {
    let sql = format!("EXPLAIN QUERY PLAN {}", sqlite::ACK_SQL);
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind("[]")
        .bind(0i64)
        .fetch_all(pool)
        .await?;
    sqlite_plan_lines(&rows)
}

fn sqlite_plan_lines(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<SqlitePlanLine>, sqlx::Error> {
    rows.iter()
        .map(|r| {
            Ok(SqlitePlanLine {
                id: r.try_get(0)?,
                parent: r.try_get(1)?,
                detail: r.try_get(3)?,
            })
        })
        .collect()
}

/// Writes `b` into SQLite's `jobs` (a recursive CTE, one statement).
pub async fn fill_sqlite(pool: &SqlitePool, b: Backlog) -> Result<(), sqlx::Error> {
    let sql = format!(
        "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < {n}) \
         INSERT INTO jobs (id, queue, job_type, priority, payload, status, max_attempts, \
           run_at, fair_at, timeout_ms, created_at, updated_at) \
         SELECT printf('%08x-0000-7000-8000-000000000000', x), 'default', 'noop', 1 + x % 3, '{{}}', \
           'queued', 3, {run_at}, ({run_at}) * 1000, 60000, {now}, {now} FROM s",
        n = b.total(),
        run_at = b.run_at_sql(),
        now = b.now,
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await?;
    Ok(())
}

/// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of [`CLAIM_SQL`], run and rolled back:
/// the plan with actual rows and pages. `pool` should be the store's (it plans with
/// custom plans).
pub async fn postgres_plan(
    pool: &PgPool,
    p: &ClaimParams,
    now: i64,
) -> Result<serde_json::Value, sqlx::Error> {
    let sql = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {CLAIM_SQL}");
    let mut tx = pool.begin().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(&p.owner)
        .bind(now + 30_000)
        .bind(i64::from(p.limit))
        .bind(cutoff(now))
        .bind(&p.types)
        .bind(p.queues.as_deref())
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    pg_json(&row)
}

/// Pages the claim index range reads of a [`postgres_plan`] touched (shared hits and
/// reads of its `jobs_queued_age` and `jobs_claim` scans; the rest of a claim's pages
/// are the updates of the rows it took).
pub fn pg_claim_range_pages(plan: &serde_json::Value) -> f64 {
    fn walk(v: &serde_json::Value) -> f64 {
        match v {
            serde_json::Value::Array(a) => a.iter().map(walk).sum(),
            serde_json::Value::Object(o) => {
                let range = matches!(
                    o.get("Index Name").and_then(|n| n.as_str()),
                    Some("jobs_queued_age" | "jobs_claim")
                );
                if range {
                    let num = |k: &str| o.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
                    num("Shared Hit Blocks") + num("Shared Read Blocks")
                } else {
                    o.values().map(walk).sum()
                }
            }
            _ => 0.0,
        }
    }
    walk(plan)
}

/// `EXPLAIN (ANALYZE, FORMAT JSON)` of the ack ([`ACK_SQL`]) of `ids` (running,
/// attempt 1, leased by `owner`) as completed, rolled back.
pub async fn postgres_ack_plan(
    pool: &PgPool,
    ids: &[String],
    owner: &str,
    now: i64,
) -> Result<serde_json::Value, sqlx::Error> {
    let n = ids.len();
    let sql = format!("EXPLAIN (ANALYZE, FORMAT JSON) {ACK_SQL}");
    let mut tx = pool.begin().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(ids)
        .bind(vec![1i32; n])
        .bind(vec![owner.to_owned(); n])
        .bind(vec!["completed".to_owned(); n])
        .bind(vec![Some("null".to_owned()); n])
        .bind(vec![None::<String>; n])
        .bind(vec![None::<i64>; n])
        .bind(vec![Some(now); n])
        .bind(vec![0i32; n])
        .bind(vec![true; n])
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    pg_json(&row)
}

/// `EXPLAIN (ANALYZE, FORMAT JSON)` of lease renewal ([`EXTEND_LEASES_SQL`]) of `ids`
/// (attempt 1, leased by `owner`), rolled back.
pub async fn postgres_extend_plan(
    pool: &PgPool,
    ids: &[String],
    owner: &str,
    now: i64,
) -> Result<serde_json::Value, sqlx::Error> {
    let n = ids.len();
    let sql = format!("EXPLAIN (ANALYZE, FORMAT JSON) {EXTEND_LEASES_SQL}");
    let mut tx = pool.begin().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now + 30_000)
        .bind(now)
        .bind(ids)
        .bind(vec![1i32; n])
        .bind(vec![owner.to_owned(); n])
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    pg_json(&row)
}

fn pg_json(row: &sqlx::postgres::PgRow) -> Result<serde_json::Value, sqlx::Error> {
    // `json` is text on the wire; sqlx's String decoder only admits text types.
    let text: String = row.try_get_unchecked(0)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// One node of a PostgreSQL plan that reads `jobs`.
#[derive(Debug, Clone)]
pub struct PgJobsAccess {
    pub node_type: String,
    pub index: Option<String>,
    /// Rows returned per loop plus rows removed by filters per loop: what one loop read.
    pub rows_per_loop: f64,
    pub loops: f64,
}

/// Every node of `plan` (an `EXPLAIN (ANALYZE, FORMAT JSON)` result) that reads `jobs`.
pub fn pg_jobs_accesses(plan: &serde_json::Value) -> Vec<PgJobsAccess> {
    fn walk(v: &serde_json::Value, out: &mut Vec<PgJobsAccess>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => {
                if o.get("Relation Name").and_then(|r| r.as_str()) == Some("jobs")
                    && o.get("Node Type").and_then(|t| t.as_str()) != Some("ModifyTable")
                {
                    let num = |k: &str| o.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
                    out.push(PgJobsAccess {
                        node_type: o
                            .get("Node Type")
                            .and_then(|t| t.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        index: o
                            .get("Index Name")
                            .and_then(|t| t.as_str())
                            .map(str::to_owned),
                        rows_per_loop: num("Actual Rows")
                            + num("Rows Removed by Filter")
                            + num("Rows Removed by Index Recheck"),
                        loops: num("Actual Loops"),
                    });
                }
                o.values().for_each(|x| walk(x, out));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(plan, &mut out);
    out
}

/// Writes `b` into PostgreSQL's `jobs` (`generate_series`, one statement).
pub async fn fill_postgres(pool: &PgPool, b: Backlog) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO jobs (id, queue, job_type, priority, payload, status, max_attempts, \
           run_at, fair_at, timeout_ms, created_at, updated_at) \
         SELECT lpad(to_hex(x), 8, '0') || '-0000-7000-8000-000000000000', 'default', 'noop', \
           1 + x % 3, '{{}}', 'queued', 3, {run_at}, ({run_at}) * 1000, 60000, {now}, {now} \
         FROM generate_series(1::bigint, {n}::bigint) AS s(x)",
        n = b.total(),
        run_at = b.run_at_sql(),
        now = b.now,
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await?;
    Ok(())
}

/// `ANALYZE FORMAT=JSON` of each query of a MariaDB claim ([`super::mysql`]'s
/// `push_present_probe`, then `push_claim_branches`: the aged band with `limit`, then
/// the fresh band with what it left), as the store runs them, in one transaction rolled
/// back. The first plan is the probe's. Needs MariaDB.
pub async fn mysql_plans(
    pool: &MySqlPool,
    p: &ClaimParams,
    now: i64,
) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    let cutoff = cutoff(now);
    let mut tx = pool.begin().await?;
    let mut plans = Vec::new();
    // The probe for which types have queued jobs, then the claim's range reads.
    let mut qb = QueryBuilder::new("ANALYZE FORMAT=JSON ");
    push_present_probe(&mut qb, &p.types);
    let row = qb.build().fetch_one(&mut *tx).await?;
    let text: String = row.try_get_unchecked(0)?;
    plans.push(serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?);
    let mut taken = 0i64;
    for band in [ClaimBand::Aged(cutoff), ClaimBand::Fresh(cutoff)] {
        let left = i64::from(p.limit) - taken;
        if left <= 0 {
            break;
        }
        // The rows the store would read, then the plan of the same query.
        let mut qb = QueryBuilder::new("");
        push_claim_branches(&mut qb, &p.types, p.queues.as_deref(), &[], band, left);
        let rows = qb.build().fetch_all(&mut *tx).await?;
        let mut qb = QueryBuilder::new("ANALYZE FORMAT=JSON ");
        push_claim_branches(&mut qb, &p.types, p.queues.as_deref(), &[], band, left);
        let row = qb.build().fetch_one(&mut *tx).await?;
        let text: String = row.try_get_unchecked(0)?;
        plans.push(serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?);
        taken += (rows.len() as i64).min(left);
    }
    tx.rollback().await?;
    Ok(plans)
}

/// One `jobs` access of a MariaDB `ANALYZE FORMAT=JSON` plan.
#[derive(Debug, Clone)]
pub struct MySqlJobsAccess {
    pub access_type: String,
    pub key: Option<String>,
    /// Rows read per loop (`r_rows`).
    pub r_rows: f64,
    pub r_loops: f64,
    /// Answered from the index alone ("Using index"): no primary-key lookup per row.
    pub covering: bool,
}

/// Every access to `jobs` in a MariaDB `ANALYZE FORMAT=JSON` plan.
pub fn mysql_jobs_accesses(plan: &serde_json::Value) -> Vec<MySqlJobsAccess> {
    fn walk(v: &serde_json::Value, out: &mut Vec<MySqlJobsAccess>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => {
                if o.get("table_name").and_then(|t| t.as_str()) == Some("jobs") {
                    let num = |k: &str| o.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
                    out.push(MySqlJobsAccess {
                        access_type: o
                            .get("access_type")
                            .and_then(|t| t.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        key: o.get("key").and_then(|t| t.as_str()).map(str::to_owned),
                        r_rows: num("r_rows"),
                        r_loops: num("r_loops"),
                        covering: o.get("using_index").and_then(|x| x.as_bool()) == Some(true),
                    });
                }
                o.values().for_each(|x| walk(x, out));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(plan, &mut out);
    out
}

/// Writes `b` into MariaDB's `jobs` (the sequence engine's `seq_1_to_N`, one statement).
pub async fn fill_mysql(pool: &MySqlPool, b: Backlog) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO jobs (id, queue, job_type, priority, payload, status, max_attempts, \
           run_at, fair_at, timeout_ms, created_at, updated_at, errors) \
         SELECT CONCAT(LPAD(LOWER(HEX(x)), 8, '0'), '-0000-7000-8000-000000000000'), 'default', \
           'noop', 1 + x % 3, '{{}}', 'queued', 3, {run_at}, ({run_at}) * 1000, 60000, {now}, {now}, '[]' \
         FROM (SELECT seq AS x FROM seq_1_to_{n}) s",
        n = b.total(),
        run_at = b.run_at_sql(),
        now = b.now,
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await?;
    Ok(())
}
