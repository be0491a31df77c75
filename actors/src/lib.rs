//! # kyu-actors: the engine core
//!
//! The job model, the seams the engine needs ([`store::Store`], [`clock::Clock`],
//! [`autoscale::ResourceProbe`], [`rate_limit::RateLimitBackend`]), the actor engine
//! and, behind the `testkit` feature, the fakes and the store contract suite.
//!
//! ```text
//! Supervisor ─┬─ Dispatcher ── claims in batches, starts jobs in worker slots,
//!             │                renews leases, asks the rate limiter per provider
//!             ├─ Acker ─────── group-commits outcomes
//!             ├─ Scheduler ─── rescues expired leases, wakes for due jobs, prunes
//!             └─ Autoscaler ── CPU/memory/backlog → pool size in [min, max]
//! ```
//!
//! This crate knows nothing about sqlx, axum, redis or reqwest: the `kyu` crate
//! implements the seams, so everything here is testable in memory with a manual clock.

pub mod actor;
pub mod autoscale;
pub mod backoff;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod error;
pub mod events;
pub mod fair_share;
pub mod flow;
pub mod handler;
pub mod job;
pub mod prefetch;
pub mod priority;
pub mod rate_limit;
pub mod remote;
pub mod restart_budget;
pub mod run;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod workflow;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

/// The attribute a [`Handler`] implementation needs (`#[kyu::engine::async_trait]`), so an
/// embedder need not depend on `async-trait` itself.
pub use async_trait::async_trait;
/// Payloads and results are `serde_json` values (`kyu::engine::serde_json::json!`).
pub use serde_json;

pub use autoscale::{Reading, ResourceProbe};
pub use clock::{Clock, SharedClock, SystemClock};
pub use cluster::{CronEntry, Leadership, NodeAgent, NodeConfig};
pub use config::EngineConfig;
pub use engine::{Engine, EngineBuilder, EngineError, EngineStats};
pub use error::{AttemptError, ErrorKind, JobError};
pub use events::EngineEvent;
pub use handler::{Handler, HandlerRegistry, JobContext, JobDefaults, PayloadError};
pub use job::{ConcurrencyKey, Job, NewJob, RunAt};
pub use prefetch::Prefetch;
pub use priority::Priority;
pub use rate_limit::{Limit, RateLimits};
pub use status::JobStatus;
pub use store::{
    Ack, CancelOutcome, ClaimParams, Enqueued, JobLease, JobPage, ListJobs, LiveCount, MAX_PAGE,
    NodeInfo, NodeRecord, Outcome, QueueCount, QueueState, Store, StoreError, validate_new_job,
};
pub use workflow::{
    DependencyPolicy, NewWorkflow, Workflow, WorkflowCreated, WorkflowError, WorkflowRecord,
    WorkflowStatus,
};
