//! Benchmarks behind `kyu bench`. Budgets live here, never in tests.

pub mod claim;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod remote;
pub mod store;
