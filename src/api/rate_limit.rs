//! API rate limits per client: at most N requests a minute and M an hour, per token
//! (per client address for requests without a valid token, which is every request when
//! no tokens are configured), with the quota chosen by the token's role.
//!
//! **Counting.** Each client has two fixed windows, a minute and an hour, each opened by
//! the client's first request after the previous one ended (so a window is "60 s from
//! the first request", not aligned to the clock). A request is admitted when both
//! windows have room, and then counts in both; a refused request counts in neither, so
//! a client that hammers through its minute does not also burn its hour. Why not
//! `governor` (GCRA): its state answers "when may the next request come", not "how many
//! are left in this window and when does it reset", which is what the `RateLimit-*`
//! headers and the seed's "per minute / per hour" promise say; and the same two
//! counters map onto Redis as two keys with a TTL, so memory and Redis count alike. A
//! fixed window admits up to twice the limit across one window's end and the next's
//! start; that is the usual price, and a per-hour quota bounds it.
//!
//! **Where the counters live** (`KYU_API_RATE_LIMIT_STORAGE`): in this node's memory,
//! or in Redis (`auto` when `REDIS_URL` is set) so every API node shares them. While
//! Redis is away each node counts in its own memory (N nodes then admit up to N times
//! the limit), shown by `kyu_api_rate_limit_shared 0`, and goes back to Redis once the
//! link's keeper sees it answer.
//!
//! **What is limited.** Every `/api/…` route. `/healthz`, `/readyz` and `/metrics` never
//! are (probes and scrapes must not starve), nor is the web page. Admitted answers carry
//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds) for the
//! window closest to its limit; a refusal is [`ApiError::RateLimited`] (429
//! `rate_limited`, plus `Retry-After`) and counts in `kyu_api_rate_limited_total{role}`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kyu_actors::telemetry::{API_RATE_LIMIT_SHARED, API_RATE_LIMITED};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::auth::{Role, TokenEntry, authenticate, bearer_token};
use super::error::ApiError;

/// The length of the short window.
pub const MINUTE: Duration = Duration::from_secs(60);
/// The length of the long window.
pub const HOUR: Duration = Duration::from_secs(3600);
/// Memory counters idle this long are dropped (an hour window has ended by then).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How many requests a client may make; 0: no limit on that window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    pub per_minute: u32,
    pub per_hour: u32,
}

impl Quota {
    pub fn is_unlimited(&self) -> bool {
        self.per_minute == 0 && self.per_hour == 0
    }
}

/// Where the counters live (`KYU_API_RATE_LIMIT_STORAGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// Redis when `REDIS_URL` is set, else memory.
    #[default]
    Auto,
    Redis,
    Memory,
}

impl FromStr for Storage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Storage::Auto),
            "redis" => Ok(Storage::Redis),
            "memory" => Ok(Storage::Memory),
            other => Err(format!("unknown storage {other:?}")),
        }
    }
}

/// Who a client is for the limits: the role of its token, or `anonymous`.
pub const ROLES: [&str; 4] = ["admin", "user", "worker", "anonymous"];

/// The API limits `KYU_API_RATE_LIMIT_*` describe.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimitSettings {
    /// For every role without its own entry.
    pub default: Quota,
    /// By role name ([`ROLES`]).
    pub roles: BTreeMap<String, Quota>,
    pub storage: Storage,
}

impl RateLimitSettings {
    /// The quota of `role`.
    pub fn quota(&self, role: &str) -> Quota {
        self.roles.get(role).copied().unwrap_or(self.default)
    }

    /// Whether any role is limited at all (else no limiter is built).
    pub fn any(&self) -> bool {
        !self.default.is_unlimited() || self.roles.values().any(|q| !q.is_unlimited())
    }
}

