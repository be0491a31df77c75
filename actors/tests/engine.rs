//! The engine's acceptance tests (issue 4), over the in-memory store and a manual
//! clock. They wait on engine events (barriers) with a generous deadline that only
//! turns a hang into a failure; nothing sleeps to synchronise.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kyu_actors::actor::supervisor::Child;
use kyu_actors::error::ErrorKind;
use kyu_actors::rate_limit::Limit;
use kyu_actors::store::ListJobs;
use kyu_actors::testkit::{ManualClock, MemoryStore};
use kyu_actors::{
    Clock, Engine, EngineConfig, EngineEvent, Handler, JobContext, JobError, JobStatus, NewJob,
    Prefetch, Priority, Reading, ResourceProbe, Store,
};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(30);

struct Harness {
    engine: Engine,
    events: UnboundedReceiver<EngineEvent>,
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
}

fn config(workers: usize) -> EngineConfig {
    EngineConfig {
        workers,
        min_workers: 1,
        max_workers: workers.max(10),
        autoscale: false,
        prefetch: Prefetch::PerWorker(1),
        poll_interval: Duration::from_millis(50),
        rescue_interval: Duration::from_millis(50),
        aging_bound: Duration::from_secs(3600),
        backoff_base: Duration::ZERO,
        ..EngineConfig::default()
    }
}

async fn start(cfg: EngineConfig, handlers: Vec<(&str, Arc<dyn Handler>)>) -> Harness {
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    start_on(store, clock, cfg, handlers, |b| b).await
}

async fn start_on(
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    cfg: EngineConfig,
    handlers: Vec<(&str, Arc<dyn Handler>)>,
    extra: impl FnOnce(kyu_actors::EngineBuilder) -> kyu_actors::EngineBuilder,
) -> Harness {
    let (tx, events) = unbounded_channel();
    let mut b = Engine::builder()
        .store(store.clone())
        .clock(clock.clone())
        .config(cfg)
        .events(tx);
    for (t, h) in handlers {
        b = b.handler(t, h);
    }
    let engine = extra(b).start().await.expect("engine starts");
    Harness {
        engine,
        events,
        store,
        clock,
    }
}

impl Harness {
    /// Reads events until `f` says stop (returns true); fails after the deadline.
    async fn until(&mut self, what: &str, mut f: impl FnMut(&EngineEvent) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if f(&e) => return,
                Ok(Some(_)) => {}
                _ => panic!("no event for: {what}"),
            }
        }
    }

    async fn finished(&mut self, n: usize) {
        let mut seen = 0;
        self.until(&format!("{n} finished"), |e| {
            if matches!(e, EngineEvent::Finished(..)) {
                seen += 1;
            }
            seen >= n
        })
        .await;
    }

    /// Waits until `n` runs finished and `n` outcomes were written.
    async fn settle(&mut self, n: usize) {
        let (mut finished, mut written) = (0, 0);
        self.until(&format!("{n} runs finished and written"), |e| {
            match e {
                EngineEvent::Finished(..) => finished += 1,
                EngineEvent::Acked { written: w, .. } => written += w,
                _ => {}
            }
            finished >= n && written >= n
        })
        .await;
    }

    async fn job(&self, id: Uuid) -> kyu_actors::Job {
        self.store.get(id).await.unwrap().expect("job")
    }

    async fn stop(self) {
        self.engine
            .shutdown(Duration::from_secs(5))
            .await
            .expect("shutdown");
    }
}

/// Records payload `i` of each run, in order.
struct Recorder(Arc<Mutex<Vec<i64>>>);

