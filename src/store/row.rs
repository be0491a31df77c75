//! The `jobs` row as all three backends return it, and its conversion to [`Job`].
//!
//! Columns are portable on purpose (text ids, epoch-ms integers, JSON as text), so one
//! row type and one conversion serve SQLite, PostgreSQL and MariaDB alike.

use std::time::Duration;

use kyu_actors::clock::from_millis;
use kyu_actors::store::{LiveCount, QueueCount};
use kyu_actors::{Job, JobStatus, Priority, StoreError};
use uuid::Uuid;

/// The column list every `SELECT`/`RETURNING` of a whole job uses, in [`JobRow`] order.
macro_rules! job_columns {
    () => {
        "id, queue, job_type, provider, priority, payload, status, progress, result, errors, \
         attempts, max_attempts, run_at, timeout_ms, unique_key, owner, lease_owner, \
         lease_expires_at, cancel_requested, created_at, started_at, finished_at, updated_at, \
         workflow_id, workflow_key, concurrency_key, fair_at"
    };
}
pub(crate) use job_columns;

/// One `jobs` row, decoded.
/// Also deserializable from a JSON array in column order (SQLite batches rows so).
#[derive(Debug, sqlx::FromRow, serde::Deserialize)]
pub struct JobRow {
    pub id: String,
    pub queue: String,
    pub job_type: String,
    pub provider: Option<String>,
    pub priority: i32,
    pub payload: String,
    pub status: String,
    pub progress: i32,
    pub result: Option<String>,
    pub errors: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: i64,
    pub timeout_ms: i64,
    pub unique_key: Option<String>,
    pub owner: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub cancel_requested: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
    pub workflow_id: Option<String>,
    pub workflow_key: Option<String>,
    pub concurrency_key: Option<String>,
    /// Place in line among its priority (epoch µs), see `kyu_actors::fair_share`.
    pub fair_at: i64,
}

fn corrupt(field: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt job row: {field}: {e}"))
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;

    fn try_from(r: JobRow) -> Result<Job, StoreError> {
        Ok(Job {
            id: Uuid::parse_str(&r.id).map_err(|e| corrupt("id", e))?,
            queue: r.queue,
            job_type: r.job_type,
            provider: r.provider,
            priority: Priority::new(r.priority.into()).map_err(|e| corrupt("priority", e))?,
            payload: serde_json::from_str(&r.payload).map_err(|e| corrupt("payload", e))?,
            status: r
                .status
                .parse::<JobStatus>()
                .map_err(|e| corrupt("status", e))?,
            progress: r.progress.clamp(0, 100) as u8,
            result: r
                .result
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(|e| corrupt("result", e))?,
            errors: serde_json::from_str(&r.errors).map_err(|e| corrupt("errors", e))?,
            attempts: r.attempts.max(0) as u32,
            max_attempts: r.max_attempts.max(0) as u32,
            run_at: from_millis(r.run_at),
            timeout: Duration::from_millis(r.timeout_ms.max(0) as u64),
            unique_key: r.unique_key,
            owner: r.owner,
            lease_owner: r.lease_owner,
            lease_expires_at: r.lease_expires_at.map(from_millis),
            cancel_requested: r.cancel_requested,
            created_at: from_millis(r.created_at),
            started_at: r.started_at.map(from_millis),
            finished_at: r.finished_at.map(from_millis),
            updated_at: from_millis(r.updated_at),
            workflow_id: r
                .workflow_id
                .map(|w| Uuid::parse_str(&w))
                .transpose()
                .map_err(|e| corrupt("workflow_id", e))?,
            workflow_key: r.workflow_key,
            dependency_results: Default::default(),
            concurrency_key: r.concurrency_key,
        })
    }
}

