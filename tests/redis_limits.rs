//! Shared rate limits in Redis (issue 9): the Redis limiter's contract against a real
//! Redis (burst then refill, cool-down, two "nodes" sharing one bucket), its fallback
//! to local buckets while Redis is cut (no errors, no long stalls, `kyu_redis_up` 0,
//! Redis used again after), and two real `kyu worker` processes on one PostgreSQL and
//! one Redis that together keep a provider's limit.
//!
//! Needs `KYU_TEST_REDIS_URL` (and `KYU_TEST_POSTGRES_URL` for the process test): a
//! test skips when unset, unless `KYU_REQUIRE_SERVICES=1`. Each test uses its own key
//! prefix and deletes its keys. Bounds are token-bucket arithmetic with slack, not
//! timings.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::proxy::Proxy;
use common::redis_cluster::RedisCluster;
use common::{KyuProcess, TempDir, ledger, wait_until};
use kyu::chaos::ledger::Phase;
use kyu::engine::NewJob;
use kyu::engine::rate_limit::{Limit, RateLimitBackend};
use kyu::redis::{Link, RedisRateLimiter};
use kyu::store::testdb;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;

/// The tests in this file share the process-wide `kyu_redis_up` gauge: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn redis_url() -> Option<String> {
    testdb::service_url("KYU_TEST_REDIS_URL")
}

/// The recorder behind `kyu_redis_up`, installed once for this test binary.
fn snapshotter() -> &'static Snapshotter {
    static S: std::sync::OnceLock<Snapshotter> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let r = DebuggingRecorder::new();
        let s = r.snapshotter();
        r.install().expect("install the debugging recorder");
        s
    })
}

fn redis_up_gauge() -> Option<f64> {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(k, _, _, _)| k.key().name() == "kyu_redis_up")
        .and_then(|(_, _, _, v)| match v {
            DebugValue::Gauge(g) => Some(g.into_inner()),
            _ => None,
        })
}

/// A key prefix of its own; its keys are deleted on drop.
struct Prefix {
    url: String,
    prefix: String,
}

impl Prefix {
    fn new(url: &str) -> Prefix {
        Prefix {
            url: url.to_owned(),
            prefix: format!("kyu-test-{}:", uuid::Uuid::now_v7().simple()),
        }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut c) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut c)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
        }
    }
}

async fn link_up(url: &str, prefix: &str) -> Arc<Link> {
    let link = Link::open(url, prefix).expect("redis url");
    wait_until("redis link up", Duration::from_secs(10), || {
        let l = link.clone();
        async move { l.is_up() }
    })
    .await;
    link
}

fn limiter(link: &Arc<Link>, per_minute: u32, burst: u32) -> RedisRateLimiter {
    RedisRateLimiter::new(link.clone(), Limit { per_minute, burst }, HashMap::new())
}

