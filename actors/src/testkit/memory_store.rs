//! An in-memory [`Store`] for engine tests (Oban's `inline`, apalis' `memory`). It
//! follows the same contract as the SQL stores and reads time from the injected clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::error::{AttemptError, ErrorKind};
use crate::job::{Job, NewJob};
use crate::status::JobStatus;
use crate::store::{
    Ack, CancelOutcome, ClaimParams, Enqueued, JobLease, JobPage, LeaseState, ListJobs, LiveCount,
    MAX_PAGE, NodeInfo, NodeRecord, Outcome, QueueCount, QueueState, Store, StoreError,
    validate_new_job,
};

/// Epoch microseconds.
fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

#[derive(Default)]
struct State {
    jobs: BTreeMap<Uuid, Job>,
    paused: HashMap<String, bool>,
    /// Node id → (what it registered, last heartbeat).
    nodes: BTreeMap<String, (NodeInfo, DateTime<Utc>)>,
    /// Lease name → (holder, expiry).
    leaders: HashMap<String, (String, DateTime<Utc>)>,
    /// Cron entry → last tick enqueued.
    cron: HashMap<String, DateTime<Utc>>,
    /// Concurrency key → the limit its latest job carried.
    key_limits: HashMap<String, u32>,
    /// Each job's fair time (epoch µs), see [`crate::fair_share`].
    fair_at: HashMap<Uuid, i64>,
    fair: crate::fair_share::FairClocks,
}

impl State {
    /// Whether `owner` is a registered node that stopped heartbeating before `cutoff`.
    fn dead(&self, owner: &str, cutoff: DateTime<Utc>) -> bool {
        self.nodes.get(owner).is_some_and(|(_, hb)| *hb < cutoff)
    }

    fn insert(&mut self, jobs: Vec<NewJob>, now: DateTime<Utc>) -> Vec<Enqueued> {
        let mut out = Vec::with_capacity(jobs.len());
        for n in jobs {
            if let Some(key) = &n.unique_key
                && let Some(existing) = self
                    .jobs
                    .values()
                    .find(|j| live(j) && j.unique_key.as_deref() == Some(key))
            {
                out.push(Enqueued {
                    id: existing.id,
                    duplicate: true,
                });
                continue;
            }
            let run_at = n.run_at.resolve(now);
            let at = self
                .fair
                .assign(&[(n.share(), micros(run_at))], micros(now));
            self.fair_at.insert(n.id, at[0]);
            if let Some(c) = &n.concurrency {
                self.key_limits.insert(c.key.clone(), c.limit);
            }
            let job = Job {
                id: n.id,
                queue: n.queue,
                job_type: n.job_type,
                provider: n.provider,
                priority: n.priority,
                payload: n.payload,
                status: if run_at > now {
                    JobStatus::Scheduled
                } else {
                    JobStatus::Queued
                },
                progress: 0,
                result: None,
                errors: Vec::new(),
                attempts: 0,
                max_attempts: n.max_attempts,
                run_at,
                timeout: Duration::from_millis(n.timeout.as_millis() as u64),
                unique_key: n.unique_key,
                owner: n.owner,
                lease_owner: None,
                lease_expires_at: None,
                cancel_requested: false,
                created_at: now,
                started_at: None,
                finished_at: None,
                updated_at: now,
                workflow_id: None,
                workflow_key: None,
                dependency_results: Default::default(),
                concurrency_key: n.concurrency.map(|c| c.key),
            };
            out.push(Enqueued {
                id: job.id,
                duplicate: false,
            });
            self.jobs.insert(job.id, job);
        }
        out
    }

    /// Puts a running job whose node is gone back in line (or fails it).
    fn rescue_job(&mut self, id: Uuid, message: &str, now: DateTime<Utc>) {
        if let Some(j) = self.jobs.get_mut(&id) {
            j.errors.push(AttemptError {
                attempt: j.attempts,
                kind: ErrorKind::Retryable,
                message: message.into(),
                at: now,
            });
            if j.attempts < j.max_attempts {
                j.status = JobStatus::Queued;
            } else {
                j.status = JobStatus::Failed;
                j.finished_at = Some(now);
            }
            j.lease_owner = None;
            j.lease_expires_at = None;
            j.updated_at = now;
        }
    }
}

/// Jobs in a mutex'd map.
pub struct MemoryStore {
    state: Mutex<State>,
    clock: SharedClock,
    /// How long each claim takes before it answers (a slow database).
    claim_delay: Mutex<Duration>,
    /// Every job id whose lease an `extend_leases` call renewed, in order.
    extended: Mutex<Vec<Uuid>>,
    /// While true, acks wait (a database slow to write them).
    acks_held: tokio::sync::watch::Sender<bool>,
}

