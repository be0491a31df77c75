//! The library API: `Engine::builder()` → store, handlers, config → `start()`, then
//! `enqueue`, `cancel`, `stats`, `shutdown(grace)`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef, call_t};
use serde::Serialize;
use uuid::Uuid;

use crate::actor::supervisor::{Child, Supervisor, SupervisorMsg};
use crate::actor::{Counters, Deps};
use crate::autoscale::{Reading, ResourceProbe};
use crate::clock::{SharedClock, SystemClock};
use crate::cluster::{CronEntry, Leadership};
use crate::config::{ConfigError, EngineConfig};
use crate::events::{EngineEvent, Events};
use crate::handler::{Handler, HandlerRegistry};
use crate::job::NewJob;
use crate::rate_limit::{Limit, LocalRateLimiter, RateLimitBackend};
use crate::store::{CancelOutcome, Enqueued, Store, StoreError};

/// Why the engine would not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no store given to Engine::builder()")]
    NoStore,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("engine failed to start: {0}")]
    Spawn(String),
    #[error("engine stopped: {0}")]
    Stopped(String),
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    store: Option<Arc<dyn Store>>,
    clock: SharedClock,
    handlers: HandlerRegistry,
    config: EngineConfig,
    probe: Option<Arc<dyn ResourceProbe>>,
    limiter: Option<Arc<dyn RateLimitBackend>>,
    provider_limits: HashMap<String, Limit>,
    events: Events,
    leadership: Leadership,
    cron: Vec<CronEntry>,
    owner: Option<String>,
}

impl EngineBuilder {
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }
    pub fn handler(mut self, job_type: impl Into<String>, h: Arc<dyn Handler>) -> Self {
        self.handlers.insert(job_type, h);
        self
    }
    /// Replaces the handler registry (default: the built-ins).
    pub fn handlers(mut self, handlers: HandlerRegistry) -> Self {
        self.handlers = handlers;
        self
    }
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }
    pub fn probe(mut self, probe: Arc<dyn ResourceProbe>) -> Self {
        self.probe = Some(probe);
        self
    }
    /// A shared rate-limit backend (default: local buckets from the config).
    pub fn rate_limiter(mut self, limiter: Arc<dyn RateLimitBackend>) -> Self {
        self.limiter = Some(limiter);
        self
    }
    /// A provider's own bucket (others use the config's default).
    pub fn provider_limit(mut self, provider: impl Into<String>, limit: Limit) -> Self {
        self.provider_limits.insert(provider.into(), limit);
        self
    }
    pub fn events(mut self, tx: tokio::sync::mpsc::UnboundedSender<EngineEvent>) -> Self {
        self.events = Events::new(Some(tx));
        self
    }
    /// Runs maintenance only while `l` says this node leads (default: always, an
    /// engine on its own).
    pub fn leadership(mut self, l: Leadership) -> Self {
        self.leadership = l;
        self
    }
    /// Recurring jobs, enqueued while this node leads.
    pub fn cron(mut self, entries: Vec<CronEntry>) -> Self {
        self.cron = entries;
        self
    }
    /// This engine's lease owner id (default: a fresh UUID v7). Give a fresh one per
    /// process start: a restarted node must not inherit the leases of its past self.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    pub async fn start(self) -> Result<Engine, EngineError> {
        self.config.validate()?;
        let store = self.store.ok_or(EngineError::NoStore)?;
        let default = Limit {
            per_minute: self.config.rate_limit_per_minute,
            burst: self.config.rate_limit_burst,
        };
        let limiter = self
            .limiter
            .unwrap_or_else(|| Arc::new(LocalRateLimiter::new(default, self.provider_limits)));
        let jobs = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.config.job_threads)
            .thread_name("kyu-job")
            .enable_all()
            .build()
            .map_err(|e| EngineError::Spawn(format!("job runtime: {e}")))?;
        let deps = Arc::new(Deps {
            store,
            clock: self.clock,
            handlers: self.handlers,
            config: self.config,
            owner: self.owner.unwrap_or_else(|| Uuid::now_v7().to_string()),
            events: self.events,
            limiter,
            probe: self.probe,
            counters: Counters::default(),
            unwritten: Default::default(),
            jobs: jobs.handle().clone(),
            leadership: self.leadership,
            cron: self.cron,
        });
        let (sup, join) = match Actor::spawn(None, Supervisor, deps.clone()).await {
            Ok(started) => started,
            Err(e) => {
                jobs.shutdown_background();
                return Err(EngineError::Spawn(e.to_string()));
            }
        };
        tracing::info!(owner = %deps.owner, backend = deps.store.backend(), workers = deps.config.workers, "engine started");
        Ok(Engine {
            sup,
            join: std::sync::Mutex::new(Some(join)),
            deps,
            jobs: Some(jobs),
        })
    }
}

/// Totals and the pool, as of now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    pub pool_size: usize,
    pub busy: usize,
    pub prefetched: usize,
    pub started: u64,
    pub completed: u64,
    pub retried: u64,
    pub failed: u64,
    pub canceled: u64,
    pub fenced: u64,
    pub worker_replacements: u64,
    pub actor_restarts: u64,
    pub rescued: u64,
}