#[async_trait]
impl Handler for Recorder {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let i = ctx.payload["i"].as_i64().unwrap_or(-1);
        self.0.lock().unwrap().push(i);
        Ok(Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_runs_by_priority_then_run_at_then_age() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let now = clock.now();
    let mut expected = Vec::new();
    let mut jobs = Vec::new();
    for i in 0..100i64 {
        let p = 1 + (i * 7 % 10);
        let off = (i * 13) % 5; // seconds in the past
        let j = NewJob::new("rec", json!({ "i": i }))
            .priority(Priority::new(p).unwrap())
            .run_at(now - chrono::Duration::seconds(off));
        expected.push((-p, -off, j.id, i));
        jobs.push(j);
    }
    store.enqueue_many(jobs).await.unwrap();
    expected.sort();
    let mut h = start_on(
        store,
        clock,
        config(1),
        vec![("rec", Arc::new(Recorder(order.clone())))],
        |b| b,
    )
    .await;
    h.finished(100).await;
    let want: Vec<i64> = expected.iter().map(|e| e.3).collect();
    assert_eq!(*order.lock().unwrap(), want);
    h.stop().await;
}

/// (priority, simulated time) of each run.
type RunLog = Arc<Mutex<Vec<(i64, chrono::DateTime<chrono::Utc>)>>>;

/// Each run takes one simulated second and enqueues another priority-10 job, so the
/// queue never runs dry of higher-priority work.
struct Stream {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    ran: RunLog,
}

#[async_trait]
impl Handler for Stream {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let p = ctx.payload["p"].as_i64().unwrap_or(0);
        self.ran.lock().unwrap().push((p, self.clock.now()));
        self.clock.advance(Duration::from_secs(1));
        if p == 10 {
            let next = NewJob::new("stream", json!({ "p": 10 })).priority(Priority::CRITICAL);
            self.store
                .enqueue(next)
                .await
                .map_err(|e| JobError::retryable(e.to_string()))?;
        }
        Ok(Value::Null)
    }
}

