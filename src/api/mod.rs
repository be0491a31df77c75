//! The HTTP API (axum) under `/api/v1`, plus `/healthz`, `/readyz`, `/metrics` and the
//! OpenAPI document. Handlers are thin: they check input, ask the store or the engine, and
//! answer JSON; every failure goes through [`error::ApiError`].

pub mod auth;
pub mod concurrency;
mod cursor;
pub mod error;
mod group_commit;
pub(crate) mod health;
pub(crate) mod jobs;
mod json;
pub(crate) mod metrics;
pub mod model;
pub(crate) mod nodes;
mod observe;
mod openapi;
pub(crate) mod paging;
pub(crate) mod queues;
pub mod rate_limit;
pub mod remote;
pub mod server;
pub mod workflow_model;
pub(crate) mod workflows;

use std::any::Any;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use kyu_actors::{Engine, Enqueued, HandlerRegistry, NewJob, Store, StoreError};
use tower_http::catch_panic::CatchPanicLayer;

use self::auth::TokenEntry;
use self::error::ApiError;
use self::json::BodyLimit;

/// Request and payload bounds, and defaults for jobs that do not say.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_payload_bytes: usize,
    pub max_batch: usize,
    /// Retries for a job that gives no `max_retries` (`JOB_QUEUE_MAX_RETRIES`).
    pub default_max_retries: u32,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// `None` in an API-only process (`kyu api`, `JOB_WORKER_ENABLED=false`).
    pub engine: Option<Arc<Engine>>,
    pub tokens: Arc<[TokenEntry]>,
    pub limits: Limits,
    /// Job types a request may name.
    pub job_types: Arc<[String]>,
    /// What each type's jobs get when a request does not say.
    pub handlers: HandlerRegistry,
    /// Single creates, committed together when they arrive together.
    creates: group_commit::GroupCommit,
    /// Tells the other nodes' engines about jobs committed here (see [`crate::wake`]).
    pub wake: crate::wake::Publisher,
    openapi: Arc<serde_json::Value>,
    /// A node silent this long is not listed by `GET /api/v1/nodes`.
    pub node_dead_after: std::time::Duration,
    /// Remote workers connected to this process (the worker protocol).
    pub remote: remote::RemoteWorkers,
    /// Per-client request limits (`None`: off).
    pub rate_limit: Option<Arc<rate_limit::ApiRateLimiter>>,
    /// Concurrency keys and priorities by tier, applied to every created job.
    pub flow: Arc<kyu_actors::flow::FlowRules>,
    /// Token name → tier.
    pub tiers: Arc<std::collections::HashMap<String, String>>,
}

impl AppState {
    /// The state of one API; starts its group committer, so call it on a runtime.
    /// `wake` announces committed jobs to other nodes ([`crate::wake::Publisher::none`]
    /// for one node).
    pub fn new(
        store: Arc<dyn Store>,
        engine: Option<Arc<Engine>>,
        tokens: Vec<TokenEntry>,
        limits: Limits,
        handlers: HandlerRegistry,
        wake: crate::wake::Publisher,
    ) -> AppState {
        let job_types = handlers.types();
        let openapi = openapi::document(&job_types, limits.max_batch);
        let creates = group_commit::GroupCommit::start(store.clone(), engine.clone(), wake.clone());
        AppState {
            store,
            engine,
            tokens: tokens.into(),
            limits,
            job_types: job_types.into(),
            handlers,
            creates,
            wake,
            openapi: Arc::new(openapi),
            node_dead_after: std::time::Duration::from_secs(10),
            remote: remote::RemoteWorkers::default(),
            rate_limit: None,
            flow: Arc::default(),
            tiers: Arc::default(),
        }
    }

    /// Sets the flow-control rules and the tiers of tokens.
    pub fn with_flow(
        mut self,
        flow: kyu_actors::flow::FlowRules,
        tiers: std::collections::HashMap<String, String>,
    ) -> AppState {
        self.flow = Arc::new(flow);
        self.tiers = Arc::new(tiers);
        self
    }

