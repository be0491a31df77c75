//! `kyu_redis_up`: when a Redis URL is configured, PING it every 2 s and publish 1 or 0.
//! Redis carries cross-node wake-ups and shared rate limits later; this probe only
//! tells operators (and the "Redis down" alert) whether it answers. One multiplexed
//! connection with short timeouts, dropped on any error and made again next round.

use std::time::Duration;

use kyu_actors::telemetry::REDIS_UP;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

const EVERY: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(1);

/// Starts the probe for `url`. A URL redis cannot parse is an error (a bad setting).
pub fn spawn(url: &str) -> redis::RedisResult<tokio::task::JoinHandle<()>> {
    let client = redis::Client::open(url)?;
    Ok(tokio::spawn(async move {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let mut conn: Option<MultiplexedConnection> = None;
        let mut was_up = None;
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let up = ping(&client, &config, &mut conn).await;
            metrics::gauge!(REDIS_UP).set(if up.is_ok() { 1.0 } else { 0.0 });
            if was_up != Some(up.is_ok()) {
                match &up {
                    Ok(()) => tracing::info!("redis answers"),
                    Err(e) => tracing::warn!(error = %e, "redis does not answer"),
                }
                was_up = Some(up.is_ok());
            }
        }
    }))
}

async fn ping(
    client: &redis::Client,
    config: &AsyncConnectionConfig,
    conn: &mut Option<MultiplexedConnection>,
) -> redis::RedisResult<()> {
    if conn.is_none() {
        *conn = Some(
            client
                .get_multiplexed_async_connection_with_config(config)
                .await?,
        );
    }
    let Some(c) = conn.as_mut() else {
        return Ok(());
    };
    let r: redis::RedisResult<String> = redis::cmd("PING").query_async(c).await;
    if r.is_err() {
        *conn = None;
    }
    r.map(|_| ())
}
