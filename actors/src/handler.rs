//! Job handlers: the code a job type runs. A handler gets a [`JobContext`] (payload,
//! attempt, a cancellation token, a progress reporter) and returns a JSON result or a
//! [`JobError`] that says whether to retry. Built-ins: `noop`, `echo`, `delay_print`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::JobError;
use crate::rate_limit::RateLimits;
use crate::store::{JobLease, Store};

/// What a handler sees of its job.
#[derive(Clone)]
pub struct JobContext {
    pub id: Uuid,
    pub job_type: String,
    /// 1-based: the first run is attempt 1.
    pub attempt: u32,
    pub max_attempts: u32,
    pub payload: serde_json::Value,
    /// Cancelled when the job is canceled, its lease is lost, or the engine stops.
    pub cancel: CancellationToken,
    pub progress: Progress,
    /// The job's provider: the dispatcher already took a token of its bucket.
    pub provider: Option<String>,
    /// Other providers' buckets (a fallback chain asks before calling one).
    pub limits: RateLimits,
    /// A workflow job's dependencies' results by workflow key (empty otherwise).
    pub dependency_results: Arc<BTreeMap<String, serde_json::Value>>,
}

impl JobContext {
    /// A context outside the engine (handler tests, library users running a handler
    /// by hand): attempt 1 of 1, progress discarded, unlimited local buckets.
    pub fn detached(job_type: impl Into<String>, payload: serde_json::Value) -> JobContext {
        JobContext {
            id: Uuid::now_v7(),
            job_type: job_type.into(),
            attempt: 1,
            max_attempts: 1,
            payload,
            cancel: CancellationToken::new(),
            progress: Progress::discard(),
            provider: None,
            limits: RateLimits::local(crate::rate_limit::Limit {
                per_minute: u32::MAX,
                burst: u32::MAX,
            }),
            dependency_results: Arc::default(),
        }
    }

    /// The results of this workflow job's completed dependencies, by workflow key.
    pub fn dependency_results(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.dependency_results
    }

    /// `Err(Canceled)` once the job is canceled, its lease lost or the engine stopping:
    /// handlers call it between steps.
    pub fn check_canceled(&self) -> Result<(), JobError> {
        if self.cancel.is_cancelled() {
            Err(JobError::Canceled("stopped between steps".into()))
        } else {
            Ok(())
        }
    }
}

/// Reports progress (0–100) of the running attempt; fenced by its lease.
#[derive(Clone)]
pub struct Progress {
    target: Option<(Arc<dyn Store>, JobLease)>,
}

impl Progress {
    pub fn new(store: Arc<dyn Store>, lease: JobLease) -> Progress {
        Progress {
            target: Some((store, lease)),
        }
    }

    /// Progress that goes nowhere (a handler run outside the engine).
    pub fn discard() -> Progress {
        Progress { target: None }
    }

    /// Records `percent`; `false` if the lease was lost (stop working).
    pub async fn set(&self, percent: u8) -> bool {
        match &self.target {
            Some((store, lease)) => store.set_progress(lease, percent).await.unwrap_or(false),
            None => true,
        }
    }
}

/// The code of one job type.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn run(&self, ctx: JobContext) -> Result<serde_json::Value, JobError>;

    /// What a job of this type gets when its request does not say.
    fn defaults(&self) -> JobDefaults {
        JobDefaults::default()
    }

    /// Checks a payload at enqueue time, so a bad one is refused (naming the field)
    /// instead of becoming a job that fails later. Default: anything goes.
    fn validate(&self, _payload: &serde_json::Value) -> Result<(), PayloadError> {
        Ok(())
    }

    /// Whether jobs of this type are run by remote workers over the worker protocol
    /// (`POST /api/v1/fetch`) instead of here: the local pool never claims them.
    fn remote(&self) -> bool {
        false
    }
}

/// A payload a handler refuses: the field at fault (a JSON path inside the payload,
/// like `text` or `headers.X-Sig`; empty for the payload as a whole) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload.{field}: {message}")]
pub struct PayloadError {
    pub field: String,
    pub message: String,
}

