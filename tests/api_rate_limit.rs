//! API rate limits per client (issue 21), against the real binary: the 61st request in
//! a minute (limit 60) is a 429 `rate_limited` with `Retry-After` and the `RateLimit-*`
//! headers — in memory on one node; in Redis across two API nodes; on a 3-master Redis
//! Cluster the test starts — and while Redis is killed each node counts in its own
//! memory (`kyu_api_rate_limit_shared 0`), going back to Redis when it returns. Health,
//! readiness and metrics are never limited.
//!
//! The Redis cases start their own `redis-server`s (skipped when it is not installed,
//! a failure under `KYU_REQUIRE_SERVICES=1`).

mod common;

use common::TempDir;
use common::api::{Answer, Server, Token};
use common::cluster::{Redis, gauge};
use common::redis_cluster::RedisCluster;
use kyu::api::auth::Role;
use reqwest::StatusCode;

const LIMIT: usize = 60;

fn limits(storage: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KYU_API_RATE_LIMIT_PER_MINUTE", LIMIT.to_string()),
        ("KYU_API_RATE_LIMIT_PER_HOUR", "1000".into()),
        ("KYU_API_RATE_LIMIT_STORAGE", storage.into()),
    ]
}

fn header(a: &Answer, name: &str) -> Option<u64> {
    a.headers.get(name)?.to_str().ok()?.parse().ok()
}

/// An admitted answer with the headers of a window of `LIMIT` and `left` requests left.
fn assert_admitted(a: &Answer, left: usize) {
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(header(a, "ratelimit-limit"), Some(LIMIT as u64));
    assert_eq!(header(a, "ratelimit-remaining"), Some(left as u64));
    let reset = header(a, "ratelimit-reset").expect("RateLimit-Reset");
    assert!((1..=60).contains(&reset), "reset {reset}");
}

/// The refusal: 429 `rate_limited`, nothing left, and when to come back.
fn assert_refused(a: &Answer) {
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(a.code(), "rate_limited");
    assert_eq!(header(a, "ratelimit-limit"), Some(LIMIT as u64));
    assert_eq!(header(a, "ratelimit-remaining"), Some(0));
    let retry = header(a, "retry-after").expect("Retry-After");
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(header(a, "ratelimit-reset"), Some(retry));
}

