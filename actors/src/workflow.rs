//! Workflows: jobs that wait for other jobs (chains, fan-out/fan-in) and batch
//! callbacks, as one unit inserted all-or-nothing.
//!
//! Dependencies are rows (`job_dependencies`), one per edge, each with the dependent's
//! [`DependencyPolicy`]. A job with unmet dependencies is [`JobStatus::Waiting`] and
//! carries a counter of them. The store settles edges in the same transaction as the
//! ack that made a job final: a completed dependency (or a failed one under `ignore`)
//! decrements its dependents' counters with a guarded update, and the dependent whose
//! counter reaches 0 becomes due — exactly once, whichever node acked. A failed or
//! canceled dependency under `cancel` (the default) cancels its waiting dependents,
//! transitively, remembering the job whose failure did it, so retrying that job puts
//! them back to waiting; under `run` the dependent is released at once.
//!
//! Callbacks keep Sidekiq's batch meaning and use the same machinery: `on_complete`
//! depends on every job of the workflow with `ignore` (it runs once all are final,
//! however they ended), `on_success` with `cancel` (it runs only if all completed).
//!
//! This module is the model and its checks ([`NewWorkflow::validate`]: a DAG of unique
//! keys); the stores implement it (`Store::enqueue_workflow`).
//!
//! [`JobStatus::Waiting`]: crate::status::JobStatus::Waiting

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::job::NewJob;
use crate::status::JobStatus;
use crate::store::{StoreError, validate_new_job};

/// Most jobs one workflow may hold (callbacks not counted).
pub const MAX_WORKFLOW_JOBS: usize = 100_000;
/// The workflow key of the `on_complete` callback job.
pub const ON_COMPLETE_KEY: &str = "$on_complete";
/// The workflow key of the `on_success` callback job.
pub const ON_SUCCESS_KEY: &str = "$on_success";

/// What a dependent does when one of its dependencies fails or is canceled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyPolicy {
    /// Cancel the dependent (and, transitively, its own dependents).
    #[default]
    Cancel,
    /// Count the dependency as done: the dependent runs once its others are done.
    Ignore,
    /// Release the dependent at once, whatever its other dependencies are doing.
    Run,
}

impl DependencyPolicy {
    pub const fn as_str(self) -> &'static str {
        match self {
            DependencyPolicy::Cancel => "cancel",
            DependencyPolicy::Ignore => "ignore",
            DependencyPolicy::Run => "run",
        }
    }

    /// Reads a stored policy name.
    pub fn parse(s: &str) -> Option<DependencyPolicy> {
        match s {
            "cancel" => Some(DependencyPolicy::Cancel),
            "ignore" => Some(DependencyPolicy::Ignore),
            "run" => Some(DependencyPolicy::Run),
            _ => None,
        }
    }
}

/// One job of a new workflow, named by its `key` (unique in the workflow).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowJob {
    pub key: String,
    pub job: NewJob,
    /// Keys of the jobs this one waits for.
    pub depends_on: Vec<String>,
    pub on_dependency_failure: DependencyPolicy,
}

/// The builder's name for programs embedding the engine:
/// `Workflow::new().job("a", job).job("b", job).depends_on(["a"])`.
pub type Workflow = NewWorkflow;

/// A workflow to insert: its jobs and optional callbacks.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWorkflow {
    pub id: Uuid,
    pub name: Option<String>,
    pub owner: Option<String>,
    pub jobs: Vec<WorkflowJob>,
    /// Runs once every job of the workflow is final, however it ended.
    pub on_complete: Option<NewJob>,
    /// Runs only if every job of the workflow completed.
    pub on_success: Option<NewJob>,
}

/// A workflow that does not hold together. `field` names the culprit the way the
/// HTTP body spells it (`jobs[3].depends_on[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct WorkflowError {
    pub field: String,
    pub message: String,
}

impl WorkflowError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> WorkflowError {
        WorkflowError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<WorkflowError> for StoreError {
    fn from(e: WorkflowError) -> StoreError {
        StoreError::InvalidWorkflow(e)
    }
}

impl NewWorkflow {
    /// An empty workflow with a fresh id (UUID v7).
    pub fn new() -> NewWorkflow {
        NewWorkflow {
            id: Uuid::now_v7(),
            name: None,
            owner: None,
            jobs: Vec::new(),
            on_complete: None,
            on_success: None,
        }
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Owns the workflow and every job in it (a `user` token sees only its own).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Adds a job under `key`; chain [`NewWorkflow::depends_on`] to make it wait.
    pub fn job(mut self, key: impl Into<String>, job: NewJob) -> Self {
        self.jobs.push(WorkflowJob {
            key: key.into(),
            job,
            depends_on: Vec::new(),
            on_dependency_failure: DependencyPolicy::Cancel,
        });
        self
    }

    /// The last added job waits for the jobs under `keys`.
    pub fn depends_on<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        if let Some(j) = self.jobs.last_mut() {
            j.depends_on.extend(keys.into_iter().map(Into::into));
        }
        self
    }

