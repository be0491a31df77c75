//! The web page for people who run kyu: what is queued, what runs, what failed and why,
//! with buttons to cancel, retry, pause and resume. It exists so that looking at kyu
//! needs a browser, not `curl` and a JSON reader.
//!
//! It is served by kyu itself on the API's port and router, and it is only another face
//! of the API: every read and every action goes through the same functions the JSON
//! handlers use (`api::jobs`, `api::queues`), the same token check (`api::auth`) and the
//! same error type (`api::error::ApiError`, shown as a page by [`error::PageError`]).
//!
//! - Server-rendered askama templates (`src/web/templates/`, escaped by default, checked
//!   at compile time); the stylesheet and one small script are compiled into the binary
//!   ([`assets`]). The script only talks to kyu: it polls a running job's card every 2 s.
//! - Auth ([`session`]): a sign-in form takes an API token and keeps it in an HttpOnly,
//!   SameSite=Strict cookie. Every state-changing POST carries a CSRF token derived from
//!   the session's cookies. Without configured tokens (loopback only) everyone is admin,
//!   as in the API.
//! - Every page answers with a Content-Security-Policy that allows only kyu's own script
//!   and stylesheet ([`headers`]).
//!
//! Pages: [`overview`] (`/`), [`jobs`] (`/jobs`), [`job`] (`/jobs/{id}`), [`enqueue`]
//! (`/enqueue`), and [`session`] (`/signin`, `/signout`).

mod assets;
mod enqueue;
mod error;
mod form;
mod headers;
mod job;
mod jobs;
mod overview;
mod queue_counts;
mod session;
mod throughput;
mod view;
mod workflow;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::api::AppState;

/// What the pages keep between requests: the cached finished-job counts and the
/// throughput samples.
pub(crate) struct WebState {
    counts: queue_counts::QueueCounts,
    throughput: throughput::Throughput,
}

/// The web page's routes, to be merged into the API's router (which adds its limits,
/// panic catcher and request metrics). Starts the throughput sampler, so call it on a
/// runtime.
pub fn routes(state: &AppState) -> Router<AppState> {
    let web = Arc::new(WebState {
        counts: queue_counts::QueueCounts::new(state.store.clone()),
        throughput: throughput::Throughput::start(state.engine.as_ref()),
    });
    Router::new()
        .route("/", get(overview::page))
        .route("/queues/pause", post(overview::pause))
        .route("/queues/resume", post(overview::resume))
        .route("/jobs", get(jobs::page))
        .route("/jobs/{id}", get(job::page))
        .route("/jobs/{id}/live", get(job::live))
        .route("/jobs/{id}/cancel", post(job::cancel))
        .route("/jobs/{id}/retry", post(job::retry))
        .route("/workflows/{id}", get(workflow::page))
        .route("/workflows/{id}/live", get(workflow::live))
        .route("/enqueue", get(enqueue::form).post(enqueue::submit))
        .route("/signin", get(session::form).post(session::sign_in))
        .route("/signout", post(session::sign_out))
        .route("/assets/kyu.css", get(assets::css))
        .route("/assets/kyu.js", get(assets::js))
        .route("/favicon.ico", get(assets::favicon))
        .layer(axum::middleware::from_fn(headers::secure))
        .layer(Extension(web))
}
