//! Concurrency keys across engines (ARCHITECTURE §10), on SQLite, PostgreSQL and
//! MariaDB: three engines, each with its own pool on one database, run 200 jobs of one
//! key with limit 2 beside 200 jobs of other keys and 200 plain jobs. A ledger of
//! each handler's start and end proves the key never ran more than 2 at once, and the
//! other jobs did not queue behind it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kyu::engine::{Engine, EngineConfig, Handler, JobContext, JobError, NewJob};
use kyu::serde_json::{Value, json};

const HOT: &str = "chatwork:1";
const HOT_JOBS: usize = 200;
const OTHER_JOBS: usize = 200;
const PLAIN_JOBS: usize = 200;

/// (key, start, end) of every run.
type Ledger = Arc<Mutex<Vec<(String, Instant, Instant)>>>;

/// Works for 3 ms and writes down when.
struct Recorded {
    ledger: Ledger,
}

#[kyu::async_trait]
impl Handler for Recorded {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(3)).await;
        let key = ctx.payload["key"].as_str().unwrap_or("").to_owned();
        self.ledger
            .lock()
            .map_err(|_| JobError::NonRetryable("poisoned".into()))?
            .push((key, start, Instant::now()));
        Ok(Value::Null)
    }
}

/// Most intervals of `key` open at one instant.
fn most_at_once(ledger: &[(String, Instant, Instant)], key: &str) -> usize {
    let mut edges: Vec<(Instant, i32)> = Vec::new();
    for (k, s, e) in ledger.iter().filter(|(k, _, _)| k == key) {
        let _ = k;
        edges.push((*s, 1));
        edges.push((*e, -1));
    }
    // Ends before starts at the same instant: touching intervals do not overlap.
    edges.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

async fn three_engines_keep_the_key_limit(url: &str) {
    let ledger: Ledger = Arc::default();
    let config = EngineConfig {
        workers: 4,
        autoscale: false,
        // Slots freed on another engine are seen at the next poll.
        poll_interval: Duration::from_millis(20),
        ..EngineConfig::default()
    };
    let mut engines = Vec::new();
    for _ in 0..3 {
        let store = kyu::store::open(url, Default::default())
            .await
            .expect("store");
        engines.push(
            Engine::builder()
                .store(store)
                .config(config.clone())
                .handler(
                    "recorded",
                    Arc::new(Recorded {
                        ledger: ledger.clone(),
                    }),
                )
                .start()
                .await
                .expect("engine"),
        );
    }
    let store = kyu::store::open(url, Default::default())
        .await
        .expect("store");
    let job = |key: &str| NewJob::new("recorded", json!({ "key": key }));
    let mut jobs: Vec<NewJob> = (0..HOT_JOBS)
        .map(|_| job(HOT).concurrency(HOT, 2))
        .collect();
    jobs.extend((0..OTHER_JOBS).map(|i| {
        let key = format!("user:{i}");
        job(&key).concurrency(key, 1)
    }));
    jobs.extend((0..PLAIN_JOBS).map(|_| job("")));
    store.enqueue_many(jobs).await.expect("enqueue");

    let total = HOT_JOBS + OTHER_JOBS + PLAIN_JOBS;
    common::wait_until("every job ran", Duration::from_secs(120), || {
        let n = ledger.lock().map(|l| l.len()).unwrap_or(0);
        async move { n >= total }
    })
    .await;
    for e in engines {
        e.shutdown(Duration::from_secs(5)).await.expect("stop");
    }

    let ledger = ledger.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(ledger.len(), total, "each job ran once");
    assert_eq!(
        most_at_once(&ledger, HOT),
        2,
        "{HOT} ran more (or fewer) than 2 at once"
    );
    // The other keys and plain jobs ran beside the hot key, not after it: all of them
    // were done before half of the hot key's jobs were.
    let mut hot_ends: Vec<Instant> = ledger
        .iter()
        .filter(|(k, _, _)| k == HOT)
        .map(|(_, _, e)| *e)
        .collect();
    hot_ends.sort();
    let last_other = ledger
        .iter()
        .filter(|(k, _, _)| k != HOT)
        .map(|(_, _, e)| *e)
        .max()
        .expect("other jobs ran");
    assert!(
        last_other < hot_ends[HOT_JOBS / 2],
        "the other jobs waited behind the limited key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_three_engines_keep_the_key_limit() {
    let dir = common::TempDir::new("flow-sqlite");
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    // Create and migrate once, before three engines open it at the same time.
    drop(
        kyu::store::open(&url, Default::default())
            .await
            .expect("store"),
    );
    three_engines_keep_the_key_limit(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_three_engines_keep_the_key_limit() {
    let Some((url, _guard)) = kyu::store::testdb::postgres_db().await else {
        eprintln!("skipped: KYU_TEST_POSTGRES_URL not set");
        return;
    };
    three_engines_keep_the_key_limit(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_three_engines_keep_the_key_limit() {
    let Some((url, _guard)) = kyu::store::testdb::mysql_db().await else {
        eprintln!("skipped: KYU_TEST_MYSQL_URL not set");
        return;
    };
    three_engines_keep_the_key_limit(&url).await;
}