impl MemoryStore {
    pub fn new(clock: SharedClock) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(State::default()),
            clock,
            claim_delay: Mutex::new(Duration::ZERO),
            extended: Mutex::new(Vec::new()),
            acks_held: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Holds every ack (written when released) or releases them.
    pub fn hold_acks(&self, held: bool) {
        self.acks_held.send_replace(held);
    }

    /// Makes every claim take `d` (real time) before it answers.
    pub fn set_claim_delay(&self, d: Duration) {
        *self.claim_delay.lock().unwrap_or_else(|e| e.into_inner()) = d;
    }

    fn claim_now(&self, p: &ClaimParams) -> Result<Vec<Job>, StoreError> {
        let now = self.clock.now();
        let mut st = self.lock();
        let st = &mut *st;
        for j in st.jobs.values_mut() {
            if j.status == JobStatus::Scheduled && j.run_at <= now {
                j.status = JobStatus::Queued;
                j.updated_at = now;
                st.fair_at.insert(j.id, micros(j.run_at));
            }
        }
        let paused: HashSet<String> = st
            .paused
            .iter()
            .filter(|(_, p)| **p)
            .map(|(q, _)| q.clone())
            .collect();
        let mut ready: Vec<&Job> = st
            .jobs
            .values()
            .filter(|j| {
                j.status == JobStatus::Queued
                    && !paused.contains(&j.queue)
                    && p.types.contains(&j.job_type)
                    && p.queues.as_ref().is_none_or(|q| q.contains(&j.queue))
            })
            .collect();
        let aged = p.aged_before.map(|d| micros(now - chrono_d(d)));
        let fair = |j: &Job| st.fair_at.get(&j.id).copied().unwrap_or(micros(j.run_at));
        ready.sort_by(|a, b| {
            let old = |j: &Job| aged.is_some_and(|t| fair(j) <= t);
            old(b)
                .cmp(&old(a))
                .then_with(|| {
                    if old(a) && old(b) {
                        std::cmp::Ordering::Equal
                    } else {
                        b.priority.cmp(&a.priority)
                    }
                })
                .then(fair(a).cmp(&fair(b)))
                .then(a.id.cmp(&b.id))
        });
        // A keyed job starts only while its key runs fewer than its limit.
        let mut running: HashMap<&str, u32> = HashMap::new();
        for j in st.jobs.values().filter(|j| j.status == JobStatus::Running) {
            if let Some(k) = &j.concurrency_key {
                *running.entry(k.as_str()).or_default() += 1;
            }
        }
        let mut ids: Vec<Uuid> = Vec::new();
        for j in ready {
            if ids.len() >= p.limit as usize {
                break;
            }
            if let Some(k) = &j.concurrency_key {
                let n = running.entry(k.as_str()).or_default();
                if *n >= st.key_limits.get(k).copied().unwrap_or(1) {
                    continue;
                }
                *n += 1;
            }
            ids.push(j.id);
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(j) = st.jobs.get_mut(&id) {
                j.status = JobStatus::Running;
                j.attempts += 1;
                j.progress = 0;
                j.lease_owner = Some(p.owner.clone());
                j.lease_expires_at = Some(now + chrono_d(p.lease));
                j.started_at = Some(now);
                j.updated_at = now;
                out.push(j.clone());
            }
        }
        Ok(out)
    }

