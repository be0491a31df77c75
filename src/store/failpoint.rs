//! Deterministic crash points for the crash tests.
//!
//! `KYU_FAILPOINTS="ack.before_commit=3"` aborts the process (no clean-up, like
//! `kill -9`) on the 3rd batch ack, before it reaches the database;
//! `ack.after_commit=N` aborts right after the N-th batch ack committed, before any
//! worker hears of it. Unset, the store is used as is: no wrapper, no cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kyu_actors::store::{
    Ack, CancelOutcome, ClaimParams, Enqueued, JobLease, JobPage, LeaseState, ListJobs, QueueCount,
    QueueState,
};
use kyu_actors::workflow::{Dependency, ListWorkflows, WorkflowPage};
use kyu_actors::{Job, NewJob, NodeInfo, NodeRecord, Store, StoreError};
use kyu_actors::{NewWorkflow, WorkflowCreated, WorkflowRecord};
use uuid::Uuid;

pub const FAILPOINTS_ENV: &str = "KYU_FAILPOINTS";

/// Where an ack may crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failpoints {
    /// Abort on the n-th ack call, before it runs.
    pub ack_before_commit: Option<u64>,
    /// Abort after the n-th ack call committed.
    pub ack_after_commit: Option<u64>,
}

impl Failpoints {
    /// Parses `name=n[,name=n]`. An unknown name or a bad count names itself.
    pub fn parse(spec: &str) -> Result<Failpoints, String> {
        let mut fp = Failpoints::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, n) = part
                .split_once('=')
                .ok_or_else(|| format!("{FAILPOINTS_ENV}: `{part}`: expected name=count"))?;
            let n: u64 = n.parse().map_err(|_| {
                format!("{FAILPOINTS_ENV}: `{part}`: count must be a positive integer")
            })?;
            match name {
                "ack.before_commit" => fp.ack_before_commit = Some(n),
                "ack.after_commit" => fp.ack_after_commit = Some(n),
                other => {
                    return Err(format!(
                        "{FAILPOINTS_ENV}: unknown failpoint `{other}` \
                         (known: ack.before_commit, ack.after_commit)"
                    ));
                }
            }
        }
        Ok(fp)
    }

    /// Reads `KYU_FAILPOINTS`; `None` when unset or empty.
    pub fn from_env() -> Result<Option<Failpoints>, String> {
        match std::env::var(FAILPOINTS_ENV) {
            Ok(s) if !s.trim().is_empty() => Failpoints::parse(&s).map(Some),
            _ => Ok(None),
        }
    }

    /// Wraps `store` if any failpoint is set.
    pub fn wrap(self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        if self == Failpoints::default() {
            return store;
        }
        Arc::new(FailpointStore {
            inner: store,
            points: self,
            acks: AtomicU64::new(0),
        })
    }
}

/// A [`Store`] that aborts the process at the configured ack.
pub struct FailpointStore {
    inner: Arc<dyn Store>,
    points: Failpoints,
    acks: AtomicU64,
}

fn crash(at: &str) -> ! {
    eprintln!("kyu: failpoint {at} reached: aborting");
    std::process::abort()
}