/// `user=60/1000, worker=0/0` → quotas by role (per minute / per hour, 0: no limit).
pub fn parse_role_quotas(v: &str) -> Result<BTreeMap<String, Quota>, String> {
    let mut out = BTreeMap::new();
    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (role, shape) = item
            .split_once('=')
            .ok_or_else(|| format!("`{item}`: expected ROLE=PER_MINUTE/PER_HOUR"))?;
        let role = role.trim();
        if !ROLES.contains(&role) {
            return Err(format!(
                "`{item}`: the role must be one of {}",
                ROLES.join(", ")
            ));
        }
        let (m, h) = shape
            .split_once('/')
            .ok_or_else(|| format!("`{item}`: expected ROLE=PER_MINUTE/PER_HOUR"))?;
        let num = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{item}`: expected whole numbers (0: no limit)"))
        };
        out.insert(
            role.to_owned(),
            Quota {
                per_minute: num(m)?,
                per_hour: num(h)?,
            },
        );
    }
    Ok(out)
}

/// One window's state after a request: what the headers say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    pub limit: u32,
    /// Requests counted in the window (after this one, when admitted).
    pub count: u32,
    /// Until the window ends.
    pub reset: Duration,
}

impl WindowState {
    fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.count)
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The window the headers describe: when refused, the full window that ends last;
    /// when admitted, the one with the fewest requests left.
    pub window: WindowState,
}

impl Decision {
    /// From both windows (`None`: not limited) and whether the request was admitted.
    pub fn from_windows(allowed: bool, windows: [Option<WindowState>; 2]) -> Option<Decision> {
        let ws = windows.into_iter().flatten();
        let window = if allowed {
            ws.min_by_key(|w| (w.remaining(), std::cmp::Reverse(w.reset)))?
        } else {
            ws.filter(|w| w.count >= w.limit).max_by_key(|w| w.reset)?
        };
        Some(Decision { allowed, window })
    }

    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (whole seconds, at
    /// least 1 while the window runs).
    pub fn headers(&self) -> [(&'static str, u64); 3] {
        [
            ("ratelimit-limit", u64::from(self.window.limit)),
            ("ratelimit-remaining", u64::from(self.window.remaining())),
            ("ratelimit-reset", ceil_secs(self.window.reset)),
        ]
    }
}

pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

/// The per-node counters: both windows per client.
#[derive(Default)]
pub struct MemoryCounters {
    inner: std::sync::Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    clients: HashMap<String, [Window; 2]>,
    pruned: Option<Instant>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    count: u32,
    ends: Option<Instant>,
}

impl MemoryCounters {
    /// Counts one request of `client` under `quota` at `now`.
    pub fn hit(&self, client: &str, quota: Quota, now: Instant) -> Option<Decision> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.pruned
            .is_none_or(|t| now.duration_since(t) >= PRUNE_EVERY)
        {
            g.pruned = Some(now);
            g.clients
                .retain(|_, ws| ws.iter().any(|w| w.ends.is_some_and(|e| e > now)));
        }
        let ws = g.clients.entry(client.to_owned()).or_default();
        let shape = [(quota.per_minute, MINUTE), (quota.per_hour, HOUR)];
        for (w, (limit, len)) in ws.iter_mut().zip(shape) {
            // An unlimited window stays closed, so it keeps no entry alive.
            if limit > 0 && w.ends.is_none_or(|e| e <= now) {
                *w = Window {
                    count: 0,
                    ends: Some(now + len),
                };
            }
        }
        let allowed = ws
            .iter()
            .zip(shape)
            .all(|(w, (limit, _))| limit == 0 || w.count < limit);
        let mut states = [None, None];
        for ((w, (limit, _)), s) in ws.iter_mut().zip(shape).zip(states.iter_mut()) {
            if limit == 0 {
                continue;
            }
            if allowed {
                w.count += 1;
            }
            *s = Some(WindowState {
                limit,
                count: w.count,
                reset: w.ends.map_or(Duration::ZERO, |e| e.duration_since(now)),
            });
        }
        Decision::from_windows(allowed, states)
    }
}

/// The limiter of one API process.
pub struct ApiRateLimiter {
    settings: RateLimitSettings,
    memory: MemoryCounters,
    redis: Option<crate::redis::api_limits::RedisCounters>,
    /// Last published `kyu_api_rate_limit_shared` (2: none yet).
    shared: AtomicU8,
}

impl ApiRateLimiter {
    /// `None` when no role is limited. With `redis` (the storage says so), counters
    /// live there while it answers.
    pub fn new(
        settings: RateLimitSettings,
        redis: Option<Arc<crate::redis::Link>>,
    ) -> Option<Arc<ApiRateLimiter>> {
        if !settings.any() {
            return None;
        }
        let redis = match settings.storage {
            Storage::Memory => None,
            Storage::Auto | Storage::Redis => {
                redis.map(crate::redis::api_limits::RedisCounters::new)
            }
        };
        let l = ApiRateLimiter {
            settings,
            memory: MemoryCounters::default(),
            redis,
            shared: AtomicU8::new(2),
        };
        l.publish_shared(l.redis.is_some());
        Some(Arc::new(l))
    }

    fn publish_shared(&self, shared: bool) {
        let v = u8::from(shared);
        if self.shared.swap(v, Ordering::Relaxed) != v {
            metrics::gauge!(API_RATE_LIMIT_SHARED).set(f64::from(v));
        }
    }

    /// Counts one request of `client` (role `role`); `None`: the role is not limited.
    pub async fn check(&self, client: &str, role: &str) -> Option<Decision> {
        let quota = self.settings.quota(role);
        if quota.is_unlimited() {
            return None;
        }
        if let Some(r) = &self.redis {
            match r.hit(client, quota).await {
                Some(d) => {
                    self.publish_shared(true);
                    return d;
                }
                None => self.publish_shared(false),
            }
        }
        self.memory.hit(client, quota, Instant::now())
    }
}

/// The client a request counts for and its role label.
fn client_of(req: &Request, tokens: &[TokenEntry]) -> (String, &'static str) {
    if !tokens.is_empty()
        && let Ok(Some(t)) = bearer_token(req.headers())
        && let Some(entry) = authenticate(tokens, t)
    {
        let role = match entry.role {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Worker => "worker",
        };
        return (format!("token:{}", entry.name), role);
    }
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
    (format!("addr:{addr}"), "anonymous")
}

/// A stable, short Redis-safe id for a client (no braces, no token names in keys).
pub(crate) fn client_key(client: &str) -> String {
    let h = Sha256::digest(client.as_bytes());
    h[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// What the middleware needs: the limiter and the tokens that name clients.
#[derive(Clone)]
pub struct Enforcer {
    pub limiter: Arc<ApiRateLimiter>,
    pub tokens: Arc<[TokenEntry]>,
}

/// The middleware: counts `/api/…` requests and refuses those over the limit.
pub async fn enforce(State(e): State<Enforcer>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let (client, role) = client_of(&req, &e.tokens);
    let Some(d) = e.limiter.check(&client, role).await else {
        return next.run(req).await;
    };
    if !d.allowed {
        metrics::counter!(API_RATE_LIMITED, "role" => role).increment(1);
        return ApiError::RateLimited(d).into_response();
    }
    let mut res = next.run(req).await;
    set_headers(res.headers_mut(), &d);
    res
}

/// Writes the `RateLimit-*` headers of `d`.
pub(crate) fn set_headers(h: &mut HeaderMap, d: &Decision) {
    for (name, v) in d.headers() {
        h.insert(name, HeaderValue::from(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(per_minute: u32, per_hour: u32) -> Quota {
        Quota {
            per_minute,
            per_hour,
        }
    }

    #[test]
    fn the_61st_request_in_a_minute_is_refused_until_the_window_ends() {
        let m = MemoryCounters::default();
        let t0 = Instant::now();
        for i in 0..60 {
            let d = m.hit("a", q(60, 0), t0).expect("limited");
            assert!(d.allowed, "request {}", i + 1);
            assert_eq!(d.window.count, i + 1);
        }
        let d = m
            .hit("a", q(60, 0), t0 + Duration::from_secs(10))
            .expect("limited");
        assert!(!d.allowed);
        assert_eq!(d.headers()[1], ("ratelimit-remaining", 0));
        assert_eq!(d.headers()[2], ("ratelimit-reset", 50));
        // Another client has its own windows.
        assert!(m.hit("b", q(60, 0), t0).expect("limited").allowed);
        // The window opened by the first request ends 60 s after it.
        let d = m.hit("a", q(60, 0), t0 + MINUTE).expect("limited");
        assert!(d.allowed);
        assert_eq!(d.window.count, 1);
    }

    #[test]
    fn the_hour_binds_across_minutes_and_refusals_count_nowhere() {
        let m = MemoryCounters::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(m.hit("a", q(5, 8), t0).expect("limited").allowed);
        }
        // Refused by the minute: the hour is not charged.
        for _ in 0..10 {
            assert!(!m.hit("a", q(5, 8), t0).expect("limited").allowed);
        }
        let t1 = t0 + MINUTE;
        for _ in 0..3 {
            assert!(m.hit("a", q(5, 8), t1).expect("limited").allowed);
        }
        let d = m.hit("a", q(5, 8), t1).expect("limited");
        assert!(!d.allowed);
        assert_eq!(d.window.limit, 8, "the hour refused it");
        assert_eq!(ceil_secs(d.window.reset), 3540);
    }

    #[test]
    fn headers_describe_the_tightest_window() {
        let m = MemoryCounters::default();
        let d = m.hit("a", q(100, 3), Instant::now()).expect("limited");
        assert_eq!(d.window.limit, 3);
        assert_eq!(d.headers()[1], ("ratelimit-remaining", 2));
        assert!(m.hit("a", q(0, 0), Instant::now()).is_none());
    }

    #[test]
    fn idle_clients_are_forgotten() {
        let m = MemoryCounters::default();
        let t0 = Instant::now();
        for i in 0..100 {
            m.hit(&format!("c{i}"), q(10, 0), t0);
        }
        m.hit("late", q(10, 0), t0 + MINUTE + Duration::from_secs(1));
        let n = m.inner.lock().expect("lock").clients.len();
        assert_eq!(n, 1, "only the client whose window runs is kept");
    }

    #[test]
    fn role_quotas_parse_and_name_their_fault() {
        let r = parse_role_quotas("user=60/1000, worker=0/0").expect("parses");
        assert_eq!(r["user"], q(60, 1000));
        assert!(r["worker"].is_unlimited());
        assert!(parse_role_quotas("root=1/1").is_err());
        assert!(parse_role_quotas("user=60").is_err());
        assert!(parse_role_quotas("user=a/1").is_err());
    }
}