    /// The jobs whose leases were renewed so far.
    pub fn extended(&self) -> Vec<Uuid> {
        self.extended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn chrono_d(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn holds(job: &Job, l: &JobLease) -> bool {
    job.status == JobStatus::Running
        && job.attempts == l.attempt
        && job.lease_owner.as_deref() == Some(l.owner.as_str())
}

fn live(job: &Job) -> bool {
    !job.status.is_final()
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        for j in &jobs {
            validate_new_job(j)?;
        }
        let now = self.clock.now();
        Ok(self.lock().insert(jobs, now))
    }

    async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        Ok(self.lock().jobs.get(&id).cloned())
    }

    async fn list(&self, q: &ListJobs) -> Result<JobPage, StoreError> {
        let limit = q.limit.clamp(1, MAX_PAGE) as usize;
        let st = self.lock();
        let mut jobs: Vec<Job> = st
            .jobs
            .values()
            .rev()
            .filter(|j| q.cursor.is_none_or(|c| j.id < c))
            .filter(|j| q.job_type.as_ref().is_none_or(|t| &j.job_type == t))
            .filter(|j| q.status.is_none_or(|s| j.status == s))
            .filter(|j| q.queue.as_ref().is_none_or(|x| &j.queue == x))
            .filter(|j| q.owner.as_ref().is_none_or(|o| j.owner.as_ref() == Some(o)))
            .take(limit + 1)
            .cloned()
            .collect();
        let more = jobs.len() > limit;
        jobs.truncate(limit);
        let next_cursor = if more {
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        Ok(JobPage { jobs, next_cursor })
    }

    async fn claim(&self, p: &ClaimParams) -> Result<Vec<Job>, StoreError> {
        let delay = *self.claim_delay.lock().unwrap_or_else(|e| e.into_inner());
        if !delay.is_zero() {
            // The claim is made at once and answered late, as a slow database would.
            let jobs = self.claim_now(p)?;
            tokio::time::sleep(delay).await;
            return Ok(jobs);
        }
        self.claim_now(p)
    }

    async fn extend_leases(
        &self,
        leases: &[JobLease],
        lease: Duration,
    ) -> Result<Vec<LeaseState>, StoreError> {
        let now = self.clock.now();
        self.extended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(leases.iter().map(|l| l.id));
        let mut st = self.lock();
        Ok(leases
            .iter()
            .map(|l| match st.jobs.get_mut(&l.id) {
                Some(j) if holds(j, l) => {
                    j.lease_expires_at = Some(now + chrono_d(lease));
                    j.updated_at = now;
                    LeaseState {
                        id: l.id,
                        held: true,
                        cancel_requested: j.cancel_requested,
                    }
                }
                _ => LeaseState {
                    id: l.id,
                    held: false,
                    cancel_requested: false,
                },
            })
            .collect())
    }

    async fn ack(&self, acks: &[Ack]) -> Result<Vec<bool>, StoreError> {
        let mut held = self.acks_held.subscribe();
        let _ = held.wait_for(|held| !*held).await;
        let now = self.clock.now();
        let mut st = self.lock();
        Ok(acks
            .iter()
            .map(|a| {
                let Some(j) = st.jobs.get_mut(&a.lease.id) else {
                    return false;
                };
                if !holds(j, &a.lease) {
                    return false;
                }
                match &a.outcome {
                    Outcome::Completed { result } => {
                        j.status = JobStatus::Completed;
                        j.result = Some(result.clone());
                        j.progress = 100;
                        j.finished_at = Some(now);
                    }
                    Outcome::Retry { delay, error } => {
                        j.status = JobStatus::Scheduled;
                        j.errors.push(error.clone());
                        j.run_at = now + chrono_d(*delay);
                    }
                    Outcome::Failed { error } => {
                        j.status = JobStatus::Failed;
                        j.errors.push(error.clone());
                        j.finished_at = Some(now);
                    }
                    Outcome::Canceled { error } => {
                        j.status = JobStatus::Canceled;
                        j.errors.push(error.clone());
                        j.finished_at = Some(now);
                    }
                    Outcome::Snoozed { delay } => {
                        j.status = JobStatus::Scheduled;
                        j.run_at = now + chrono_d(*delay);
                        j.attempts -= 1;
                    }
                    Outcome::Released { uncount } => {
                        j.status = JobStatus::Queued;
                        if *uncount {
                            j.attempts -= 1;
                        }
                    }
                }
                j.lease_owner = None;
                j.lease_expires_at = None;
                j.updated_at = now;
                true
            })
            .collect())
    }

    async fn set_progress(&self, l: &JobLease, progress: u8) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut st = self.lock();
        match st.jobs.get_mut(&l.id) {
            Some(j) if holds(j, l) => {
                j.progress = progress.min(100);
                j.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn request_cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        let now = self.clock.now();
        let mut st = self.lock();
        let j = st.jobs.get_mut(&id).ok_or(StoreError::NotFound(id))?;
        match j.status {
            JobStatus::Queued | JobStatus::Scheduled => {
                j.status = JobStatus::Canceled;
                j.finished_at = Some(now);
                j.updated_at = now;
                Ok(CancelOutcome::Canceled(j.clone()))
            }
            JobStatus::Running => {
                j.cancel_requested = true;
                j.updated_at = now;
                Ok(CancelOutcome::Requested(j.clone()))
            }
            status => Err(StoreError::InvalidTransition {
                id,
                status,
                action: "cancel",
            }),
        }
    }

    async fn retry(&self, id: Uuid) -> Result<Job, StoreError> {
        let now = self.clock.now();
        let mut st = self.lock();
        let j = st.jobs.get_mut(&id).ok_or(StoreError::NotFound(id))?;
        if !j.status.is_retryable_by_user() {
            return Err(StoreError::InvalidTransition {
                id,
                status: j.status,
                action: "retry",
            });
        }
        j.status = JobStatus::Queued;
        j.run_at = now;
        j.finished_at = None;
        j.cancel_requested = false;
        j.max_attempts = j.max_attempts.max(j.attempts + 1);
        j.updated_at = now;
        let j = j.clone();
        st.fair_at.insert(id, micros(now));
        Ok(j)
    }

    async fn find_expired(&self, limit: u32) -> Result<Vec<JobLease>, StoreError> {
        let now = self.clock.now();
        let st = self.lock();
        let mut expired: Vec<&Job> = st
            .jobs
            .values()
            .filter(|j| {
                j.status == JobStatus::Running && j.lease_expires_at.is_some_and(|t| t < now)
            })
            .collect();
        expired.sort_by_key(|j| j.lease_expires_at);
        Ok(expired
            .into_iter()
            .take(limit as usize)
            .filter_map(|j| j.lease())
            .collect())
    }

    async fn rescue(&self, leases: &[JobLease]) -> Result<Vec<Uuid>, StoreError> {
        let now = self.clock.now();
        let mut st = self.lock();
        let mut out = Vec::new();
        for l in leases {
            let expired = st
                .jobs
                .get(&l.id)
                .is_some_and(|j| holds(j, l) && j.lease_expires_at.is_some_and(|t| t < now));
            if !expired {
                continue;
            }
            st.rescue_job(
                l.id,
                "lease expired: the node running this attempt died or stalled",
                now,
            );
            out.push(l.id);
        }
        Ok(out)
    }

    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self
            .lock()
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Scheduled)
            .map(|j| j.run_at)
            .min())
    }

