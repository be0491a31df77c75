//! The process's connection to Redis and its health.
//!
//! One [`redis::aio::ConnectionManager`] (multiplexed, reconnects by itself after a
//! dropped connection) is shared by every user in the process, plus a keeper task that
//! PINGs it: every 2 s while Redis answers, every 500 ms while it does not. Users ask
//! [`Link::conn`] before each use and get `None` while Redis is down, so during an
//! outage no caller waits on a dead connection: they fall back at once (local buckets),
//! and only the keeper keeps trying. A caller whose command fails reports it with
//! [`Link::failed`], which marks Redis down at once; the keeper's next good PING marks
//! it up again. [`RedisHealth`] turns both into `kyu_redis_up` and one log line per
//! change.
//!
//! On a cluster (`redis+cluster://…`, see [`super::target`]) the shared connection is a
//! cluster connection instead, made by the keeper (the redis crate has no lazy one) and
//! then kept: it reconnects to each node and follows slot moves by itself. Its PING goes
//! to every primary, so "up" means every shard answers — a cluster missing a shard
//! would fail the takes whose keys live there.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;

use super::target::{RedisConn, RedisTarget};
use crate::telemetry::redis::RedisHealth;

/// PING period while Redis answers.
const EVERY_UP: Duration = Duration::from_secs(2);
/// PING period while it does not: how soon shared limits come back after an outage.
const EVERY_DOWN: Duration = Duration::from_millis(500);
/// A PING (or connect) that takes longer than this counts as "down".
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Redis as this process sees it.
pub struct Link {
    conn: Shared,
    prefix: String,
    health: RedisHealth,
}

/// The process's connection: one server's manager, or a cluster's connection once the
/// keeper has made it.
enum Shared {
    Single(ConnectionManager),
    Cluster(Box<ClusterShared>),
}

/// A cluster's client (it makes the connection) and the connection once made.
struct ClusterShared {
    client: ClusterClient,
    conn: std::sync::Mutex<Option<redis::cluster_async::ClusterConnection>>,
}

impl Link {
    /// Connects lazily to `url` and starts the keeper. Keys start with `prefix`
    /// (`KYU_REDIS_PREFIX`). Must run inside a tokio runtime; a URL redis cannot parse
    /// is an error (a bad setting). The keeper ends when the last `Arc<Link>` drops.
    pub fn open(url: &str, prefix: &str) -> redis::RedisResult<Arc<Link>> {
        let target = RedisTarget::parse(url).map_err(|m| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad REDIS_URL", m))
        })?;
        let conn = match target {
            RedisTarget::Single(url) => {
                let client = super::target::client(&url)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(PING_TIMEOUT))
                    .set_response_timeout(Some(PING_TIMEOUT))
                    // One quick retry inside the manager; the keeper does the long-term retrying.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(200));
                Shared::Single(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            RedisTarget::Cluster(nodes) => Shared::Cluster(Box::new(ClusterShared {
                client: RedisTarget::cluster_client(&nodes, PING_TIMEOUT, None)?,
                conn: std::sync::Mutex::new(None),
            })),
        };
        let link = Arc::new(Link {
            conn,
            prefix: prefix.to_owned(),
            health: RedisHealth::new(),
        });
        tokio::spawn(keep(Arc::downgrade(&link)));
        Ok(link)
    }

    /// `prefix` + `rest`: every key kyu uses.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// A handle on the connection while Redis answers; `None` while it is down.
    pub fn conn(&self) -> Option<RedisConn> {
        if !self.health.is_up() {
            return None;
        }
        self.any_conn()
    }

    /// The connection whether or not Redis answered lately (`None`: a cluster not
    /// reached yet).
    fn any_conn(&self) -> Option<RedisConn> {
        match &self.conn {
            Shared::Single(c) => Some(RedisConn::Managed(c.clone())),
            Shared::Cluster(c) => c
                .conn
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .map(RedisConn::Cluster),
        }
    }

    /// Whether `REDIS_URL` names a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Shared::Cluster(_))
    }

    /// Whether Redis answered last time anyone asked.
    pub fn is_up(&self) -> bool {
        self.health.is_up()
    }

    /// A command failed or timed out: Redis is down until the keeper's next good PING.
    pub fn failed(&self, error: &dyn Display) {
        self.health.report_err(error);
    }

    async fn ping(&self) -> Result<(), String> {
        let mut c = match self.any_conn() {
            Some(c) => c,
            None => self.connect_cluster().await?,
        };
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<redis::Value>(&mut c);
        match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {PING_TIMEOUT:?}")),
        }
    }

    /// Makes the cluster connection (discovers the slots); kept for the link's life.
    async fn connect_cluster(&self) -> Result<RedisConn, String> {
        let Shared::Cluster(cluster) = &self.conn else {
            return Err("not a cluster".into());
        };
        let ClusterShared { client, conn } = &**cluster;
        let c = tokio::time::timeout(PING_TIMEOUT * 3, client.get_async_connection())
            .await
            .map_err(|_| format!("cluster not reached within {:?}", PING_TIMEOUT * 3))?
            .map_err(|e| e.to_string())?;
        *conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(RedisConn::Cluster(c))
    }
}

/// PINGs while the link lives.
async fn keep(link: std::sync::Weak<Link>) {
    loop {
        let Some(l) = link.upgrade() else { return };
        match l.ping().await {
            Ok(()) => l.health.report_ok(),
            Err(e) => l.health.report_err(&e),
        }
        let wait = if l.is_up() { EVERY_UP } else { EVERY_DOWN };
        drop(l);
        tokio::time::sleep(wait).await;
    }
}
