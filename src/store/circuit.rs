//! A circuit breaker around the store, shared by the API and the engine of one process.
//!
//! Without it every request during a database outage waited for the pool's acquire
//! timeout before answering 503, and clients timed out first; during a full disk every
//! write went to SQLite again to fail again. The first call that fails with
//! `Unavailable` or `Full` opens the circuit (not a pool wait that timed out with
//! every connection busy: that is load; a PostgreSQL client write that could not open
//! a connection at all does open it):
//!
//! - **unreachable**: every call fails at once with `Unavailable` (503
//!   `store_unavailable`), without touching the pool;
//! - **full**: writes fail at once with `Full` (507 `storage_full`); reads still go
//!   through, as a full disk still reads.
//!
//! While open, one background task probes the inner store every [`PROBE_EVERY`]
//! (a ping while unreachable, a real write while full, each bounded by
//! [`PROBE_TIMEOUT`]) and closes the circuit as soon as a probe succeeds: kyu resumes
//! by itself, engine included. `ping` answers the open circuit's reason at once, so
//! `/readyz` says "not ready" and why without waiting. `kyu_store_up` and
//! `kyu_storage_full` follow the state.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kyu_actors::store::{
    Ack, CancelOutcome, ClaimParams, Enqueued, JobLease, JobPage, LeaseState, ListJobs, QueueCount,
    QueueState,
};
use kyu_actors::telemetry::{STORAGE_FULL, STORE_UP};

use super::error::POOL_BUSY;
use kyu_actors::workflow::{Dependency, ListWorkflows, WorkflowPage};
use kyu_actors::{Job, LiveCount, NewJob, NodeInfo, NodeRecord, Store, StoreError};
use kyu_actors::{NewWorkflow, WorkflowCreated, WorkflowRecord};
use uuid::Uuid;

/// How often an open circuit probes the store.
pub const PROBE_EVERY: Duration = Duration::from_millis(200);
/// How long one probe may take before it counts as a failure.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the circuit is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    Unreachable,
    Full,
}

#[derive(Debug)]
struct Open {
    trip: Trip,
    reason: String,
    since: Instant,
}

#[derive(Debug, Default)]
struct State {
    open: Option<Open>,
    probing: bool,
    /// An `Unavailable` was seen and a ping is checking it before the circuit opens.
    confirming: bool,
}

/// The store behind a circuit breaker; see the module docs.
pub struct CircuitStore {
    inner: Arc<dyn Store>,
    state: Arc<Mutex<State>>,
}

impl CircuitStore {
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        metrics::gauge!(STORE_UP).set(1.0);
        metrics::gauge!(STORAGE_FULL).set(0.0);
        Arc::new(CircuitStore {
            inner,
            state: Arc::default(),
        })
    }

    fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
        state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The open circuit's answer for a call that `writes` (or not), if it refuses it.
    fn refuse(&self, writes: bool) -> Result<(), StoreError> {
        let st = Self::lock(&self.state);
        match &st.open {
            Some(o) if o.trip == Trip::Unreachable => Err(StoreError::Unavailable(format!(
                "{} (for {} ms; probing)",
                o.reason,
                o.since.elapsed().as_millis()
            ))),
            Some(o) if writes => Err(StoreError::Full(format!(
                "{} (for {} ms; probing)",
                o.reason,
                o.since.elapsed().as_millis()
            ))),
            _ => Ok(()),
        }
    }

    /// Opens the circuit on a store failure, and starts the prober if none runs.
    fn seen<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        let trip = match &r {
            Err(StoreError::Unavailable(m)) if m.starts_with(POOL_BUSY) => None,
            Err(StoreError::Unavailable(m)) => Some((Trip::Unreachable, m)),
            Err(StoreError::Full(m)) => Some((Trip::Full, m)),
            _ => None,
        };
        if let Some((trip, reason)) = trip {
            self.open(trip, reason);
        }
        r
    }

    fn open(&self, trip: Trip, reason: &str) {
        let mut st = Self::lock(&self.state);
        // One failed call while closed may be load or a dropped connection, not an
        // outage: a ping confirms it first (a full disk needs no confirmation).
        if trip == Trip::Unreachable && st.open.is_none() {
            if !st.confirming {
                st.confirming = true;
                let (inner, state, reason) =
                    (self.inner.clone(), self.state.clone(), reason.to_owned());
                tokio::spawn(async move {
                    let answered = matches!(
                        tokio::time::timeout(PROBE_TIMEOUT, inner.ping()).await,
                        Ok(Ok(())) | Ok(Err(StoreError::Backend(_)))
                    );
                    let me = CircuitStore { inner, state };
                    Self::lock(&me.state).confirming = false;
                    if !answered {
                        me.trip(trip, &reason);
                    }
                });
            }
            return;
        }
        drop(st);
        self.trip(trip, reason);
    }

    /// Opens the circuit (or changes why), starting the prober if none runs.
    fn trip(&self, trip: Trip, reason: &str) {
        let mut st = Self::lock(&self.state);
        match &mut st.open {
            // Unreachable outranks full: nothing goes through until a ping answers.
            Some(o) if o.trip == trip || o.trip == Trip::Unreachable => return,
            Some(o) => o.trip = trip,
            None => {
                tracing::warn!(?trip, %reason, "store circuit open: answering at once until a probe succeeds");
                st.open = Some(Open {
                    trip,
                    reason: reason.to_owned(),
                    since: Instant::now(),
                });
            }
        }
        metrics::gauge!(STORE_UP).set(0.0);
        metrics::gauge!(STORAGE_FULL).set(if trip == Trip::Full { 1.0 } else { 0.0 });
        if !st.probing {
            st.probing = true;
            let inner = self.inner.clone();
            let state = self.state.clone();
            tokio::spawn(probe(inner, state));
        }
    }
}