/// The documented bound: a job starts at most `aging_bound` + one claim batch of
/// runs after it became due, whatever its priority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_priority_job_starts_within_the_aging_bound() {
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let t0 = clock.now();
    for _ in 0..5 {
        store
            .enqueue(NewJob::new("stream", json!({ "p": 10 })).priority(Priority::CRITICAL))
            .await
            .unwrap();
    }
    let low = store
        .enqueue(NewJob::new("stream", json!({ "p": 1 })).priority(Priority::MIN))
        .await
        .unwrap()
        .id;
    let ran = Arc::new(Mutex::new(Vec::new()));
    let handler = Stream {
        store: store.clone(),
        clock: clock.clone(),
        ran: ran.clone(),
    };
    let cfg = EngineConfig {
        aging_bound: Duration::from_secs(30),
        ..config(1)
    };
    let mut h = start_on(
        store,
        clock,
        cfg,
        vec![("stream", Arc::new(handler))],
        |b| b,
    )
    .await;
    h.until(
        "the priority-1 job starts",
        |e| matches!(e, EngineEvent::Started(id, _) if *id == low),
    )
    .await;
    let runs = ran.lock().unwrap().clone();
    let waited = runs.iter().find(|(p, _)| *p == 1).map(|(_, at)| *at - t0);
    let waited = waited.unwrap_or_else(|| h.clock.now() - t0).num_seconds();
    let before = runs.iter().take_while(|(p, _)| *p == 10).count();
    assert!(
        before >= 30,
        "strict priority held until the bound ({before} runs first)"
    );
    assert!(
        waited <= 30 + 2,
        "started after {waited} simulated s; bound is 30 s + one claim"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_provider_does_not_delay_another() {
    let recorder = Arc::new(Recorder(Arc::new(Mutex::new(Vec::new()))));
    let cfg = EngineConfig {
        prefetch: Prefetch::PerWorker(4),
        ..config(4)
    };
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let mut jobs = Vec::new();
    for i in 0..20 {
        jobs.push(NewJob::new("rec", json!({ "i": i })).provider("slow"));
        jobs.push(NewJob::new("rec", json!({ "i": 100 + i })).provider("fast"));
    }
    store.enqueue_many(jobs).await.unwrap();
    let mut h = start_on(store, clock, cfg, vec![("rec", recorder.clone())], |b| {
        b.provider_limit(
            "slow",
            Limit {
                per_minute: 60,
                burst: 5,
            },
        )
        .provider_limit(
            "fast",
            Limit {
                per_minute: 60_000,
                burst: 1000,
            },
        )
    })
    .await;
    // 25 runs (20 fast + the slow burst of 5) and 15 slow jobs put back: 40 writes.
    let mut written = 0;
    h.until("every job run or put back", |e| {
        if let EngineEvent::Acked { written: w, .. } = e {
            written += w;
        }
        written >= 40
    })
    .await;
    let page = h
        .store
        .list(&ListJobs {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let count = |prov: &str, st: JobStatus| {
        page.jobs
            .iter()
            .filter(|j| j.provider.as_deref() == Some(prov) && j.status == st)
            .count()
    };
    assert_eq!(
        count("fast", JobStatus::Completed),
        20,
        "the other provider ran everything"
    );
    assert_eq!(
        count("slow", JobStatus::Completed),
        5,
        "the slow provider ran its burst"
    );
    assert_eq!(
        count("slow", JobStatus::Scheduled),
        15,
        "the rest wait for tokens"
    );
    for j in page
        .jobs
        .iter()
        .filter(|j| j.status == JobStatus::Scheduled)
    {
        assert_eq!(j.attempts, 0, "waiting for a token is not an attempt");
        assert!(j.run_at > h.clock.now());
    }
    h.stop().await;
}

struct FakeProbe(Mutex<Reading>);

impl ResourceProbe for FakeProbe {
    fn read(&self) -> Reading {
        *self.0.lock().unwrap()
    }
}

/// Blocks until its token fires (the engine stops or the job is canceled).
struct Block;

#[async_trait]
impl Handler for Block {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        ctx.cancel.cancelled().await;
        Err(JobError::Canceled("stopped".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaler_shrinks_under_cpu_and_grows_with_backlog() {
    let probe = Arc::new(FakeProbe(Mutex::new(Reading {
        cpu_percent: 90.0,
        memory_percent: 30.0,
    })));
    let cfg = EngineConfig {
        workers: 5,
        min_workers: 1,
        max_workers: 10,
        autoscale: true,
        autoscale_interval: Duration::from_millis(20),
        autoscale_cooldown: Duration::ZERO,
        ..config(5)
    };
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let jobs: Vec<NewJob> = (0..50)
        .map(|i| NewJob::new("block", json!({ "i": i })))
        .collect();
    store.enqueue_many(jobs).await.unwrap();
    let p = probe.clone();
    let mut h = start_on(
        store,
        clock,
        cfg,
        vec![("block", Arc::new(Block))],
        move |b| b.probe(p),
    )
    .await;
    let mut sizes = Vec::new();
    h.until("shrunk to min", |e| {
        if let EngineEvent::PoolResized(n) = e {
            sizes.push(*n);
        }
        sizes.last() == Some(&1)
    })
    .await;
    *probe.0.lock().unwrap() = Reading {
        cpu_percent: 20.0,
        memory_percent: 30.0,
    };
    h.until("grown to max", |e| {
        if let EngineEvent::PoolResized(n) = e {
            sizes.push(*n);
        }
        sizes.last() == Some(&10)
    })
    .await;
    assert!(sizes.iter().all(|n| (1..=10).contains(n)), "{sizes:?}");
    assert!(
        sizes.windows(2).all(|w| w[0].abs_diff(w[1]) == 1),
        "one step at a time: {sizes:?}"
    );
    assert_eq!(h.engine.stats().await.pool_size, 10);
    assert!(h.engine.autoscaler().await.is_some());
    h.stop().await;
}

struct Panics;

#[async_trait]
impl Handler for Panics {
    async fn run(&self, _ctx: JobContext) -> Result<Value, JobError> {
        panic!("boom")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_job_and_its_slot_is_replaced() {
    let recorder = Arc::new(Recorder(Arc::new(Mutex::new(Vec::new()))));
    let mut h = start(
        config(2),
        vec![("panics", Arc::new(Panics)), ("rec", recorder)],
    )
    .await;
    let bad = h
        .engine
        .enqueue(NewJob::new("panics", json!({})).max_attempts(3))
        .await
        .unwrap()
        .id;
    for i in 0..5 {
        h.engine
            .enqueue(NewJob::new("rec", json!({ "i": i })))
            .await
            .unwrap();
    }
    h.settle(8).await;
    let j = h.job(bad).await;
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.errors.len(), 3);
    assert!(
        j.errors
            .iter()
            .all(|e| e.kind == ErrorKind::Panic && e.message == "boom")
    );
    let stats = h.engine.stats().await;
    assert_eq!(stats.worker_replacements, 3);
    assert_eq!(stats.completed, 5, "other jobs finished");
    h.stop().await;
}

struct Never;

#[async_trait]
impl Handler for Never {
    async fn run(&self, _ctx: JobContext) -> Result<Value, JobError> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_its_timeout_is_retried_with_kind_timeout() {
    let mut h = start(config(1), vec![("never", Arc::new(Never))]).await;
    let id = h
        .engine
        .enqueue(
            NewJob::new("never", json!({}))
                .timeout(Duration::from_millis(30))
                .max_attempts(2),
        )
        .await
        .unwrap()
        .id;
    h.settle(2).await;
    let j = h.job(id).await;
    assert_eq!(j.status, JobStatus::Failed);
    let kinds: Vec<ErrorKind> = j.errors.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![ErrorKind::Timeout, ErrorKind::Timeout]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_running_job_stops_it_through_its_token() {
    let mut h = start(config(1), vec![("block", Arc::new(Block))]).await;
    let id = h
        .engine
        .enqueue(NewJob::new("block", json!({})))
        .await
        .unwrap()
        .id;
    h.until(
        "started",
        |e| matches!(e, EngineEvent::Started(i, _) if *i == id),
    )
    .await;
    h.engine.cancel(id).await.unwrap();
    h.settle(1).await;
    let j = h.job(id).await;
    assert_eq!(j.status, JobStatus::Canceled);
    assert_eq!(j.errors.last().map(|e| e.kind), Some(ErrorKind::Canceled));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_actor_is_restarted_and_a_crash_loop_stops_the_engine() {
    let cfg = EngineConfig {
        max_restarts: 2,
        restart_window: Duration::from_secs(60),
        ..config(1)
    };
    let mut h = start(cfg, vec![]).await;
    h.engine.crash_child(Child::Acker);
    h.until("acker restarted", |e| *e == EngineEvent::Restarted("acker"))
        .await;
    // The engine still works after the restart.
    let id = h
        .engine
        .enqueue(NewJob::new("echo", json!({ "x": 1 })))
        .await
        .unwrap()
        .id;
    h.until("written", |e| matches!(e, EngineEvent::Acked { .. }))
        .await;
    assert_eq!(h.job(id).await.result, Some(json!({ "x": 1 })));
    assert_eq!(h.engine.stats().await.actor_restarts, 1);
    // Past the budget the supervisor gives up and the engine stops with an error.
    h.engine.crash_child(Child::Dispatcher);
    h.until("dispatcher restarted", |e| {
        *e == EngineEvent::Restarted("dispatcher")
    })
    .await;
    h.engine.crash_child(Child::Dispatcher);
    h.until("dispatcher restarted", |e| {
        *e == EngineEvent::Restarted("dispatcher")
    })
    .await;
    h.engine.crash_child(Child::Dispatcher);
    let stopped = tokio::time::timeout(DEADLINE, h.engine.stopped()).await;
    assert!(stopped.is_ok(), "the engine stops after too many restarts");
}

/// Blocks its thread (no `.await`), as CPU-bound or badly written handlers do.
struct BlocksThread;

#[async_trait]
impl Handler for BlocksThread {
    async fn run(&self, _ctx: JobContext) -> Result<Value, JobError> {
        std::thread::sleep(Duration::from_millis(1500));
        Ok(Value::Null)
    }
}

/// Handlers run on their own runtime: three handlers blocking their threads for five
/// leases' worth of time do not stop lease renewal, so nothing is rescued or fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_that_block_threads_do_not_starve_lease_renewal() {
    let cfg = EngineConfig {
        lease: Duration::from_millis(300),
        rescue_interval: Duration::from_millis(50),
        job_threads: 3,
        ..config(3)
    };
    // Leases expire in real time here: the store reads the system clock.
    let store = Arc::new(MemoryStore::new(Arc::new(kyu_actors::SystemClock)));
    let (tx, mut events) = unbounded_channel();
    let engine = Engine::builder()
        .store(store.clone())
        .config(cfg)
        .handler("blocks", Arc::new(BlocksThread))
        .events(tx)
        .start()
        .await
        .unwrap();
    // Another node's rescuer, on its own thread: it takes any lease left to expire.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other_node = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut rescued = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rescued += rt.block_on(store.rescue_expired(100)).unwrap().len();
                std::thread::sleep(Duration::from_millis(20));
            }
            rescued
        })
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            engine
                .enqueue(NewJob::new("blocks", json!({})))
                .await
                .unwrap()
                .id,
        );
    }
    let mut written = 0;
    while written < 3 {
        match tokio::time::timeout(DEADLINE, events.recv()).await {
            Ok(Some(EngineEvent::Acked { written: w, .. })) => written += w,
            Ok(Some(_)) => {}
            _ => panic!("no outcomes"),
        }
    }
    for id in ids {
        let j = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            (j.status, j.attempts),
            (JobStatus::Completed, 1),
            "{:?}",
            j.errors
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        other_node.join().unwrap(),
        0,
        "no lease expired while handlers blocked"
    );
    assert_eq!(engine.stats().await.fenced, 0);
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Answers "429, come back in 30 s" on its first attempt, then succeeds.
struct ThrottledOnce;

#[async_trait]
impl Handler for ThrottledOnce {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        if ctx.attempt == 1 {
            return Err(JobError::RateLimited {
                message: "429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(30)),
            });
        }
        Ok(Value::Null)
    }
}

/// Puts the provider its payload names in a 30 s cool-down, as a fallback chain does
/// for a provider other than its job's own.
struct CoolsDown;

#[async_trait]
impl Handler for CoolsDown {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let p = ctx.payload["provider"].as_str().unwrap_or_default();
        ctx.limits.cool_down(p, Duration::from_secs(30)).await;
        Ok(Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_cools_down_only_that_provider_until_then() {
    let recorder = Arc::new(Recorder(Arc::new(Mutex::new(Vec::new()))));
    let cfg = EngineConfig {
        prefetch: Prefetch::PerWorker(4),
        ..config(4)
    };
    let wide = Limit {
        per_minute: 60_000,
        burst: 1000,
    };
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let mut h = start_on(
        store,
        clock,
        cfg,
        vec![
            ("throttled", Arc::new(ThrottledOnce)),
            ("cools", Arc::new(CoolsDown)),
            ("rec", recorder.clone()),
        ],
        |b| {
            b.provider_limit("groq", wide)
                .provider_limit("claude", wide)
                .provider_limit("other", wide)
        },
    )
    .await;
    // The job's own provider answers 429 with Retry-After: 30.
    let throttled = h
        .engine
        .enqueue(NewJob::new("throttled", json!({})).provider("groq"))
        .await
        .unwrap()
        .id;
    h.settle(1).await;
    let job = h.job(throttled).await;
    assert_eq!(job.status, JobStatus::Scheduled, "rescheduled, not failed");
    assert_eq!(job.errors[0].kind, ErrorKind::RateLimit);
    assert!(job.run_at >= h.clock.now() + chrono::Duration::seconds(30));
    // A handler puts another provider in a cool-down through its context.
    h.engine
        .enqueue(NewJob::new("cools", json!({"provider": "claude"})))
        .await
        .unwrap();
    h.settle(1).await;

    let mut jobs = Vec::new();
    for i in 0..3 {
        for p in ["groq", "claude", "other"] {
            jobs.push(NewJob::new("rec", json!({ "i": i })).provider(p));
        }
    }
    h.engine.enqueue_many(jobs).await.unwrap();
    // 3 runs for `other`, 6 jobs put back until the cool-downs end.
    let mut written = 0;
    h.until("other ran, the cooled providers' jobs put back", |e| {
        if let EngineEvent::Acked { written: w, .. } = e {
            written += w;
        }
        written >= 9
    })
    .await;
    let page = h
        .store
        .list(&ListJobs {
            limit: 100,
            job_type: Some("rec".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let by = |p: &str, st: JobStatus| {
        page.jobs
            .iter()
            .filter(|j| j.provider.as_deref() == Some(p) && j.status == st)
            .collect::<Vec<_>>()
    };
    assert_eq!(by("other", JobStatus::Completed).len(), 3);
    for p in ["groq", "claude"] {
        let waiting = by(p, JobStatus::Scheduled);
        assert_eq!(waiting.len(), 3, "{p}: every job waits for the cool-down");
        for j in waiting {
            assert_eq!(j.attempts, 0, "waiting is not an attempt");
            assert!(j.run_at >= h.clock.now() + chrono::Duration::seconds(29));
        }
    }
    // Past Retry-After everything runs, the throttled job's second attempt too.
    h.clock.advance(Duration::from_secs(31));
    h.settle(7).await;
    assert_eq!(h.job(throttled).await.status, JobStatus::Completed);
    h.stop().await;
}

/// Snoozes 10 s on its first three runs, then completes.
struct SnoozesThrice(std::sync::atomic::AtomicUsize);

#[async_trait]
impl Handler for SnoozesThrice {
    async fn run(&self, _ctx: JobContext) -> Result<Value, JobError> {
        if self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3 {
            return Err(JobError::snooze(Duration::from_secs(10), "not yet"));
        }
        Ok(json!("done"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snoozed_job_waits_without_spending_attempts_or_recording_errors() {
    let mut h = start(
        config(1),
        vec![(
            "snoozer",
            Arc::new(SnoozesThrice(std::sync::atomic::AtomicUsize::new(0))),
        )],
    )
    .await;
    // One attempt in all: a snooze that counted would fail the job at once.
    let id = h
        .engine
        .enqueue(NewJob::new("snoozer", json!({})).max_attempts(1))
        .await
        .unwrap()
        .id;
    for _ in 0..3 {
        h.settle(1).await;
        let job = h.job(id).await;
        assert_eq!(job.status, JobStatus::Scheduled);
        assert_eq!(job.attempts, 0, "a snooze gives its attempt back");
        assert!(job.errors.is_empty(), "a snooze is not an error");
        assert_eq!(job.run_at, h.clock.now() + chrono::Duration::seconds(10));
        h.clock.advance(Duration::from_secs(10));
    }
    h.settle(1).await;
    let job = h.job(id).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.result, Some(json!("done")));
    h.stop().await;
}

/// Long jobs are not hoarded: two nodes of two slots each share four jobs that run
/// until stopped, and all four start — two on each node — instead of one node holding
/// two of them claimed behind its busy slots (what a fixed prefetch of one per worker
/// would do) while the other idles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_jobs_are_claimed_one_per_free_slot_across_nodes() {
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let jobs: Vec<NewJob> = (0..4)
        .map(|i| NewJob::new("block", json!({ "i": i })))
        .collect();
    store.enqueue_many(jobs).await.unwrap();
    let cfg = EngineConfig {
        prefetch: Prefetch::Auto { max: 1000 },
        ..config(2)
    };
    let mut a = start_on(
        store.clone(),
        clock.clone(),
        cfg.clone(),
        vec![("block", Arc::new(Block))],
        |b| b,
    )
    .await;
    let mut started_a = 0;
    a.until("two start on the first node", |e| {
        if matches!(e, EngineEvent::Started(..)) {
            started_a += 1;
        }
        started_a == 2
    })
    .await;
    let mut b = start_on(store, clock, cfg, vec![("block", Arc::new(Block))], |b| b).await;
    let mut started_b = 0;
    b.until("the other two start on the second node", |e| {
        if matches!(e, EngineEvent::Started(..)) {
            started_b += 1;
        }
        started_b == 2
    })
    .await;
    assert_eq!(a.engine.stats().await.prefetched, 0);
    a.stop().await;
    b.stop().await;
}

/// A claim that answers after most of the lease is gone (a slow database) must not
/// start its job before renewing the lease: by then the leader may be rescuing it, and
/// the job would run twice on live nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_claimed_late_renews_its_lease_before_it_starts() {
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let id = store
        .enqueue(NewJob::new("rec", json!({ "i": 1 })))
        .await
        .unwrap()
        .id;
    // Three quarters of the lease pass before the claim answers.
    store.set_claim_delay(Duration::from_millis(300));
    let cfg = EngineConfig {
        lease: Duration::from_millis(400),
        prefetch: Prefetch::Auto { max: 1000 },
        ..config(1)
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut h = start_on(
        store.clone(),
        clock,
        cfg,
        vec![("rec", Arc::new(Recorder(seen)))],
        |b| b,
    )
    .await;
    h.until(
        "the job starts",
        |e| matches!(e, EngineEvent::Started(j, _) if *j == id),
    )
    .await;
    assert!(
        store.extended().contains(&id),
        "the late-claimed job started before its lease was renewed"
    );
    h.stop().await;
}

/// A finished job whose ack waits (a slow or briefly absent database) keeps its lease:
/// it has left the dispatcher's renewals, so the acker renews it until the ack lands,
/// and the leader does not rescue a job that ran and run it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_keeps_its_lease_while_its_ack_waits() {
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let id = store
        .enqueue(NewJob::new("rec", json!({ "i": 1 })))
        .await
        .unwrap()
        .id;
    store.hold_acks(true);
    let cfg = EngineConfig {
        lease: Duration::from_millis(600),
        ..config(1)
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut h = start_on(
        store.clone(),
        clock.clone(),
        cfg,
        vec![("rec", Arc::new(Recorder(seen.clone())))],
        |b| b,
    )
    .await;
    h.finished(1).await;
    // Two thirds of the lease pass on the store's clock while the ack waits.
    clock.advance(Duration::from_millis(400));
    let renewals = || store.extended().iter().filter(|j| **j == id).count();
    let before = renewals();
    // A dispatcher renewal sent just before the job finished may land once more;
    // two more can only be the acker's, made at the advanced clock.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while renewals() < before + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the waiting ack's lease was not renewed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Past the lease the job had when it finished: the leader finds nothing to rescue.
    clock.advance(Duration::from_millis(400));
    let rescued = store.rescue_expired(1000).await.unwrap();
    assert!(!rescued.contains(&id), "a job that ran was rescued");
    store.hold_acks(false);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while h.job(id).await.status != JobStatus::Completed {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ack never landed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.job(id).await.attempts, 1);
    assert_eq!(seen.lock().unwrap().len(), 1, "the job ran twice");
    h.stop().await;
}

/// A node whose acks cannot be written (a database slow to write) stops claiming once
/// more than two batches of outcomes wait, and claims again when they land: it never
/// runs far ahead of its acknowledgements, whose leases would otherwise pile up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stops_claiming_while_its_acks_lag() {
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(
            store
                .enqueue(NewJob::new("rec", json!({ "i": i })))
                .await
                .unwrap()
                .id,
        );
    }
    store.hold_acks(true);
    let cfg = EngineConfig {
        ack_batch: 4,
        ..config(2)
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut h = start_on(
        store.clone(),
        clock,
        cfg,
        vec![("rec", Arc::new(Recorder(seen.clone())))],
        |b| b,
    )
    .await;
    h.until("a claim held back", |e| {
        matches!(e, EngineEvent::AcksBehind(_))
    })
    .await;
    // Asked again, it holds back again (the wake-up's claim is the one refused).
    h.engine.wake();
    h.until("a claim held back again", |e| {
        matches!(e, EngineEvent::AcksBehind(_))
    })
    .await;
    let mut queued = 0;
    for id in &ids {
        if h.job(*id).await.status == JobStatus::Queued {
            queued += 1;
        }
    }
    // Two batches of 4, the one in flight, a pool of 2 and its prefetch: never 100.
    assert!(queued >= 80, "claimed {} while acks lagged", 100 - queued);
    store.hold_acks(false);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for id in &ids {
        while h.job(*id).await.status != JobStatus::Completed {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not every job completed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(seen.lock().unwrap().len(), 100, "a job ran twice");
    h.stop().await;
}

/// A claim that comes back short of its limit took every claimable job: the node then
/// claims again only when woken (one recheck aside), not once per finished job, which
/// would send an empty claim through the store for every job an idle node runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_node_claims_again_only_when_woken() {
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    for i in 0..6 {
        store
            .enqueue(NewJob::new("rec", json!({ "i": i })))
            .await
            .unwrap();
    }
    let cfg = EngineConfig {
        prefetch: Prefetch::PerWorker(10),
        poll_interval: Duration::from_secs(3600),
        ..config(2)
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut h = start_on(
        store,
        clock,
        cfg,
        vec![("rec", Arc::new(Recorder(seen.clone())))],
        |b| b,
    )
    .await;
    let mut claims = Vec::new();
    let (mut finished, mut written) = (0, 0);
    // All three jobs run and their outcomes are written; the recheck's claim comes.
    h.until("6 jobs done and the recheck", |e| {
        match e {
            EngineEvent::Claimed(n) => claims.push(*n),
            EngineEvent::Finished(..) => finished += 1,
            EngineEvent::Acked { written: w, .. } => written += w,
            _ => {}
        }
        finished >= 6 && written >= 6 && claims.len() >= 2
    })
    .await;
    assert_eq!(
        claims,
        [6, 0],
        "one claim took all six, the recheck found none"
    );
    h.engine.wake();
    h.until("the wake-up's claim", |e| {
        if let EngineEvent::Claimed(n) = e {
            claims.push(*n);
            return true;
        }
        false
    })
    .await;
    assert_eq!(
        claims,
        [6, 0, 0],
        "claimed with nothing to claim and no wake-up"
    );
    assert_eq!(seen.lock().unwrap().len(), 6);
    h.stop().await;
}
