//! A [`Store`] wrapper that counts what only the store boundary sees: jobs committed
//! (`kyu_jobs_enqueued_total`: API single and batch creates, CLI enqueues, all go
//! through `enqueue_many`; unique-key duplicates are not new jobs), queued or scheduled
//! jobs canceled (they finish without an ack), and failed store calls
//! (`kyu_store_errors_total{kind}`) from the engine, the API and the samplers alike.
//! Invalid requests (`NotFound`, `InvalidTransition`, `Invalid`) are the caller's
//! errors, not the store's, and are not counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kyu_actors::store::{
    Ack, CancelOutcome, ClaimParams, Enqueued, JobLease, JobPage, LeaseState, ListJobs, QueueCount,
    QueueState,
};
use kyu_actors::telemetry::{self, JOBS_ENQUEUED, STORE_ERRORS};
use kyu_actors::workflow::{Dependency, ListWorkflows, WorkflowPage};
use kyu_actors::{Job, LiveCount, NewJob, NodeInfo, NodeRecord, Store, StoreError};
use kyu_actors::{NewWorkflow, WorkflowCreated, WorkflowRecord};
use uuid::Uuid;

/// Counts around `inner`.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
}

impl MeteredStore {
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(MeteredStore { inner })
    }
}

/// The `kind` label of a store failure, or `None` for a caller's error.
pub fn error_kind(e: &StoreError) -> Option<&'static str> {
    match e {
        StoreError::Unavailable(_) => Some("unavailable"),
        StoreError::Full(_) => Some("full"),
        StoreError::Backend(_) => Some("backend"),
        StoreError::NotFound(_)
        | StoreError::WorkflowNotFound(_)
        | StoreError::InvalidTransition { .. }
        | StoreError::Invalid { .. }
        | StoreError::InvalidWorkflow(_)
        | StoreError::Unsupported(_) => None,
    }
}

fn seen<T>(r: Result<T, StoreError>) -> Result<T, StoreError> {
    if let Err(e) = &r
        && let Some(kind) = error_kind(e)
    {
        metrics::counter!(STORE_ERRORS, "kind" => kind).increment(1);
    }
    r
}

