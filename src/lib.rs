//! # kyu: a durable, actor-based job engine
//!
//! Layout:
//! - [`store`]: the durable job stores (SQLite, PostgreSQL, MySQL/MariaDB) behind
//!   [`kyu_actors::Store`], and throw-away test databases ([`store::testdb`]).
//! - [`cli`]: the `kyu` command line (`migrate`, `bench`, …).
//! - [`bench`]: the benchmarks `kyu bench` runs.
//! - [`web`]: the web page for people at `/` (server-rendered, same auth as the API).
//! - [`redis`]: the optional Redis link and the rate limits shared through it.
//! - [`handlers`]: the built-in job types; [`providers`]: the AI provider clients;
//!   [`net`]: outbound HTTP (error classes, SSRF guard).
//!
//! The engine core (job model, actors) is the `kyu-actors` crate, re-exported as
//! [`engine`]. A program that embeds kyu needs only `kyu` and `tokio`: the
//! [`async_trait`] attribute a [`engine::Handler`] needs and [`serde_json`] (payloads
//! and results) are re-exported here; `examples/embed.rs` is a whole program.

pub mod api;
pub mod bench;
pub mod chaos;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod handlers;
pub mod net;
pub mod probe;
pub mod providers;
pub mod redis;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod wake;
pub mod web;
pub mod worker;

pub use kyu_actors as engine;
pub use kyu_actors::{async_trait, serde_json};
