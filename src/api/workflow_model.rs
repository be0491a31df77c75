//! The JSON shapes of `/api/v1/workflows` and their OpenAPI schemas. A workflow job
//! takes every field of a job (`CreateJob`) plus its `key`, the keys it depends on and
//! what it does when one of them fails.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kyu_actors::workflow::{Dependency, WorkflowMember, WorkflowSummary};
use kyu_actors::{DependencyPolicy, WorkflowRecord, WorkflowStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::model::{CreateJob, Status, StatusCounts, integer};

/// What a dependent does when a dependency fails or is canceled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDependencyFailure {
    /// Cancel this job (and, transitively, the jobs waiting for it).
    #[default]
    Cancel,
    /// Count the failed dependency as done: run once the others are done.
    Ignore,
    /// Run at once.
    Run,
}

impl From<OnDependencyFailure> for DependencyPolicy {
    fn from(p: OnDependencyFailure) -> DependencyPolicy {
        match p {
            OnDependencyFailure::Cancel => DependencyPolicy::Cancel,
            OnDependencyFailure::Ignore => DependencyPolicy::Ignore,
            OnDependencyFailure::Run => DependencyPolicy::Run,
        }
    }
}

impl From<DependencyPolicy> for OnDependencyFailure {
    fn from(p: DependencyPolicy) -> OnDependencyFailure {
        match p {
            DependencyPolicy::Cancel => OnDependencyFailure::Cancel,
            DependencyPolicy::Ignore => OnDependencyFailure::Ignore,
            DependencyPolicy::Run => OnDependencyFailure::Run,
        }
    }
}

/// One job of a new workflow: a job's fields plus `key`, `depends_on` and
/// `on_dependency_failure`. A job with dependencies is `waiting` until they are done.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflowJob {
    /// Names the job within the workflow (unique; must not start with `$`).
    #[schema(min_length = 1, max_length = 100, pattern = "^[^$\\x00][^\\x00]*$")]
    pub key: String,
    /// Keys of the jobs this one waits for (no repeats; no cycles).
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub on_dependency_failure: OnDependencyFailure,
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 100, pattern = "^[^\\x00]+$")]
    pub job_type: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 10)]
    pub priority: Option<i64>,
    #[schema(min_length = 1, max_length = 100, pattern = "^[^\\x00]+$")]
    pub queue: Option<String>,
    #[schema(min_length = 1, max_length = 100, pattern = "^[^\\x00]+$")]
    pub provider: Option<String>,
    #[schema(minimum = 0, maximum = 31536000)]
    pub delay_seconds: Option<f64>,
    pub run_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "integer")]
    #[schema(minimum = 0, maximum = 999)]
    pub max_retries: Option<i64>,
    #[schema(exclusive_minimum = 0, maximum = 604800)]
    pub timeout_seconds: Option<f64>,
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]+$")]
    pub concurrency_key: Option<String>,
    #[serde(default, deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 10000)]
    pub concurrency_limit: Option<i64>,
    #[schema(min_length = 1, max_length = 100, pattern = "^[^\\x00]+$")]
    pub tier: Option<String>,
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]+$")]
    pub tenant: Option<String>,
}

impl CreateWorkflowJob {
    /// The job part, as a plain job request.
    pub fn job(&self) -> CreateJob {
        CreateJob {
            job_type: self.job_type.clone(),
            payload: self.payload.clone(),
            priority: self.priority,
            queue: self.queue.clone(),
            provider: self.provider.clone(),
            delay_seconds: self.delay_seconds,
            run_at: self.run_at,
            max_retries: self.max_retries,
            timeout_seconds: self.timeout_seconds,
            unique_key: None,
            concurrency_key: self.concurrency_key.clone(),
            concurrency_limit: self.concurrency_limit,
            tier: self.tier.clone(),
            tenant: self.tenant.clone(),
        }
    }
}

/// A workflow to create: its jobs (a DAG by key) and optional batch callbacks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflow {
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]+$")]
    pub name: Option<String>,
    #[schema(min_items = 1, max_items = 100000)]
    pub jobs: Vec<CreateWorkflowJob>,
    /// Runs once every job is final, however it ended; receives all their results.
    pub on_complete: Option<CreateJob>,
    /// Runs only if every job completed; receives all their results.
    pub on_success: Option<CreateJob>,
}

/// The committed workflow: its id and each job's id by key.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWorkflow {
    pub workflow_id: Uuid,
    /// Job ids by key; callbacks under `$on_complete` and `$on_success`.
    pub jobs: BTreeMap<String, Uuid>,
}

/// Where a workflow stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    Running,
    Completed,
    Failed,
}

impl From<WorkflowStatus> for WorkflowState {
    fn from(s: WorkflowStatus) -> WorkflowState {
        match s {
            WorkflowStatus::Running => WorkflowState::Running,
            WorkflowStatus::Completed => WorkflowState::Completed,
            WorkflowStatus::Failed => WorkflowState::Failed,
        }
    }
}

/// A job of a workflow and the jobs it waits for.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowJobView {
    pub key: String,
    pub job_id: Uuid,
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: Status,
    pub depends_on: Vec<Uuid>,
}

impl From<WorkflowMember> for WorkflowJobView {
    fn from(m: WorkflowMember) -> WorkflowJobView {
        WorkflowJobView {
            key: m.key,
            job_id: m.id,
            job_type: m.job_type,
            status: m.status.into(),
            depends_on: m.depends_on,
        }
    }
}

/// A workflow as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowSummaryView {
    pub workflow_id: Uuid,
    pub name: Option<String>,
    pub owner: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Jobs in it (callbacks not counted).
    pub total: u64,
}

impl From<WorkflowSummary> for WorkflowSummaryView {
    fn from(s: WorkflowSummary) -> WorkflowSummaryView {
        WorkflowSummaryView {
            workflow_id: s.id,
            name: s.name,
            owner: s.owner,
            created_at: s.created_at,
            total: s.total,
        }
    }
}

/// A workflow with its status, counts by status and every job.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowView {
    pub workflow_id: Uuid,
    pub name: Option<String>,
    pub owner: Option<String>,
    pub created_at: DateTime<Utc>,
    pub status: WorkflowState,
    pub total: u64,
    /// Jobs per status (callbacks not counted).
    pub counts: StatusCounts,
    /// Its jobs; callbacks are listed with keys `$on_complete` / `$on_success`.
    pub jobs: Vec<WorkflowJobView>,
}

impl From<WorkflowRecord> for WorkflowView {
    fn from(r: WorkflowRecord) -> WorkflowView {
        let status = r.status().into();
        let mut counts = StatusCounts::default();
        for (st, n) in &r.counts {
            counts.add(*st, *n);
        }
        WorkflowView {
            workflow_id: r.summary.id,
            name: r.summary.name,
            owner: r.summary.owner,
            created_at: r.summary.created_at,
            status,
            total: r.summary.total,
            counts,
            jobs: r.jobs.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowSummaryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// What a workflow cancel did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CanceledWorkflow {
    pub workflow_id: Uuid,
    /// Jobs canceled, or asked to stop if running.
    pub canceled: u64,
}

/// A dependency of a job, as `GET /api/v1/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DependencyView {
    pub job_id: Uuid,
    pub key: Option<String>,
    pub status: Status,
    pub on_failure: OnDependencyFailure,
}

impl From<Dependency> for DependencyView {
    fn from(d: Dependency) -> DependencyView {
        DependencyView {
            job_id: d.job_id,
            key: d.key,
            status: d.status.into(),
            on_failure: d.policy.into(),
        }
    }
}
