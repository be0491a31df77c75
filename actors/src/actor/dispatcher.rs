//! Dispatcher: claims due jobs in batches sized to the pool's appetite, keeps them in
//! claim order (aged first, then priority — the store decides), and starts the first
//! eligible one whenever a worker slot is free. A job whose provider has no token is
//! skipped, not waited on, so other providers go ahead; if its wait is long it is put
//! back in the store for later. A job that fails rate-limited with a Retry-After puts
//! its provider in a cool-down (shared by all nodes with the Redis limiter). Handlers
//! run in their own tasks, never in `handle`.
//!
//! Worker slots: the pool is `pool_size` slots; a slot runs one job at a time. A
//! handler that panics fails its attempt (kind `panic`) and its slot is replaced.
//! Leases of claimed jobs are renewed every third of the lease; a lost lease or a
//! cancel request fires the job's token.
//!
//! Metrics: wait time (due → start) and run time per attempt, busy/idle slots, and
//! jobs held back for a provider token (once per job).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::acker::{AckerMsg, JobLabels};
use super::remote_fetches::RemoteFetches;
use super::{Counters, Deps};
use crate::error::JobError;
use crate::events::EngineEvent;
use crate::handler::{JobContext, Progress};
use crate::job::Job;
use crate::prefetch::{Appetite, Prefetch};
use crate::rate_limit::RateLimits;
use crate::remote::PendingFetch;
use crate::run::{RunResult, outcome_for, run_attempt};
use crate::store::{Ack, ClaimParams, LeaseState, Outcome, StoreError};
use crate::telemetry;

/// Claims that may be in flight at once.
const MAX_CLAIMS_IN_FLIGHT: usize = 2;

/// After a claim comes back short the dispatcher waits for a wake-up, but looks once
/// more after this long: a job committed as the claim ran (on another connection or
/// node, its `run_at` a few ms ahead of the claim's clock) is not left until the next
/// wake-up or poll. One extra claim per wake-up, not a loop; none if another claim
/// started meanwhile (that claim sees the same jobs, and looks again itself if short).
const RECHECK_AFTER: Duration = Duration::from_millis(25);

/// A wait longer than this for a provider token sends the job back to the store.
const SNOOZE_AFTER: Duration = Duration::from_millis(500);

pub struct Dispatcher;

pub enum DispatcherMsg {
    /// Something may be claimable (enqueue, rescue, due job, token available).
    Wake,
    /// The fallback poll (`poll_interval`): the local pool looks again; waiting remote
    /// fetches do only where no wake-up reaches this node (`fetch_on_poll`).
    Poll,
    /// A remote worker's fetch.
    Fetch(PendingFetch),
    /// A claim for the waiting fetch with this id returned.
    FetchClaimed(u64, Result<Vec<Job>, StoreError>),
    /// A remote worker was asked to stop: answer its waiting fetches now.
    StopWorker(String),
    /// Jobs fall due at these times (delayed enqueues, retries, snoozes): waiting remote
    /// fetches claim again then, whoever moves the jobs to `queued`.
    DueAt(Vec<chrono::DateTime<chrono::Utc>>),
    /// The earliest of those times came.
    DueTimer,
    /// The one look again after a short claim ([`RECHECK_AFTER`]), with the count of
    /// claims sent when it was armed.
    Recheck(u64),
    /// The acker wrote outcomes this dispatcher held a claim back for.
    AcksWritten,
    /// A claim for this many jobs returned, after this long.
    Claimed(u32, Result<Vec<Job>, StoreError>, Duration),
    Finished(Uuid, RunResult),
    Renew,
    /// A renewal's answer, and when it was sent.
    Renewed(Result<Vec<LeaseState>, StoreError>, tokio::time::Instant),
    /// In-process fast path for a cancel request already stored.
    Cancel(Uuid),
    SetPoolSize(usize),
    SetAcker(ActorRef<AckerMsg>),
    Stats(RpcReplyPort<DispatcherStats>),
    /// Stop claiming, give back unstarted jobs; reply when no job runs.
    Drain(RpcReplyPort<()>),
    /// After the grace period: stop the jobs still running and give them back.
    ReleaseRunning(RpcReplyPort<usize>),
}

