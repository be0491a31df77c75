//! # kyu-actors: the engine core
//!
//! The job model, the seams the engine needs ([`store::Store`], [`clock::Clock`]) and,
//! behind the `testkit` feature, the fakes and the store contract suite.
//!
//! This crate knows nothing about sqlx, axum, redis or reqwest: the `kyu` crate
//! implements the seams, so everything here is testable in memory with a manual clock.

pub mod clock;
pub mod error;
pub mod job;
pub mod priority;
pub mod status;
pub mod store;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use clock::{Clock, SharedClock, SystemClock};
pub use error::{AttemptError, ErrorKind, JobError};
pub use job::{Job, NewJob, RunAt};
pub use priority::Priority;
pub use status::JobStatus;
pub use store::{Ack, ClaimParams, JobLease, Outcome, Store, StoreError};