    async fn counts(&self) -> Result<Vec<QueueCount>, StoreError> {
        let mut c: BTreeMap<(String, JobStatus), u64> = BTreeMap::new();
        for j in self.lock().jobs.values() {
            *c.entry((j.queue.clone(), j.status)).or_default() += 1;
        }
        Ok(c.into_iter()
            .map(|((queue, status), count)| QueueCount {
                queue,
                status,
                count,
            })
            .collect())
    }

    async fn owner_counts(&self, owner: &str) -> Result<Vec<QueueCount>, StoreError> {
        let mut c: BTreeMap<(String, JobStatus), u64> = BTreeMap::new();
        for j in self
            .lock()
            .jobs
            .values()
            .filter(|j| j.owner.as_deref() == Some(owner))
        {
            *c.entry((j.queue.clone(), j.status)).or_default() += 1;
        }
        Ok(c.into_iter()
            .map(|((queue, status), count)| QueueCount {
                queue,
                status,
                count,
            })
            .collect())
    }

    async fn live_counts(&self) -> Result<Vec<LiveCount>, StoreError> {
        let mut c: BTreeMap<(String, JobStatus), (u64, DateTime<Utc>)> = BTreeMap::new();
        for j in self.lock().jobs.values().filter(|j| live(j)) {
            let e = c
                .entry((j.queue.clone(), j.status))
                .or_insert((0, j.run_at));
            e.0 += 1;
            e.1 = e.1.min(j.run_at);
        }
        Ok(c.into_iter()
            .map(|((queue, status), (count, oldest))| LiveCount {
                queue,
                status,
                count,
                oldest_run_at: Some(oldest),
            })
            .collect())
    }

    async fn concurrency_keys(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<crate::store::KeyState>, StoreError> {
        let st = self.lock();
        let mut keys: BTreeMap<&str, crate::store::KeyState> = BTreeMap::new();
        for j in st.jobs.values() {
            let Some(k) = j.concurrency_key.as_deref() else {
                continue;
            };
            if after.as_deref().is_some_and(|a| k <= a) {
                continue;
            }
            let e = keys.entry(k).or_insert_with(|| crate::store::KeyState {
                key: k.to_owned(),
                limit: st.key_limits.get(k).copied().unwrap_or(1),
                running: 0,
                queued: 0,
            });
            match j.status {
                JobStatus::Running => e.running += 1,
                JobStatus::Queued => e.queued += 1,
                _ => {}
            }
        }
        Ok(keys
            .into_values()
            .filter(|k| k.queued > 0)
            .take(limit as usize)
            .collect())
    }
    async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        self.lock().paused.insert(queue.to_owned(), paused);
        Ok(())
    }

