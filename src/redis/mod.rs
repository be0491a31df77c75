//! Redis, when `REDIS_URL` is set: optional, and never the source
//! of truth. [`link`] is the process's one connection and its health
//! (`kyu_redis_up`); [`limits`] keeps the per-provider rate-limit buckets there so
//! all nodes share them, falling back to each node's own buckets while Redis is away.

pub mod limits;
pub mod link;

pub use limits::RedisRateLimiter;
pub use link::Link;