/// Probes until the store answers, then closes the circuit.
async fn probe(inner: Arc<dyn Store>, state: Arc<Mutex<State>>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let trip = match &CircuitStore::lock(&state).open {
            Some(o) => o.trip,
            None => break,
        };
        let answer = match trip {
            Trip::Unreachable => tokio::time::timeout(PROBE_TIMEOUT, inner.ping()).await,
            Trip::Full => tokio::time::timeout(PROBE_TIMEOUT, inner.probe_write()).await,
        };
        let mut st = CircuitStore::lock(&state);
        match answer {
            // Any answer but these says the database is there and takes the probe.
            Ok(Ok(())) | Ok(Err(StoreError::Backend(_))) => {
                if let Some(o) = st.open.take() {
                    tracing::info!(trip = ?o.trip, down_ms = o.since.elapsed().as_millis() as u64,
                        "store circuit closed: the store answers again");
                }
                metrics::gauge!(STORE_UP).set(1.0);
                metrics::gauge!(STORAGE_FULL).set(0.0);
                break;
            }
            Ok(Err(StoreError::Full(_))) => {
                if let Some(o) = &mut st.open {
                    o.trip = Trip::Full;
                }
                metrics::gauge!(STORAGE_FULL).set(1.0);
            }
            Ok(Err(_)) | Err(_) => {
                if let Some(o) = &mut st.open {
                    o.trip = Trip::Unreachable;
                }
                metrics::gauge!(STORAGE_FULL).set(0.0);
            }
        }
    }
    CircuitStore::lock(&state).probing = false;
}

/// A call that reads: refused only while the store is unreachable.
macro_rules! read {
    ($self:ident, $call:expr) => {{
        $self.refuse(false)?;
        $self.seen($call.await)
    }};
}

/// A call that writes: refused while the circuit is open for any reason.
macro_rules! write {
    ($self:ident, $call:expr) => {{
        $self.refuse(true)?;
        $self.seen($call.await)
    }};
}