    /// Limits each client's requests (`KYU_API_RATE_LIMIT_*`; `None`: no limits).
    pub fn with_rate_limit(mut self, l: Option<Arc<rate_limit::ApiRateLimiter>>) -> AppState {
        self.rate_limit = l;
        self
    }

    /// Sets how long a silent node is still listed (`KYU_NODE_DEAD_AFTER`).
    pub fn with_node_dead_after(mut self, d: std::time::Duration) -> AppState {
        self.node_dead_after = d;
        self
    }

    /// Commits one job (grouped with concurrent creates); the local engine is woken, and
    /// other nodes' are told.
    async fn enqueue_one(&self, job: NewJob) -> Result<Enqueued, StoreError> {
        self.creates.enqueue(job).await
    }

    /// Commits jobs in one transaction; the local engine (if any) is woken at once, and
    /// other nodes' are told with one message.
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        let due = crate::wake::any_due(&jobs);
        let done = match &self.engine {
            Some(e) => e.enqueue_many(jobs).await?,
            None => self.store.enqueue_many(jobs).await?,
        };
        self.wake.after_enqueue(due, &done);
        Ok(done)
    }
}

/// The API's routes with their limits and error handling.
pub fn router(state: AppState) -> Router {
    let limit = state.limits.max_body_bytes;
    let router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/jobs", post(jobs::create).get(jobs::list))
        .route("/api/v1/jobs/batch", post(jobs::create_batch))
        .route("/api/v1/jobs/{id}", get(jobs::get))
        .route("/api/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/api/v1/jobs/{id}/retry", post(jobs::retry))
        .route(
            "/api/v1/workflows",
            post(workflows::create).get(workflows::list),
        )
        .route("/api/v1/workflows/{id}", get(workflows::get))
        .route("/api/v1/workflows/{id}/cancel", post(workflows::cancel))
        .route("/api/v1/queues", get(queues::list))
        .route("/api/v1/concurrency", get(concurrency::list))
        .route("/api/v1/queues/{name}/pause", post(queues::pause))
        .route("/api/v1/queues/{name}/resume", post(queues::resume))
        .route("/api/v1/workers", get(queues::workers))
        .route("/api/v1/nodes", get(nodes::list))
        .route("/api/v1/fetch", post(remote::fetch::fetch))
        .route("/api/v1/acks", post(remote::report::acks))
        .route(
            "/api/v1/jobs/{id}/heartbeat",
            post(remote::report::heartbeat),
        )
        .route("/api/v1/jobs/{id}/complete", post(remote::report::complete))
        .route("/api/v1/jobs/{id}/fail", post(remote::report::fail))
        .route("/api/v1/jobs/{id}/snooze", post(remote::report::snooze))
        .route("/api/v1/jobs/{id}/release", post(remote::report::release))
        .route(
            "/api/v1/workers/{worker_id}/stop",
            post(remote::fetch::stop),
        )
        .merge(crate::web::routes(&state))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(BodyLimit(limit)))
        .layer(CatchPanicLayer::custom(panic_response));
    // Only when limits are on: no cost per request otherwise.
    let router = match &state.rate_limit {
        Some(l) => router.layer(axum::middleware::from_fn_with_state(
            rate_limit::Enforcer {
                limiter: l.clone(),
                tokens: state.tokens.clone(),
            },
            rate_limit::enforce,
        )),
        None => router,
    };
    router
        .layer(axum::middleware::from_fn(observe::track))
        .with_state(state)
}

async fn openapi_json(
    axum::extract::State(st): axum::extract::State<AppState>,
) -> Json<serde_json::Value> {
    Json((*st.openapi).clone())
}

async fn no_route(req: Request) -> ApiError {
    ApiError::NoRoute(req.uri().path().to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A handler bug: logged, answered as a JSON 500, the process goes on.
fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".into());
    ApiError::Internal(format!("handler panicked: {detail}")).into_response()
}

/// Path segments as strings; a segment axum cannot decode is a 400 like any other.
pub(crate) fn path_param(
    p: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    field: &str,
) -> Result<String, ApiError> {
    p.map(|axum::extract::Path(s)| s)
        .map_err(|e| ApiError::invalid(field, e.body_text()))
}
