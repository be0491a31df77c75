//! The page's stylesheet and script, compiled into the binary (no CDN, no build step).
//! Their URLs never change within one binary, so browsers may cache them briefly.

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

const CSS: &str = include_str!("assets/kyu.css");
const JS: &str = include_str!("assets/kyu.js");
const ICON: &str = include_str!("assets/favicon.svg");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
}

pub(crate) async fn css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", CSS)
}

pub(crate) async fn js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", JS)
}

pub(crate) async fn favicon() -> impl IntoResponse {
    (StatusCode::OK, asset("image/svg+xml", ICON))
}
