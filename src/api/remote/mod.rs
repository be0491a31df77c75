//! The worker protocol (ARCHITECTURE §10, `docs/worker-protocol.md`): workers in any
//! language fetch jobs with a lease over HTTP, heartbeat them (progress in, cancel out)
//! and report how they ended. The engine does the work — one dispatcher and claim path
//! for local slots and remote workers, fenced outcomes — these handlers check input,
//! track who is connected ([`registry`]) and turn answers into HTTP.

pub mod fetch;
mod lease;
pub mod model;
pub mod registry;
pub mod report;

pub use registry::RemoteWorkers;
