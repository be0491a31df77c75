//! A workflow run by an embedded engine (SQLite): built with the Rust builder, its Rust
//! handlers read their dependencies' results from `ctx.dependency_results()`, the
//! acker wakes the dispatcher for released jobs, and `kyu_workflows_finished_total`
//! counts the finish. Waits on engine events, never on a clock.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kyu::engine::workflow::ON_COMPLETE_KEY;
use kyu::engine::{
    Engine, EngineConfig, EngineEvent, Handler, JobContext, JobError, JobStatus, NewJob, Workflow,
    WorkflowStatus,
};
use kyu::serde_json::{Value, json};

/// Each job's name and the keys of the dependency results it was given.
type Seen = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// Sums its payload's `n` and every dependency's `sum`; records what it saw.
struct Sum {
    seen: Seen,
}

#[kyu::async_trait]
impl Handler for Sum {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let deps = ctx.dependency_results();
        let mut sum = ctx.payload["n"].as_i64().unwrap_or(0);
        for r in deps.values() {
            sum += r["sum"].as_i64().unwrap_or(0);
        }
        let name = ctx.payload["name"].as_str().unwrap_or("?").to_owned();
        self.seen
            .lock()
            .map_err(|_| JobError::NonRetryable("poisoned".into()))?
            .push((name, deps.keys().cloned().collect()));
        Ok(json!({ "sum": sum }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_handlers_get_their_dependencies_results() {
    let dir = common::TempDir::new("wf-engine");
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let store = kyu::store::open(&url, Default::default())
        .await
        .expect("store");
    let seen: Seen = Arc::default();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    // A long poll: a released job is started because the acker wakes the dispatcher.
    let config = EngineConfig {
        poll_interval: Duration::from_secs(3600),
        ..EngineConfig::default()
    };
    let engine = Engine::builder()
        .store(store.clone())
        .config(config)
        .handler("sum", Arc::new(Sum { seen: seen.clone() }))
        .events(tx)
        .start()
        .await
        .expect("engine");

    let job = |name: &str, n: i64| NewJob::new("sum", json!({ "name": name, "n": n }));
    let wf = Workflow::new()
        .name("sums")
        .job("a", job("a", 1))
        .job("b", job("b", 10))
        .depends_on(["a"])
        .job("c", job("c", 100))
        .depends_on(["a"])
        .job("d", job("d", 1000))
        .depends_on(["b", "c"])
        .on_complete(job("done", 0));
    let created = engine.enqueue_workflow(wf).await.expect("enqueue");
    let last = created.jobs[ON_COMPLETE_KEY];

    let wait = async {
        while let Some(ev) = events.recv().await {
            if ev == EngineEvent::Finished(last, None) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("the callback ran");
    engine.shutdown(Duration::from_secs(5)).await.expect("stop");

    let d = store.get(created.jobs["d"]).await.unwrap().expect("d");
    assert_eq!(d.status, JobStatus::Completed);
    // d = 1000 + b (10 + 1) + c (100 + 1)
    assert_eq!(d.result, Some(json!({ "sum": 1112 })));
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let of = |name: &str| {
        seen.iter()
            .find(|(n, _)| n == name)
            .map(|(_, deps)| deps.clone())
            .unwrap_or_default()
    };
    assert_eq!(of("a"), Vec::<String>::new());
    assert_eq!(of("b"), vec!["a".to_owned()]);
    assert_eq!(of("d"), vec!["b".to_owned(), "c".to_owned()]);
    assert_eq!(of("done"), vec!["a", "b", "c", "d"]);
    let rec = store.workflow(created.id).await.unwrap().expect("workflow");
    assert_eq!(rec.status(), WorkflowStatus::Completed);
}