/// A snapshot for the autoscaler, the API and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DispatcherStats {
    pub pool_size: usize,
    pub busy: usize,
    pub prefetched: usize,
    /// The last claim came back full, or jobs wait for a slot.
    pub backlog: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Canceled,
    LeaseLost,
    Shutdown,
}

struct Running {
    job: Job,
    token: CancellationToken,
    stop: Option<StopReason>,
    started: tokio::time::Instant,
}

pub struct DispatcherState {
    deps: Arc<Deps>,
    acker: ActorRef<AckerMsg>,
    pool_size: usize,
    pending: VecDeque<Job>,
    /// Until when each pending job's lease surely holds (the claim or renewal that set
    /// it was sent before the store started the lease): a job held ahead starts only
    /// with a third of its lease left at least, else it is renewed first, so a claim
    /// that came back late never starts a job the leader may already be rescuing.
    lease_until: HashMap<Uuid, tokio::time::Instant>,
    /// A renewal is on its way.
    renewing: bool,
    running: HashMap<Uuid, Running>,
    /// Claims in flight, and the jobs they asked for.
    claims_in_flight: usize,
    /// Claims sent so far: a recheck armed before the latest claim started is moot.
    claims_sent: u64,
    requested: usize,
    /// Measured job and claim times: how far ahead to claim.
    appetite: Appetite,
    /// A wake-up came while a claim was in flight: claim again when it returns.
    rewake: bool,
    /// The current claim comes from a [`DispatcherMsg::Recheck`]: if it comes back short
    /// too, the dispatcher parks for good (until a wake-up).
    rechecking: bool,
    /// The last claim took every claimable job (it came back short of its limit) and no
    /// wake-up came since: nothing is claimed until one does (an enqueue, a due job, a
    /// written ack that freed a key or settled a workflow, the recheck, the poll). A
    /// finished job alone does not make a job claimable; without this, every job that
    /// finished sent an empty claim through the store's one writer.
    dry: bool,
    backlog: bool,
    draining: bool,
    drain_waiters: Vec<RpcReplyPort<()>>,
    token_wake_at: Option<tokio::time::Instant>,
    /// Pending jobs already counted as held back for a provider token.
    held: HashSet<Uuid>,
    /// The types this pool runs (remote types are left to remote workers).
    local_types: Vec<String>,
    /// Remote workers' fetches waiting for a job.
    remote: RemoteFetches,
    /// When jobs fall due, for waiting fetches (one timer for the earliest).
    due: std::collections::BTreeSet<tokio::time::Instant>,
    due_timer_at: Option<tokio::time::Instant>,
}

impl DispatcherState {
    fn ack(&self, job: &Job, outcome: Outcome) {
        if let Some(lease) = job.lease() {
            let labels = JobLabels {
                queue: job.queue.clone(),
                job_type: job.job_type.clone(),
                workflow: job.workflow_id.is_some(),
                keyed: job.concurrency_key.is_some(),
            };
            let _ = self
                .acker
                .cast(AckerMsg::Ack(Ack { lease, outcome }, Some(labels)));
        }
    }

    /// Publishes the pool's busy and idle slots.
    fn publish_workers(&self) {
        let busy = self.running.len();
        metrics::gauge!(telemetry::WORKERS, "kind" => "local", "state" => "busy").set(busy as f64);
        metrics::gauge!(telemetry::WORKERS, "kind" => "local", "state" => "idle")
            .set(self.pool_size.saturating_sub(busy) as f64);
    }

    /// Counts a job held back for its provider's token, once per job.
    fn count_held(&mut self, id: Uuid, provider: &str) {
        if self.held.len() > self.pending.len() {
            let pending: HashSet<Uuid> = self.pending.iter().map(|j| j.id).collect();
            self.held.retain(|id| pending.contains(id));
        }
        if self.held.insert(id) {
            metrics::counter!(telemetry::RATE_LIMIT_WAITS, "provider" => provider.to_owned())
                .increment(1);
        }
    }

    /// How many claimed-but-unstarted jobs to keep.
    fn prefetch_target(&self) -> usize {
        let free = self.pool_size.saturating_sub(self.running.len());
        let mode = self.deps.config.prefetch;
        // Only the measured appetite looks at running jobs (one pass over the pool).
        let running_for = match mode {
            Prefetch::PerWorker(_) => 0.0,
            Prefetch::Auto { .. } => self
                .running
                .values()
                .map(|r| r.started.elapsed().as_secs_f64())
                .fold(0.0, f64::max),
        };
        self.appetite
            .target(mode, self.pool_size, free, running_for)
    }

