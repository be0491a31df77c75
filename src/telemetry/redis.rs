//! `kyu_redis_up`: the one view of whether Redis answers. The Redis link
//! ([`crate::redis::Link`]) reports every PING and every failed command here, so the
//! gauge, the log and the rate limiter's choice (Redis or local buckets) always agree.
//! The gauge is set on every report; the log says so only when the state changes, so an
//! outage is one warning and a recovery one info line, however many takes fail between.

use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use kyu_actors::telemetry::REDIS_UP;

/// Whether Redis answers, as last seen.
#[derive(Debug, Default)]
pub struct RedisHealth {
    up: AtomicBool,
    /// The state last logged (`None`: nothing reported yet).
    logged: Mutex<Option<bool>>,
}

impl RedisHealth {
    /// Not up until the first report says so.
    pub fn new() -> RedisHealth {
        RedisHealth::default()
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Redis answered.
    pub fn report_ok(&self) {
        self.set(true, None);
    }

    /// Redis failed or did not answer in time.
    pub fn report_err(&self, error: &dyn Display) {
        self.set(false, Some(error));
    }

    fn set(&self, up: bool, error: Option<&dyn Display>) {
        self.up.store(up, Ordering::Release);
        metrics::gauge!(REDIS_UP).set(if up { 1.0 } else { 0.0 });
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if *logged == Some(up) {
            return;
        }
        *logged = Some(up);
        drop(logged);
        match error {
            None => tracing::info!("redis answers"),
            Some(e) => tracing::warn!(
                error = %e,
                "redis does not answer: each node uses its own rate-limit buckets until it is back"
            ),
        }
    }
}
