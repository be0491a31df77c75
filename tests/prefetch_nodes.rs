//! No hoarding with the measured prefetch (`kyu_prefetch = "auto"`): three engines on one PostgreSQL
//! (SQLite without the service), two slots each, jobs of a second. Every round of six
//! jobs starts at once, two per engine — none waits claimed on a busy engine while
//! another engine's slot is free, which would show as a start a whole job later.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kyu::engine::{Engine, EngineConfig, Handler, JobContext, JobError, NewJob};
use kyu::serde_json::{Value, json};

/// (engine, started) per run.
type Starts = Arc<Mutex<Vec<(usize, Instant)>>>;

/// Runs for a second; notes which engine started it, and when.
struct Second {
    engine: usize,
    starts: Starts,
}

#[kyu::async_trait]
impl Handler for Second {
    async fn run(&self, _ctx: JobContext) -> Result<Value, JobError> {
        self.starts
            .lock()
            .map_err(|_| JobError::NonRetryable("poisoned".into()))?
            .push((self.engine, Instant::now()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_jobs_start_on_every_free_slot_across_three_engines() {
    let dir = common::TempDir::new("prefetch-nodes");
    let (url, _guard) = match kyu::store::testdb::postgres_db().await {
        Some((url, guard)) => (url, Some(guard)),
        None => (
            format!("sqlite://{}", dir.path().join("jobs.db").display()),
            None,
        ),
    };
    let store = kyu::store::open(&url, Default::default())
        .await
        .expect("store");
    let starts: Starts = Arc::default();
    let config = EngineConfig {
        workers: 2,
        autoscale: false,
        poll_interval: Duration::from_millis(50),
        prefetch: kyu::engine::Prefetch::Auto { max: 1000 },
        ..EngineConfig::default()
    };
    let mut engines = Vec::new();
    for n in 0..3 {
        let store = kyu::store::open(&url, Default::default())
            .await
            .expect("store");
        engines.push(
            Engine::builder()
                .store(store)
                .config(config.clone())
                .handler(
                    "second",
                    Arc::new(Second {
                        engine: n,
                        starts: starts.clone(),
                    }),
                )
                .start()
                .await
                .expect("engine"),
        );
    }
    // Round 1 before any job time is measured, round 2 after.
    for round in 1..=2 {
        let before = starts.lock().map(|s| s.len()).unwrap_or(0);
        let sent = Instant::now();
        let jobs = (0..6)
            .map(|i| NewJob::new("second", json!({ "round": round, "i": i })))
            .collect();
        let ids: Vec<_> = store
            .enqueue_many(jobs)
            .await
            .expect("enqueue")
            .into_iter()
            .map(|e| e.id)
            .collect();
        common::wait_until("six starts", Duration::from_secs(30), || {
            let n = starts.lock().map(|s| s.len()).unwrap_or(0);
            async move { n >= before + 6 }
        })
        .await;
        let these: Vec<(usize, Instant)> = starts.lock().expect("starts")[before..].to_vec();
        let last = these.iter().map(|(_, t)| *t).max().expect("starts");
        assert!(
            last.duration_since(sent) < Duration::from_millis(900),
            "round {round}: a job waited {:?} for a slot (claimed on a busy engine?)",
            last.duration_since(sent)
        );
        for e in 0..3 {
            assert_eq!(
                these.iter().filter(|(n, _)| *n == e).count(),
                2,
                "round {round}: two jobs per engine"
            );
        }
        // The round finishes before the next begins.
        common::wait_until("the round completes", Duration::from_secs(30), || {
            let (store, ids) = (store.clone(), ids.clone());
            async move {
                for id in ids {
                    match store.get(id).await {
                        Ok(Some(j)) if j.status == kyu::engine::JobStatus::Completed => {}
                        _ => return false,
                    }
                }
                true
            }
        })
        .await;
    }
    for e in engines {
        e.shutdown(Duration::from_secs(5)).await.expect("stop");
    }
}
