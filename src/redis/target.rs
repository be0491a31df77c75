//! What `REDIS_URL` names, one server or a cluster, and the one connection type both
//! give, so callers (buckets, API limits, wake-ups) never ask which it is.
//!
//! **URL forms.** `redis://HOST:PORT[/DB]` (or `rediss://`, `unix://`, anything the redis
//! crate takes) is one server. `redis+cluster://[USER:PASS@]HOST1:PORT1,HOST2:PORT2,…` is a
//! Redis Cluster: the listed nodes are only where discovery starts (any reachable one
//! is enough, the rest of the cluster is learned from it), and the credentials apply to
//! every node. One scheme, rather than several `redis://` URLs, so that a single
//! `redis://` URL keeps meaning one server and a cluster is never guessed at.
//!
//! **On a cluster** every key kyu touches in one command or script shares a slot: the
//! provider bucket is one key, and a client's two API counters carry the same hash tag
//! (`{…}`). Wake-ups use classic `PUBLISH`/`SUBSCRIBE`, which a cluster forwards to
//! every node, so a subscriber on any node hears every publisher.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

/// The scheme that names a cluster.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Every connection to Redis sends each command at once (`TCP_NODELAY`): commands from
/// several tasks share one multiplexed connection, and Nagle's algorithm would hold a
/// command back until the one before it was acknowledged.
fn tcp_settings() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

/// A client for one server's URL, with kyu's TCP settings.
pub(crate) fn client(url: &str) -> redis::RedisResult<redis::Client> {
    redis::Client::open(url.into_connection_info()?.set_tcp_settings(tcp_settings()))
}

/// One server or a cluster, from `REDIS_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// A URL the redis crate opens as it is.
    Single(String),
    /// The seed nodes, each as a `redis://` URL.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// Reads `REDIS_URL`; the message says what was expected.
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let url = url.trim();
        let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
            redis::Client::open(url).map_err(|e| {
                format!(
                    "expected redis://HOST:PORT[/DB] or {CLUSTER_SCHEME}HOST:PORT,HOST:PORT ({e})"
                )
            })?;
            return Ok(RedisTarget::Single(url.to_owned()));
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((a, h)) => (format!("{a}@"), h),
            None => (String::new(), rest),
        };
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{auth}{h}"))
            .collect();
        if nodes.is_empty() {
            return Err(format!("expected {CLUSTER_SCHEME}HOST:PORT[,HOST:PORT…]"));
        }
        for n in &nodes {
            let host = n.rsplit('@').next().unwrap_or(n);
            redis::Client::open(n.as_str()).map_err(|e| format!("cluster node {host}: {e}"))?;
            if !host.trim_start_matches("redis://").contains(':') {
                return Err(format!("cluster node {host}: expected HOST:PORT"));
            }
        }
        Ok(RedisTarget::Cluster(nodes))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisTarget::Cluster(_))
    }

    /// A cluster client with `timeout` for connecting and for each answer, few retries
    /// (callers fall back rather than wait), and RESP3 pushes to `push` when given.
    pub(crate) fn cluster_client(
        nodes: &[String],
        timeout: Duration,
        push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> redis::RedisResult<ClusterClient> {
        let mut b = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(1)
            .min_retry_wait(50)
            .max_retry_wait(200)
            .tcp_settings(tcp_settings());
        if let Some(tx) = push {
            b = b
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(tx);
        }
        b.build()
    }

    /// A fresh multiplexed connection (one server) or cluster connection, answers
    /// bounded by `timeout`.
    pub async fn connect(&self, timeout: Duration) -> redis::RedisResult<RedisConn> {
        match self {
            RedisTarget::Single(url) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let c = client(url)?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(RedisConn::Multiplexed(c))
            }
            RedisTarget::Cluster(nodes) => {
                let c = Self::cluster_client(nodes, timeout, None)?
                    .get_async_connection()
                    .await?;
                Ok(RedisConn::Cluster(c))
            }
        }
    }
}

/// A connection to one server or to a cluster; commands and scripts run on it alike
/// (on a cluster they go to the node owning their key's slot).
#[derive(Clone)]
pub enum RedisConn {
    /// Reconnects by itself (the process's [`super::Link`]).
    Managed(ConnectionManager),
    Multiplexed(MultiplexedConnection),
    /// Reconnects to each node by itself and follows slot moves.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Managed(c) => c.req_packed_command(cmd),
            RedisConn::Multiplexed(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Managed(c) => c.get_db(),
            RedisConn::Multiplexed(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_server_and_clusters() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6379"),
            Ok(RedisTarget::Single("redis://127.0.0.1:6379".into()))
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://a:7000, b:7001,c:7002/"),
            Ok(RedisTarget::Cluster(vec![
                "redis://a:7000".into(),
                "redis://b:7001".into(),
                "redis://c:7002".into()
            ]))
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://u:pw@a:7000,b:7001"),
            Ok(RedisTarget::Cluster(vec![
                "redis://u:pw@a:7000".into(),
                "redis://u:pw@b:7001".into()
            ]))
        );
        assert!(RedisTarget::parse("redis+cluster://").is_err());
        assert!(RedisTarget::parse("redis+cluster://a").is_err());
        assert!(RedisTarget::parse("http://x").is_err());
    }
}
