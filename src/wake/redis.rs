//! Redis pub/sub transport. Why Redis when it is there: PUBLISH fans out to every
//! subscribed node in well under a millisecond and puts no load on the database, which
//! is the bottleneck of a multi-node deployment.
//!
//! Publishing uses one multiplexed connection with short timeouts, dropped on any error
//! and made again on the next publish (after the caller's back-off). Subscribing uses a
//! dedicated RESP2 pub/sub connection; its message stream ends when the connection
//! drops, which the subscriber sees as "connection lost".
//!
//! On a Redis Cluster (`redis+cluster://…`) publishing goes through a cluster connection
//! (the cluster forwards a `PUBLISH` to every node), and the subscription is a RESP3
//! cluster connection whose pushes arrive on a channel; the first disconnection push
//! from any node ends the subscription, so the caller reconnects and wakes once, as
//! with one server.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{Sender, Subscription};
use crate::redis::{RedisConn, RedisTarget};

const TIMEOUT: Duration = Duration::from_secs(1);

pub(super) struct RedisSender {
    target: RedisTarget,
    channel: String,
    conn: Option<RedisConn>,
}

impl RedisSender {
    pub(super) fn new(url: &str, channel: &str) -> anyhow::Result<RedisSender> {
        let target = RedisTarget::parse(url).map_err(|e| anyhow::anyhow!("bad REDIS_URL: {e}"))?;
        Ok(RedisSender {
            target,
            channel: channel.to_owned(),
            conn: None,
        })
    }
}

#[async_trait]
impl Sender for RedisSender {
    async fn send(&mut self, payload: &str) -> Result<(), String> {
        let had = self.conn.is_some();
        match self.send_once(payload).await {
            // The kept connection may have died while idle (Redis restarted): one more
            // try on a fresh one before this counts as a failure.
            Err(_) if had => self.send_once(payload).await,
            r => r,
        }
    }
}

impl RedisSender {
    async fn send_once(&mut self, payload: &str) -> Result<(), String> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(
                self.target
                    .connect(TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        };
        let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .query_async(conn)
            .await;
        if r.is_err() {
            self.conn = None;
        }
        r.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// Subscribes to `channel`; payloads go to the returned subscription until the
/// connection ends.
pub(super) async fn subscribe(url: &str, channel: &str) -> Result<Subscription, String> {
    let url = match RedisTarget::parse(url)? {
        RedisTarget::Cluster(nodes) => return subscribe_cluster(&nodes, channel).await,
        RedisTarget::Single(url) => url,
    };
    let client = crate::redis::target::client(&url).map_err(|e| e.to_string())?;
    let mut pubsub = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
    pubsub.subscribe(channel).await.map_err(|e| e.to_string())?;
    let (sink, mut stream) = pubsub.split();
    let (tx, rx) = mpsc::channel(64);
    let reader = tokio::spawn(async move {
        // The sink stays alive with the reader: dropping it could end the subscription.
        let _sink = sink;
        while let Some(msg) = stream.next().await {
            let payload: String = msg.get_payload().unwrap_or_default();
            if tx.send(payload).await.is_err() {
                break;
            }
        }
    });
    Ok(Subscription { rx, reader })
}

/// [`subscribe`] on a cluster: RESP3 pushes from a cluster connection.
async fn subscribe_cluster(nodes: &[String], channel: &str) -> Result<Subscription, String> {
    let (push_tx, mut pushes) = mpsc::unbounded_channel();
    let client =
        RedisTarget::cluster_client(nodes, TIMEOUT, Some(push_tx)).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    conn.subscribe(channel).await.map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(64);
    let reader = tokio::spawn(async move {
        // The connection lives with the reader: dropping it ends the subscription.
        let _conn = conn;
        while let Some(push) = pushes.recv().await {
            match push.kind {
                redis::PushKind::Message => {
                    let payload = push
                        .data
                        .get(1)
                        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                        .unwrap_or_default();
                    if tx.send(payload).await.is_err() {
                        break;
                    }
                }
                // A node's connection dropped: messages may have been missed meanwhile.
                redis::PushKind::Disconnection => break,
                _ => {}
            }
        }
    });
    Ok(Subscription { rx, reader })
}
