//! Per-request observability: a `request` span (method, route, status) around every
//! handler, a debug log line with the latency, and `kyu_http_requests_total` /
//! `kyu_http_request_duration_seconds`. The route label is the matched path template
//! (`/api/v1/jobs/{id}`), or `unmatched` for a path no route knows, so ids and
//! arbitrary paths never become label values.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use kyu_actors::telemetry::{HTTP_DURATION, HTTP_REQUESTS};
use tracing::Instrument;

pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let span =
        tracing::info_span!("request", method, route = %route, status = tracing::field::Empty);
    let started = Instant::now();
    let res = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    span.record("status", status);
    span.in_scope(|| {
        tracing::debug!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    metrics::counter!(HTTP_REQUESTS,
        "route" => route.clone(), "method" => method, "status" => status.to_string())
    .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method)
        .record(elapsed.as_secs_f64());
    res
}

/// The standard methods by name; anything else (extension methods) as `other`, so a
/// client cannot mint label values.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
