//! Every job's span is a root. ractor hands each message the sender's span, so a job
//! started while the dispatcher handled another job's Finished became that job's child;
//! with jobs claimed far ahead a busy node's jobs formed one chain of spans, and closing
//! its last link recursed through all of them until the stack overflowed. Its own test
//! binary: it installs a process-wide tracing subscriber.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kyu_actors::prefetch::Prefetch;
use kyu_actors::testkit::{ManualClock, MemoryStore};
use kyu_actors::{Engine, EngineConfig, EngineEvent, Handler, JobContext, JobError, NewJob, Store};
use serde_json::{Value, json};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// The parent's name of every "job" span, as it is created.
#[derive(Clone, Default)]
struct JobParents(Arc<Mutex<Vec<Option<String>>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for JobParents {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() == "job" {
            let parent = ctx
                .span(id)
                .and_then(|s| s.parent().map(|p| p.name().to_owned()));
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(parent);
        }
    }
}

struct Noop;

#[async_trait]
impl Handler for Noop {
    async fn run(&self, _ctx: JobContext) -> Result<Value, JobError> {
        Ok(Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_span_is_never_another_jobs_child() {
    const JOBS: usize = 300;
    let parents = JobParents::default();
    tracing::subscriber::set_global_default(Registry::default().with(parents.clone()))
        .expect("the only subscriber of this test binary");
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    for i in 0..JOBS {
        store
            .enqueue(NewJob::new("noop", json!({ "i": i })))
            .await
            .expect("enqueue");
    }
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let engine = Engine::builder()
        .store(store.clone())
        .clock(clock)
        .config(EngineConfig {
            workers: 2,
            autoscale: false,
            // Claimed far ahead: most jobs start on another job's Finished.
            prefetch: Prefetch::Auto { max: 1000 },
            poll_interval: Duration::from_millis(50),
            ..EngineConfig::default()
        })
        .events(tx)
        .handler("noop", Arc::new(Noop))
        .start()
        .await
        .expect("engine starts");
    let mut finished = 0;
    while finished < JOBS {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Some(EngineEvent::Finished(..))) => finished += 1,
            Ok(Some(_)) => {}
            _ => panic!("{finished} of {JOBS} jobs finished"),
        }
    }
    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    let parents = parents.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(parents.len() >= JOBS, "{} job spans", parents.len());
    let nested: Vec<_> = parents.iter().flatten().collect();
    assert!(nested.is_empty(), "job spans with a parent: {nested:?}");
}
