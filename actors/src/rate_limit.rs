//! Per-provider rate limits: a token bucket per provider (requests per minute, burst),
//! plus a cool-down when a provider answers "too many requests" (Retry-After).
//!
//! [`RateLimitBackend`] is the seam a shared (Redis) backend will implement; the
//! [`LocalRateLimiter`] keeps buckets in this process. Time is passed in, so the
//! buckets are tested with simulated minutes. The local limiter publishes each
//! bucket's tokens as a gauge whenever it is used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::telemetry::RATE_LIMIT_TOKENS;

/// A bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_minute: u32,
    pub burst: u32,
}

/// A token bucket: `burst` tokens at most, refilled at `per_minute`/60 per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: Limit,
    tokens: f64,
    updated: DateTime<Utc>,
    cooldown_until: Option<DateTime<Utc>>,
}

impl TokenBucket {
    pub fn new(limit: Limit, now: DateTime<Utc>) -> TokenBucket {
        TokenBucket {
            limit,
            tokens: f64::from(limit.burst.max(1)),
            updated: now,
            cooldown_until: None,
        }
    }

    fn refill(&mut self, now: DateTime<Utc>) {
        let secs = (now - self.updated).num_milliseconds().max(0) as f64 / 1000.0;
        let rate = f64::from(self.limit.per_minute) / 60.0;
        self.tokens = (self.tokens + secs * rate).min(f64::from(self.limit.burst.max(1)));
        self.updated = now;
    }

    /// Takes a token, or says how long until one is there.
    pub fn try_take(&mut self, now: DateTime<Utc>) -> Result<(), Duration> {
        if let Some(until) = self.cooldown_until {
            if now < until {
                return Err((until - now).to_std().unwrap_or_default());
            }
            self.cooldown_until = None;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let rate = f64::from(self.limit.per_minute.max(1)) / 60.0;
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// Tokens left as of the last take or refill.
    pub fn tokens(&self) -> f64 {
        self.tokens
    }

    /// No tokens until `until` (the provider's Retry-After).
    pub fn cool_down(&mut self, until: DateTime<Utc>) {
        self.cooldown_until = Some(self.cooldown_until.map_or(until, |u| u.max(until)));
        self.tokens = 0.0;
    }
}

/// Where buckets live.
#[async_trait]
pub trait RateLimitBackend: Send + Sync + 'static {
    /// Takes a token for `provider`, or says how long to wait.
    async fn try_acquire(&self, provider: &str, now: DateTime<Utc>) -> Result<(), Duration>;
    /// The provider said "too many requests": no tokens until `until`.
    async fn cool_down(&self, provider: &str, until: DateTime<Utc>);
}

/// A handler's view of the rate limiter: buckets by provider name on the engine's
/// clock. A handler that calls a provider other than its job's own (a fallback chain)
/// asks here first, and puts a provider that answered 429 in its cool-down.
#[derive(Clone)]
pub struct RateLimits {
    backend: std::sync::Arc<dyn RateLimitBackend>,
    clock: crate::clock::SharedClock,
}

impl RateLimits {
    pub fn new(
        backend: std::sync::Arc<dyn RateLimitBackend>,
        clock: crate::clock::SharedClock,
    ) -> RateLimits {
        RateLimits { backend, clock }
    }

    /// Local buckets of `default`'s shape on the system clock (tests, library users).
    pub fn local(default: Limit) -> RateLimits {
        RateLimits::new(
            std::sync::Arc::new(LocalRateLimiter::new(default, HashMap::new())),
            std::sync::Arc::new(crate::clock::SystemClock),
        )
    }

    /// Takes a token of `provider`'s bucket, or says how long until one is there.
    pub async fn try_acquire(&self, provider: &str) -> Result<(), Duration> {
        self.backend.try_acquire(provider, self.clock.now()).await
    }

    /// No tokens for `provider` for `after` (its Retry-After), on every node sharing
    /// the backend.
    pub async fn cool_down(&self, provider: &str, after: Duration) {
        let until = chrono::Duration::from_std(after)
            .ok()
            .and_then(|d| self.clock.now().checked_add_signed(d));
        if let Some(until) = until {
            self.backend.cool_down(provider, until).await;
        }
    }
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimits")
    }
}

/// Buckets in this process; one per provider, shaped by `limits` or the default.
pub struct LocalRateLimiter {
    default: Limit,
    limits: HashMap<String, Limit>,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl LocalRateLimiter {
    pub fn new(default: Limit, limits: HashMap<String, Limit>) -> LocalRateLimiter {
        LocalRateLimiter {
            default,
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn with_bucket<T>(
        &self,
        provider: &str,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut TokenBucket) -> T,
    ) -> T {
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.limits.get(provider).copied().unwrap_or(self.default);
        let bucket = b
            .entry(provider.to_owned())
            .or_insert_with(|| TokenBucket::new(limit, now));
        let out = f(bucket);
        metrics::gauge!(RATE_LIMIT_TOKENS, "provider" => provider.to_owned()).set(bucket.tokens());
        out
    }
}

#[async_trait]
impl RateLimitBackend for LocalRateLimiter {
    async fn try_acquire(&self, provider: &str, now: DateTime<Utc>) -> Result<(), Duration> {
        self.with_bucket(provider, now, |b| b.try_take(now))
    }

    async fn cool_down(&self, provider: &str, until: DateTime<Utc>) {
        self.with_bucket(provider, until, |b| b.cool_down(until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// 60/min with burst 5 over 2 simulated minutes, asked every 100 ms: 5 + 120 at most.
    #[test]
    fn sixty_per_minute_burst_five_over_two_minutes() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap();
        let mut b = TokenBucket::new(
            Limit {
                per_minute: 60,
                burst: 5,
            },
            t0,
        );
        let mut taken = 0;
        for tick in 0..=1200 {
            let now = t0 + chrono::Duration::milliseconds(tick * 100);
            while b.try_take(now).is_ok() {
                taken += 1;
            }
        }
        assert!(taken <= 125, "took {taken}");
        assert!(
            taken >= 124,
            "took {taken}: the bucket should not under-admit either"
        );
    }

    #[test]
    fn cool_down_blocks_until_retry_after() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap();
        let mut b = TokenBucket::new(
            Limit {
                per_minute: 600,
                burst: 10,
            },
            t0,
        );
        b.cool_down(t0 + chrono::Duration::seconds(30));
        assert_eq!(
            b.try_take(t0 + chrono::Duration::seconds(10)),
            Err(Duration::from_secs(20))
        );
        assert!(b.try_take(t0 + chrono::Duration::seconds(31)).is_ok());
    }
}
