//! The store seam: everything the engine and the API need from durable storage.
//!
//! The store is the source of truth. Every change to a claimed job is fenced by its
//! [`JobLease`] — (id, attempt, lease owner) and `status = running` — so a stale or late
//! writer changes nothing and is told so. Implementations live in the `kyu` crate
//! (SQLite, PostgreSQL, MariaDB) and in [`crate::testkit`] (memory); all of them pass the
//! same contract suite (`store_contract_tests!`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AttemptError;
use crate::job::{Job, NewJob};
use crate::status::JobStatus;
use crate::workflow::{
    Dependency, ListWorkflows, NewWorkflow, WorkflowCreated, WorkflowError, WorkflowPage,
    WorkflowRecord,
};

/// The fencing token of one attempt: only its holder may change the running job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobLease {
    pub id: Uuid,
    pub attempt: u32,
    pub owner: String,
}

/// What `enqueue` did with one new job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The new job's id, or the live job's that holds the same unique key.
    pub id: Uuid,
    /// `true` when a live job with the same unique key already existed.
    pub duplicate: bool,
}

/// Filters and page of a job listing. Jobs come newest first; a page ends at `cursor`
/// (exclusive), so pages stay stable while new jobs are added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListJobs {
    pub job_type: Option<String>,
    pub status: Option<JobStatus>,
    pub queue: Option<String>,
    pub owner: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Page size (the store caps it at [`MAX_PAGE`]).
    pub limit: u32,
}

/// The largest page a listing returns.
pub const MAX_PAGE: u32 = 500;

/// One page of jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Pass as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<Uuid>,
}

/// A claim of due jobs for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimParams {
    /// The node's lease owner id (fresh per process start).
    pub owner: String,
    /// At most this many jobs.
    pub limit: u32,
    /// How long the lease lasts unless extended.
    pub lease: Duration,
    /// Aging: jobs due for at least this long are claimed first, oldest first, whatever
    /// their priority — the starvation bound. `None`: strict priority.
    pub aged_before: Option<Duration>,
    /// Only jobs of these types: a local pool names the types it has handlers for, a
    /// remote worker the types it serves. Each type is read from its own index range,
    /// so jobs of other types cost a claim nothing, however many wait.
    pub types: Vec<String>,
    /// Only jobs of these queues (`None`: every queue that is not paused).
    pub queues: Option<Vec<String>>,
}

/// How one attempt ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Success, with the handler's result.
    Completed { result: serde_json::Value },
    /// Failed; run again after `delay` (becomes `scheduled`).
    Retry {
        delay: Duration,
        error: AttemptError,
    },
    /// Failed for good.
    Failed { error: AttemptError },
    /// Canceled while running.
    Canceled { error: AttemptError },
    /// Given back unfinished (graceful shutdown): queued again at once, in its old
    /// place in line (`run_at` unchanged). When
    /// `uncount` is true the attempt never started and is not counted.
    Released { uncount: bool },
    /// Never started, put back for `delay` (its provider has no token yet); the
    /// attempt is not counted and no error is recorded.
    Snoozed { delay: Duration },
}

/// One outcome to write, fenced by its lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub lease: JobLease,
    pub outcome: Outcome,
}

/// A lease still held (or not) after an extension, with the job's cancel flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    pub id: Uuid,
    /// `false` when the lease was lost: the job was rescued, canceled or finished elsewhere.
    pub held: bool,
    pub cancel_requested: bool,
}

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The job was queued or scheduled and is now `canceled`.
    Canceled(Job),
    /// The job is running; its worker was asked to stop (cooperative).
    Requested(Job),
}

/// Jobs per queue and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCount {
    pub queue: String,
    pub status: JobStatus,
    pub count: u64,
}

/// Live jobs (waiting, queued, scheduled, running) of one queue and status, and the earliest
/// `run_at` among them: for a queued group that is the oldest due job's; for a
/// scheduled group, if it is past, a due job not yet moved to `queued`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCount {
    pub queue: String,
    pub status: JobStatus,
    pub count: u64,
    pub oldest_run_at: Option<DateTime<Utc>>,
}

/// A concurrency key with queued jobs: its limit, how many of its jobs run, and how
/// many wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    pub key: String,
    pub limit: u32,
    pub running: u64,
    pub queued: u64,
}

impl KeyState {
    /// Queued jobs that cannot start until one of the running ones ends.
    pub fn held(&self) -> u64 {
        let free = u64::from(self.limit).saturating_sub(self.running);
        self.queued.saturating_sub(free)
    }
}

