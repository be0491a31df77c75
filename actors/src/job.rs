//! The job record and the builder for new jobs.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AttemptError;
use crate::priority::Priority;
use crate::status::JobStatus;

/// Queue a job goes to when the caller names none.
pub const DEFAULT_QUEUE: &str = "default";
/// Seed 000: at most 3 retries, so 4 attempts in all.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// How long one attempt may run when the caller says nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A stored job, as the store returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: Uuid,
    pub queue: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub provider: Option<String>,
    pub priority: Priority,
    pub payload: serde_json::Value,
    pub status: JobStatus,
    /// 0–100.
    pub progress: u8,
    pub result: Option<serde_json::Value>,
    /// Every failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// Attempts started so far (counted at claim).
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    #[serde(with = "duration_ms", rename = "timeout_ms")]
    pub timeout: Duration,
    pub unique_key: Option<String>,
    pub owner: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The workflow the job belongs to (see [`crate::workflow`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<Uuid>,
    /// Its key in that workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_key: Option<String>,
    /// The results of its completed dependencies, by workflow key. Filled for a
    /// claimed workflow job; empty otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependency_results: BTreeMap<String, serde_json::Value>,
    /// Jobs sharing this key run at most its limit at once (see [`crate::flow`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
}

impl Job {
    /// The fencing token of the current attempt, if the job is running.
    pub fn lease(&self) -> Option<crate::store::JobLease> {
        match (&self.lease_owner, self.status) {
            (Some(owner), JobStatus::Running) => Some(crate::store::JobLease {
                id: self.id,
                attempt: self.attempts,
                owner: owner.clone(),
            }),
            _ => None,
        }
    }

    /// The last error, if any attempt failed.
    pub fn last_error(&self) -> Option<&AttemptError> {
        self.errors.last()
    }
}

/// When a new job becomes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunAt {
    /// As soon as possible.
    #[default]
    Now,
    /// At this instant (in the past means now).
    At(DateTime<Utc>),
    /// This long after the store commits it.
    After(Duration),
}

impl RunAt {
    /// The instant this resolves to, given the store's `now`.
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            RunAt::Now => now,
            RunAt::At(t) => t,
            RunAt::After(d) => now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX),
        }
    }
}

/// A job to enqueue. Build with [`NewJob::new`] and the chained setters.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub id: Uuid,
    pub queue: String,
    pub job_type: String,
    pub provider: Option<String>,
    pub priority: Priority,
    pub payload: serde_json::Value,
    pub run_at: RunAt,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub unique_key: Option<String>,
    pub owner: Option<String>,
    /// At most `limit` jobs with this key run at once, across every node and worker.
    pub concurrency: Option<ConcurrencyKey>,
    /// Whose share of the queue the job counts against (see [`crate::fair_share`]);
    /// `None`: its owner's.
    pub tenant: Option<String>,
}

/// A job's concurrency key and the most jobs with that key that may run at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyKey {
    pub key: String,
    pub limit: u32,
}

impl NewJob {
    /// A job of `job_type` with `payload`, on the default queue, due now, with the
    /// type's default priority. The id (UUID v7) is fixed here, so it is known before commit.
    pub fn new(job_type: impl Into<String>, payload: serde_json::Value) -> Self {
        let job_type = job_type.into();
        NewJob {
            id: Uuid::now_v7(),
            queue: DEFAULT_QUEUE.to_owned(),
            priority: Priority::default_for_type(&job_type),
            job_type,
            provider: None,
            payload,
            run_at: RunAt::Now,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: DEFAULT_TIMEOUT,
            unique_key: None,
            owner: None,
            concurrency: None,
            tenant: None,
        }
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Due `delay` after the store commits the job.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.run_at = RunAt::After(delay);
        self
    }

    /// Due at `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = RunAt::At(at);
        self
    }

    /// Attempts in all, at least 1.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// While a job with this key is not final, enqueueing another with the same key
    /// returns the existing one instead.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Counts the job against `tenant`'s fair share instead of its owner's.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The tenant whose share the job counts against: its own, else its owner ("" for none).
    pub fn share(&self) -> &str {
        self.tenant
            .as_deref()
            .or(self.owner.as_deref())
            .unwrap_or("")
    }

    /// At most `limit` (at least 1) jobs with `key` run at once, on all nodes together.
    pub fn concurrency(mut self, key: impl Into<String>, limit: u32) -> Self {
        self.concurrency = Some(ConcurrencyKey {
            key: key.into(),
            limit: limit.max(1),
        });
        self
    }
}

/// Serde for a [`Duration`] as whole milliseconds.
pub mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