#[async_trait]
impl Store for FailpointStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        self.inner.probe_write().await
    }
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        self.inner.enqueue_many(jobs).await
    }
    async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        self.inner.get(id).await
    }
    async fn list(&self, q: &ListJobs) -> Result<JobPage, StoreError> {
        self.inner.list(q).await
    }
    async fn claim(&self, p: &ClaimParams) -> Result<Vec<Job>, StoreError> {
        self.inner.claim(p).await
    }
    async fn extend_leases(
        &self,
        l: &[JobLease],
        d: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        self.inner.extend_leases(l, d).await
    }
    async fn ack(&self, acks: &[Ack]) -> Result<Vec<bool>, StoreError> {
        let n = self.acks.fetch_add(1, Ordering::SeqCst) + 1;
        if self.points.ack_before_commit == Some(n) {
            crash("ack.before_commit");
        }
        let out = self.inner.ack(acks).await?;
        if self.points.ack_after_commit == Some(n) {
            crash("ack.after_commit");
        }
        Ok(out)
    }
    async fn set_progress(&self, l: &JobLease, p: u8) -> Result<bool, StoreError> {
        self.inner.set_progress(l, p).await
    }
    async fn request_cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        self.inner.request_cancel(id).await
    }
    async fn retry(&self, id: Uuid) -> Result<Job, StoreError> {
        self.inner.retry(id).await
    }
    async fn find_expired(&self, limit: u32) -> Result<Vec<JobLease>, StoreError> {
        self.inner.find_expired(limit).await
    }
    async fn rescue(&self, l: &[JobLease]) -> Result<Vec<Uuid>, StoreError> {
        self.inner.rescue(l).await
    }
    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_run_at().await
    }
    async fn counts(&self) -> Result<Vec<QueueCount>, StoreError> {
        self.inner.counts().await
    }
    async fn owner_counts(&self, owner: &str) -> Result<Vec<QueueCount>, StoreError> {
        self.inner.owner_counts(owner).await
    }
    async fn live_counts(&self) -> Result<Vec<kyu_actors::LiveCount>, StoreError> {
        self.inner.live_counts().await
    }
    async fn concurrency_keys(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<kyu_actors::store::KeyState>, StoreError> {
        self.inner.concurrency_keys(after, limit).await
    }
    async fn set_queue_paused(&self, q: &str, paused: bool) -> Result<(), StoreError> {
        self.inner.set_queue_paused(q, paused).await
    }
    async fn queues(&self) -> Result<Vec<QueueState>, StoreError> {
        self.inner.queues().await
    }
    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        self.inner.prune(before, limit).await
    }
    async fn heartbeat(&self, node: &NodeInfo) -> Result<(), StoreError> {
        self.inner.heartbeat(node).await
    }
    async fn nodes(&self, dead_after: Duration) -> Result<Vec<NodeRecord>, StoreError> {
        self.inner.nodes(dead_after).await
    }
    async fn deregister(&self, id: &str) -> Result<(), StoreError> {
        self.inner.deregister(id).await
    }
    async fn tidy_claim_indexes(&self) -> Result<bool, StoreError> {
        self.inner.tidy_claim_indexes().await
    }
    async fn prune_nodes(&self, dead_for: Duration) -> Result<u64, StoreError> {
        self.inner.prune_nodes(dead_for).await
    }
    async fn acquire_leadership(
        &self,
        name: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.inner.acquire_leadership(name, node, ttl).await
    }
    async fn release_leadership(&self, name: &str, node: &str) -> Result<bool, StoreError> {
        self.inner.release_leadership(name, node).await
    }
    async fn find_orphaned(
        &self,
        dead_after: Duration,
        limit: u32,
    ) -> Result<Vec<JobLease>, StoreError> {
        self.inner.find_orphaned(dead_after, limit).await
    }
    async fn cron_last_tick(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.cron_last_tick(name).await
    }
    async fn rescue_orphaned(
        &self,
        l: &[JobLease],
        dead_after: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.inner.rescue_orphaned(l, dead_after).await
    }
    async fn enqueue_cron(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        job: NewJob,
    ) -> Result<Option<Enqueued>, StoreError> {
        self.inner.enqueue_cron(name, tick, job).await
    }

    async fn enqueue_workflow(&self, wf: NewWorkflow) -> Result<WorkflowCreated, StoreError> {
        self.inner.enqueue_workflow(wf).await
    }
    async fn workflow(&self, id: Uuid) -> Result<Option<WorkflowRecord>, StoreError> {
        self.inner.workflow(id).await
    }
    async fn list_workflows(&self, q: &ListWorkflows) -> Result<WorkflowPage, StoreError> {
        self.inner.list_workflows(q).await
    }
    async fn cancel_workflow(&self, id: Uuid) -> Result<u64, StoreError> {
        self.inner.cancel_workflow(id).await
    }
    async fn dependencies(&self, id: Uuid) -> Result<Vec<Dependency>, StoreError> {
        self.inner.dependencies(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_bad_input() {
        let fp = Failpoints::parse("ack.before_commit=3, ack.after_commit=5").unwrap();
        assert_eq!(fp.ack_before_commit, Some(3));
        assert_eq!(fp.ack_after_commit, Some(5));
        assert!(
            Failpoints::parse("ack.sometime=1")
                .unwrap_err()
                .contains("ack.sometime")
        );
        assert!(
            Failpoints::parse("ack.after_commit=x")
                .unwrap_err()
                .contains("KYU_FAILPOINTS")
        );
    }
}
