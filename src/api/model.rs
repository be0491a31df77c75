//! The JSON shapes of the API (requests and answers) and their OpenAPI schemas. Jobs are
//! shown through [`JobView`], which hides what a `user` may not see (of errors, only
//! `kind` and `message`).

use chrono::{DateTime, Utc};
use kyu_actors::{AttemptError, Job, JobStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A workflow job whose dependencies are not done yet.
    Waiting,
    Queued,
    Scheduled,
    Running,
    Completed,
    Failed,
    Canceled,
}

impl From<JobStatus> for Status {
    fn from(s: JobStatus) -> Status {
        match s {
            JobStatus::Waiting => Status::Waiting,
            JobStatus::Queued => Status::Queued,
            JobStatus::Scheduled => Status::Scheduled,
            JobStatus::Running => Status::Running,
            JobStatus::Completed => Status::Completed,
            JobStatus::Failed => Status::Failed,
            JobStatus::Canceled => Status::Canceled,
        }
    }
}

impl From<Status> for JobStatus {
    fn from(s: Status) -> JobStatus {
        match s {
            Status::Waiting => JobStatus::Waiting,
            Status::Queued => JobStatus::Queued,
            Status::Scheduled => JobStatus::Scheduled,
            Status::Running => JobStatus::Running,
            Status::Completed => JobStatus::Completed,
            Status::Failed => JobStatus::Failed,
            Status::Canceled => JobStatus::Canceled,
        }
    }
}

/// A job to create. `delay_seconds` and `run_at` exclude each other.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// A registered job type (`GET /api/v1/openapi.json` lists them).
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 100, pattern = "^[^\\x00]+$")]
    pub job_type: String,
    /// A JSON object the handler understands; optional: absent or `null` is `{}`
    /// (as in Sidekiq and BullMQ, where a job without arguments is normal), at most
    /// `KYU_MAX_PAYLOAD_BYTES`. Each type checks its own at enqueue (422
    /// `invalid_payload` naming the field): `summarize` {text | url, length?, language?,
    /// article_id?, providers?}, `extract_content` {url}, `validate_summary` {summary,
    /// source, language?, min_chars?, max_chars?}, `http` {url, method?, headers?, body?},
    /// `delay_print` {message}; `echo` and `noop` take anything.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    /// 1 (low) to 10 (critical); default by type (summarize 7, others 5).
    #[serde(default, deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 10)]
    pub priority: Option<i64>,
    #[schema(min_length = 1, max_length = 100, pattern = "^[^\\x00]+$")]
    pub queue: Option<String>,
    /// The rate-limit bucket the job draws from (e.g. `groq`).
    #[schema(min_length = 1, max_length = 100, pattern = "^[^\\x00]+$")]
    pub provider: Option<String>,
    /// Run no sooner than this many seconds from now (default by type: `delay_print` 180).
    #[schema(minimum = 0, maximum = 31536000)]
    pub delay_seconds: Option<f64>,
    /// Run no sooner than this instant (RFC 3339); at most a year from now, like
    /// `delay_seconds`.
    pub run_at: Option<DateTime<Utc>>,
    /// Retries after the first attempt (default by type: `delay_print` 10; others
    /// `JOB_QUEUE_MAX_RETRIES`).
    #[serde(default, deserialize_with = "integer")]
    #[schema(minimum = 0, maximum = 999)]
    pub max_retries: Option<i64>,
    /// Longest one attempt may run (default 300).
    #[schema(exclusive_minimum = 0, maximum = 604800)]
    pub timeout_seconds: Option<f64>,
    /// While a job with this key is not final, creating another returns it instead.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]+$")]
    pub unique_key: Option<String>,
    /// Jobs with the same key run at most `concurrency_limit` at once, on all nodes
    /// together (default: the type's key made from the payload, if configured).
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]+$")]
    pub concurrency_key: Option<String>,
    /// The key's limit (default: the first `kyu_concurrency` rule matching the key,
    /// else 1). Needs a key.
    #[serde(default, deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 10000)]
    pub concurrency_limit: Option<i64>,
    /// The tier the job is created for, which picks its default priority
    /// (`kyu_tier_priority`); admins only (a user's tier is its token's, `kyu_tiers`).
    #[schema(min_length = 1, max_length = 100, pattern = "^[^\\x00]+$")]
    pub tier: Option<String>,
    /// Whose fair share the job counts against (default: the token that creates it);
    /// admins only. Jobs of one priority are taken from tenants in turn.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]+$")]
    pub tenant: Option<String>,
}

/// An optional integer that may be written `6` or `6.0` (JSON Schema counts both as
/// integers, and so do some JSON encoders).
pub(crate) fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        // Exactly representable, so the cast is lossless.
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        _ => Err(D::Error::custom(format!("expected an integer, found {n}"))),
    }
}