impl PayloadError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> PayloadError {
        PayloadError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Per-type defaults for new jobs (e.g. `delay_print` waits 180 s, retries 10 times).
/// `None` leaves the engine's own default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobDefaults {
    pub priority: Option<u8>,
    pub delay: Option<std::time::Duration>,
    pub max_retries: Option<u32>,
    pub queue: Option<String>,
    pub timeout: Option<std::time::Duration>,
}

/// Job types to handlers.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl HandlerRegistry {
    /// The built-in handlers: `noop`, `echo`, `delay_print`.
    pub fn with_builtins() -> HandlerRegistry {
        let mut r = HandlerRegistry::default();
        r.insert("noop", Arc::new(Noop));
        r.insert("echo", Arc::new(Echo));
        r.insert("delay_print", Arc::new(DelayPrint));
        r
    }

    pub fn insert(&mut self, job_type: impl Into<String>, h: Arc<dyn Handler>) {
        self.handlers.insert(job_type.into(), h);
    }

    pub fn get(&self, job_type: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(job_type).cloned()
    }

    /// The defaults of `job_type`, if it is registered.
    pub fn defaults(&self, job_type: &str) -> Option<JobDefaults> {
        self.handlers.get(job_type).map(|h| h.defaults())
    }

    /// Runs `job_type`'s payload check; an unknown type passes (the caller refuses it).
    pub fn validate(
        &self,
        job_type: &str,
        payload: &serde_json::Value,
    ) -> Result<(), PayloadError> {
        self.handlers
            .get(job_type)
            .map_or(Ok(()), |h| h.validate(payload))
    }

    /// Registered job types, local and remote, sorted.
    pub fn types(&self) -> Vec<String> {
        let mut t: Vec<String> = self.handlers.keys().cloned().collect();
        t.sort();
        t
    }

    /// The types this process runs itself (not [`Handler::remote`]), sorted: what the
    /// local pool claims.
    pub fn local_types(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .handlers
            .iter()
            .filter(|(_, h)| !h.remote())
            .map(|(k, _)| k.clone())
            .collect();
        t.sort();
        t
    }

    /// Whether `job_type` is declared as run by remote workers.
    pub fn is_remote(&self, job_type: &str) -> bool {
        self.handlers.get(job_type).is_some_and(|h| h.remote())
    }
}

/// Does nothing: the benchmark job.
pub struct Noop;

#[async_trait]
impl Handler for Noop {
    async fn run(&self, _ctx: JobContext) -> Result<serde_json::Value, JobError> {
        Ok(serde_json::Value::Null)
    }
}

/// Returns its payload.
pub struct Echo;

#[async_trait]
impl Handler for Echo {
    async fn run(&self, ctx: JobContext) -> Result<serde_json::Value, JobError> {
        Ok(ctx.payload)
    }
}

/// Seed 003's demo job: prints the payload's `message` with a timestamp. Its delay is
/// the job's `run_at` (by default 180 s, with 10 retries).
pub struct DelayPrint;

#[async_trait]
impl Handler for DelayPrint {
    async fn run(&self, ctx: JobContext) -> Result<serde_json::Value, JobError> {
        let message = ctx
            .payload
            .get("message")
            .and_then(|m| m.as_str())
            .ok_or_else(|| JobError::non_retryable("payload.message must be a string"))?;
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        println!("[{at}] {message}");
        Ok(serde_json::json!({ "printed_at": at, "message": message }))
    }

    fn defaults(&self) -> JobDefaults {
        JobDefaults {
            priority: None,
            delay: Some(std::time::Duration::from_secs(180)),
            max_retries: Some(10),
            ..JobDefaults::default()
        }
    }

    fn validate(&self, payload: &serde_json::Value) -> Result<(), PayloadError> {
        match payload.get("message") {
            Some(serde_json::Value::String(_)) => Ok(()),
            _ => Err(PayloadError::new("message", "must be a string")),
        }
    }
}
