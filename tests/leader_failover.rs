//! The leader is killed: three `kyu serve` processes
//! share one PostgreSQL database and a cron entry that fires every second. Exactly one
//! is leader; after `kill -9` of the leader another takes over within the documented
//! bound (leader ttl + renew interval), every cron tick is enqueued exactly once across
//! the change (counted by unique key in the database), and `GET /api/v1/nodes` lists
//! the live nodes and drops the dead one. The failover time is printed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::TempDir;
use common::api::Server;
use kyu::engine::Store;
use kyu::engine::store::ListJobs;
use kyu::store::testdb;

const TTL: Duration = Duration::from_secs(5);
const RENEW: Duration = Duration::from_secs(1);

fn env() -> Vec<(&'static str, String)> {
    vec![
        (
            "KYU_CRON",
            r#"[{"name":"tick","schedule":"* * * * * *","type":"echo","payload":{"cron":true}}]"#
                .into(),
        ),
        ("KYU_NODE_HEARTBEAT_INTERVAL", "500ms".into()),
        ("KYU_NODE_DEAD_AFTER", "3s".into()),
        ("KYU_LEADER_TTL", format!("{}s", TTL.as_secs())),
        ("KYU_LEADER_RENEW_INTERVAL", format!("{}s", RENEW.as_secs())),
        ("JOB_QUEUE_WORKER_COUNT", "2".into()),
        ("KYU_RESCUE_INTERVAL", "1s".into()),
    ]
}

/// Whether this node's `/metrics` says it leads (`None`: it did not answer).
async fn leads(s: &Server) -> Option<bool> {
    let text = s
        .http
        .get(s.url("/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let line = text.lines().find(|l| l.starts_with("kyu_leader "))?;
    Some(line.trim_end().ends_with(" 1"))
}

/// (node id, leader) of the live nodes, as one node's API lists them.
async fn nodes(s: &Server) -> Vec<(String, bool)> {
    let a = s.get("/api/v1/nodes", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["id"].as_str().expect("id").to_owned(),
                n["leader"].as_bool().expect("leader"),
            )
        })
        .collect()
}

/// Cron jobs in the database: unique key → rows.
async fn cron_rows(store: &dyn Store) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(&ListJobs {
                job_type: Some("echo".into()),
                cursor,
                limit: 500,
                ..ListJobs::default()
            })
            .await
            .expect("list");
        for j in &page.jobs {
            if let Some(k) = &j.unique_key {
                *out.entry(k.clone()).or_default() += 1;
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// The latest tick among cron jobs' unique keys (`cron:tick:<epoch s>`).
fn last_tick(rows: &BTreeMap<String, usize>) -> Option<i64> {
    rows.keys()
        .filter_map(|k| k.strip_prefix("cron:tick:")?.parse::<i64>().ok())
        .max()
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_dies_and_another_takes_over_without_losing_or_doubling_cron_ticks() {
    let Some((url, _guard)) = testdb::postgres_db().await else {
        eprintln!("skipped: {} not set", testdb::POSTGRES_URL_ENV);
        return;
    };
    let store = kyu::store::open(&url, Default::default())
        .await
        .expect("open");
    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(Server::start_on(TempDir::new(&format!("leader{i}")), &url, &env()).await);
    }

    // Exactly one leader, and every node listed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let leader = loop {
        let mut who = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            if leads(s).await == Some(true) {
                who.push(i);
            }
        }
        if who.len() == 1 {
            break who[0];
        }
        assert!(Instant::now() < deadline, "no single leader: {who:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let listed = nodes(&servers[0]).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed.iter().filter(|(_, l)| *l).count(), 1, "{listed:?}");
    let leader_id = listed
        .iter()
        .find(|(_, l)| *l)
        .map(|(id, _)| id.clone())
        .expect("leader listed");

    // Cron runs under the first leader for a while.
    wait_for(
        "three cron ticks under the first leader",
        Duration::from_secs(30),
        || {
            let store = &store;
            async move { cron_rows(&**store).await.len() >= 3 }
        },
    )
    .await;
    let before = cron_rows(&*store).await;
    assert!(before.len() >= 3, "cron ticks before the kill: {before:?}");

    // kill -9 the leader; measure until another node says it leads.
    let killed_at = Instant::now();
    servers[leader].proc.kill9();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let deadline = killed_at + TTL + RENEW + Duration::from_secs(5);
    let new_leader = 'found: loop {
        for i in &survivors {
            if leads(&servers[*i]).await == Some(true) {
                break 'found *i;
            }
        }
        assert!(Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let failover = killed_at.elapsed();
    println!(
        "leader failover: {:.2} s (bound: ttl {} s + renew {} s)",
        failover.as_secs_f64(),
        TTL.as_secs(),
        RENEW.as_secs()
    );
    assert!(
        failover <= TTL + RENEW + Duration::from_secs(2),
        "failover took {failover:?}"
    );
    for i in &survivors {
        if *i != new_leader {
            assert_eq!(leads(&servers[*i]).await, Some(false), "two leaders");
        }
    }

    // The dead node drops out of the list; the survivors stay, one of them leader.
    wait_for("the dead node to drop out", Duration::from_secs(10), || {
        let s = &servers[new_leader];
        let leader_id = &leader_id;
        async move {
            let n = nodes(s).await;
            n.len() == 2 && n.iter().all(|(id, _)| id != leader_id)
        }
    })
    .await;
    let listed = nodes(&servers[survivors[0]]).await;
    assert_eq!(listed.iter().filter(|(_, l)| *l).count(), 1, "{listed:?}");

    // Cron goes on under the new leader.
    let kill_tick = last_tick(&before).expect("ticks before");
    wait_for(
        "five cron ticks past the kill",
        Duration::from_secs(30),
        || {
            let store = &store;
            async move { last_tick(&cron_rows(&**store).await).is_some_and(|t| t >= kill_tick + 5) }
        },
    )
    .await;
    let rows = cron_rows(&*store).await;
    let doubled: Vec<_> = rows.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "cron ticks enqueued twice: {doubled:?}");
    let ticks: Vec<i64> = rows
        .keys()
        .map(|k| {
            k.strip_prefix("cron:tick:")
                .and_then(|t| t.parse().ok())
                .expect("cron key")
        })
        .collect();
    let (first, last) = (ticks[0], ticks[ticks.len() - 1]);
    let missing: Vec<i64> = (first..=last).filter(|t| !ticks.contains(t)).collect();
    assert!(missing.is_empty(), "cron ticks skipped: {missing:?}");
    assert!(
        last >= kill_tick + 5,
        "ticks continue after the failover: {kill_tick} → {last}"
    );
    println!(
        "cron ticks: {} from {first} to {last}, none doubled or skipped across the change",
        ticks.len()
    );

    // A graceful stop deregisters at once.
    let follower = *survivors
        .iter()
        .find(|i| **i != new_leader)
        .expect("follower");
    servers[follower].proc.signal("TERM");
    assert!(
        servers[follower]
            .proc
            .wait_exit(Duration::from_secs(15))
            .is_some(),
        "SIGTERM stops the node"
    );
    let n = nodes(&servers[new_leader]).await;
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].1, "the last node leads");
}