/// A queue the store knows about, with its pause flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    pub name: String,
    pub paused: bool,
}

/// One kyu process as it registers itself in the node registry (`Store::heartbeat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The engine's lease owner id where the process runs an engine, else a fresh id.
    pub id: String,
    pub host: String,
    /// The kyu version it runs.
    pub version: String,
    /// `api`, `worker` or `serve`.
    pub role: String,
    /// Worker slots at start (0 without an engine).
    pub pool_size: u32,
    pub started_at: DateTime<Utc>,
}

/// A registered node as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub info: NodeInfo,
    /// Its last heartbeat, by the store's clock.
    pub heartbeat_at: DateTime<Utc>,
    /// Whether it holds an unexpired leadership lease.
    pub leader: bool,
}

/// A store failure. Invalid requests are typed; database trouble is `Unavailable`
/// (worth retrying), `Full` (the disk or the database is out of space: worth retrying
/// once space returns) or `Backend` (a bug or a schema problem).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job {0} not found")]
    NotFound(Uuid),
    #[error("job {id} is {status}; {action} is not allowed")]
    InvalidTransition {
        id: Uuid,
        status: JobStatus,
        action: &'static str,
    },
    #[error("invalid job: {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A workflow that is not a DAG of valid jobs; names the field at fault.
    #[error("invalid workflow: {0}")]
    InvalidWorkflow(WorkflowError),
    #[error("workflow {0} not found")]
    WorkflowNotFound(Uuid),
    /// The backend does not implement this (the memory store has no workflows).
    #[error("{0} is not supported by this store")]
    Unsupported(&'static str),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Out of space (SQLITE_FULL, PostgreSQL 53100, MariaDB 1114/1021): nothing was written.
    #[error("storage full: {0}")]
    Full(String),
    #[error("store error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether a caller may retry the same call later.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Full(_))
    }
}

