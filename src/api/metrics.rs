//! `GET /metrics`: the Prometheus text exposition of the process's recorder, on the
//! API's own port. No token, like `/healthz`: it holds counts and timings, no job data.
//! Rendering reads in-memory values only (queue gauges are sampled in the background),
//! so a scrape costs no database query.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::telemetry::exporter;

/// Prometheus' text format, version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn render() -> Response {
    match exporter::handle() {
        Some(h) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], h.render()).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            "# no metrics recorder is installed in this process\n",
        )
            .into_response(),
    }
}
