//! `kyu worker`'s own small listener for `GET /metrics` and `GET /healthz`
//! (`KYU_METRICS_BIND`): a worker has no API port, yet its engine's series (jobs run,
//! run time, pool) exist only in its process, so Prometheus must scrape it there. The
//! same hardened accept loop as the API (header-read timeout, connection cap).

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::routing::get;

use crate::api::server::{ServerOptions, serve};
use crate::config::Settings;

/// Installs the recorder and serves it on `addr` until `shutdown` resolves.
pub async fn start(
    addr: SocketAddr,
    s: &Settings,
    backend: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if super::exporter::install().is_some() {
        super::exporter::build_info(backend);
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on KYU_METRICS_BIND={addr}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!("metrics listening on http://{local}/metrics");
    let app = Router::new()
        .route("/metrics", get(crate::api::metrics::render))
        .route("/healthz", get(crate::api::health::healthz));
    let opts = ServerOptions {
        header_read_timeout: s.header_read_timeout,
        max_connections: 64,
        drain: std::time::Duration::from_secs(1),
    };
    Ok(tokio::spawn(serve(listener, app, opts, shutdown)))
}