/// Durable job storage. See the module docs for the fencing rule.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short backend name: `sqlite`, `postgres`, `mysql`, `memory`.
    fn backend(&self) -> &'static str;

    /// Answers when the database does (readiness checks). The default reads the next
    /// scheduled time, an indexed lookup.
    async fn ping(&self) -> Result<(), StoreError> {
        self.next_run_at().await.map(|_| ())
    }

    /// Answers when the database takes a write (how kyu learns that space returned
    /// after a `Full`). The default only pings; a store that can fill up on its own
    /// disk (SQLite) writes a row.
    async fn probe_write(&self) -> Result<(), StoreError> {
        self.ping().await
    }

    /// Commits one job (see [`Store::enqueue_many`]).
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, StoreError> {
        let mut out = self.enqueue_many(vec![job]).await?;
        out.pop()
            .ok_or_else(|| StoreError::Backend("enqueue returned nothing".into()))
    }

    /// Commits all jobs in one transaction, or none. A job whose unique key is held
    /// by a live (non-final) job is not inserted: its entry names the live job.
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError>;

    async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError>;

    async fn list(&self, query: &ListJobs) -> Result<JobPage, StoreError>;

    /// Moves due `scheduled` jobs to `queued`, then claims up to `limit` queued jobs of
    /// unpaused queues whose type is one of `types` (and queue one of `queues`, if
    /// given): first those due for `aged_before` or longer (oldest first), then the
    /// best of the rest: priority, then `run_at`, then age. Its cost is bounded by
    /// `limit` and the number of types, never by how many jobs wait or how old they are. Each claimed job
    /// is `running`, its attempt counted, leased to `owner`. Returned in that order.
    async fn claim(&self, params: &ClaimParams) -> Result<Vec<Job>, StoreError>;

    /// Extends the leases still held; tells which were lost and which jobs were asked
    /// to cancel. One entry per lease given, in order.
    async fn extend_leases(
        &self,
        leases: &[JobLease],
        lease: Duration,
    ) -> Result<Vec<LeaseState>, StoreError>;

    /// Writes outcomes in one transaction, with the settling of the dependents of
    /// workflow jobs that became final (see [`crate::workflow`]). Returns, per ack in
    /// order, whether it was applied (`false`: fenced, the lease was no longer held).
    async fn ack(&self, acks: &[Ack]) -> Result<Vec<bool>, StoreError>;

    /// Records progress (0–100) of a running attempt. `Ok(false)` when fenced.
    async fn set_progress(&self, lease: &JobLease, progress: u8) -> Result<bool, StoreError>;

    /// Cancels a waiting, queued or scheduled job (a workflow job's dependents settle
    /// in the same transaction), or asks a running one to stop.
    /// A final job is an `InvalidTransition`.
    async fn request_cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError>;

    /// Queues a failed or canceled job again (one more attempt is allowed if its
    /// attempts were used up); the workflow jobs its failure canceled wait again.
    /// Other statuses are an `InvalidTransition`.
    async fn retry(&self, id: Uuid) -> Result<Job, StoreError>;

    /// Leases of running jobs whose lease expired (their node died or stalled).
    async fn find_expired(&self, limit: u32) -> Result<Vec<JobLease>, StoreError>;

    /// Rescues the given expired leases: back to `queued` (keeping its `run_at`, so it
    /// resumes its place in line) with a `retryable` error, or
    /// `failed` if attempts are used up. Fenced: a job whose lease changed or that
    /// finished since `find_expired` is left alone. Returns the ids rescued.
    async fn rescue(&self, leases: &[JobLease]) -> Result<Vec<Uuid>, StoreError>;

    /// `find_expired` then `rescue`.
    async fn rescue_expired(&self, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        let leases = self.find_expired(limit).await?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        self.rescue(&leases).await
    }

    /// The earliest `run_at` of a scheduled job, so a scheduler can sleep until then.
    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    async fn counts(&self) -> Result<Vec<QueueCount>, StoreError>;

    /// [`Store::counts`] of the jobs `owner` created only (what a `user` may see).
    async fn owner_counts(&self, owner: &str) -> Result<Vec<QueueCount>, StoreError>;

    /// Live jobs per queue and status ([`LiveCount`]); groups with no jobs are left
    /// out. Reads only live jobs, through an index, so it stays cheap however many
    /// finished jobs the table holds: the metrics sampler calls it every few seconds.
    async fn live_counts(&self) -> Result<Vec<LiveCount>, StoreError>;

    /// Up to `limit` concurrency keys that have queued jobs, in key order after
    /// `after`: their limits, running and queued jobs.
    async fn concurrency_keys(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<KeyState>, StoreError>;

    async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError>;

    /// Queues with jobs or a pause flag.
    async fn queues(&self) -> Result<Vec<QueueState>, StoreError>;

    /// Deletes up to `limit` final jobs that finished before `before`, except jobs of
    /// a workflow that still runs; a finished workflow goes once its jobs are gone.
    /// Returns how many jobs it deleted.
    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// Housekeeping of the claim's indexes, run by the leader about once a second. A
    /// claim reads its index from the head, and on a backend where a claimed job's
    /// old entry stays there until the table is vacuumed (PostgreSQL), a draining
    /// backlog leaves a growing dead prefix that every claim walks; such a backend
    /// removes it once enough has gathered. Returns whether it did any work.
    async fn tidy_claim_indexes(&self) -> Result<bool, StoreError> {
        Ok(false)
    }

    // ---- Nodes, leadership and cron (several processes on one database) ----------

    /// Registers `node`, or records its heartbeat: `heartbeat_at` becomes the store's
    /// now (the database clock on PostgreSQL and MariaDB).
    async fn heartbeat(&self, node: &NodeInfo) -> Result<(), StoreError>;

    /// Live nodes (last heartbeat within `dead_after`), ordered by id; `leader` marks
    /// the holder of an unexpired leadership lease.
    async fn nodes(&self, dead_after: Duration) -> Result<Vec<NodeRecord>, StoreError>;

    /// Removes a node's row (graceful shutdown). Unknown ids are fine.
    async fn deregister(&self, id: &str) -> Result<(), StoreError>;

    /// Deletes rows of nodes whose last heartbeat is older than `dead_for`.
    async fn prune_nodes(&self, dead_for: Duration) -> Result<u64, StoreError>;

    /// Takes or renews the lease `name` for `node` for `ttl`, in one atomic statement
    /// by the store's clock: it succeeds when the lease is free, expired, or already
    /// `node`'s. Returns whether `node` holds it now.
    async fn acquire_leadership(
        &self,
        name: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Gives the lease `name` up if `node` holds it (graceful shutdown: the next node
    /// need not wait for it to expire). Returns whether it was held.
    async fn release_leadership(&self, name: &str, node: &str) -> Result<bool, StoreError>;

    /// Leases of running jobs whose owner is a registered node whose last heartbeat
    /// is older than `dead_after` (it died), whether or not the lease expired yet.
    /// Owners without a node row are left to lease expiry.
    async fn find_orphaned(
        &self,
        dead_after: Duration,
        limit: u32,
    ) -> Result<Vec<JobLease>, StoreError>;

    /// Rescues leases [`Store::find_orphaned`] returned, like [`Store::rescue`] (back
    /// to `queued`, or `failed` when attempts are used up), fenced by (id, attempt,
    /// owner, `running`) and by the owner still being dead. Returns the ids rescued.
    async fn rescue_orphaned(
        &self,
        leases: &[JobLease],
        dead_after: Duration,
    ) -> Result<Vec<Uuid>, StoreError>;

    /// `find_orphaned` then `rescue_orphaned`.
    async fn rescue_dead_owners(
        &self,
        dead_after: Duration,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError> {
        let leases = self.find_orphaned(dead_after, limit).await?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        self.rescue_orphaned(&leases, dead_after).await
    }

    /// The last tick enqueued for the cron entry `name`, if any.
    async fn cron_last_tick(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// In one transaction: if `tick` is later than the last tick recorded for `name`,
    /// records it and enqueues `job`; otherwise does nothing and returns `None`. The
    /// record only moves forward, so a tick is enqueued once whoever tries it.
    async fn enqueue_cron(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        job: NewJob,
    ) -> Result<Option<Enqueued>, StoreError>;

    // ---- Workflows (see crate::workflow) ------------------------------------------

    /// Validates `wf` ([`NewWorkflow::validate`]) and commits the workflow, its jobs,
    /// their dependency edges and its callbacks in one transaction, or nothing. Jobs
    /// without dependencies are due at once (or at their `run_at`); the others wait.
    async fn enqueue_workflow(&self, wf: NewWorkflow) -> Result<WorkflowCreated, StoreError> {
        let _ = wf;
        Err(StoreError::Unsupported("workflows"))
    }

    /// A workflow with its jobs, their statuses and dependencies.
    async fn workflow(&self, id: Uuid) -> Result<Option<WorkflowRecord>, StoreError> {
        let _ = id;
        Err(StoreError::Unsupported("workflows"))
    }

    /// Workflows newest first (`owner` filters), a page at a time.
    async fn list_workflows(&self, q: &ListWorkflows) -> Result<WorkflowPage, StoreError> {
        let _ = q;
        Err(StoreError::Unsupported("workflows"))
    }

    /// Cancels every job of the workflow that is not final (running ones are asked
    /// to stop), callbacks included; dependents settle as after any cancel. Returns
    /// how many jobs it canceled or asked to stop.
    async fn cancel_workflow(&self, id: Uuid) -> Result<u64, StoreError> {
        let _ = id;
        Err(StoreError::Unsupported("workflows"))
    }

    /// The jobs `id` depends on (empty for a job outside any workflow).
    async fn dependencies(&self, id: Uuid) -> Result<Vec<Dependency>, StoreError> {
        let _ = id;
        Ok(Vec::new())
    }
}

/// Checks a new job's fields before any store touches it.
pub fn validate_new_job(job: &NewJob) -> Result<(), StoreError> {
    fn name(field: &'static str, v: &str, max: usize) -> Result<(), StoreError> {
        // Characters, as JSON Schema's maxLength and MySQL's VARCHAR count them.
        if v.is_empty() || v.chars().count() > max {
            return Err(StoreError::Invalid {
                field,
                message: format!("must be 1 to {max} characters long"),
            });
        }
        // PostgreSQL text cannot hold NUL; refused everywhere so backends agree.
        if v.contains('\0') {
            return Err(StoreError::Invalid {
                field,
                message: "must not contain NUL (\\u0000)".into(),
            });
        }
        Ok(())
    }
    name("queue", &job.queue, 100)?;
    name("type", &job.job_type, 100)?;
    if let Some(p) = &job.provider {
        name("provider", p, 100)?;
    }
    if let Some(k) = &job.unique_key {
        name("unique_key", k, 255)?;
    }
    if let Some(o) = &job.owner {
        name("owner", o, 255)?;
    }
    if let Some(t) = &job.tenant {
        name("tenant", t, 255)?;
    }
    if let Some(c) = &job.concurrency {
        name("concurrency_key", &c.key, 255)?;
        if c.limit == 0 || c.limit > crate::flow::MAX_CONCURRENCY_LIMIT {
            return Err(StoreError::Invalid {
                field: "concurrency_limit",
                message: format!(
                    "must be between 1 and {}",
                    crate::flow::MAX_CONCURRENCY_LIMIT
                ),
            });
        }
    }
    if job.max_attempts == 0 || job.max_attempts > 1000 {
        return Err(StoreError::Invalid {
            field: "max_attempts",
            message: "must be between 1 and 1000".into(),
        });
    }
    Ok(())
}
