//! Rate limits shared by every node: per-provider token buckets in Redis.
//!
//! Each node has its own engine, but a provider's limit (say 60 requests a minute) is
//! for all of them together, so the bucket lives in Redis. One Lua script per take
//! refills the bucket by the time elapsed, then takes a token or answers how long to
//! wait, atomically: two nodes can never both take the last token. A provider's
//! "too many requests" (Retry-After) is stored in the same bucket, so every node
//! honours it.
//!
//! **Time is Redis's.** The script reads the server clock (`TIME`), so the bucket does
//! not depend on the nodes' clocks, which differ. The `now` the engine passes is used
//! only by the local fallback; a cool-down's `until` is turned into "this long from
//! now" on this node (its system clock against `until`) and anchored to Redis time.
//!
//! **Shape comes from each node's config** (`RATE_LIMIT_*`): every take sends the
//! provider's per-minute rate and burst, so all nodes must be configured alike.
//!
//! **While Redis is away** (down, cut, or slower than [`TAKE_TIMEOUT`]) each take falls
//! back to this node's own buckets ([`LocalRateLimiter`]): N nodes then admit up to N
//! times the limit between them. The first failed take marks the link down
//! (`kyu_redis_up 0`, one warning); later takes go local at once, without touching the
//! network, until the link's keeper sees Redis answer again. So a hung Redis costs the
//! dispatcher at most one [`TAKE_TIMEOUT`] per outage.
//!
//! Keys: `<KYU_REDIS_PREFIX>ratelimit:<provider>`, a hash (tokens, ts, cd) that expires
//! once it would be full again anyway. A bucket is that one key, so on a Redis Cluster
//! its script runs whole on the shard owning the key's slot (no hash tag needed; a
//! script with more keys must give them one, as the API counters do).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kyu_actors::rate_limit::{Limit, LocalRateLimiter, RateLimitBackend};
use kyu_actors::telemetry::RATE_LIMIT_TOKENS;

use super::link::Link;

/// Longest a take waits for Redis before it is counted down and the local bucket
/// answers. A take is one round trip (well under a millisecond on a LAN).
pub const TAKE_TIMEOUT: Duration = Duration::from_millis(250);

/// KEYS[1]: the bucket. ARGV: per_minute, burst, cool-down ms (0: a take).
/// Returns {wait in µs (0: taken), tokens left × 1000}.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1]) / 60000000
local burst = math.max(tonumber(ARGV[2]), 1)
local cool = tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'cd')
local tokens = tonumber(h[1]) or burst
local ts = tonumber(h[2]) or now
local cd = tonumber(h[3]) or 0
local wait = 0
if cool > 0 then
  cd = math.max(cd, now + cool * 1000)
  tokens = 0
  ts = now
elseif cd > now then
  wait = cd - now
else
  if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate)
    ts = now
  end
  if tokens >= 1 then
    tokens = tokens - 1
  else
    wait = math.ceil((1 - tokens) / rate)
  end
end
local function num(x) return string.format('%.17g', x) end
redis.call('HSET', KEYS[1], 'tokens', num(tokens), 'ts', num(ts), 'cd', num(cd))
local full_in = (burst - tokens) / rate
local ttl = math.max(cd - now, 0) + full_in
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.min(math.ceil(ttl / 1000) + 1000, 1e12)))
return {wait, math.floor(tokens * 1000)}
"#;

/// Token buckets in Redis, with this node's own buckets as the fallback.
pub struct RedisRateLimiter {
    link: Arc<Link>,
    local: LocalRateLimiter,
    default: Limit,
    limits: HashMap<String, Limit>,
    script: redis::Script,
}

impl RedisRateLimiter {
    /// Buckets shaped by `limits` or `default`, in Redis through `link`.
    pub fn new(link: Arc<Link>, default: Limit, limits: HashMap<String, Limit>) -> Self {
        RedisRateLimiter {
            link,
            local: LocalRateLimiter::new(default, limits.clone()),
            default,
            limits,
            script: redis::Script::new(SCRIPT),
        }
    }

    fn limit(&self, provider: &str) -> Limit {
        self.limits.get(provider).copied().unwrap_or(self.default)
    }

    /// Runs the script for `provider`; `None` when Redis is down or fails (then marked
    /// down). `cool_ms` 0 is a take.
    async fn run(&self, provider: &str, cool_ms: u64) -> Option<(u64, f64)> {
        let mut conn = self.link.conn()?;
        let limit = self.limit(provider);
        let mut call = self
            .script
            .key(self.link.key(&format!("ratelimit:{provider}")));
        call.arg(limit.per_minute.max(1))
            .arg(limit.burst.max(1))
            .arg(cool_ms);
        let call = call.invoke_async::<(i64, i64)>(&mut conn);
        match tokio::time::timeout(TAKE_TIMEOUT, call).await {
            Ok(Ok((wait_us, milli_tokens))) => {
                let tokens = milli_tokens.max(0) as f64 / 1000.0;
                metrics::gauge!(RATE_LIMIT_TOKENS, "provider" => provider.to_owned()).set(tokens);
                Some((wait_us.max(0) as u64, tokens))
            }
            Ok(Err(e)) => {
                self.link.failed(&e);
                None
            }
            Err(_) => {
                self.link.failed(&format!(
                    "rate-limit take got no answer within {TAKE_TIMEOUT:?}"
                ));
                None
            }
        }
    }
}

#[async_trait]
impl RateLimitBackend for RedisRateLimiter {
    async fn try_acquire(&self, provider: &str, now: DateTime<Utc>) -> Result<(), Duration> {
        match self.run(provider, 0).await {
            Some((0, _)) => Ok(()),
            Some((wait_us, _)) => Err(Duration::from_micros(wait_us)),
            None => self.local.try_acquire(provider, now).await,
        }
    }

    async fn cool_down(&self, provider: &str, until: DateTime<Utc>) {
        // Locally too, so the fallback honours it if Redis goes away meanwhile.
        self.local.cool_down(provider, until).await;
        let ms = (until - Utc::now()).num_milliseconds();
        if ms > 0 {
            self.run(provider, ms as u64).await;
        }
    }
}