/// Puts claim candidates in claim order — aged (fair time at or before `aged_cutoff`,
/// epoch µs) first by fair time, then priority desc, fair time, id — and keeps the
/// first `limit`.
pub fn claim_order(mut rows: Vec<JobRow>, aged_cutoff: i64, limit: u32) -> Vec<JobRow> {
    rows.sort_by(|a, b| {
        let aged = |r: &JobRow| r.fair_at <= aged_cutoff;
        aged(b)
            .cmp(&aged(a))
            .then_with(|| {
                if aged(a) && aged(b) {
                    std::cmp::Ordering::Equal
                } else {
                    b.priority.cmp(&a.priority)
                }
            })
            .then(a.fair_at.cmp(&b.fair_at))
            .then(a.id.cmp(&b.id))
    });
    rows.dedup_by(|a, b| a.id == b.id);
    rows.truncate(limit as usize);
    rows
}

/// Converts claimed rows, in claim order.
pub fn into_jobs_in_claim_order(
    rows: Vec<JobRow>,
    aged_cutoff: i64,
) -> Result<Vec<Job>, StoreError> {
    claim_order(rows, aged_cutoff, u32::MAX)
        .into_iter()
        .map(Job::try_from)
        .collect()
}

/// The fair-time cutoff (epoch µs) for aged jobs, given `now` in epoch ms (`i64::MIN`:
/// none are aged).
pub fn aged_cutoff(now: i64, aged_before: Option<std::time::Duration>) -> i64 {
    aged_before.map_or(i64::MIN, |d| {
        now.saturating_sub(super::write::duration_ms(d))
            .saturating_mul(1000)
    })
}

pub(crate) fn counts_from_rows(
    rows: Vec<(String, String, i64)>,
) -> Result<Vec<QueueCount>, StoreError> {
    rows.into_iter()
        .map(|(queue, status, n)| {
            Ok(QueueCount {
                queue,
                status: parse_status(status)?,
                count: n.max(0) as u64,
            })
        })
        .collect()
}

/// The rows of a live-count query: queue, status, count, earliest `run_at`.
pub(crate) type LiveRow = (String, String, i64, Option<i64>);

pub(crate) fn live_counts_from_rows(rows: Vec<LiveRow>) -> Result<Vec<LiveCount>, StoreError> {
    rows.into_iter()
        .map(|(queue, status, n, oldest)| {
            Ok(LiveCount {
                queue,
                status: parse_status(status)?,
                count: n.max(0) as u64,
                oldest_run_at: oldest.map(from_millis),
            })
        })
        .collect()
}

pub(crate) fn parse_id(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| StoreError::Backend(format!("corrupt job id {s:?}: {e}")))
}

pub(crate) fn parse_status(s: String) -> Result<JobStatus, StoreError> {
    s.parse::<JobStatus>()
        .map_err(|e| StoreError::Backend(e.to_string()))
}

/// A `nodes` row with its leader flag: id, host, version, role, pool_size, started_at,
/// heartbeat_at, leader.
pub(crate) type NodeRow = (String, String, String, String, i64, i64, i64, bool);

pub(crate) fn nodes_from_rows(rows: Vec<NodeRow>) -> Vec<kyu_actors::NodeRecord> {
    rows.into_iter()
        .map(
            |(id, host, version, role, pool_size, started_at, heartbeat_at, leader)| {
                kyu_actors::NodeRecord {
                    info: kyu_actors::NodeInfo {
                        id,
                        host,
                        version,
                        role,
                        pool_size: u32::try_from(pool_size.max(0)).unwrap_or(u32::MAX),
                        started_at: from_millis(started_at),
                    },
                    heartbeat_at: from_millis(heartbeat_at),
                    leader,
                }
            },
        )
        .collect()
}

/// Leases as rows of (id, attempts, lease_owner).
pub(crate) fn leases_from_rows<A: TryInto<u32>>(
    rows: Vec<(String, A, String)>,
) -> Result<Vec<kyu_actors::JobLease>, StoreError> {
    rows.into_iter()
        .map(|(id, attempt, owner)| {
            Ok(kyu_actors::JobLease {
                id: parse_id(&id)?,
                attempt: attempt.try_into().unwrap_or(0),
                owner,
            })
        })
        .collect()
}
