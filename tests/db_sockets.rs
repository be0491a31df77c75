//! kyu's connections to PostgreSQL and MariaDB send each message at once (TCP_NODELAY).
//!
//! Without it, a statement whose message spans TCP segments (the ack or claim of a
//! batch of a few hundred jobs) leaves its last segment waiting for the server's
//! delayed ACK, about 40 ms on Linux: a PostgreSQL drain ran at a third of its rate,
//! every ack taking ~55 ms of which the server spent ~13. sqlx 0.9.0 stopped setting
//! the option (0.9.1 sets it again), so the test reads it off the process's own
//! sockets after the store has connected and written a batch.

use std::os::fd::BorrowedFd;

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

async fn assert_connections_send_at_once(url: &str) {
    let port = reqwest::Url::parse(url)
        .expect("database URL")
        .port()
        .expect("the test URL names a port");
    let store = kyu::store::open(url, Default::default())
        .await
        .expect("open the store");
    let jobs: Vec<NewJob> = (0..500)
        .map(|i| NewJob::new("noop", json!({ "i": i })))
        .collect();
    store.enqueue_many(jobs).await.expect("enqueue a batch");
    let sockets = nodelay_of_sockets_to(port);
    assert!(!sockets.is_empty(), "no connection to port {port} found");
    assert!(
        sockets.iter().all(|on| *on),
        "connections to port {port} without TCP_NODELAY: {sockets:?}"
    );
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
