//! Several nodes, for real: one
//! `kyu api` process and four `kyu worker` processes share one fresh database (and a
//! private `redis-server`), jobs are enqueued through the api process's batch endpoint,
//! and the `ledger` job type appends every handler start and end (job id, attempt, pid)
//! to a file outside kyu's transactions: the per-job counter that proves exactly once.
//!
//! - 50,000 jobs on PostgreSQL + Redis: every job completes exactly once, spread over all
//!   four workers.
//! - One worker SIGKILLed mid-run: every job still completes; a job ran twice only if
//!   its earlier run was on the killed node.
//! - Redis killed for 30 s mid-run and started again: enqueue keeps answering 201, jobs keep
//!   running (polling), nothing is lost or doubled, and the api's `kyu_redis_up` goes 0
//!   and back to 1.
//! - The same four-worker run on MariaDB without Redis.
//! - The Redis cases again on a private 3-master Redis Cluster (`redis+cluster://`):
//!   wake-ups, the shared provider buckets and the outage all go through it.
//!
//! Figures (drain time, jobs/s, each node's share, duplicates) are printed, not asserted.
//! The tests run one at a time (two 5-process clusters would share 2 cores).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::TempDir;
use common::cluster::{Backend, Cluster, Options, Redis, Verdict, database, gauge};
use common::redis_cluster::{AnyRedis, RedisCluster};
use kyu::engine::JobStatus;
use uuid::Uuid;

/// One cluster at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The figure for the main run.
const JOBS: usize = 50_000;
const BATCH: usize = 1_000;
/// Batch requests in flight at once.
const IN_FLIGHT: usize = 4;
/// Generous: a drain that is merely slow on a busy CI box must not fail.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// No worker may be left out: each does more than this share of the jobs.
const MIN_SHARE_PERCENT: f64 = 5.0;

fn print_run(
    tag: &str,
    jobs: usize,
    enqueue: Duration,
    drain: Duration,
    v: &Verdict,
    pids: &[u32],
) {
    eprintln!(
        "multi_node[{tag}]: jobs={jobs} enqueue={:.1}s ({:.0} jobs/s) all completed {:.1}s \
         after the first enqueue ({:.0} jobs/s) duplicated={} shares: {}",
        enqueue.as_secs_f64(),
        jobs as f64 / enqueue.as_secs_f64(),
        drain.as_secs_f64(),
        jobs as f64 / drain.as_secs_f64(),
        v.duplicated,
        v.shares_text(pids)
    );
}

fn assert_spread(v: &Verdict, pids: &[u32]) {
    for (i, pid, n, pct) in v.shares(pids) {
        assert!(
            pct > MIN_SHARE_PERCENT,
            "worker {i} (pid {pid}) ran only {n} jobs ({pct:.1} %): {}",
            v.shares_text(pids)
        );
    }
}

/// Which Redis a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WithRedis {
    No,
    Server,
    Cluster,
}

/// Starts the Redis `with` asks for in `dir`: `None` to skip the test (not installed),
/// `Some(None)` for no Redis.
fn start_redis(with: WithRedis, dir: &std::path::Path) -> Option<Option<AnyRedis>> {
    match with {
        WithRedis::No => Some(None),
        WithRedis::Server => Redis::start(dir).map(|r| Some(AnyRedis::Server(r))),
        WithRedis::Cluster => RedisCluster::start(dir).map(|c| Some(AnyRedis::Cluster(c))),
    }
}

