//! kyu inside a Rust program, with no server: open a store, register a handler, start
//! the engine, enqueue a job, wait until it has completed, print its result and stop.
//!
//! ```sh
//! cargo run --example embed
//! ```
//!
//! An application of its own needs only two dependencies:
//!
//! ```toml
//! kyu = { git = "…", package = "kyu" }   # or a path to a clone
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! `kyu::async_trait` (the attribute a [`Handler`] needs) and `kyu::serde_json`
//! (payloads and results) come with `kyu`.

use std::sync::Arc;
use std::time::Duration;

use kyu::engine::{Engine, Handler, JobContext, JobError, JobStatus, NewJob, PayloadError};
use kyu::serde_json::{Value, json};

/// A job type: greets `payload.name`. A missing name is refused at enqueue (a
/// `PayloadError`); a run returns the result that is stored with the job.
struct Greet;

#[kyu::async_trait]
impl Handler for Greet {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let name = ctx.payload["name"].as_str().unwrap_or("world");
        ctx.progress.set(100).await;
        Ok(json!({ "greeting": format!("hello, {name}"), "attempt": ctx.attempt }))
    }

    fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
        match payload.get("name") {
            Some(Value::String(_)) => Ok(()),
            _ => Err(PayloadError::new("name", "expected a string")),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A SQLite file of its own (created and migrated on open); `postgres://…` or
    // `mysql://…` work the same way.
    let dir = std::env::temp_dir().join(format!("kyu-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("jobs.db").display());
    let store = kyu::store::open(&url, Default::default()).await?;

    let engine = Engine::builder()
        .store(store)
        .handler("greet", Arc::new(Greet))
        .start()
        .await?;

    let job = NewJob::new("greet", json!({ "name": "kyu" }));
    let id = engine.enqueue(job).await?.id;
    println!("enqueued greet job {id}");

    // Wait until the job is final, as stored (the engine has written its outcome).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let job = loop {
        if let Some(job) = engine.store().get(id).await?
            && job.status.is_final()
        {
            break job;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("job {id} did not finish within 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("job {id} {:?}: {}", job.status, json!(job.result));

    // Graceful stop: running jobs get up to 10 s, then the engine's actors end.
    engine.shutdown(Duration::from_secs(10)).await?;
    std::fs::remove_dir_all(&dir)?;
    if job.status != JobStatus::Completed {
        return Err(format!("job {id} ended {:?}", job.status).into());
    }
    println!("engine stopped");
    Ok(())
}