/// Several jobs, created together or not at all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJobs {
    #[schema(min_items = 1, max_items = 1000)]
    pub jobs: Vec<CreateJob>,
}

/// A created (or, for a repeated `unique_key`, the existing) job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedJob {
    pub job_id: Uuid,
    pub status: Status,
    /// `true` when a live job with the same `unique_key` answered instead.
    pub duplicate: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedJobs {
    pub jobs: Vec<CreatedJob>,
}

/// One failed attempt. `attempt` and `at` are shown to admins only.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorView {
    /// `retryable`, `non_retryable`, `rate_limit`, `timeout`, `panic` or `canceled`.
    pub kind: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

impl ErrorView {
    fn new(e: &AttemptError, full: bool) -> ErrorView {
        ErrorView {
            kind: e.kind.as_str().to_owned(),
            message: e.message.clone(),
            attempt: full.then_some(e.attempt),
            at: full.then_some(e.at),
        }
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub job_id: Uuid,
    #[serde(rename = "type")]
    pub job_type: String,
    pub queue: String,
    pub provider: Option<String>,
    pub priority: u8,
    pub status: Status,
    /// 0–100.
    pub progress: u8,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// What the handler returned: any JSON.
    #[schema(value_type = Option<serde_json::Value>)]
    pub result: Option<serde_json::Value>,
    /// The last attempt's error, if any.
    pub error: Option<ErrorView>,
    /// Every failed attempt's error, oldest first.
    pub errors: Vec<ErrorView>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub timeout_seconds: f64,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub cancel_requested: bool,
    pub unique_key: Option<String>,
    /// The token name that created the job.
    pub owner: Option<String>,
    /// The workflow the job belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<Uuid>,
    /// Its key in that workflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_key: Option<String>,
    /// Jobs with this key run at most the key's limit at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// The jobs it waits for (`GET /api/v1/jobs/{id}` of a workflow job only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Vec<super::workflow_model::DependencyView>>,
}

impl JobView {
    /// `full`: the caller is an admin and sees each error's attempt and time.
    pub fn new(job: Job, full: bool) -> JobView {
        let errors: Vec<ErrorView> = job.errors.iter().map(|e| ErrorView::new(e, full)).collect();
        JobView {
            job_id: job.id,
            job_type: job.job_type,
            queue: job.queue,
            provider: job.provider,
            priority: job.priority.get(),
            status: job.status.into(),
            progress: job.progress,
            payload: job.payload,
            result: job.result,
            error: errors.last().cloned(),
            errors,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            timeout_seconds: job.timeout.as_secs_f64(),
            run_at: job.run_at,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            updated_at: job.updated_at,
            cancel_requested: job.cancel_requested,
            unique_key: job.unique_key,
            owner: job.owner,
            workflow_id: job.workflow_id,
            workflow_key: job.workflow_key,
            concurrency_key: job.concurrency_key,
            dependencies: None,
        }
    }
}

/// One page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Jobs per status in one queue.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct StatusCounts {
    pub waiting: u64,
    pub queued: u64,
    pub scheduled: u64,
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub canceled: u64,
}

impl StatusCounts {
    pub fn add(&mut self, status: JobStatus, n: u64) {
        let slot = match status {
            JobStatus::Waiting => &mut self.waiting,
            JobStatus::Queued => &mut self.queued,
            JobStatus::Scheduled => &mut self.scheduled,
            JobStatus::Running => &mut self.running,
            JobStatus::Completed => &mut self.completed,
            JobStatus::Failed => &mut self.failed,
            JobStatus::Canceled => &mut self.canceled,
        };
        *slot += n;
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    pub name: String,
    pub paused: bool,
    pub counts: StatusCounts,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueView>,
}

/// The autoscaler's last look at the machine.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceReading {
    pub cpu_percent: f64,
    pub memory_percent: f64,
}

/// The worker pool of this process.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkersView {
    /// Whether this process runs the engine (`JOB_WORKER_ENABLED`, `kyu api`).
    pub enabled: bool,
    pub running: bool,
    pub pool_size: usize,
    pub busy: usize,
    /// The size the autoscaler is steering to.
    pub target: usize,
    pub autoscaler: Option<ResourceReading>,
    pub completed: u64,
    pub failed: u64,
    pub retried: u64,
    /// Remote worker processes connected to this node (the worker protocol).
    pub remote: Vec<crate::api::remote::model::RemoteWorkerView>,
    /// Declared remote job types that no connected worker serves now: their jobs wait.
    pub unserved_types: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    pub database: String,
    /// `running`, or `disabled` in an API-only process.
    pub engine: String,
}
