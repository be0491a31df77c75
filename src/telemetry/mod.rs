//! Observability of a kyu process: logs, the Prometheus recorder,
//! and the background samplers that turn the store's and Redis's state into gauges.
//! The metric names themselves are the contract in [`kyu_actors::telemetry`]; the
//! engine emits its own metrics, this module adds what only the process can see.

pub mod endpoint;
pub mod exporter;
pub mod logging;
pub mod redis;
pub mod sampler;