#[async_trait]
impl Store for CircuitStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    /// Refused with the circuit's reason while it is open for any reason, so
    /// `/readyz` says at once that the store is down or full.
    async fn ping(&self) -> Result<(), StoreError> {
        write!(self, self.inner.ping())
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        self.seen(self.inner.probe_write().await)
    }
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        write!(self, self.inner.enqueue_many(jobs))
    }
    async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        read!(self, self.inner.get(id))
    }
    async fn list(&self, q: &ListJobs) -> Result<JobPage, StoreError> {
        read!(self, self.inner.list(q))
    }
    async fn claim(&self, p: &ClaimParams) -> Result<Vec<Job>, StoreError> {
        write!(self, self.inner.claim(p))
    }
    async fn extend_leases(
        &self,
        l: &[JobLease],
        d: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        write!(self, self.inner.extend_leases(l, d))
    }
    async fn ack(&self, acks: &[Ack]) -> Result<Vec<bool>, StoreError> {
        write!(self, self.inner.ack(acks))
    }
    async fn set_progress(&self, l: &JobLease, p: u8) -> Result<bool, StoreError> {
        write!(self, self.inner.set_progress(l, p))
    }
    async fn request_cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        write!(self, self.inner.request_cancel(id))
    }
    async fn retry(&self, id: Uuid) -> Result<Job, StoreError> {
        write!(self, self.inner.retry(id))
    }
    async fn find_expired(&self, limit: u32) -> Result<Vec<JobLease>, StoreError> {
        read!(self, self.inner.find_expired(limit))
    }
    async fn rescue(&self, l: &[JobLease]) -> Result<Vec<Uuid>, StoreError> {
        write!(self, self.inner.rescue(l))
    }
    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        read!(self, self.inner.next_run_at())
    }
    async fn counts(&self) -> Result<Vec<QueueCount>, StoreError> {
        read!(self, self.inner.counts())
    }
    async fn owner_counts(&self, owner: &str) -> Result<Vec<QueueCount>, StoreError> {
        read!(self, self.inner.owner_counts(owner))
    }
    async fn live_counts(&self) -> Result<Vec<LiveCount>, StoreError> {
        read!(self, self.inner.live_counts())
    }
    async fn concurrency_keys(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<kyu_actors::store::KeyState>, StoreError> {
        read!(self, self.inner.concurrency_keys(after, limit))
    }
    async fn set_queue_paused(&self, q: &str, paused: bool) -> Result<(), StoreError> {
        write!(self, self.inner.set_queue_paused(q, paused))
    }
    async fn queues(&self) -> Result<Vec<QueueState>, StoreError> {
        read!(self, self.inner.queues())
    }
    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        write!(self, self.inner.prune(before, limit))
    }
    async fn heartbeat(&self, node: &NodeInfo) -> Result<(), StoreError> {
        write!(self, self.inner.heartbeat(node))
    }
    async fn nodes(&self, dead_after: Duration) -> Result<Vec<NodeRecord>, StoreError> {
        read!(self, self.inner.nodes(dead_after))
    }
    async fn deregister(&self, id: &str) -> Result<(), StoreError> {
        write!(self, self.inner.deregister(id))
    }
    async fn tidy_claim_indexes(&self) -> Result<bool, StoreError> {
        write!(self, self.inner.tidy_claim_indexes())
    }
    async fn prune_nodes(&self, dead_for: Duration) -> Result<u64, StoreError> {
        write!(self, self.inner.prune_nodes(dead_for))
    }
    async fn acquire_leadership(
        &self,
        name: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        write!(self, self.inner.acquire_leadership(name, node, ttl))
    }
    async fn release_leadership(&self, name: &str, node: &str) -> Result<bool, StoreError> {
        write!(self, self.inner.release_leadership(name, node))
    }
    async fn find_orphaned(
        &self,
        dead_after: Duration,
        limit: u32,
    ) -> Result<Vec<JobLease>, StoreError> {
        read!(self, self.inner.find_orphaned(dead_after, limit))
    }
    async fn cron_last_tick(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        read!(self, self.inner.cron_last_tick(name))
    }
    async fn rescue_orphaned(
        &self,
        l: &[JobLease],
        dead_after: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        write!(self, self.inner.rescue_orphaned(l, dead_after))
    }
    async fn enqueue_cron(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        job: NewJob,
    ) -> Result<Option<Enqueued>, StoreError> {
        write!(self, self.inner.enqueue_cron(name, tick, job))
    }

    async fn enqueue_workflow(&self, wf: NewWorkflow) -> Result<WorkflowCreated, StoreError> {
        write!(self, self.inner.enqueue_workflow(wf))
    }
    async fn workflow(&self, id: Uuid) -> Result<Option<WorkflowRecord>, StoreError> {
        read!(self, self.inner.workflow(id))
    }
    async fn list_workflows(&self, q: &ListWorkflows) -> Result<WorkflowPage, StoreError> {
        read!(self, self.inner.list_workflows(q))
    }
    async fn cancel_workflow(&self, id: Uuid) -> Result<u64, StoreError> {
        write!(self, self.inner.cancel_workflow(id))
    }
    async fn dependencies(&self, id: Uuid) -> Result<Vec<Dependency>, StoreError> {
        read!(self, self.inner.dependencies(id))
    }
}
