//! Backend-neutral column values for writes: what a new job's row holds, and what an
//! [`Outcome`] sets. Each backend binds these into its own SQL.

use std::time::Duration;

use kyu_actors::clock::to_millis;
use kyu_actors::fair_share::FairClocks;
use kyu_actors::store::validate_new_job;
use kyu_actors::{JobStatus, NewJob, Outcome, StoreError};

/// A new job's column values, resolved against the store's `now`.
#[derive(Debug, Clone)]
pub struct InsertRow {
    pub id: String,
    pub queue: String,
    pub job_type: String,
    pub provider: Option<String>,
    pub priority: i32,
    pub payload: String,
    pub status: &'static str,
    pub max_attempts: i32,
    pub run_at: i64,
    pub timeout_ms: i64,
    pub unique_key: Option<String>,
    pub owner: Option<String>,
    pub concurrency_key: Option<String>,
    pub concurrency_limit: Option<i64>,
    /// Where the job stands in line among jobs of its priority (epoch µs; see
    /// `kyu_actors::fair_share`): its due time unless its tenant's share moves it.
    pub fair_at: i64,
    pub now: i64,
}

impl InsertRow {
    pub fn new(job: &NewJob, now: i64) -> Result<InsertRow, StoreError> {
        validate_new_job(job)?;
        let run_at = to_millis(job.run_at.resolve(kyu_actors::clock::from_millis(now)));
        Ok(InsertRow {
            id: job.id.to_string(),
            queue: job.queue.clone(),
            job_type: job.job_type.clone(),
            provider: job.provider.clone(),
            priority: i32::from(job.priority.get()),
            payload: job.payload.to_string(),
            status: if run_at > now {
                JobStatus::Scheduled.as_str()
            } else {
                JobStatus::Queued.as_str()
            },
            max_attempts: job.max_attempts as i32,
            run_at: run_at.max(0),
            timeout_ms: duration_ms(job.timeout),
            unique_key: job.unique_key.clone(),
            owner: job.owner.clone(),
            concurrency_key: job.concurrency.as_ref().map(|c| c.key.clone()),
            concurrency_limit: job.concurrency.as_ref().map(|c| i64::from(c.limit)),
            fair_at: run_at.max(0).saturating_mul(1000),
            now,
        })
    }
}

/// Validates and resolves a batch; each job's fair time comes from its tenant's clock.
pub fn insert_rows(
    jobs: &[NewJob],
    now: i64,
    fair: &FairClocks,
) -> Result<Vec<InsertRow>, StoreError> {
    let mut rows: Vec<InsertRow> = jobs
        .iter()
        .map(|j| InsertRow::new(j, now))
        .collect::<Result<_, _>>()?;
    let due: Vec<(&str, i64)> = jobs
        .iter()
        .zip(&rows)
        .map(|(j, r)| (j.share(), r.fair_at))
        .collect();
    let at = fair.assign(&due, now.saturating_mul(1000));
    for (r, t) in rows.iter_mut().zip(at) {
        r.fair_at = t;
    }
    Ok(rows)
}

/// What one ack sets on a running job (fenced by the caller's WHERE clause).
#[derive(Debug, Clone)]
pub struct AckWrite {
    pub status: &'static str,
    /// JSON text of the result, if completed.
    pub result: Option<String>,
    /// JSON text of one `AttemptError` to append to `errors`.
    pub error: Option<String>,
    /// New `run_at` (retry, release), else unchanged.
    pub run_at: Option<i64>,
    /// `finished_at` when the job becomes final.
    pub finished_at: Option<i64>,
    /// 1 when the attempt is given back uncounted.
    pub uncount: i32,
    /// Completed jobs show 100 %.
    pub progress_done: bool,
}

impl AckWrite {
    pub fn new(outcome: &Outcome, now: i64) -> AckWrite {
        let base = AckWrite {
            status: "",
            result: None,
            error: None,
            run_at: None,
            finished_at: None,
            uncount: 0,
            progress_done: false,
        };
        let err_json = |e| serde_json::to_string(e).ok();
        match outcome {
            Outcome::Completed { result } => AckWrite {
                status: JobStatus::Completed.as_str(),
                result: Some(result.to_string()),
                finished_at: Some(now),
                progress_done: true,
                ..base
            },
            Outcome::Retry { delay, error } => AckWrite {
                status: JobStatus::Scheduled.as_str(),
                error: err_json(error),
                run_at: Some(now.saturating_add(duration_ms(*delay))),
                ..base
            },
            Outcome::Failed { error } => AckWrite {
                status: JobStatus::Failed.as_str(),
                error: err_json(error),
                finished_at: Some(now),
                ..base
            },
            Outcome::Canceled { error } => AckWrite {
                status: JobStatus::Canceled.as_str(),
                error: err_json(error),
                finished_at: Some(now),
                ..base
            },
            Outcome::Snoozed { delay } => AckWrite {
                status: JobStatus::Scheduled.as_str(),
                run_at: Some(now.saturating_add(duration_ms(*delay))),
                uncount: 1,
                ..base
            },
            // Keeps its run_at: a given-back job resumes its place in line.
            Outcome::Released { uncount } => AckWrite {
                status: JobStatus::Queued.as_str(),
                uncount: i32::from(*uncount),
                ..base
            },
        }
    }
}

/// The error recorded when a lease expired and the job was rescued.
pub fn lease_expired_error(attempt: i32, now: i64) -> String {
    let e = kyu_actors::AttemptError {
        attempt: attempt.max(0) as u32,
        kind: kyu_actors::ErrorKind::Retryable,
        message: "lease expired: the node running this attempt died or stalled".into(),
        at: kyu_actors::clock::from_millis(now),
    };
    serde_json::to_string(&e).unwrap_or_else(|_| "{}".into())
}

/// The error a dead node's rescued attempt records.
pub fn node_dead_error(attempt: i32, now: i64) -> String {
    let e = kyu_actors::AttemptError {
        attempt: attempt.max(0) as u32,
        kind: kyu_actors::ErrorKind::Retryable,
        message: "node died: the node running this attempt stopped heartbeating".into(),
        at: kyu_actors::clock::from_millis(now),
    };
    serde_json::to_string(&e).unwrap_or_else(|_| "{}".into())
}

pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
