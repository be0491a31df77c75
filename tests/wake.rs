//! Wake-ups across processes (issue 9): a job created through an API-only process starts
//! on a separate `kyu worker` at once — through Redis pub/sub, or PostgreSQL
//! LISTEN/NOTIFY without Redis — although both poll only every 60 s. With Redis cut,
//! jobs still run (by polling) and wake-ups come back by themselves when it returns.
//!
//! Timing checks only tell a wake-up (milliseconds) from a poll (seconds): a wake-up
//! must start the job well inside the poll interval. `wake_latency_report` (ignored;
//! run it by name) prints enqueue→start p50/p99 for Redis, NOTIFY and polling alone.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::api::Server;
use common::proxy::Proxy;
use common::redis_cluster::RedisCluster;
use common::{KyuProcess, TempDir, wait_until};
use kyu::store::testdb;
use serde_json::{Value, json};

const REDIS_URL_ENV: &str = "KYU_TEST_REDIS_URL";

/// An API-only node and a worker node on one database.
struct Cluster {
    api: Server,
    worker: KyuProcess,
}

impl Cluster {
    async fn start(dir: TempDir, url: &str, env: &[(&str, String)]) -> Cluster {
        let mut env = env.to_vec();
        env.push(("NO_COLOR", "1".into()));
        env.push(("KYU_AUTOSCALE", "false".into()));
        env.push(("KYU_SHUTDOWN_GRACE", "1s".into()));
        // The scheduler's tick also wakes the dispatcher for due jobs: keep it as rare
        // as the poll, unless the test says otherwise.
        if !env.iter().any(|(k, _)| *k == "KYU_RESCUE_INTERVAL") {
            env.push(("KYU_RESCUE_INTERVAL", "60s".into()));
        }
        let mut worker_env = env.clone();
        worker_env.push(("DATABASE_URL", url.to_owned()));
        worker_env.push(("JOB_QUEUE_WORKER_COUNT", "4".into()));
        let worker = KyuProcess::start(&["worker"], &worker_env, dir.path().join("worker.log"));
        env.push(("JOB_WORKER_ENABLED", "false".into()));
        let api = Server::start_on(dir, url, &env).await;
        Cluster { api, worker }
    }

    /// Waits until the worker's log shows `line` `n` times.
    async fn worker_logged(&self, line: &str, n: usize) {
        let what = format!("worker log line {line:?} ×{n}");
        wait_until(&what, Duration::from_secs(30), || async {
            self.worker.log_text().matches(line).count() >= n
        })
        .await;
    }

