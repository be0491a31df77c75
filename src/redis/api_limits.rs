//! The API's per-client request counters in Redis, shared by every API node (the rules
//! are in [`crate::api::rate_limit`]). One Lua script per request reads both windows,
//! admits the request only if both have room and then counts it in both, atomically:
//! two nodes can never both admit the last request of a window.
//!
//! Keys: `<KYU_REDIS_PREFIX>apilimit:{<client>}:m` and `…:h`, a count each whose TTL is
//! the rest of its window (set by the request that opens it). `<client>` is a hash of
//! the token name or address, so no name reaches Redis; the braces are a hash tag, so
//! on a cluster both keys of a client are in one slot and one script may touch both.
//!
//! Time is Redis's: a window's end is its key's TTL, so the nodes' clocks do not
//! matter. A script that fails or takes longer than [`HIT_TIMEOUT`] marks the link
//! down, and the caller counts in memory until the keeper sees Redis again.

use std::sync::Arc;
use std::time::Duration;

use crate::api::rate_limit::{Decision, HOUR, MINUTE, Quota, WindowState, client_key};

use super::link::Link;

/// Longest a request waits for Redis before its node counts it in memory.
pub const HIT_TIMEOUT: Duration = Duration::from_millis(250);

/// KEYS: minute, hour. ARGV: per-minute limit, per-hour limit (0: none), minute ms,
/// hour ms. Returns {admitted 1/0, minute count, minute ms left, hour count, hour ms left}.
const SCRIPT: &str = r#"
local function read(key, limit, len)
  if limit == 0 then return 0, 0 end
  local ttl = redis.call('PTTL', key)
  if ttl <= 0 then return 0, len end
  return tonumber(redis.call('GET', key) or '0'), ttl
end
local lm, lh = tonumber(ARGV[1]), tonumber(ARGV[2])
local m, mt = read(KEYS[1], lm, tonumber(ARGV[3]))
local h, ht = read(KEYS[2], lh, tonumber(ARGV[4]))
local ok = (lm == 0 or m < lm) and (lh == 0 or h < lh)
if ok then
  if lm > 0 then m = m + 1; redis.call('SET', KEYS[1], m, 'PX', mt) end
  if lh > 0 then h = h + 1; redis.call('SET', KEYS[2], h, 'PX', ht) end
end
return {ok and 1 or 0, m, mt, h, ht}
"#;

/// The counters in Redis, through the process's link.
pub struct RedisCounters {
    link: Arc<Link>,
    script: redis::Script,
}

impl RedisCounters {
    pub fn new(link: Arc<Link>) -> RedisCounters {
        RedisCounters {
            link,
            script: redis::Script::new(SCRIPT),
        }
    }

    /// Counts one request of `client`: `Some(decision)` from Redis (`Some(None)`: not
    /// limited), or `None` when Redis is down or failed (then marked down).
    pub async fn hit(&self, client: &str, quota: Quota) -> Option<Option<Decision>> {
        let mut conn = self.link.conn()?;
        let id = client_key(client);
        let mut call = self
            .script
            .key(self.link.key(&format!("apilimit:{{{id}}}:m")));
        call.key(self.link.key(&format!("apilimit:{{{id}}}:h")))
            .arg(quota.per_minute)
            .arg(quota.per_hour)
            .arg(MINUTE.as_millis() as u64)
            .arg(HOUR.as_millis() as u64);
        let run = call.invoke_async::<(i64, i64, i64, i64, i64)>(&mut conn);
        match tokio::time::timeout(HIT_TIMEOUT, run).await {
            Ok(Ok((ok, m, mt, h, ht))) => {
                let window = |limit: u32, count: i64, ms: i64| {
                    (limit > 0).then(|| WindowState {
                        limit,
                        count: u32::try_from(count.max(0)).unwrap_or(u32::MAX),
                        reset: Duration::from_millis(ms.max(0) as u64),
                    })
                };
                Some(Decision::from_windows(
                    ok == 1,
                    [
                        window(quota.per_minute, m, mt),
                        window(quota.per_hour, h, ht),
                    ],
                ))
            }
            Ok(Err(e)) => {
                self.link.failed(&e);
                None
            }
            Err(_) => {
                self.link.failed(&format!(
                    "API rate-limit count got no answer within {HIT_TIMEOUT:?}"
                ));
                None
            }
        }
    }
}