/// Four workers and an api drain `jobs` jobs exactly once, spread over all four. With
/// Redis every job names a provider, so each start takes a token from the shared bucket
/// there (the limit far above the run's rate).
async fn drain_exactly_once(tag: &str, backend: Backend, with_redis: WithRedis, jobs: usize) {
    let _one = SERIAL.lock().await;
    let redis_dir = TempDir::new(&format!("{tag}-redis"));
    let Some(redis) = start_redis(with_redis, redis_dir.path()) else {
        return;
    };
    let Some(db) = database(backend).await else {
        return;
    };
    let started = Instant::now();
    let mut c = Cluster::start(
        tag,
        db,
        Options {
            redis_url: redis.as_ref().map(AnyRedis::url),
            env: vec![
                ("RATE_LIMIT_REQUESTS_PER_MINUTE", "60000000".into()),
                ("RATE_LIMIT_BURST_SIZE", "1000000".into()),
            ],
            ..Options::default()
        },
    )
    .await;
    if with_redis == WithRedis::Cluster {
        c.job["provider"] = "shared".into();
    }
    let pids = c.worker_pids();
    let t0 = Instant::now();
    let ids = c.enqueue(jobs, BATCH, IN_FLIGHT).await;
    let enqueue = t0.elapsed();
    assert_eq!(ids.len(), jobs);
    c.wait_completed(jobs as u64, DRAIN_LIMIT).await;
    let drain = t0.elapsed();
    c.stop_all();
    let counts = c.status_counts().await;
    assert_eq!(
        counts.get(&JobStatus::Completed).copied(),
        Some(jobs as u64),
        "{counts:?}"
    );
    let v = Verdict::check(&ids, &c.all_jobs().await, &c.ledger(), &HashSet::new());
    print_run(tag, jobs, enqueue, drain, &v, &pids);
    assert_spread(&v, &pids);
    if let Some(r) = &redis
        && with_redis == WithRedis::Cluster
    {
        // A take slower than 250 ms (a busy box) is answered by the node's own bucket,
        // by design; most must have gone to the cluster.
        let calls = bucket_calls(r);
        let outages: Vec<String> = c
            .workers
            .iter()
            .flat_map(|w| {
                w.log_text()
                    .lines()
                    .filter(|l| l.contains("redis does not answer"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        eprintln!(
            "multi_node[{tag}]: {calls} bucket scripts on the cluster for {jobs} starts; \
             fallbacks to local buckets: {outages:#?}"
        );
        assert!(
            calls >= jobs as u64 / 2,
            "the starts took their tokens in Redis: {calls} scripts for {jobs} jobs"
        );
    }
    eprintln!(
        "multi_node[{tag}]: test took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_drain_50k_jobs_exactly_once_on_postgres_and_redis() {
    drain_exactly_once("pg-redis", Backend::Postgres, WithRedis::Server, JOBS).await;
}

/// The same on a 3-master Redis Cluster; fewer jobs (the file's time budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_drain_exactly_once_on_postgres_and_a_redis_cluster() {
    drain_exactly_once(
        "pg-redis-cluster",
        Backend::Postgres,
        WithRedis::Cluster,
        20_000,
    )
    .await;
}

/// Fewer jobs than the PostgreSQL run: the point is the backend, and the file's time budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_drain_exactly_once_on_mariadb_without_redis() {
    drain_exactly_once("mariadb", Backend::MySql, WithRedis::No, 20_000).await;
}

/// A worker is SIGKILLed mid-run: every job still completes; jobs that ran twice are
/// exactly those whose earlier run was on the killed node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_nothing() {
    worker_killed_mid_run("kill", WithRedis::Server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_nothing_on_a_redis_cluster() {
    worker_killed_mid_run("kill-cluster", WithRedis::Cluster).await;
}

async fn worker_killed_mid_run(tag: &str, with_redis: WithRedis) {
    const N: usize = 20_000;
    let _one = SERIAL.lock().await;
    let redis_dir = TempDir::new(&format!("{tag}-redis"));
    let Some(Some(redis)) = start_redis(with_redis, redis_dir.path()) else {
        return;
    };
    let Some(db) = database(Backend::Postgres).await else {
        return;
    };
    let started = Instant::now();
    let mut c = Cluster::start(
        tag,
        db,
        Options {
            redis_url: Some(redis.url()),
            // A short lease: the killed node's jobs are rescued within seconds.
            lease: "3s",
            rescue_interval: "250ms",
            ..Options::default()
        },
    )
    .await;
    let pids = c.worker_pids();
    let t0 = Instant::now();
    let ids = c.enqueue(N, BATCH, IN_FLIGHT).await;
    let enqueue = t0.elapsed();
    // Mid-run: some done, many still to do.
    c.wait_completed((N / 3) as u64, DRAIN_LIMIT).await;
    let victim = 1;
    let victim_pid = pids[victim];
    c.workers[victim].kill9();
    let killed_at = Instant::now();
    let done_at_kill = c
        .status_counts()
        .await
        .get(&JobStatus::Completed)
        .copied()
        .unwrap_or(0);
    c.wait_completed(N as u64, DRAIN_LIMIT).await;
    let drain = t0.elapsed();
    let after_kill = killed_at.elapsed();
    c.stop_all();
    let killed: HashSet<u32> = [victim_pid].into();
    let v = Verdict::check(&ids, &c.all_jobs().await, &c.ledger(), &killed);
    assert!(v.rerun_from.is_subset(&killed));
    print_run(tag, N, enqueue, drain, &v, &pids);
    eprintln!(
        "multi_node[{tag}]: worker{victim} (pid {victim_pid}) SIGKILLed with {done_at_kill}/{N} \
         completed; {} jobs ran twice, all first on the killed node ({} of them had ended \
         there but were not acked); the rest drained {:.1}s after the kill; test took {:.1}s",
        v.duplicated,
        v.duplicated_after_end,
        after_kill.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // The survivors all kept working.
    let survivors: Vec<u32> = pids.iter().copied().filter(|p| *p != victim_pid).collect();
    assert_spread_among(&v, &survivors);
}

fn assert_spread_among(v: &Verdict, pids: &[u32]) {
    for pid in pids {
        assert!(
            v.by_pid.get(pid).copied().unwrap_or(0) > 0,
            "pid {pid} completed nothing: {}",
            v.shares_text(pids)
        );
    }
}

/// Redis is killed for 30 s mid-run and started again on the same port. Enqueue keeps
/// answering 201 throughout, jobs enqueued while it is away still run (the fallback
/// poll), none is lost or run twice, and the api node's `kyu_redis_up` reads 0 while it is
/// away and 1 once it is back. Every job names a provider, so each start takes a token
/// from the shared bucket: in Redis before the outage, from the node's local bucket
/// while Redis is away, and in Redis again after (the new server's `INFO commandstats`
/// counts the bucket script). The limit is set far above the run's rate: this is about
/// where the takes go, not about throttling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_for_30s_loses_nothing() {
    redis_away_loses_nothing("redis-outage", WithRedis::Server).await;
}

/// The same with every node of a 3-master Redis Cluster killed and started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_away_for_30s_loses_nothing() {
    redis_away_loses_nothing("cluster-outage", WithRedis::Cluster).await;
}

async fn redis_away_loses_nothing(tag: &str, with_redis: WithRedis) {
    const BEFORE: usize = 5_000;
    const DURING_BATCH: usize = 250;
    const AFTER: usize = 5_000;
    const OUTAGE: Duration = Duration::from_secs(30);
    let _one = SERIAL.lock().await;
    let redis_dir = TempDir::new(&format!("{tag}-redis"));
    let Some(Some(mut redis)) = start_redis(with_redis, redis_dir.path()) else {
        return;
    };
    let Some(db) = database(Backend::Postgres).await else {
        return;
    };
    let started = Instant::now();
    let mut c = Cluster::start(
        tag,
        db,
        Options {
            redis_url: Some(redis.url()),
            env: vec![
                ("RATE_LIMIT_REQUESTS_PER_MINUTE", "60000000".into()),
                ("RATE_LIMIT_BURST_SIZE", "1000000".into()),
            ],
            ..Options::default()
        },
    )
    .await;
    c.job["provider"] = "shared".into();
    let pids = c.worker_pids();
    wait_redis_up(&c, 1.0).await;
    let mut ids: Vec<Uuid> = c.enqueue(BEFORE, BATCH, IN_FLIGHT).await;
    c.wait_completed((BEFORE / 2) as u64, DRAIN_LIMIT).await;
    let takes_before = bucket_calls(&redis);
    assert!(takes_before > 0, "the workers take tokens from Redis");

    redis.stop();
    let down_at = Instant::now();
    wait_redis_up(&c, 0.0).await;
    let seen_down = down_at.elapsed();
    // While Redis is away: a batch every second, each must be committed.
    let mut during = 0;
    while down_at.elapsed() < OUTAGE {
        ids.extend(c.enqueue_batch(DURING_BATCH).await);
        during += DURING_BATCH;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Everything enqueued so far runs while Redis is still away.
    c.wait_completed(ids.len() as u64, DRAIN_LIMIT).await;
    assert!(!redis.answers(), "redis stayed away");
    let outage = down_at.elapsed();
    redis.restart();
    let up_at = Instant::now();
    wait_redis_up(&c, 1.0).await;
    let seen_up = up_at.elapsed();
    ids.extend(c.enqueue(AFTER, BATCH, IN_FLIGHT).await);
    c.wait_completed(ids.len() as u64, DRAIN_LIMIT).await;
    let takes_after = bucket_calls(&redis);
    assert!(takes_after > 0, "the takes came back to Redis");
    c.stop_all();
    for (i, w) in c.workers.iter().enumerate() {
        assert!(
            !w.log_text().contains("panicked"),
            "worker {i}: {}",
            w.log_text()
        );
    }
    let v = Verdict::check(&ids, &c.all_jobs().await, &c.ledger(), &HashSet::new());
    eprintln!(
        "multi_node[{tag}]: jobs={} ({BEFORE} before, {during} during, {AFTER} after) \
         redis away {:.1}s; kyu_redis_up 0 seen after {:.1}s, 1 again {:.1}s after restart; \
         bucket scripts run by Redis: {takes_before} before, {takes_after} after; \
         lost=0 duplicated=0 shares: {}; test took {:.1}s",
        ids.len(),
        outage.as_secs_f64(),
        seen_down.as_secs_f64(),
        seen_up.as_secs_f64(),
        v.shares_text(&pids),
        started.elapsed().as_secs_f64()
    );
}

/// Rate-limit takes this Redis server has run (the bucket script, by hash or by text).
fn bucket_calls(redis: &AnyRedis) -> u64 {
    redis.calls("evalsha") + redis.calls("eval")
}

/// Polls the api process's `/metrics` until `kyu_redis_up` reads `want`.
async fn wait_redis_up(c: &Cluster, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = c.api_metrics().await.unwrap_or_default();
        let got = gauge(&text, "kyu_redis_up");
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kyu_redis_up never read {want} (last {got:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