    async fn queues(&self) -> Result<Vec<QueueState>, StoreError> {
        let st = self.lock();
        let mut names: BTreeMap<String, bool> =
            st.jobs.values().map(|j| (j.queue.clone(), false)).collect();
        for (q, p) in &st.paused {
            names.insert(q.clone(), *p);
        }
        Ok(names
            .into_iter()
            .map(|(name, paused)| QueueState { name, paused })
            .collect())
    }

    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let mut st = self.lock();
        let mut old: Vec<(DateTime<Utc>, Uuid)> = st
            .jobs
            .values()
            .filter(|j| j.status.is_final() && j.finished_at.is_some_and(|t| t < before))
            .filter_map(|j| j.finished_at.map(|t| (t, j.id)))
            .collect();
        old.sort();
        let n = old.len().min(limit as usize);
        for (_, id) in old.into_iter().take(n) {
            st.jobs.remove(&id);
        }
        Ok(n as u64)
    }

    async fn heartbeat(&self, node: &NodeInfo) -> Result<(), StoreError> {
        let now = self.clock.now();
        self.lock()
            .nodes
            .insert(node.id.clone(), (node.clone(), now));
        Ok(())
    }

    async fn nodes(&self, dead_after: Duration) -> Result<Vec<NodeRecord>, StoreError> {
        let now = self.clock.now();
        let cutoff = now - chrono_d(dead_after);
        let st = self.lock();
        Ok(st
            .nodes
            .values()
            .filter(|(_, hb)| *hb >= cutoff)
            .map(|(info, hb)| NodeRecord {
                info: info.clone(),
                heartbeat_at: *hb,
                leader: st
                    .leaders
                    .values()
                    .any(|(n, exp)| *n == info.id && *exp > now),
            })
            .collect())
    }

    async fn deregister(&self, id: &str) -> Result<(), StoreError> {
        self.lock().nodes.remove(id);
        Ok(())
    }

    async fn prune_nodes(&self, dead_for: Duration) -> Result<u64, StoreError> {
        let cutoff = self.clock.now() - chrono_d(dead_for);
        let mut st = self.lock();
        let before = st.nodes.len();
        st.nodes.retain(|_, (_, hb)| *hb >= cutoff);
        Ok((before - st.nodes.len()) as u64)
    }

    async fn acquire_leadership(
        &self,
        name: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut st = self.lock();
        let free = st
            .leaders
            .get(name)
            .is_none_or(|(holder, exp)| holder == node || *exp <= now);
        if free {
            st.leaders
                .insert(name.to_owned(), (node.to_owned(), now + chrono_d(ttl)));
        }
        Ok(free)
    }

    async fn release_leadership(&self, name: &str, node: &str) -> Result<bool, StoreError> {
        let mut st = self.lock();
        if st
            .leaders
            .get(name)
            .is_some_and(|(holder, _)| holder == node)
        {
            st.leaders.remove(name);
            return Ok(true);
        }
        Ok(false)
    }

    async fn find_orphaned(
        &self,
        dead_after: Duration,
        limit: u32,
    ) -> Result<Vec<JobLease>, StoreError> {
        let cutoff = self.clock.now() - chrono_d(dead_after);
        let st = self.lock();
        let mut orphans: Vec<&Job> = st
            .jobs
            .values()
            .filter(|j| {
                j.status == JobStatus::Running
                    && j.lease_owner.as_deref().is_some_and(|o| st.dead(o, cutoff))
            })
            .collect();
        orphans.sort_by_key(|j| j.lease_expires_at);
        Ok(orphans
            .into_iter()
            .take(limit as usize)
            .filter_map(|j| j.lease())
            .collect())
    }

    async fn rescue_orphaned(
        &self,
        leases: &[JobLease],
        dead_after: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        let now = self.clock.now();
        let cutoff = now - chrono_d(dead_after);
        let mut st = self.lock();
        let mut out = Vec::new();
        for l in leases {
            let fenced = st.jobs.get(&l.id).is_some_and(|j| holds(j, l));
            if !fenced || !st.dead(&l.owner, cutoff) {
                continue;
            }
            st.rescue_job(
                l.id,
                "node died: the node running this attempt stopped heartbeating",
                now,
            );
            out.push(l.id);
        }
        Ok(out)
    }

    async fn cron_last_tick(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.lock().cron.get(name).copied())
    }

    async fn enqueue_cron(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        job: NewJob,
    ) -> Result<Option<Enqueued>, StoreError> {
        validate_new_job(&job)?;
        let now = self.clock.now();
        let mut st = self.lock();
        if st.cron.get(name).is_some_and(|last| *last >= tick) {
            return Ok(None);
        }
        st.cron.insert(name.to_owned(), tick);
        Ok(st.insert(vec![job], now).pop())
    }
}
