//! The API under stress from outside: a thousand slow clients must not stop `/healthz`
//! from answering, and a database that goes away makes enqueue answer 503
//! `store_unavailable` and `/readyz` say why, while the process lives on and recovers.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::TempDir;
use common::api::Server;
use common::proxy::Proxy;
use kyu::store::testdb;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SLOW: usize = 1_000;

#[tokio::test]
async fn healthz_answers_while_a_thousand_slow_clients_hold_connections() {
    let s = Server::start(
        "api-slow",
        &[
            ("KYU_HEADER_READ_TIMEOUT", "3s".into()),
            ("JOB_WORKER_ENABLED", "false".into()),
        ],
    )
    .await;
    let addr: SocketAddr = s.base.trim_start_matches("http://").parse().expect("addr");
    // Half send a partial request and stall, half connect and say nothing.
    let mut slow = Vec::with_capacity(SLOW);
    for i in 0..SLOW {
        let mut c = TcpStream::connect(addr).await.expect("slow connect");
        if i % 2 == 0 {
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: kyu\r\nX-Slow: ")
                .await
                .expect("partial write");
        }
        slow.push(c);
    }
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let a = tokio::time::timeout(Duration::from_secs(10), s.get("/healthz", None))
            .await
            .expect("/healthz answered while slow clients wait");
        assert_eq!(a.status, StatusCode::OK);
        worst = worst.max(t.elapsed());
    }
    println!(
        "healthz with {SLOW} slow connections: worst of 20 {:?}",
        worst
    );
    // The slow ones are cut off once the header timeout passes.
    let mut closed = 0;
    for c in slow.iter_mut().step_by(50) {
        let mut buf = [0u8; 256];
        let r = tokio::time::timeout(Duration::from_secs(15), c.read(&mut buf)).await;
        if let Ok(Ok(_)) | Ok(Err(_)) = r {
            closed += 1; // EOF, a 408, or a reset
        }
    }
    assert_eq!(closed, SLOW / 50, "slow connections were not timed out");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn a_database_outage_is_a_503_and_kyu_recovers_by_itself() {
    let Some((url, _guard)) = testdb::postgres_db().await else {
        eprintln!("skipped: KYU_TEST_POSTGRES_URL is not set");
        return;
    };
    let mut through = reqwest::Url::parse(&url).expect("postgres url");
    let target: SocketAddr = format!(
        "{}:{}",
        through.host_str().unwrap_or("127.0.0.1"),
        through.port().unwrap_or(5432)
    )
    .parse()
    .expect("postgres address");
    let proxy = Proxy::start(target).await;
    through.set_port(Some(proxy.addr.port())).expect("port");
    let s = Server::start_on(TempDir::new("api-outage"), through.as_str(), &[]).await;

    let before = s
        .create(None, json!({"type": "echo", "payload": {"n": 1}}))
        .await;
    s.wait_status(&before, None, "completed").await;

    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(60);
    let down = loop {
        let a = s.post("/api/v1/jobs", None, json!({"type": "echo"})).await;
        if a.status == StatusCode::SERVICE_UNAVAILABLE {
            break a;
        }
        // A request that raced the cut may still have landed.
        assert!(
            a.status.is_success(),
            "{} {}\n{}",
            a.status,
            a.body,
            s.log_text()
        );
        assert!(Instant::now() < deadline, "enqueue never saw the outage");
    };
    assert_eq!(down.code(), "store_unavailable", "{}", down.body);
    assert_eq!(
        down.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let r = s.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.code(), "not_ready");
    assert!(r.message().contains("database"), "{}", r.body);
    let h = s.get("/healthz", None).await;
    assert_eq!(h.status, StatusCode::OK, "the process stays up");
    let g = s.get(&format!("/api/v1/jobs/{before}"), None).await;
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE, "{}", g.body);

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.get("/readyz", None).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {}", r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = s
        .create(None, json!({"type": "echo", "payload": {"n": 2}}))
        .await;
    let job = s.wait_status(&after, None, "completed").await;
    assert_eq!(job["result"], json!({"n": 2}));
    let mut s = s;
    assert!(s.proc_alive(), "kyu exited during the outage");
}
