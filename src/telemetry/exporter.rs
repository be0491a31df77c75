//! The process-wide Prometheus recorder. `kyu serve` installs it once and `GET /metrics`
//! renders it; rendering reads in-memory atomics only, never the database (queue gauges
//! come from [`super::sampler`]).
//!
//! The `metrics` facade allows one global recorder per process: a second install (tests
//! starting several servers in one process) reuses the first instead of failing.

use std::sync::OnceLock;
use std::time::Duration;

use kyu_actors::telemetry::{self, SECONDS_BUCKETS};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histograms are drained into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the recorder (once per process) and returns its handle; `None` if another
/// recorder was installed first, outside kyu's control. Starts the upkeep task, so call
/// it on a runtime.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match built {
                Ok(handle) => {
                    telemetry::describe();
                    let h = handle.clone();
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(UPKEEP_EVERY);
                        loop {
                            tick.tick().await;
                            h.run_upkeep();
                        }
                    });
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics will be empty");
                    None
                }
            }
        })
        .clone()
}

/// The installed recorder's handle, if any.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get().and_then(Option::as_ref)
}

/// Sets `kyu_build_info{version, backend} 1`.
pub fn build_info(backend: &'static str) {
    metrics::gauge!(telemetry::BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"), "backend" => backend)
    .set(1.0);
}
