//! kyu's connections to PostgreSQL, MariaDB and Redis send each message at once
//! (TCP_NODELAY).
//!
//! Without it, a statement whose message spans TCP segments (the ack or claim of a
//! batch of a few hundred jobs) leaves its last segment waiting for the server's
//! delayed ACK, about 40 ms on Linux: a PostgreSQL drain ran at a third of its rate,
//! every ack taking ~55 ms of which the server spent ~13. sqlx 0.9.0 stopped setting
//! the option (0.9.1 sets it again), and the redis crate leaves it off unless asked,
//! so the test reads it off the process's own sockets once they have been used.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use kyu::engine::NewJob;
use kyu::store::testdb;
use serde_json::json;

/// TCP_NODELAY of each of this process's sockets connected to `port`.
fn nodelay_of_sockets_to(port: u16) -> Vec<bool> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")
        .expect("list open files")
        .flatten()
    {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if !is_socket {
            continue;
        }
        // SAFETY: only borrowed for two getsockopt calls while the pool holding the
        // socket is alive; a descriptor closed meanwhile makes the calls fail, not UB.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd);
        let peer_port = sock
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port());
        if peer_port == Some(port) {
            out.push(sock.tcp_nodelay().expect("read TCP_NODELAY"));
        }
    }
    out
}

fn port_of(url: &str) -> u16 {
    reqwest::Url::parse(url)
        .expect("service URL")
        .port()
        .expect("the test URL names a port")
}

fn assert_sockets_to_send_at_once(port: u16) {
    let sockets = nodelay_of_sockets_to(port);
    assert!(!sockets.is_empty(), "no connection to port {port} found");
    assert!(
        sockets.iter().all(|on| *on),
        "connections to port {port} without TCP_NODELAY: {sockets:?}"
    );
}

async fn assert_connections_send_at_once(url: &str) {
    let store = kyu::store::open(url, Default::default())
        .await
        .expect("open the store");
    let jobs: Vec<NewJob> = (0..500)
        .map(|i| NewJob::new("noop", json!({ "i": i })))
        .collect();
    store.enqueue_many(jobs).await.expect("enqueue a batch");
    assert_sockets_to_send_at_once(port_of(url));
}

#[tokio::test]
async fn postgres_connections_send_each_message_at_once() {
    let Some((url, _guard)) = testdb::postgres_db().await else {
        return;
    };
    assert_connections_send_at_once(&url).await;
}

#[tokio::test]
async fn mysql_connections_send_each_message_at_once() {
    let Some((url, _guard)) = testdb::mysql_db().await else {
        return;
    };
    assert_connections_send_at_once(&url).await;
}

#[tokio::test]
async fn redis_connections_send_each_command_at_once() {
    let Some(url) = testdb::service_url("KYU_TEST_REDIS_URL") else {
        return;
    };
    let target = kyu::redis::RedisTarget::parse(&url).expect("a Redis URL");
    let mut conn = target
        .connect(Duration::from_secs(5))
        .await
        .expect("connect to Redis");
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .expect("PING");
    assert_eq!(pong, "PONG");
    assert_sockets_to_send_at_once(port_of(&url));
}