    /// What the last added job does when a dependency fails.
    pub fn on_dependency_failure(mut self, policy: DependencyPolicy) -> Self {
        if let Some(j) = self.jobs.last_mut() {
            j.on_dependency_failure = policy;
        }
        self
    }

    pub fn on_complete(mut self, job: NewJob) -> Self {
        self.on_complete = Some(job);
        self
    }

    pub fn on_success(mut self, job: NewJob) -> Self {
        self.on_success = Some(job);
        self
    }

    /// Checks that the workflow is a DAG of unique keys whose jobs are valid, and
    /// returns, per job, the indexes of its dependencies. Stores call it before
    /// touching anything; the API calls it to answer 400s that name the field.
    pub fn validate(&self) -> Result<Vec<Vec<usize>>, WorkflowError> {
        if self.jobs.is_empty() {
            return Err(WorkflowError::new("jobs", "must hold at least one job"));
        }
        if self.jobs.len() > MAX_WORKFLOW_JOBS {
            return Err(WorkflowError::new(
                "jobs",
                format!("must hold at most {MAX_WORKFLOW_JOBS} jobs"),
            ));
        }
        if let Some(name) = &self.name
            && (name.is_empty() || name.chars().count() > 255 || name.contains('\0'))
        {
            return Err(WorkflowError::new(
                "name",
                "must be 1 to 255 characters long, without NUL",
            ));
        }
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(self.jobs.len());
        for (i, j) in self.jobs.iter().enumerate() {
            let field = format!("jobs[{i}].key");
            if j.key.is_empty() || j.key.chars().count() > 100 || j.key.contains('\0') {
                return Err(WorkflowError::new(
                    field,
                    "must be 1 to 100 characters long, without NUL",
                ));
            }
            if j.key.starts_with('$') {
                return Err(WorkflowError::new(
                    field,
                    "must not start with `$` (reserved for callbacks)",
                ));
            }
            if index.insert(j.key.as_str(), i).is_some() {
                return Err(WorkflowError::new(
                    field,
                    format!("repeats the key `{}`", j.key),
                ));
            }
            validate_job(&format!("jobs[{i}]"), &j.job)?;
        }
        for (name, cb) in [
            ("on_complete", &self.on_complete),
            ("on_success", &self.on_success),
        ] {
            if let Some(job) = cb {
                validate_job(name, job)?;
            }
        }
        let mut deps = Vec::with_capacity(self.jobs.len());
        for (i, j) in self.jobs.iter().enumerate() {
            let mut mine: Vec<usize> = Vec::with_capacity(j.depends_on.len());
            for (d, key) in j.depends_on.iter().enumerate() {
                let field = format!("jobs[{i}].depends_on[{d}]");
                let Some(&at) = index.get(key.as_str()) else {
                    return Err(WorkflowError::new(
                        field,
                        format!("no job has the key `{key}`"),
                    ));
                };
                if at == i {
                    return Err(WorkflowError::new(field, "a job cannot depend on itself"));
                }
                if mine.contains(&at) {
                    return Err(WorkflowError::new(field, format!("repeats `{key}`")));
                }
                mine.push(at);
            }
            deps.push(mine);
        }
        if let Some(i) = first_in_cycle(&deps) {
            return Err(WorkflowError::new(
                format!("jobs[{i}].depends_on"),
                format!("`{}` is part of a dependency cycle", self.jobs[i].key),
            ));
        }
        Ok(deps)
    }
}

impl Default for NewWorkflow {
    fn default() -> Self {
        NewWorkflow::new()
    }
}

fn validate_job(prefix: &str, job: &NewJob) -> Result<(), WorkflowError> {
    if job.unique_key.is_some() {
        return Err(WorkflowError::new(
            format!("{prefix}.unique_key"),
            "is not allowed in a workflow",
        ));
    }
    validate_new_job(job).map_err(|e| match e {
        StoreError::Invalid { field, message } => {
            WorkflowError::new(format!("{prefix}.{field}"), message)
        }
        other => WorkflowError::new(prefix, other.to_string()),
    })
}

/// Kahn's algorithm: `None` for a DAG, else a job that lies on (or behind) a cycle.
fn first_in_cycle(deps: &[Vec<usize>]) -> Option<usize> {
    let mut pending: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); deps.len()];
    for (child, parents) in deps.iter().enumerate() {
        for &p in parents {
            dependents[p].push(child);
        }
    }
    let mut ready: Vec<usize> = (0..deps.len()).filter(|&i| pending[i] == 0).collect();
    let mut done = 0;
    while let Some(i) = ready.pop() {
        done += 1;
        for &c in &dependents[i] {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.push(c);
            }
        }
    }
    if done == deps.len() {
        return None;
    }
    // Walk back through unfinished dependencies until a job repeats: it is on a cycle.
    let mut seen = vec![false; deps.len()];
    let mut at = (0..deps.len()).find(|&i| pending[i] > 0)?;
    while !seen[at] {
        seen[at] = true;
        at = *deps[at].iter().find(|&&p| pending[p] > 0)?;
    }
    Some(at)
}

