//! Redis pub/sub transport. Why Redis when it is there: PUBLISH fans out to every
//! subscribed node in well under a millisecond and puts no load on the database, which
//! is the bottleneck of a multi-node deployment.
//!
//! Publishing uses one multiplexed connection with short timeouts, dropped on any error
//! and made again on the next publish (after the caller's back-off). Subscribing uses a
//! dedicated RESP2 pub/sub connection; its message stream ends when the connection
//! drops, which the subscriber sees as "connection lost".

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use super::{Sender, Subscription};

const TIMEOUT: Duration = Duration::from_secs(1);

pub(super) struct RedisSender {
    client: redis::Client,
    channel: String,
    config: AsyncConnectionConfig,
    conn: Option<MultiplexedConnection>,
}

impl RedisSender {
    pub(super) fn new(url: &str, channel: &str) -> anyhow::Result<RedisSender> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("bad REDIS_URL (expected redis://HOST:PORT[/DB]): {e}"))?;
        Ok(RedisSender {
            client,
            channel: channel.to_owned(),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(TIMEOUT))
                .set_response_timeout(Some(TIMEOUT)),
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
                self.client
                    .get_multiplexed_async_connection_with_config(&self.config)
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
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
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