    async fn pump(&mut self, me: &ActorRef<DispatcherMsg>) {
        self.start_eligible(me).await;
        if self.draining {
            self.answer_drain();
            return;
        }
        // Refill at the low-water mark (half the prefetch), not after every job: a
        // claim costs about the same for 1 job or 100, so claim few and large. A
        // second claim may overlap the first, so fast jobs do not wait a round trip.
        let target = self.prefetch_target();
        let have = self.pending.len() + self.requested;
        let free = self.pool_size.saturating_sub(self.running.len());
        if self.claims_in_flight < MAX_CLAIMS_IN_FLIGHT
            && !self.dry
            && have < target
            && (have < free || have <= target / 2)
        {
            // More than a full batch of outcomes waits behind the one being written:
            // the acker is behind, and jobs claimed now would only widen the gap.
            if self.deps.unwritten.over(2 * self.deps.config.ack_batch) {
                let behind = self.deps.unwritten.get();
                self.deps.events.emit(EngineEvent::AcksBehind(behind));
                return;
            }
            let limit = (target.saturating_sub(have) as u32).clamp(1, self.deps.config.claim_batch);
            self.claims_in_flight += 1;
            self.claims_sent += 1;
            self.requested += limit as usize;
            let params = ClaimParams {
                owner: self.deps.owner.clone(),
                limit,
                lease: self.deps.config.lease,
                aged_before: Some(self.deps.config.aging_bound),
                types: self.local_types.clone(),
                queues: None,
            };
            let store = self.deps.store.clone();
            let me = me.clone();
            tokio::spawn(async move {
                let sent = tokio::time::Instant::now();
                let r = store.claim(&params).await;
                let _ = me.cast(DispatcherMsg::Claimed(params.limit, r, sent.elapsed()));
            });
        }
    }

    async fn start_eligible(&mut self, me: &ActorRef<DispatcherMsg>) {
        let mut i = 0;
        let mut soonest: Option<Duration> = None;
        // Providers that said "wait" in this pass are not asked again for the next job:
        // with a shared (Redis) limiter every ask is a round trip.
        let mut empty: HashMap<String, Duration> = HashMap::new();
        let fresh_after = tokio::time::Instant::now() + self.deps.config.lease / 3;
        let mut stale = false;
        while self.running.len() < self.pool_size && i < self.pending.len() {
            if self
                .lease_until
                .get(&self.pending[i].id)
                .is_some_and(|until| *until <= fresh_after)
            {
                stale = true;
                i += 1;
                continue;
            }
            let provider = self.pending[i].provider.clone();
            if let Some(p) = provider {
                let now = self.deps.clock.now();
                let took = match empty.get(&p) {
                    Some(wait) => Err(*wait),
                    None => self.deps.limiter.try_acquire(&p, now).await,
                };
                if let Err(wait) = took {
                    empty.entry(p.clone()).or_insert(wait);
                    let id = self.pending[i].id;
                    self.count_held(id, &p);
                    if wait > SNOOZE_AFTER {
                        self.held.remove(&id);
                        if let Some(job) = self.pending.remove(i) {
                            self.deps.events.emit(EngineEvent::RateLimited(job.id));
                            self.ack(&job, Outcome::Snoozed { delay: wait });
                        }
                    } else {
                        soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                        i += 1;
                    }
                    continue;
                }
            }
            if let Some(job) = self.pending.remove(i) {
                self.start(me, job);
            }
        }
        if stale && !self.renewing {
            self.renew(me);
        }
        if let Some(wait) = soonest {
            let at = tokio::time::Instant::now() + wait;
            if self
                .token_wake_at
                .is_none_or(|t| t <= tokio::time::Instant::now() || at < t)
            {
                self.token_wake_at = Some(at);
                me.send_after(wait, || DispatcherMsg::Wake);
            }
        }
    }