/// What `Store::enqueue_workflow` committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowCreated {
    pub id: Uuid,
    /// Each job's id by its key, callbacks under [`ON_COMPLETE_KEY`]/[`ON_SUCCESS_KEY`].
    pub jobs: BTreeMap<String, Uuid>,
}

/// One dependency edge as a job sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// The job depended on.
    pub job_id: Uuid,
    pub key: Option<String>,
    pub status: JobStatus,
    pub policy: DependencyPolicy,
}

/// A job of a stored workflow, as the workflow view lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowMember {
    pub id: Uuid,
    pub key: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: JobStatus,
    /// Ids of the jobs it waits for.
    pub depends_on: Vec<Uuid>,
}

/// Where a workflow stands, derived from its jobs (callbacks not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    /// Some job is not final yet.
    Running,
    /// Every job completed.
    Completed,
    /// Every job is final and some failed or were canceled.
    Failed,
}

impl WorkflowStatus {
    /// The status of a workflow whose jobs stand at `counts`.
    pub fn from_counts<'a>(counts: impl IntoIterator<Item = &'a (JobStatus, u64)>) -> Self {
        let mut all_done = true;
        let mut all_ok = true;
        for (st, n) in counts {
            if *n == 0 {
                continue;
            }
            all_done &= st.is_final();
            all_ok &= *st == JobStatus::Completed;
        }
        match (all_done, all_ok) {
            (false, _) => WorkflowStatus::Running,
            (true, true) => WorkflowStatus::Completed,
            (true, false) => WorkflowStatus::Failed,
        }
    }
}

/// A stored workflow's row (without its jobs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowSummary {
    pub id: Uuid,
    pub name: Option<String>,
    pub owner: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Jobs in the workflow (callbacks not counted).
    pub total: u64,
    pub on_complete: Option<Uuid>,
    pub on_success: Option<Uuid>,
}

/// A stored workflow with its jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRecord {
    pub summary: WorkflowSummary,
    /// Jobs per status (callbacks not counted).
    pub counts: Vec<(JobStatus, u64)>,
    pub jobs: Vec<WorkflowMember>,
}

impl WorkflowRecord {
    pub fn status(&self) -> WorkflowStatus {
        WorkflowStatus::from_counts(&self.counts)
    }
}

/// A page of workflows, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListWorkflows {
    pub owner: Option<String>,
    pub cursor: Option<Uuid>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowPage {
    pub workflows: Vec<WorkflowSummary>,
    pub next_cursor: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job() -> NewJob {
        NewJob::new("noop", json!({}))
    }

    #[test]
    fn diamond_is_a_dag() {
        let wf = NewWorkflow::new()
            .job("a", job())
            .job("b", job())
            .depends_on(["a"])
            .job("c", job())
            .depends_on(["a"])
            .job("d", job())
            .depends_on(["b", "c"]);
        assert_eq!(
            wf.validate(),
            Ok(vec![vec![], vec![0], vec![0], vec![1, 2]])
        );
    }

    #[test]
    fn names_the_field_at_fault() {
        let field = |wf: NewWorkflow| wf.validate().unwrap_err().field;
        let base = NewWorkflow::new().job("a", job());
        assert_eq!(field(base.clone().job("a", job())), "jobs[1].key");
        assert_eq!(
            field(base.clone().job("b", job()).depends_on(["zz"])),
            "jobs[1].depends_on[0]"
        );
        assert_eq!(
            field(base.clone().job("b", job()).depends_on(["a", "a"])),
            "jobs[1].depends_on[1]"
        );
        assert_eq!(
            field(base.clone().depends_on(["a"])),
            "jobs[0].depends_on[0]"
        );
        assert_eq!(field(base.clone().job("$x", job())), "jobs[1].key");
        assert_eq!(field(NewWorkflow::new()), "jobs");
        assert_eq!(
            field(base.clone().job("b", job().unique_key("k"))),
            "jobs[1].unique_key"
        );
        assert_eq!(
            field(base.on_success(NewJob::new("", json!({})))),
            "on_success.type"
        );
    }

    #[test]
    fn finds_a_cycle() {
        let wf = NewWorkflow::new()
            .job("root", job())
            .job("a", job())
            .depends_on(["root", "c"])
            .job("b", job())
            .depends_on(["a"])
            .job("c", job())
            .depends_on(["b"])
            .job("tail", job())
            .depends_on(["c"]);
        let e = wf.validate().unwrap_err();
        assert!(
            [
                "jobs[1].depends_on",
                "jobs[2].depends_on",
                "jobs[3].depends_on"
            ]
            .contains(&e.field.as_str()),
            "{e:?}"
        );
        assert!(e.message.contains("cycle"));
    }

    #[test]
    fn status_from_counts() {
        use JobStatus::*;
        let st = |c: &[(JobStatus, u64)]| WorkflowStatus::from_counts(c);
        assert_eq!(st(&[(Completed, 3), (Waiting, 1)]), WorkflowStatus::Running);
        assert_eq!(
            st(&[(Completed, 3), (Failed, 0)]),
            WorkflowStatus::Completed
        );
        assert_eq!(st(&[(Completed, 3), (Canceled, 1)]), WorkflowStatus::Failed);
    }
}