/// Polls `try_acquire` until it answers Ok; returns how many asks it took.
async fn take_eventually(l: &RedisRateLimiter, provider: &str, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut asks = 0;
    loop {
        asks += 1;
        match l.try_acquire(provider, Utc::now()).await {
            Ok(()) => return asks,
            Err(wait) => {
                assert!(
                    Instant::now() < deadline,
                    "no token for {provider} in {limit:?}"
                );
                tokio::time::sleep(wait.min(Duration::from_millis(50))).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_refill_and_cool_down_are_shared_by_two_nodes() {
    let Some(url) = redis_url() else { return };
    let _one = SERIAL.lock().await;
    let p = Prefix::new(&url);
    // Two "nodes": two links, two limiters, one Redis.
    let (la, lb) = (
        link_up(&url, &p.prefix).await,
        link_up(&url, &p.prefix).await,
    );
    let (a, b) = (limiter(&la, 600, 5), limiter(&lb, 600, 5));

    // Burst: 5 tokens between both nodes, then a wait of about one token (100 ms).
    let mut took = 0;
    for i in 0..5 {
        let l = if i % 2 == 0 { &a } else { &b };
        if l.try_acquire("burst", Utc::now()).await.is_ok() {
            took += 1;
        }
    }
    assert_eq!(took, 5, "a full bucket gives its burst");
    let wait = b
        .try_acquire("burst", Utc::now())
        .await
        .expect_err("the burst is spent on both nodes");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(150),
        "{wait:?}"
    );
    // Refill: a token comes back by itself.
    take_eventually(&a, "burst", Duration::from_secs(5)).await;

    // Cool-down set by one node is honoured by the other.
    a.cool_down("cool", Utc::now() + chrono::Duration::milliseconds(800))
        .await;
    let wait = b
        .try_acquire("cool", Utc::now())
        .await
        .expect_err("the other node honours the cool-down");
    assert!(
        wait > Duration::from_millis(300) && wait <= Duration::from_millis(800),
        "{wait:?}"
    );
    assert!(a.try_acquire("cool", Utc::now()).await.is_err());
    take_eventually(&b, "cool", Duration::from_secs(5)).await;

    // Both nodes hammer one bucket (60/s, burst 5) for ~1.5 s: together they get at most
    // burst + rate × elapsed (+1 for the token in flight), never twice that.
    let (a, b) = (
        Arc::new(limiter(&la, 3600, 5)),
        Arc::new(limiter(&lb, 3600, 5)),
    );
    let start = Instant::now();
    let run = |l: Arc<RedisRateLimiter>| {
        tokio::spawn(async move {
            let mut n = 0u32;
            while start.elapsed() < Duration::from_millis(1500) {
                match l.try_acquire("shared", Utc::now()).await {
                    Ok(()) => n += 1,
                    Err(w) => tokio::time::sleep(w.min(Duration::from_millis(5))).await,
                }
            }
            n
        })
    };
    let (ha, hb) = (run(a.clone()), run(b.clone()));
    let (na, nb) = (ha.await.expect("node a"), hb.await.expect("node b"));
    let elapsed = start.elapsed().as_secs_f64();
    let bound = 5.0 + 60.0 * elapsed + 1.0;
    println!(
        "shared bucket: node a {na}, node b {nb}, total {} in {elapsed:.2} s (bound {bound:.0})",
        na + nb
    );
    assert!(f64::from(na + nb) <= bound, "{} > {bound}", na + nb);
    assert!(na > 0 && nb > 0, "both nodes got tokens: {na} {nb}");
    // And not starved: the two together used most of the allowance.
    assert!(f64::from(na + nb) >= bound * 0.5, "{} tokens only", na + nb);
    assert!(la.is_up() && lb.is_up());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_redis_falls_back_to_local_buckets_and_comes_back() {
    let Some(url) = redis_url() else { return };
    let _one = SERIAL.lock().await;
    snapshotter();
    let p = Prefix::new(&url);
    let target = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("KYU_TEST_REDIS_URL is redis://HOST:PORT");
    let proxy = Proxy::start(target).await;
    let via = format!("redis://{}", proxy.addr);
    let link = link_up(&via, &p.prefix).await;
    let l = limiter(&link, 60, 3);
    // Looks at the buckets in Redis directly (not through a second link: that would
    // publish kyu_redis_up 1 while the cut one publishes 0).
    let direct = redis::Client::open(url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    let tokens = |provider: &str| {
        let key = format!("{}ratelimit:{provider}", p.prefix);
        let mut c = direct.clone();
        async move {
            redis::cmd("HGET")
                .arg(key)
                .arg("tokens")
                .query_async::<Option<f64>>(&mut c)
                .await
                .expect("HGET")
        }
    };

    // Up: takes land in Redis.
    for _ in 0..3 {
        l.try_acquire("p", Utc::now()).await.expect("burst");
    }
    let left = tokens("p").await.expect("the bucket is in Redis");
    assert!(left < 1.0, "{left} tokens left in Redis after the burst");
    wait_until("kyu_redis_up 1", Duration::from_secs(10), || async {
        redis_up_gauge() == Some(1.0)
    })
    .await;

    // Cut: every take still answers, quickly, from this node's own (full) bucket.
    proxy.cut();
    let mut slowest = Duration::ZERO;
    let mut ok = 0;
    for _ in 0..10 {
        let t = Instant::now();
        if l.try_acquire("p", Utc::now()).await.is_ok() {
            ok += 1;
        }
        slowest = slowest.max(t.elapsed());
    }
    println!("while cut: {ok} of 10 takes admitted locally, slowest {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "a take stalled {slowest:?}"
    );
    assert!(
        (3..=4).contains(&ok),
        "the local bucket (burst 3, 1/s) answers while Redis is away: {ok}"
    );
    assert!(!link.is_up());
    wait_until("kyu_redis_up 0", Duration::from_secs(10), || async {
        redis_up_gauge() == Some(0.0)
    })
    .await;

    // Restore: the keeper sees Redis again and takes go back to the shared buckets.
    proxy.restore();
    wait_until("link up again", Duration::from_secs(10), || {
        let link = link.clone();
        async move { link.is_up() }
    })
    .await;
    wait_until("kyu_redis_up 1 again", Duration::from_secs(10), || async {
        redis_up_gauge() == Some(1.0)
    })
    .await;
    assert_eq!(tokens("after").await, None);
    l.try_acquire("after", Utc::now())
        .await
        .expect("a fresh bucket has tokens");
    let left = tokens("after")
        .await
        .expect("the take after restore went to Redis");
    assert!((1.9..=2.1).contains(&left), "{left}");
}

/// The same buckets on a 3-master Redis Cluster the test starts: two "nodes" share a
/// bucket's burst and cool-down, and buckets of many providers spread over the shards
/// (each bucket one key, so each script runs on the shard owning it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_carries_the_shared_buckets() {
    let dir = TempDir::new("limits-cluster");
    let Some(cluster) = RedisCluster::start(dir.path()) else {
        return;
    };
    let url = cluster.url();
    let prefix = "kyu-cluster-test:";
    let (la, lb) = (link_up(&url, prefix).await, link_up(&url, prefix).await);
    assert!(la.is_cluster());
    let (a, b) = (limiter(&la, 600, 5), limiter(&lb, 600, 5));
    let mut took = 0;
    for i in 0..8 {
        let l = if i % 2 == 0 { &a } else { &b };
        if l.try_acquire("burst", Utc::now()).await.is_ok() {
            took += 1;
        }
    }
    assert_eq!(took, 5, "the two nodes share one burst of 5");
    a.cool_down("cool", Utc::now() + chrono::Duration::milliseconds(800))
        .await;
    let wait = b
        .try_acquire("cool", Utc::now())
        .await
        .expect_err("the other node honours the cool-down");
    assert!(wait > Duration::from_millis(300), "{wait:?}");
    for i in 0..30 {
        a.try_acquire(&format!("p{i}"), Utc::now())
            .await
            .expect("a fresh bucket has tokens");
    }
    let sizes = cluster.sizes();
    assert!(
        sizes.iter().all(|n| *n > 0),
        "buckets on every shard: {sizes:?}"
    );
    assert!(
        la.is_up() && lb.is_up(),
        "no take fell back to local buckets"
    );
}

/// Measures one take through Redis against one local take; printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_overhead() {
    let Some(url) = redis_url() else { return };
    let _one = SERIAL.lock().await;
    let p = Prefix::new(&url);
    let link = link_up(&url, &p.prefix).await;
    let r = limiter(&link, u32::MAX / 2, 1_000_000);
    let local = kyu::engine::rate_limit::LocalRateLimiter::new(
        Limit {
            per_minute: u32::MAX / 2,
            burst: 1_000_000,
        },
        HashMap::new(),
    );
    let n = 5_000;
    let times = |label: &str, mut v: Vec<Duration>| {
        v.sort();
        let q = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1e6;
        println!(
            "{label}: p50 {:.1} µs, p99 {:.1} µs over {} takes",
            q(0.5),
            q(0.99),
            v.len()
        );
    };
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let _ = r.try_acquire("bench", Utc::now()).await;
        v.push(t.elapsed());
    }
    times("redis take", v);
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let _ = local.try_acquire("bench", Utc::now()).await;
        v.push(t.elapsed());
    }
    times("local take", v);
    assert!(link.is_up());
}

/// Two `kyu worker` processes, one PostgreSQL, one Redis, jobs for one provider at
/// burst 5 and 120/min: over any stretch of time the two together started no more
/// jobs than the bucket allows. Local buckets (one per node) would allow twice that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_together_keep_a_providers_limit() {
    let Some(url) = redis_url() else { return };
    let Some((db_url, _guard)) = testdb::postgres_db().await else {
        return;
    };
    let p = Prefix::new(&url);
    let dir = TempDir::new("redis-limits");
    let ledger_path = dir.path().join("ledger.log");
    let store = kyu::store::open(&db_url, Default::default())
        .await
        .expect("open postgres");
    let (burst, per_minute, jobs) = (5u32, 120u32, 21usize);
    let env = vec![
        ("DATABASE_URL", db_url.clone()),
        ("REDIS_URL", url.clone()),
        ("KYU_REDIS_PREFIX", p.prefix.clone()),
        ("KYU_LEDGER_PATH", ledger_path.display().to_string()),
        ("JOB_QUEUE_WORKER_COUNT", "4".into()),
        ("KYU_AUTOSCALE", "false".into()),
        ("JOB_QUEUE_POLL_INTERVAL", "100ms".into()),
        ("JOB_QUEUE_BATCH_SIZE", "4".into()),
        // One job ahead per worker: with the measured prefetch a node may take all 21
        // short jobs in its first claims, and the other would run none of them.
        ("KYU_PREFETCH", "1".into()),
        ("KYU_SHUTDOWN_GRACE", "1s".into()),
        ("RATE_LIMIT_REQUESTS_PER_MINUTE", per_minute.to_string()),
        ("RATE_LIMIT_BURST_SIZE", burst.to_string()),
    ];
    let mut workers: Vec<KyuProcess> = (0..2)
        .map(|n| {
            KyuProcess::start(
                &["worker"],
                &env,
                dir.path().join(format!("worker-{n}.log")),
            )
        })
        .collect();
    // Both engines up, and both see Redis, before the jobs exist.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !workers.iter_mut().all(|w| {
        if let Ok(Some(st)) = w.child.try_wait() {
            panic!("a worker exited ({st}): {}", w.log_text());
        }
        let log = w.log_text();
        log.contains("engine started") && log.contains("redis answers")
    }) {
        assert!(
            Instant::now() < deadline,
            "workers did not start with redis within 60 s; logs:\n{}",
            workers
                .iter()
                .map(KyuProcess::log_text)
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new: Vec<NewJob> = (0..jobs)
        .map(|i| {
            NewJob::new("ledger", json!({ "ms": 5, "i": i }))
                .provider("acme")
                .max_attempts(50)
        })
        .collect();
    store.enqueue_many(new).await.expect("enqueue");
    wait_until("every job ran", Duration::from_secs(120), || async {
        ledger(&ledger_path)
            .iter()
            .filter(|e| e.phase == Phase::End)
            .map(|e| e.job)
            .collect::<HashSet<_>>()
            .len()
            == jobs
    })
    .await;
    for w in &mut workers {
        w.signal("TERM");
        w.wait_exit(Duration::from_secs(20));
    }
    let entries = ledger(&ledger_path);
    let mut starts: Vec<(i64, u32)> = entries
        .iter()
        .filter(|e| e.phase == Phase::Start)
        .map(|e| (e.at_ms, e.pid))
        .collect();
    starts.sort();
    let pids: HashSet<u32> = starts.iter().map(|s| s.1).collect();
    let rate = f64::from(per_minute) / 60_000.0; // per ms
    // Every window [starts[i], starts[j]]: j - i + 1 starts ≤ burst + rate × width,
    // plus 1 for the ledger's ms rounding and the token being refilled.
    let mut margin = f64::INFINITY;
    for i in 0..starts.len() {
        for j in i..starts.len() {
            let width = (starts[j].0 - starts[i].0) as f64;
            let count = (j - i + 1) as f64;
            let allowed = f64::from(burst) + rate * width + 1.0;
            margin = margin.min(allowed - count);
            assert!(
                count <= allowed,
                "{count} starts in {width} ms, allowed {allowed:.1}: {starts:?}"
            );
        }
    }
    let span = (starts[starts.len() - 1].0 - starts[0].0) as f64 / 1000.0;
    let per_node: Vec<usize> = pids
        .iter()
        .map(|p| starts.iter().filter(|s| s.1 == *p).count())
        .collect();
    println!(
        "{} starts over {span:.1} s on {} nodes {per_node:?}; tightest window {margin:.2} starts under the bound",
        starts.len(),
        pids.len()
    );
    assert_eq!(pids.len(), 2, "both nodes ran jobs: {per_node:?}");
    let _ = store;
}