#[async_trait]
impl Store for MeteredStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        seen(self.inner.ping().await)
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        seen(self.inner.probe_write().await)
    }
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        let labels: Vec<(String, String)> = jobs
            .iter()
            .map(|j| (j.queue.clone(), j.job_type.clone()))
            .collect();
        let out = seen(self.inner.enqueue_many(jobs).await)?;
        let mut new: HashMap<(String, String), u64> = HashMap::new();
        for (l, e) in labels.into_iter().zip(&out) {
            if !e.duplicate {
                *new.entry(l).or_default() += 1;
            }
        }
        for ((queue, job_type), n) in new {
            metrics::counter!(JOBS_ENQUEUED, "queue" => queue, "type" => job_type).increment(n);
        }
        Ok(out)
    }
    async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        seen(self.inner.get(id).await)
    }
    async fn list(&self, q: &ListJobs) -> Result<JobPage, StoreError> {
        seen(self.inner.list(q).await)
    }
    async fn claim(&self, p: &ClaimParams) -> Result<Vec<Job>, StoreError> {
        let r = seen(self.inner.claim(p).await);
        if let Ok(jobs) = &r {
            let found = if jobs.is_empty() { "empty" } else { "jobs" };
            metrics::counter!(kyu_actors::telemetry::CLAIMS, "found" => found).increment(1);
        }
        r
    }
    async fn extend_leases(
        &self,
        l: &[JobLease],
        d: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        seen(self.inner.extend_leases(l, d).await)
    }
    async fn ack(&self, acks: &[Ack]) -> Result<Vec<bool>, StoreError> {
        seen(self.inner.ack(acks).await)
    }
    async fn set_progress(&self, l: &JobLease, p: u8) -> Result<bool, StoreError> {
        seen(self.inner.set_progress(l, p).await)
    }
    async fn request_cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        let out = seen(self.inner.request_cancel(id).await)?;
        if let CancelOutcome::Canceled(job) = &out {
            telemetry::record_finished(&job.queue, &job.job_type, "canceled");
        }
        Ok(out)
    }
    async fn retry(&self, id: Uuid) -> Result<Job, StoreError> {
        seen(self.inner.retry(id).await)
    }
    async fn find_expired(&self, limit: u32) -> Result<Vec<JobLease>, StoreError> {
        seen(self.inner.find_expired(limit).await)
    }
    async fn rescue(&self, l: &[JobLease]) -> Result<Vec<Uuid>, StoreError> {
        let ids = seen(self.inner.rescue(l).await)?;
        // Rescues are rare (a node died or stalled): reading each job back to count it
        // by queue, type and fate costs nothing that matters.
        for id in &ids {
            if let Ok(Some(job)) = self.inner.get(*id).await {
                telemetry::record_rescued(&job);
            }
        }
        Ok(ids)
    }
    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        seen(self.inner.next_run_at().await)
    }
    async fn counts(&self) -> Result<Vec<QueueCount>, StoreError> {
        seen(self.inner.counts().await)
    }
    async fn owner_counts(&self, owner: &str) -> Result<Vec<QueueCount>, StoreError> {
        seen(self.inner.owner_counts(owner).await)
    }
    async fn live_counts(&self) -> Result<Vec<LiveCount>, StoreError> {
        seen(self.inner.live_counts().await)
    }
    async fn concurrency_keys(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<kyu_actors::store::KeyState>, StoreError> {
        seen(self.inner.concurrency_keys(after, limit).await)
    }
    async fn set_queue_paused(&self, q: &str, paused: bool) -> Result<(), StoreError> {
        seen(self.inner.set_queue_paused(q, paused).await)
    }
    async fn queues(&self) -> Result<Vec<QueueState>, StoreError> {
        seen(self.inner.queues().await)
    }
    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        seen(self.inner.prune(before, limit).await)
    }
    async fn heartbeat(&self, node: &NodeInfo) -> Result<(), StoreError> {
        seen(self.inner.heartbeat(node).await)
    }
    async fn nodes(&self, dead_after: Duration) -> Result<Vec<NodeRecord>, StoreError> {
        seen(self.inner.nodes(dead_after).await)
    }
    async fn deregister(&self, id: &str) -> Result<(), StoreError> {
        seen(self.inner.deregister(id).await)
    }
    async fn tidy_claim_indexes(&self) -> Result<bool, StoreError> {
        seen(self.inner.tidy_claim_indexes().await)
    }
    async fn prune_nodes(&self, dead_for: Duration) -> Result<u64, StoreError> {
        seen(self.inner.prune_nodes(dead_for).await)
    }
    async fn acquire_leadership(
        &self,
        name: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        seen(self.inner.acquire_leadership(name, node, ttl).await)
    }
    async fn release_leadership(&self, name: &str, node: &str) -> Result<bool, StoreError> {
        seen(self.inner.release_leadership(name, node).await)
    }
    async fn find_orphaned(
        &self,
        dead_after: Duration,
        limit: u32,
    ) -> Result<Vec<JobLease>, StoreError> {
        seen(self.inner.find_orphaned(dead_after, limit).await)
    }
    async fn cron_last_tick(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        seen(self.inner.cron_last_tick(name).await)
    }
    async fn rescue_orphaned(
        &self,
        l: &[JobLease],
        dead_after: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        let ids = seen(self.inner.rescue_orphaned(l, dead_after).await)?;
        for id in &ids {
            if let Ok(Some(job)) = self.inner.get(*id).await {
                telemetry::record_rescued(&job);
            }
        }
        Ok(ids)
    }
    async fn enqueue_cron(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        job: NewJob,
    ) -> Result<Option<Enqueued>, StoreError> {
        let (queue, job_type) = (job.queue.clone(), job.job_type.clone());
        let out = seen(self.inner.enqueue_cron(name, tick, job).await)?;
        if out.as_ref().is_some_and(|e| !e.duplicate) {
            metrics::counter!(JOBS_ENQUEUED, "queue" => queue, "type" => job_type).increment(1);
        }
        Ok(out)
    }

    async fn enqueue_workflow(&self, wf: NewWorkflow) -> Result<WorkflowCreated, StoreError> {
        seen(self.inner.enqueue_workflow(wf).await)
    }
    async fn workflow(&self, id: Uuid) -> Result<Option<WorkflowRecord>, StoreError> {
        seen(self.inner.workflow(id).await)
    }
    async fn list_workflows(&self, q: &ListWorkflows) -> Result<WorkflowPage, StoreError> {
        seen(self.inner.list_workflows(q).await)
    }
    async fn cancel_workflow(&self, id: Uuid) -> Result<u64, StoreError> {
        seen(self.inner.cancel_workflow(id).await)
    }
    async fn dependencies(&self, id: Uuid) -> Result<Vec<Dependency>, StoreError> {
        seen(self.inner.dependencies(id).await)
    }
}