    /// Creates a job through the API node and returns how long it took to be seen
    /// running (or finished) — started by the worker node. Returns once the job is
    /// completed and the worker idle again (a finishing job makes the dispatcher claim
    /// again, which would find the next job without any wake-up).
    async fn enqueue_to_start(&self) -> Duration {
        let t0 = Instant::now();
        let id = self
            .api
            .create(None, json!({"type": "noop", "payload": {}}))
            .await;
        let deadline = t0 + Duration::from_secs(120);
        let took = loop {
            let a = self.api.get(&format!("/api/v1/jobs/{id}"), None).await;
            if a.body["status"] != "queued" {
                break t0.elapsed();
            }
            assert!(Instant::now() < deadline, "job {id} never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        self.api.wait_status(&id, None, "completed").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        took
    }

    /// `n` jobs one after another must each start within `limit` (well inside the poll
    /// interval: only a wake-up does that).
    async fn assert_woken(&self, n: usize, limit: Duration) {
        for i in 0..n {
            let took = self.enqueue_to_start().await;
            assert!(
                took < limit,
                "job {i} took {took:?} to start (> {limit:?}): no wake-up reached the \
                 worker\nworker log:\n{}\napi log:\n{}",
                self.worker.log_text(),
                self.api.log_text()
            );
        }
    }
}

fn redis_url() -> Option<String> {
    testdb::service_url(REDIS_URL_ENV)
}

/// A prefix of Redis keys and channels no other test uses.
fn redis_prefix() -> String {
    format!("kyu-test-{}:", uuid::Uuid::new_v4().simple())
}

async fn redis_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    tokio::net::lookup_host(hostport)
        .await
        .expect("resolve redis")
        .next()
        .expect("redis address")
}

fn poll(every: &str) -> (&'static str, String) {
    ("JOB_QUEUE_POLL_INTERVAL", every.to_owned())
}

#[tokio::test]
async fn redis_wakes_a_worker_on_another_process() {
    let Some(redis) = redis_url() else { return };
    let Some((url, _db)) = testdb::postgres_db().await else {
        return;
    };
    let c = Cluster::start(
        TempDir::new("wake-redis"),
        &url,
        &[
            poll("60s"),
            ("REDIS_URL", redis),
            ("KYU_REDIS_PREFIX", redis_prefix()),
        ],
    )
    .await;
    c.worker_logged("wake-up subscription connected", 1).await;
    assert!(
        c.worker.log_text().contains("transport=\"redis\"")
            || c.worker.log_text().contains("transport=redis")
    );
    c.assert_woken(5, Duration::from_secs(5)).await;
}

/// The same through a 3-master Redis Cluster the test starts (`redis+cluster://`).
#[tokio::test]
async fn a_redis_cluster_wakes_a_worker_on_another_process() {
    let redis_dir = TempDir::new("wake-cluster-redis");
    let Some(redis) = RedisCluster::start(redis_dir.path()) else {
        return;
    };
    let Some((url, _db)) = testdb::postgres_db().await else {
        return;
    };
    let c = Cluster::start(
        TempDir::new("wake-cluster"),
        &url,
        &[
            poll("60s"),
            ("REDIS_URL", redis.url()),
            ("KYU_REDIS_PREFIX", redis_prefix()),
        ],
    )
    .await;
    c.worker_logged("wake-up subscription connected", 1).await;
    c.assert_woken(5, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn postgres_notify_wakes_a_worker_without_redis() {
    let Some((url, _db)) = testdb::postgres_db().await else {
        return;
    };
    let c = Cluster::start(TempDir::new("wake-pg"), &url, &[poll("60s")]).await;
    c.worker_logged("wake-up subscription connected", 1).await;
    assert!(c.worker.log_text().contains("postgres"));
    c.assert_woken(5, Duration::from_secs(5)).await;
}

/// The LISTEN session is killed by the server: the subscriber
/// notices, reconnects by itself, and wake-ups go on.
#[tokio::test]
async fn a_killed_listen_session_is_remade() {
    let Some((url, _db)) = testdb::postgres_db().await else {
        return;
    };
    let c = Cluster::start(TempDir::new("wake-pgkill"), &url, &[poll("60s")]).await;
    c.worker_logged("wake-up subscription connected", 1).await;
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&pool)
    .await
    .expect("terminate");
    pool.close().await;
    assert_eq!(killed, vec![true], "one LISTEN session to kill");
    c.worker_logged("wake-up subscription is back", 1).await;
    c.assert_woken(3, Duration::from_secs(5)).await;
}

/// Redis is cut (connections closed, new ones dropped): jobs still run, by polling;
/// when it is back, the subscriber reconnects by itself and wake-ups work again.
#[tokio::test]
async fn losing_redis_strands_no_job_and_wake_ups_come_back() {
    let Some(redis) = redis_url() else { return };
    let Some((url, _db)) = testdb::postgres_db().await else {
        return;
    };
    let proxy = Proxy::start(redis_addr(&redis).await).await;
    let c = Cluster::start(
        TempDir::new("wake-cut"),
        &url,
        &[
            // Short enough to run the jobs created while Redis is away, long enough
            // to tell a wake-up (ms) from a poll.
            poll("4s"),
            ("REDIS_URL", format!("redis://{}", proxy.addr)),
            ("KYU_REDIS_PREFIX", redis_prefix()),
        ],
    )
    .await;
    c.worker_logged("wake-up subscription connected", 1).await;
    c.assert_woken(3, Duration::from_secs(2)).await;

    proxy.cut();
    c.worker_logged("wake-up subscription lost", 1).await;
    let t0 = Instant::now();
    let a = c
        .api
        .post(
            "/api/v1/jobs/batch",
            None,
            json!({"jobs": (0..10).map(|_| json!({"type": "noop", "payload": {}})).collect::<Vec<Value>>()}),
        )
        .await;
    assert!(a.status.is_success(), "{}", a.body);
    let ids: Vec<String> = a.body["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["job_id"].as_str().expect("job_id").to_owned())
        .collect();
    assert_eq!(ids.len(), 10, "{}", a.body);
    for id in &ids {
        c.api.wait_status(id, None, "completed").await;
    }
    eprintln!(
        "jobs created while Redis was cut completed after {:?} (by polling)",
        t0.elapsed()
    );

    proxy.restore();
    c.worker_logged("wake-up subscription is back", 1).await;
    c.worker_logged("wake-up subscription connected", 2).await;
    // The API's publisher finds out on its next publish (it retries after its back-off):
    // one job to let it reconnect, then wake-ups must be back.
    c.enqueue_to_start().await;
    wait_until(
        "the API to publish wake-ups again",
        Duration::from_secs(30),
        || async { c.api.log_text().contains("publishing wake-ups is back") },
    )
    .await;
    c.assert_woken(3, Duration::from_secs(2)).await;
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Cross-node enqueue→start latency: an API node and a worker node on PostgreSQL,
/// jobs created at random moments (0–100 ms apart) through the API; latency is the
/// job's `started_at − created_at` (both the database's clock). Modes: Redis pub/sub,
/// PostgreSQL NOTIFY, and polling only; all with the default poll interval (5 s) and
/// scheduler tick (5 s).
#[tokio::test]
#[ignore = "a measurement (about a minute); run with --ignored --nocapture"]
async fn wake_latency_report() {
    let redis = redis_url();
    let jobs: usize = std::env::var("KYU_WAKE_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut modes: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
    if let Some(r) = &redis {
        modes.push((
            "redis",
            vec![
                ("REDIS_URL", r.clone()),
                ("KYU_REDIS_PREFIX", redis_prefix()),
            ],
        ));
    }
    modes.push(("postgres_notify", vec![]));
    modes.push(("polling_only", vec![("KYU_WAKE", "off".into())]));
    let mut report = serde_json::Map::new();
    for (mode, env) in modes {
        let Some((url, _db)) = testdb::postgres_db().await else {
            return;
        };
        // Default poll (5 s) and scheduler tick (5 s, which also wakes for due jobs).
        let mut env = env;
        env.push(("KYU_RESCUE_INTERVAL", "5s".into()));
        let c = Cluster::start(TempDir::new("wake-bench"), &url, &env).await;
        if mode != "polling_only" {
            c.worker_logged("wake-up subscription connected", 1).await;
        }
        let mut ids = Vec::new();
        for i in 0..jobs {
            ids.push(
                c.api
                    .create(None, json!({"type": "noop", "payload": {"i": i}}))
                    .await,
            );
            let gap = (uuid::Uuid::new_v4().as_u128() % 100) as u64;
            tokio::time::sleep(Duration::from_millis(gap)).await;
        }
        let mut lat = Vec::new();
        for id in &ids {
            let j = c.api.wait_status(id, None, "completed").await;
            let created =
                chrono::DateTime::parse_from_rfc3339(j["created_at"].as_str().expect("created_at"))
                    .expect("time");
            let started =
                chrono::DateTime::parse_from_rfc3339(j["started_at"].as_str().expect("started_at"))
                    .expect("time");
            lat.push((started - created).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
        lat.sort_by(f64::total_cmp);
        let line = json!({
            "jobs": lat.len(),
            "p50_ms": percentile(&lat, 0.5),
            "p99_ms": percentile(&lat, 0.99),
            "max_ms": lat.last().copied().unwrap_or(f64::NAN),
        });
        println!("wake latency {mode}: {line}");
        report.insert(mode.to_owned(), line);
    }
    println!("{}", Value::Object(report));
}