fn tokens(list: &[&Token]) -> (&'static str, String) {
    let lines: Vec<&str> = list.iter().map(|t| t.line.as_str()).collect();
    ("KYU_API_TOKENS", lines.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_61st_request_in_a_minute_is_refused_in_memory() {
    let alice = Token::new("alice", Role::User);
    let bob = Token::new("bob", Role::User);
    let ops = Token::new("ops", Role::Admin);
    let mut env = limits("memory");
    env.push(tokens(&[&alice, &bob, &ops]));
    // Admins are not limited; anonymous callers get 2 a minute.
    env.push((
        "KYU_API_RATE_LIMIT_ROLES",
        "admin=0/0,anonymous=2/10".into(),
    ));
    let s = Server::start("rate-memory", &env).await;

    for i in 0..LIMIT {
        let a = s.get("/api/v1/queues", Some(&alice)).await;
        assert_admitted(&a, LIMIT - i - 1);
    }
    let a = s.get("/api/v1/queues", Some(&alice)).await;
    assert_refused(&a);
    // Every route under /api counts, whatever it answers.
    assert_refused(&s.get("/api/v1/jobs/nope", Some(&alice)).await);
    // Another token has its own count; the admin role none.
    assert_admitted(&s.get("/api/v1/queues", Some(&bob)).await, LIMIT - 1);
    for _ in 0..100 {
        let a = s.get("/api/v1/queues", Some(&ops)).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.headers.get("ratelimit-limit").is_none());
    }
    // No token: counted by address, as `anonymous` (the 401 still counts).
    for _ in 0..2 {
        assert_eq!(
            s.get("/api/v1/queues", None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        s.get("/api/v1/queues", None).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Never limited.
    for path in ["/healthz", "/readyz", "/metrics"] {
        for _ in 0..5 {
            assert_eq!(s.get(path, None).await.status, StatusCode::OK, "{path}");
        }
    }
    let text = reqwest::get(s.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let refused = |role: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("kyu_api_rate_limited_total{{role=\"{role}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(refused("user"), Some(2.0), "{text}");
    assert_eq!(refused("anonymous"), Some(1.0));
    assert_eq!(gauge(&text, "kyu_api_rate_limit_shared"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_limits_by_default() {
    let s = Server::start("rate-off", &[]).await;
    for _ in 0..200 {
        let a = s.get("/api/v1/queues", None).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.headers.get("ratelimit-limit").is_none());
    }
}

/// Two API nodes on one database and one Redis (`url`): requests on either count
/// against one window.
async fn two_nodes_share_one_count(tag: &str, redis_url: String) {
    let alice = Token::new("alice", Role::User);
    let dir = TempDir::new(tag);
    let db = format!("sqlite://{}", dir.path().join("kyu.db").display());
    let mut env = limits("redis");
    env.push(tokens(&[&alice]));
    env.push(("REDIS_URL", redis_url));
    env.push(("JOB_WORKER_ENABLED", "false".into()));
    let a = Server::start_on(dir, &db, &env).await;
    let b = Server::start_on(TempDir::new(&format!("{tag}-b")), &db, &env).await;
    for n in [&a, &b] {
        wait_shared(n, 1.0).await;
    }
    for i in 0..LIMIT {
        let node = if i % 2 == 0 { &a } else { &b };
        assert_admitted(
            &node.get("/api/v1/queues", Some(&alice)).await,
            LIMIT - i - 1,
        );
    }
    assert_refused(&a.get("/api/v1/queues", Some(&alice)).await);
    assert_refused(&b.get("/api/v1/queues", Some(&alice)).await);
}

/// Polls a node's `/metrics` until `kyu_api_rate_limit_shared` reads `want`.
async fn wait_shared(s: &Server, want: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = match reqwest::get(s.url("/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        // The gauge moves on the first limited request; before that, kyu_redis_up says
        // whether Redis will be used.
        let got = gauge(&text, "kyu_api_rate_limit_shared");
        let up = gauge(&text, "kyu_redis_up");
        if got == Some(want) && (want == 0.0 || up == Some(1.0)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kyu_api_rate_limit_shared never read {want} (last {got:?}, kyu_redis_up {up:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_nodes_share_the_limit_in_redis() {
    let dir = TempDir::new("rate-redis-server");
    let Some(redis) = Redis::start(dir.path()) else {
        return;
    };
    two_nodes_share_one_count("rate-redis", redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_nodes_share_the_limit_on_a_redis_cluster() {
    let dir = TempDir::new("rate-redis-cluster");
    let Some(cluster) = RedisCluster::start(dir.path()) else {
        return;
    };
    two_nodes_share_one_count("rate-cluster", cluster.url()).await;
    assert!(cluster.calls("evalsha") + cluster.calls("eval") >= LIMIT as u64);
}

/// Redis is killed: requests keep being answered, counted in the node's memory (a
/// fresh window of 60), and `kyu_api_rate_limit_shared` reads 0; once Redis is back the
/// counts go there again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_falls_back_to_memory_and_comes_back() {
    let dir = TempDir::new("rate-fallback-redis");
    let Some(mut redis) = Redis::start(dir.path()) else {
        return;
    };
    let alice = Token::new("alice", Role::User);
    let mut env = limits("auto");
    env.push(tokens(&[&alice]));
    env.push(("REDIS_URL", redis.url()));
    let s = Server::start("rate-fallback", &env).await;
    wait_shared(&s, 1.0).await;
    for i in 0..10 {
        assert_admitted(&s.get("/api/v1/queues", Some(&alice)).await, LIMIT - i - 1);
    }
    let in_redis = redis.calls("evalsha") + redis.calls("eval");
    assert!(in_redis >= 10, "the counts went to Redis: {in_redis}");

    redis.stop();
    // Each request still answers; the node's own window starts empty.
    let t = std::time::Instant::now();
    let mut admitted = 0;
    let mut refused = 0;
    for _ in 0..LIMIT + 5 {
        let a = s.get("/api/v1/queues", Some(&alice)).await;
        match a.status {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_refused(&a);
                refused += 1;
            }
            other => panic!("{other} while Redis is away: {}", a.body),
        }
    }
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "requests stalled while Redis was away: {:?}",
        t.elapsed()
    );
    assert_eq!((admitted, refused), (LIMIT, 5));
    wait_shared(&s, 0.0).await;

    redis.restart();
    wait_shared_after_request(&s, &alice).await;
    // The new server holds the count now (a new window: it lost the old one).
    let a = s.get("/api/v1/queues", Some(&alice)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(redis.calls("evalsha") + redis.calls("eval") > 0);
}

/// After Redis returns, requests go back to it (the gauge moves with the next request).
async fn wait_shared_after_request(s: &Server, t: &Token) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        s.get("/api/v1/queues", Some(t)).await;
        let text = reqwest::get(s.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        if gauge(&text, "kyu_api_rate_limit_shared") == Some(1.0) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counts never went back to Redis"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
