//! Redis, when `REDIS_URL` is set: optional, and never the source
//! of truth. [`target`] reads the URL (one server or a cluster) and gives the one
//! connection type both speak; [`link`] is the process's one connection and its health
//! (`kyu_redis_up`); [`limits`] keeps the per-provider rate-limit buckets there and
//! [`api_limits`] the API's per-client counters, so all nodes share them, each falling
//! back to the node's own memory while Redis is away.

pub mod api_limits;
pub mod limits;
pub mod link;
pub mod target;

pub use limits::RedisRateLimiter;
pub use link::Link;
pub use target::{RedisConn, RedisTarget};