/// A running engine.
pub struct Engine {
    sup: ActorRef<SupervisorMsg>,
    /// The supervisor's task; taken by whoever waits for it first.
    join: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(crate) deps: Arc<Deps>,
    /// The handlers' runtime; shut down in the background when the engine goes.
    jobs: Option<tokio::runtime::Runtime>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(rt) = self.jobs.take() {
            rt.shutdown_background();
        }
    }
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            store: None,
            clock: Arc::new(SystemClock),
            handlers: HandlerRegistry::with_builtins(),
            config: EngineConfig::default(),
            probe: None,
            limiter: None,
            provider_limits: HashMap::new(),
            events: Events::default(),
            leadership: Leadership::standalone(),
            cron: Vec::new(),
            owner: None,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.deps.store
    }

    /// This engine's lease owner id.
    pub fn owner(&self) -> &str {
        &self.deps.owner
    }

    /// Whether this engine runs maintenance now (it is the leader, or on its own).
    pub fn is_leader(&self) -> bool {
        self.deps.leadership.is_leader()
    }

    /// The leadership flag the Scheduler obeys (for the node's elector).
    pub fn leadership(&self) -> Leadership {
        self.deps.leadership.clone()
    }

    /// Commits a job, then wakes the dispatcher.
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, StoreError> {
        let e = self.deps.store.enqueue(job).await?;
        self.wake();
        Ok(e)
    }

    pub async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        let now = self.deps.clock.now();
        let later: Vec<_> = jobs
            .iter()
            .map(|j| j.run_at.resolve(now))
            .filter(|t| *t > now)
            .collect();
        let e = self.deps.store.enqueue_many(jobs).await?;
        self.wake();
        self.due_at(later);
        Ok(e)
    }

    /// Commits a workflow (all or nothing, see [`crate::workflow`]), then wakes the
    /// dispatcher for the jobs that are due at once.
    pub async fn enqueue_workflow(
        &self,
        wf: crate::workflow::NewWorkflow,
    ) -> Result<crate::workflow::WorkflowCreated, StoreError> {
        let created = self.deps.store.enqueue_workflow(wf).await?;
        self.wake();
        Ok(created)
    }

    /// Jobs fall due at these times: waiting remote fetches look again then.
    pub(crate) fn due_at(&self, times: Vec<chrono::DateTime<chrono::Utc>>) {
        if !times.is_empty() {
            let _ = self.sup.cast(SupervisorMsg::DueAt(times));
        }
    }

    pub(crate) fn send_fetch(&self, f: crate::remote::PendingFetch) {
        let _ = self.sup.cast(SupervisorMsg::Fetch(f));
    }

    pub(crate) fn send_stop_worker(&self, worker_id: String) {
        let _ = self.sup.cast(SupervisorMsg::StopWorker(worker_id));
    }

    /// Something may be claimable (an external notifier calls this).
    pub fn wake(&self) {
        let _ = self.sup.cast(SupervisorMsg::Wake);
    }

    /// Cancels a queued job, or stops a running one (at once if it runs here).
    pub async fn cancel(&self, id: Uuid) -> Result<CancelOutcome, StoreError> {
        let out = self.deps.store.request_cancel(id).await?;
        if matches!(out, CancelOutcome::Requested(_)) {
            let _ = self.sup.cast(SupervisorMsg::Cancel(id));
        }
        Ok(out)
    }

    pub async fn stats(&self) -> EngineStats {
        let d = call_t!(self.sup, SupervisorMsg::Stats, 5000).unwrap_or_default();
        let c = &self.deps.counters;
        EngineStats {
            pool_size: d.pool_size,
            busy: d.busy,
            prefetched: d.prefetched,
            started: Counters::get(&c.started),
            completed: Counters::get(&c.completed),
            retried: Counters::get(&c.retried),
            failed: Counters::get(&c.failed),
            canceled: Counters::get(&c.canceled),
            fenced: Counters::get(&c.fenced),
            worker_replacements: Counters::get(&c.worker_replacements),
            actor_restarts: Counters::get(&c.actor_restarts),
            rescued: Counters::get(&c.rescued),
        }
    }

    /// The autoscaler's last reading and target, if it runs.
    pub async fn autoscaler(&self) -> Option<(Reading, usize)> {
        call_t!(self.sup, SupervisorMsg::Autoscaler, 5000)
            .ok()
            .flatten()
    }

    /// Test hook: kills one child actor as a bug would, so supervision can be seen.
    pub fn crash_child(&self, child: Child) {
        let _ = self.sup.cast(SupervisorMsg::Crash(child));
    }

    fn take_join(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.join.lock().map(|mut j| j.take()).unwrap_or(None)
    }

    /// Whether the actor tree still runs (false once the supervisor gave up or stopped).
    pub fn is_running(&self) -> bool {
        self.sup.get_status() == ractor::ActorStatus::Running
    }

    /// Waits until the engine stops by itself (its supervisor gave up).
    pub async fn stopped(&self) -> EngineError {
        match self.take_join() {
            Some(j) => {
                let _ = j.await;
            }
            None => std::future::pending::<()>().await,
        }
        EngineError::Stopped("the supervisor stopped (too many actor restarts)".into())
    }

    /// Stops claiming, lets running jobs finish for up to `grace`, gives back the rest,
    /// writes every outcome, then stops.
    pub async fn shutdown(&self, grace: Duration) -> Result<(), EngineError> {
        let wait = grace.as_millis() as u64 + 40_000;
        let r = call_t!(self.sup, SupervisorMsg::Shutdown, wait, grace);
        if let Some(j) = self.take_join() {
            let _ = j.await;
        }
        r.map_err(|e| EngineError::Stopped(e.to_string()))
    }
}
