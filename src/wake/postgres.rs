//! PostgreSQL LISTEN/NOTIFY transport, for deployments without Redis. Why: the database
//! every node already shares can carry the signal itself; NOTIFY is delivered at commit
//! to every listening session of the same database.
//!
//! Publishing runs `SELECT pg_notify(channel, payload)` after the enqueue committed, on
//! its own one-connection pool (made lazily, remade by sqlx after errors) — never inside
//! the enqueue or claim transactions, so a slow or failing NOTIFY cannot hold up a
//! commit or a claim. Subscribing uses a `PgListener` (its own session, outside the
//! store's pool) read by a task; `try_recv` returning `None` means the session was lost.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc;

use super::{Sender, Subscription};

pub(super) struct PgSender {
    pool: PgPool,
    channel: String,
}

impl PgSender {
    pub(super) fn new(url: &str, channel: &str) -> anyhow::Result<PgSender> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy(url)?;
        Ok(PgSender {
            pool,
            channel: channel.to_owned(),
        })
    }
}

#[async_trait]
impl Sender for PgSender {
    async fn send(&mut self, payload: &str) -> Result<(), String> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// LISTENs on `channel`; payloads go to the returned subscription until the session
/// ends.
pub(super) async fn subscribe(url: &str, channel: &str) -> Result<Subscription, String> {
    let mut listener = PgListener::connect(url).await.map_err(|e| e.to_string())?;
    listener.listen(channel).await.map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(64);
    let reader = tokio::spawn(async move {
        // Ok(None): the session was lost. sqlx would reconnect on the next call, but the
        // subscriber does that itself, with back-off and a log line.
        while let Ok(Some(n)) = listener.try_recv().await {
            if tx.send(n.payload().to_owned()).await.is_err() {
                break;
            }
        }
    });
    Ok(Subscription { rx, reader })
}
