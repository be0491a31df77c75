//! The engine's metrics, read from a debugging recorder installed
//! for this test binary: finished jobs by outcome, failed attempts by kind and
//! disposition, run and wait histograms, pool gauges, rate-limit waits and tokens.
//! A snapshot resets what it reads (counters and gauges swap to 0), so tests take turns
//! ([`turn`]), start from a reset, and read once at the end.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use kyu_actors::rate_limit::Limit;
use kyu_actors::telemetry::*;
use kyu_actors::testkit::{ManualClock, MemoryStore};
use kyu_actors::{
    Engine, EngineConfig, EngineEvent, Handler, JobContext, JobError, NewJob, Prefetch, Store,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

const DEADLINE: Duration = Duration::from_secs(30);

fn snapshotter() -> &'static Snapshotter {
    static S: OnceLock<Snapshotter> = OnceLock::new();
    S.get_or_init(|| {
        let rec = DebuggingRecorder::new();
        let s = rec.snapshotter();
        rec.install()
            .expect("the only recorder in this test binary");
        s
    })
}

/// One test at a time; the recorder starts empty for it.
async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    let guard = LOCK.get_or_init(Default::default).lock().await;
    let _ = snapshotter().snapshot();
    guard
}

/// Every metric now, by name and sorted `k=v` labels.
struct Snap(HashMap<(String, Vec<String>), DebugValue>);

impl Snap {
    fn take() -> Snap {
        Snap(
            snapshotter()
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(k, _, _, v)| {
                    let key = k.key();
                    let mut labels: Vec<String> = key
                        .labels()
                        .map(|l| format!("{}={}", l.key(), l.value()))
                        .collect();
                    labels.sort();
                    ((key.name().to_owned(), labels), v)
                })
                .collect(),
        )
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        l.sort();
        self.0.get(&(name.to_owned(), l))
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.get(name, labels) {
            Some(DebugValue::Gauge(g)) => g.into_inner(),
            other => panic!("{name}{labels:?} is not a gauge: {other:?}"),
        }
    }

    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.get(name, labels) {
            Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
            other => panic!("{name}{labels:?} is not a histogram: {other:?}"),
        }
    }
}

/// `fail: "retryable" | "non_retryable"` up to attempt `upto`; else succeeds.
struct Scripted;

#[async_trait]
impl Handler for Scripted {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let upto = ctx.payload["upto"].as_u64().unwrap_or(u64::MAX);
        match ctx.payload["fail"].as_str() {
            Some("retryable") if u64::from(ctx.attempt) <= upto => {
                Err(JobError::retryable("not yet"))
            }
            Some("non_retryable") => Err(JobError::non_retryable("never")),
            _ => Ok(Value::Null),
        }
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        workers: 3,
        min_workers: 1,
        max_workers: 10,
        autoscale: false,
        prefetch: Prefetch::PerWorker(1),
        poll_interval: Duration::from_millis(50),
        rescue_interval: Duration::from_millis(50),
        backoff_base: Duration::ZERO,
        ..EngineConfig::default()
    }
}

async fn start(
    extra: impl FnOnce(kyu_actors::EngineBuilder) -> kyu_actors::EngineBuilder,
) -> (Engine, Arc<MemoryStore>, UnboundedReceiver<EngineEvent>) {
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let (tx, rx) = unbounded_channel();
    let b = Engine::builder()
        .store(store.clone())
        .clock(clock)
        .config(config())
        .events(tx)
        .handler("scripted", Arc::new(Scripted));
    let engine = extra(b).start().await.expect("engine starts");
    (engine, store, rx)
}