    fn start(&mut self, me: &ActorRef<DispatcherMsg>, job: Job) {
        self.lease_until.remove(&job.id);
        let Some(lease) = job.lease() else { return };
        let token = CancellationToken::new();
        self.held.remove(&job.id);
        Counters::add(&self.deps.counters.started, 1);
        let waited = (self.deps.clock.now() - job.run_at)
            .to_std()
            .unwrap_or_default();
        metrics::histogram!(telemetry::JOB_WAIT_SECONDS,
            "queue" => job.queue.clone(), "type" => job.job_type.clone())
        .record(waited.as_secs_f64());
        self.deps
            .events
            .emit(EngineEvent::Started(job.id, job.attempts));
        let handler = self.deps.handlers.get(&job.job_type);
        let ctx = JobContext {
            id: job.id,
            job_type: job.job_type.clone(),
            attempt: job.attempts,
            max_attempts: job.max_attempts,
            payload: job.payload.clone(),
            cancel: token.clone(),
            progress: Progress::new(self.deps.store.clone(), lease),
            provider: job.provider.clone(),
            limits: RateLimits::new(self.deps.limiter.clone(), self.deps.clock.clone()),
            dependency_results: std::sync::Arc::new(job.dependency_results.clone()),
        };
        let (id, timeout, job_type) = (job.id, job.timeout, job.job_type.clone());
        let t = token.clone();
        let me = me.clone();
        // A root span, and the Finished message sent outside it: ractor hands a
        // message the sender's span and handles it inside, so a job started on
        // another's Finished would be that job's child, every job of a busy node one
        // chain, and the chain's last close recursed through all of them (a stack
        // overflow that killed nodes draining with kyu_prefetch = "auto").
        let span = tracing::info_span!(parent: None, "job", %id, r#type = %job_type, queue = %job.queue, attempt = job.attempts);
        self.deps.jobs.spawn(async move {
            let r = tracing::Instrument::instrument(
                async move {
                    match handler {
                        Some(h) => run_attempt(h, ctx, timeout, t).await,
                        None => RunResult::Unknown(job_type),
                    }
                },
                span,
            )
            .await;
            let _ = me.cast(DispatcherMsg::Finished(id, r));
        });
        self.running.insert(
            id,
            Running {
                job,
                token,
                stop: None,
                started: tokio::time::Instant::now(),
            },
        );
        self.publish_workers();
    }

    fn finished(&mut self, id: Uuid, result: RunResult) {
        let Some(run) = self.running.remove(&id) else {
            return;
        };
        self.publish_workers();
        let ran = run.started.elapsed().as_secs_f64();
        self.appetite.job_ran(ran);
        metrics::histogram!(telemetry::JOB_RUN_SECONDS,
            "queue" => run.job.queue.clone(), "type" => run.job.job_type.clone())
        .record(ran);
        if let (
            RunResult::Err(JobError::RateLimited {
                retry_after: Some(after),
                ..
            }),
            Some(provider),
        ) = (&result, &run.job.provider)
            && let Some(until) = chrono::Duration::from_std(*after)
                .ok()
                .and_then(|d| self.deps.clock.now().checked_add_signed(d))
        {
            // The provider said when to come back: no job for it starts before then
            // (on any node, with a shared limiter). Off the actor: it may be a round trip.
            let (limiter, provider) = (self.deps.limiter.clone(), provider.clone());
            tokio::spawn(async move { limiter.cool_down(&provider, until).await });
        }
        let kind = match &result {
            RunResult::Ok(_) => None,
            RunResult::Panicked(_) => {
                Counters::add(&self.deps.counters.worker_replacements, 1);
                self.deps.events.emit(EngineEvent::WorkerReplaced(id));
                tracing::warn!(job = %id, "handler panicked; worker slot replaced");
                Some(crate::error::ErrorKind::Panic)
            }
            _ => Some(crate::error::ErrorKind::Retryable),
        };
        match run.stop {
            // Its lease is gone (or given back): whatever it did is not ours to write.
            Some(StopReason::LeaseLost) | Some(StopReason::Shutdown) => {}
            stop => {
                let canceled = stop == Some(StopReason::Canceled);
                let outcome = outcome_for(
                    &run.job,
                    result,
                    canceled,
                    self.deps.clock.as_ref(),
                    &self.deps.config,
                );
                let kind = match &outcome {
                    Outcome::Completed { .. } => None,
                    Outcome::Retry { error, .. }
                    | Outcome::Failed { error }
                    | Outcome::Canceled { error } => Some(error.kind),
                    _ => kind,
                };
                self.deps.events.emit(EngineEvent::Finished(id, kind));
                self.ack(&run.job, outcome);
            }
        }
    }

    /// Renews the leases of running and held jobs, in job-id order as the acker
    /// writes: statements over the same rows lock them alike and never deadlock.
    fn renew(&mut self, me: &ActorRef<DispatcherMsg>) {
        let mut leases: Vec<_> = self
            .running
            .values()
            .map(|r| &r.job)
            .chain(self.pending.iter())
            .filter_map(Job::lease)
            .collect();
        if leases.is_empty() {
            return;
        }
        leases.sort_by_key(|l| l.id);
        let store = self.deps.store.clone();
        let lease = self.deps.config.lease;
        let me = me.clone();
        self.renewing = true;
        tokio::spawn(async move {
            let sent = tokio::time::Instant::now();
            let r = store.extend_leases(&leases, lease).await;
            let _ = me.cast(DispatcherMsg::Renewed(r, sent));
        });
    }

    fn renewed(&mut self, states: Vec<LeaseState>, sent: tokio::time::Instant) {
        let until = sent + self.deps.config.lease;
        let pending: HashSet<Uuid> = self.pending.iter().map(|j| j.id).collect();
        self.lease_until.retain(|id, _| pending.contains(id));
        for s in states {
            if s.held
                && let Some(u) = self.lease_until.get_mut(&s.id)
            {
                *u = until;
            }
            if s.held && !s.cancel_requested {
                continue;
            }
            if !s.held {
                // A job that finished while the renewal was on its way is no longer
                // held either, rightly: only one still here was taken from us.
                let before = self.pending.len();
                self.pending.retain(|j| j.id != s.id);
                if self.pending.len() != before || self.running.contains_key(&s.id) {
                    tracing::warn!(job = %s.id, "lease lost: stopping the job (it was rescued or finished elsewhere)");
                }
            }
            if let Some(r) = self.running.get_mut(&s.id) {
                if r.stop.is_none() {
                    r.stop = Some(if s.held {
                        StopReason::Canceled
                    } else {
                        StopReason::LeaseLost
                    });
                    r.token.cancel();
                }
            } else if s.held
                && s.cancel_requested
                && let Some(job) = self.take_pending(s.id)
            {
                self.cancel_unstarted(job);
            }
        }
    }

    fn take_pending(&mut self, id: Uuid) -> Option<Job> {
        let pos = self.pending.iter().position(|j| j.id == id)?;
        self.pending.remove(pos)
    }

    fn cancel_unstarted(&self, job: Job) {
        let error = crate::error::AttemptError {
            attempt: job.attempts,
            kind: crate::error::ErrorKind::Canceled,
            message: "canceled before it started".into(),
            at: self.deps.clock.now(),
        };
        self.ack(&job, Outcome::Canceled { error });
    }

    fn release_pending(&mut self) {
        for job in std::mem::take(&mut self.pending) {
            self.ack(&job, Outcome::Released { uncount: true });
        }
    }

    /// Most due times kept; later ones are left to the scheduler's look-ahead.
    const MAX_DUE: usize = 10_000;

    fn due_at(&mut self, me: &ActorRef<DispatcherMsg>, times: Vec<chrono::DateTime<chrono::Utc>>) {
        let now = self.deps.clock.now();
        let base = tokio::time::Instant::now();
        for t in times {
            let wait = (t - now).to_std().unwrap_or_default();
            // On a 10 ms grid: a batch due at one moment is one entry.
            let ms = (wait.as_millis() as u64).div_ceil(10) * 10;
            self.due.insert(base + Duration::from_millis(ms));
        }
        while self.due.len() > Self::MAX_DUE {
            self.due.pop_last();
        }
        self.arm_due_timer(me);
    }

    fn arm_due_timer(&mut self, me: &ActorRef<DispatcherMsg>) {
        let Some(first) = self.due.first().copied() else {
            return;
        };
        if self.due_timer_at.is_some_and(|t| t <= first) {
            return;
        }
        self.due_timer_at = Some(first);
        me.send_after(
            first.saturating_duration_since(tokio::time::Instant::now()),
            || DispatcherMsg::DueTimer,
        );
    }

    fn fetch_arrived(&mut self, me: &ActorRef<DispatcherMsg>, fetch: PendingFetch) {
        if self.draining {
            let _ = fetch.reply.send(Ok(Vec::new()));
            return;
        }
        self.remote.prune_closed();
        let id = self.remote.insert(fetch);
        self.claim_for_fetch(me, id);
        metrics::gauge!(telemetry::REMOTE_FETCHES_WAITING).set(self.remote.len() as f64);
    }

    /// Claims for one waiting fetch, with the worker as the lease owner, in the same
    /// order and by the same rules as for the local pool.
    fn claim_for_fetch(&mut self, me: &ActorRef<DispatcherMsg>, id: u64) {
        let aging_bound = self.deps.config.aging_bound;
        let Some(p) = self.remote.get_mut(id) else {
            return;
        };
        if p.claiming {
            p.rewake = true;
            return;
        }
        p.claiming = true;
        p.rewake = false;
        let r = &p.fetch.request;
        let params = ClaimParams {
            owner: r.worker_id.clone(),
            limit: r.max,
            lease: r.lease,
            aged_before: Some(aging_bound),
            types: r.types.clone(),
            queues: r.queues.clone(),
        };
        let store = self.deps.store.clone();
        let me = me.clone();
        tokio::spawn(async move {
            let r = store.claim(&params).await;
            let _ = me.cast(DispatcherMsg::FetchClaimed(id, r));
        });
    }

    fn wake_fetches(&mut self, me: &ActorRef<DispatcherMsg>) {
        self.remote.prune_closed();
        for id in self.remote.ids() {
            self.claim_for_fetch(me, id);
        }
        metrics::gauge!(telemetry::REMOTE_FETCHES_WAITING).set(self.remote.len() as f64);
    }

    async fn fetch_claimed(
        &mut self,
        me: &ActorRef<DispatcherMsg>,
        id: u64,
        r: Result<Vec<Job>, StoreError>,
    ) {
        let Some(mut p) = self.remote.take(id) else {
            return;
        };
        p.claiming = false;
        let jobs = match r {
            Ok(jobs) => self.admit_remote(jobs).await,
            Err(e) => {
                tracing::error!(error = %e, "claim for a remote worker failed");
                let _ = p.fetch.reply.send(Err(e));
                return;
            }
        };
        let waits = !p.fetch.request.wait.is_zero() && !p.fetch.reply.is_closed();
        if jobs.is_empty() && waits && !self.draining {
            let again = p.rewake;
            self.remote.put_back(id, p);
            if again {
                self.claim_for_fetch(me, id);
            }
            return;
        }
        let now = self.deps.clock.now();
        for job in &jobs {
            let waited = (now - job.run_at).to_std().unwrap_or_default();
            metrics::histogram!(telemetry::JOB_WAIT_SECONDS,
                "queue" => job.queue.clone(), "type" => job.job_type.clone())
            .record(waited.as_secs_f64());
            self.deps
                .events
                .emit(EngineEvent::Started(job.id, job.attempts));
        }
        if let Err(Ok(jobs)) = p.fetch.reply.send(Ok(jobs)) {
            // The worker's request went away meanwhile: give the jobs back at once.
            for job in jobs {
                self.ack(&job, Outcome::Released { uncount: true });
            }
        }
        metrics::gauge!(telemetry::REMOTE_FETCHES_WAITING).set(self.remote.len() as f64);
    }

    /// Per-provider rate limits for jobs claimed for a remote worker: a job whose
    /// provider has no token now goes back to the store until it has one.
    async fn admit_remote(&mut self, jobs: Vec<Job>) -> Vec<Job> {
        let mut out = Vec::with_capacity(jobs.len());
        let mut empty: HashMap<String, Duration> = HashMap::new();
        for job in jobs {
            if let Some(p) = job.provider.clone() {
                let took = match empty.get(&p) {
                    Some(wait) => Err(*wait),
                    None => {
                        self.deps
                            .limiter
                            .try_acquire(&p, self.deps.clock.now())
                            .await
                    }
                };
                if let Err(wait) = took {
                    empty.entry(p.clone()).or_insert(wait);
                    metrics::counter!(telemetry::RATE_LIMIT_WAITS, "provider" => p).increment(1);
                    self.deps.events.emit(EngineEvent::RateLimited(job.id));
                    self.ack(&job, Outcome::Snoozed { delay: wait });
                    continue;
                }
            }
            out.push(job);
        }
        out
    }

    fn answer_drain(&mut self) {
        if self.running.is_empty() && self.claims_in_flight == 0 {
            for w in self.drain_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

impl Actor for Dispatcher {
    type Msg = DispatcherMsg;
    type State = DispatcherState;
    type Arguments = (Arc<Deps>, ActorRef<AckerMsg>);

    async fn pre_start(
        &self,
        me: ActorRef<DispatcherMsg>,
        (deps, acker): (Arc<Deps>, ActorRef<AckerMsg>),
    ) -> Result<DispatcherState, ActorProcessingErr> {
        me.send_interval(deps.config.poll_interval, || DispatcherMsg::Poll);
        me.send_interval(deps.config.lease / 3, || DispatcherMsg::Renew);
        let _ = me.cast(DispatcherMsg::Wake);
        metrics::gauge!(telemetry::WORKERS_TARGET).set(deps.config.workers as f64);
        metrics::gauge!(telemetry::WORKERS, "kind" => "local", "state" => "busy").set(0.0);
        metrics::gauge!(telemetry::WORKERS, "kind" => "local", "state" => "idle")
            .set(deps.config.workers as f64);
        Ok(DispatcherState {
            local_types: deps.handlers.local_types(),
            remote: RemoteFetches::default(),
            due: Default::default(),
            due_timer_at: None,
            pool_size: deps.config.workers,
            deps,
            acker,
            pending: VecDeque::new(),
            lease_until: HashMap::new(),
            renewing: false,
            running: HashMap::new(),
            claims_in_flight: 0,
            appetite: Appetite::default(),
            requested: 0,
            rewake: false,
            rechecking: false,
            claims_sent: 0,
            dry: false,
            backlog: false,
            draining: false,
            drain_waiters: Vec::new(),
            token_wake_at: None,
            held: HashSet::new(),
        })
    }

    async fn handle(
        &self,
        me: ActorRef<DispatcherMsg>,
        msg: DispatcherMsg,
        st: &mut DispatcherState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DispatcherMsg::Fetch(f) => st.fetch_arrived(&me, f),
            DispatcherMsg::FetchClaimed(id, r) => st.fetch_claimed(&me, id, r).await,
            DispatcherMsg::StopWorker(w) => st.remote.answer_empty(Some(&w)),
            DispatcherMsg::DueAt(times) => st.due_at(&me, times),
            DispatcherMsg::DueTimer => {
                st.due_timer_at = None;
                let now = tokio::time::Instant::now();
                let later = st.due.split_off(&(now + Duration::from_millis(1)));
                let fired = !st.due.is_empty();
                st.due = later;
                if fired {
                    st.wake_fetches(&me);
                }
                st.arm_due_timer(&me);
            }
            DispatcherMsg::AcksWritten => st.pump(&me).await,
            DispatcherMsg::Recheck(armed_at) if armed_at < st.claims_sent => {
                // A claim started after the short one that armed this recheck.
            }
            DispatcherMsg::Wake | DispatcherMsg::Recheck(_) | DispatcherMsg::Poll => {
                let poll = matches!(msg, DispatcherMsg::Poll);
                if matches!(msg, DispatcherMsg::Wake) || (poll && st.deps.config.fetch_on_poll) {
                    st.wake_fetches(&me);
                }
                st.rechecking = matches!(msg, DispatcherMsg::Recheck(_));
                st.dry = false;
                st.token_wake_at = None;
                if st.claims_in_flight > 0 {
                    st.rewake = true;
                }
                st.pump(&me).await;
            }
            DispatcherMsg::Claimed(limit, r, took) => {
                st.claims_in_flight = st.claims_in_flight.saturating_sub(1);
                if r.is_ok() {
                    st.appetite.claim_took(took.as_secs_f64());
                }
                st.requested = st.requested.saturating_sub(limit as usize);
                match r {
                    Ok(jobs) => {
                        tracing::debug!(
                            got = jobs.len(),
                            pending = st.pending.len(),
                            running = st.running.len(),
                            "claimed"
                        );
                        st.deps.events.emit(EngineEvent::Claimed(jobs.len()));
                        st.backlog = !jobs.is_empty();
                        let got = jobs.len();
                        if st.draining {
                            for job in jobs {
                                st.ack(&job, Outcome::Released { uncount: true });
                            }
                        } else {
                            // The store started these leases after the claim was sent.
                            let until = tokio::time::Instant::now()
                                .checked_sub(took)
                                .unwrap_or_else(tokio::time::Instant::now)
                                + st.deps.config.lease;
                            for j in &jobs {
                                st.lease_until.insert(j.id, until);
                            }
                            st.pending.extend(jobs);
                        }
                        // Short of its limit: the claim took all there was, unless a
                        // wake-up came while it ran.
                        let rewake = std::mem::take(&mut st.rewake);
                        st.dry = got < limit as usize && !rewake && !st.draining;
                        if st.dry {
                            // Stay idle until something says there may be more (an
                            // enqueue here or on another node, a due delayed job, a
                            // written ack that freed a key, the poll). Claiming again
                            // at once would spin on the store while idle.
                            st.start_eligible(&me).await;
                            if !std::mem::take(&mut st.rechecking) {
                                let armed_at = st.claims_sent;
                                me.send_after(RECHECK_AFTER, move || {
                                    DispatcherMsg::Recheck(armed_at)
                                });
                            }
                        } else {
                            st.pump(&me).await;
                        }
                        // A full claim (more may wait) or a wake-up arrived meanwhile: go again.
                        if !st.dry && st.claims_in_flight == 0 && !st.draining {
                            let _ = me.cast(DispatcherMsg::Wake);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "claim failed; will retry on the next wake-up");
                        st.answer_drain();
                    }
                }
            }
            DispatcherMsg::Finished(id, r) => {
                st.finished(id, r);
                st.pump(&me).await;
            }
            DispatcherMsg::Renew => st.renew(&me),
            DispatcherMsg::Renewed(Ok(states), sent) => {
                st.renewing = false;
                st.renewed(states, sent);
                st.pump(&me).await;
            }
            DispatcherMsg::Renewed(Err(e), _) => {
                st.renewing = false;
                tracing::error!(error = %e, "lease renewal failed; retrying next tick");
            }
            DispatcherMsg::Cancel(id) => {
                if let Some(r) = st.running.get_mut(&id) {
                    if r.stop.is_none() {
                        r.stop = Some(StopReason::Canceled);
                        r.token.cancel();
                    }
                } else if let Some(job) = st.take_pending(id) {
                    st.cancel_unstarted(job);
                }
            }
            DispatcherMsg::SetPoolSize(n) => {
                let c = &st.deps.config;
                st.pool_size = n.clamp(c.min_workers, c.max_workers);
                metrics::gauge!(telemetry::WORKERS_TARGET).set(st.pool_size as f64);
                st.publish_workers();
                st.pump(&me).await;
            }
            DispatcherMsg::SetAcker(a) => st.acker = a,
            DispatcherMsg::Stats(reply) => {
                let _ = reply.send(DispatcherStats {
                    pool_size: st.pool_size,
                    busy: st.running.len(),
                    prefetched: st.pending.len(),
                    backlog: st.backlog || !st.pending.is_empty(),
                });
            }
            DispatcherMsg::Drain(reply) => {
                st.draining = true;
                st.remote.answer_empty(None);
                st.release_pending();
                st.drain_waiters.push(reply);
                st.answer_drain();
            }
            DispatcherMsg::ReleaseRunning(reply) => {
                let mut n = 0;
                for r in st.running.values_mut() {
                    if r.stop.is_none() || r.stop == Some(StopReason::Canceled) {
                        r.stop = Some(StopReason::Shutdown);
                        r.token.cancel();
                        n += 1;
                    }
                }
                for r in st.running.values() {
                    if let Some(lease) = r.job.lease() {
                        let _ = st.acker.cast(AckerMsg::Ack(
                            Ack {
                                lease,
                                outcome: Outcome::Released { uncount: false },
                            },
                            None,
                        ));
                    }
                }
                st.running.clear();
                st.publish_workers();
                st.answer_drain();
                let _ = reply.send(n);
            }
        }
        Ok(())
    }
}