async fn until(rx: &mut UnboundedReceiver<EngineEvent>, mut f: impl FnMut(&EngineEvent) -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if f(&e) => return,
            Ok(Some(_)) => {}
            _ => panic!("the engine went quiet"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_errors_and_timings_are_counted_once_written() {
    let _turn = turn().await;
    let (engine, store, mut rx) = start(|b| b).await;
    let q = "m-outcomes";
    let job = |p: Value| NewJob::new("scripted", p).queue(q).max_attempts(3);
    let jobs = vec![
        job(json!({})),
        job(json!({})),
        job(json!({ "fail": "retryable", "upto": 1 })),
        job(json!({ "fail": "retryable" })),
        job(json!({ "fail": "non_retryable" })),
    ];
    let ids: Vec<_> = jobs.iter().map(|j| j.id).collect();
    engine.enqueue_many(jobs).await.unwrap();
    // 2 + 2 + 3 + 1 attempts, every outcome written.
    let mut written = 0;
    until(&mut rx, |e| {
        if let EngineEvent::Acked { written: w, .. } = e {
            written += w;
        }
        written >= 8
    })
    .await;
    for id in &ids {
        let j = store.get(*id).await.unwrap().unwrap();
        assert!(j.status.is_final(), "{j:?}");
    }
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
    let s = Snap::take();
    let t = [("queue", q), ("type", "scripted")];
    let finished = |outcome| s.counter(JOBS_FINISHED, &[t[0], t[1], ("outcome", outcome)]);
    assert_eq!(finished("completed"), 3);
    assert_eq!(finished("failed"), 2);
    assert_eq!(finished("canceled"), 0);
    let errors = |kind, disp| {
        s.counter(
            JOB_ERRORS,
            &[t[0], t[1], ("kind", kind), ("disposition", disp)],
        )
    };
    assert_eq!(errors("retryable", "retry"), 3, "1 + 2 retried attempts");
    assert_eq!(errors("retryable", "failed"), 1, "the last attempt of 3");
    assert_eq!(errors("non_retryable", "failed"), 1);
    let runs = s.samples(JOB_RUN_SECONDS, &t);
    assert_eq!(runs.len(), 8, "one run time per attempt");
    assert!(runs.iter().all(|r| (0.0..5.0).contains(r)), "{runs:?}");
    let waits = s.samples(JOB_WAIT_SECONDS, &t);
    assert_eq!(waits.len(), 8);
    assert!(waits.iter().all(|w| *w >= 0.0), "{waits:?}");
    assert_eq!(
        s.gauge(WORKERS, &[("kind", "local"), ("state", "busy")]),
        0.0
    );
    assert_eq!(
        s.gauge(WORKERS, &[("kind", "local"), ("state", "idle")]),
        3.0
    );
    assert_eq!(s.gauge(WORKERS_TARGET, &[]), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_for_a_token_is_counted_once() {
    let _turn = turn().await;
    let prov = "m-slow-provider";
    let (engine, _store, mut rx) = start(|b| {
        b.provider_limit(
            prov,
            Limit {
                per_minute: 1,
                burst: 1,
            },
        )
    })
    .await;
    let jobs: Vec<_> = (0..2)
        .map(|i| NewJob::new("scripted", json!({ "i": i })).provider(prov))
        .collect();
    engine.enqueue_many(jobs).await.unwrap();
    until(&mut rx, |e| matches!(e, EngineEvent::RateLimited(_))).await;
    let s = Snap::take();
    assert_eq!(s.counter(RATE_LIMIT_WAITS, &[("provider", prov)]), 1);
    assert!(s.gauge(RATE_LIMIT_TOKENS, &[("provider", prov)]) < 1.0);
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A job whose node died: the lease rescue that requeues it counts a `retry`, the one
/// that finds it out of attempts counts it `failed`, with the rescue's error kind.
#[tokio::test]
async fn a_rescued_job_is_counted_by_its_fate() {
    let _t = turn().await;
    let clock = Arc::new(ManualClock::fixed());
    let store = MemoryStore::new(clock.clone());
    let job = NewJob::new("scripted", json!({}))
        .queue("rescues")
        .max_attempts(2);
    let id = store.enqueue(job).await.expect("enqueue").id;
    let params = kyu_actors::ClaimParams {
        owner: "dead-node".into(),
        limit: 1,
        lease: Duration::from_secs(30),
        aged_before: None,
        types: vec!["scripted".into()],
        queues: None,
    };
    for _ in 0..2 {
        assert_eq!(store.claim(&params).await.expect("claim").len(), 1);
        clock.advance(Duration::from_secs(31));
        assert_eq!(store.rescue_expired(10).await.expect("rescue"), vec![id]);
        let job = store.get(id).await.expect("get").expect("job");
        record_rescued(&job);
    }
    let s = Snap::take();
    let labels = |disposition| {
        [
            ("queue", "rescues"),
            ("type", "scripted"),
            ("kind", "retryable"),
            ("disposition", disposition),
        ]
    };
    assert_eq!(s.counter(JOB_ERRORS, &labels("retry")), 1);
    assert_eq!(s.counter(JOB_ERRORS, &labels("failed")), 1);
    let finished = [
        ("queue", "rescues"),
        ("type", "scripted"),
        ("outcome", "failed"),
    ];
    assert_eq!(s.counter(JOBS_FINISHED, &finished), 1);
}
