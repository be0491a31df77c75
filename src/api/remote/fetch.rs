//! `POST /api/v1/fetch`: a remote worker's long poll for jobs, and
//! `POST /api/v1/workers/{worker_id}/stop`.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use kyu_actors::remote::{FetchRequest as EngineFetch, deadline};
use kyu_actors::{Engine, Job, telemetry};

use super::lease::format_lease;
use super::model::{FetchRequest, FetchResponse, FetchedJob, StopResponse};
use super::registry::Hello;
use crate::api::auth::Caller;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::json::ApiJson;
use crate::api::{AppState, path_param};

const MAX_WAIT_MS: i64 = 30_000;
const DEFAULT_LEASE_SECONDS: f64 = 30.0;

/// The engine that serves remote workers on this node.
pub(super) fn engine(st: &AppState) -> Result<&Engine, ApiError> {
    st.engine.as_deref().ok_or_else(|| {
        ApiError::NotReady(
            "this node runs no engine; remote workers fetch from a `kyu serve` node".into(),
        )
    })
}

/// A lease length in seconds from a request, checked.
pub(super) fn lease_length(v: Option<f64>, field: &str) -> Result<Duration, ApiError> {
    let s = v.unwrap_or(DEFAULT_LEASE_SECONDS);
    if !s.is_finite() || !(5.0..=3600.0).contains(&s) {
        return Err(ApiError::invalid(field, "must be 5 to 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// How often a worker should heartbeat a job: a third of its lease, and often enough
/// that a live worker is never taken for dead (`KYU_NODE_DEAD_AFTER`).
fn heartbeat_every(lease: Duration, dead_after: Duration) -> Duration {
    (lease / 3)
        .min(dead_after / 4)
        .max(Duration::from_millis(250))
}

fn check_names(field: &str, names: &[String], max: usize) -> Result<(), ApiError> {
    if names.len() > max {
        return Err(ApiError::invalid(field, format!("at most {max} names")));
    }
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || n.chars().count() > 100 || n.contains('\0') {
            return Err(ApiError::invalid(
                format!("{field}[{i}]"),
                "must be 1 to 100 characters, without NUL",
            ));
        }
    }
    Ok(())
}

/// Fetch jobs for a remote worker (long poll).
#[utoipa::path(post, path = "/api/v1/fetch", tag = "workers",
    request_body = FetchRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Up to `max` leased jobs, or none after `wait_ms`", body = FetchResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Needs the worker or admin role", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Database unreachable, or no engine on this node", body = ErrorBody),
    ))]
pub async fn fetch(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<FetchRequest>,
) -> Result<Json<FetchResponse>, ApiError> {
    caller.require_worker()?;
    let id = req.worker_id.as_str();
    if id.is_empty() || id.chars().count() > 255 || id.contains('\0') {
        return Err(ApiError::invalid(
            "worker_id",
            "must be 1 to 255 characters, without NUL",
        ));
    }
    if req.types.is_empty() {
        return Err(ApiError::invalid("types", "name at least one job type"));
    }
    check_names("types", &req.types, 100)?;
    if let Some(q) = &req.queues {
        check_names("queues", q, 100)?;
    }
    let max = req.max.unwrap_or(1);
    if !(1..=100).contains(&max) {
        return Err(ApiError::invalid("max", "must be 1 to 100"));
    }
    let max = max as u32;
    let wait_ms = req.wait_ms.unwrap_or(0);
    if !(0..=MAX_WAIT_MS).contains(&wait_ms) {
        return Err(ApiError::invalid("wait_ms", "must be 0 to 30000"));
    }
    let lease = lease_length(req.lease_seconds, "lease_seconds")?;
    let host = req.host.as_deref();
    if host.is_some_and(|h| h.chars().count() > 255 || h.contains('\0')) {
        return Err(ApiError::invalid(
            "host",
            "at most 255 characters, without NUL",
        ));
    }
    let version = req.version.as_deref();
    if version.is_some_and(|v| v.chars().count() > 100 || v.contains('\0')) {
        return Err(ApiError::invalid(
            "version",
            "at most 100 characters, without NUL",
        ));
    }
    let engine = engine(&st)?;
    let (stopped, _waiting) = st.remote.fetch_started(&Hello {
        id,
        types: &req.types,
        host,
        version,
    });
    if stopped {
        return Ok(Json(FetchResponse {
            jobs: Vec::new(),
            stop: true,
        }));
    }
    let started = Instant::now();
    let jobs = engine
        .fetch(EngineFetch {
            worker_id: id.to_owned(),
            types: req.types.clone(),
            queues: req.queues.clone(),
            max,
            lease,
            wait: Duration::from_millis(wait_ms.unsigned_abs()),
        })
        .await?;
    metrics::histogram!(telemetry::REMOTE_FETCH_WAIT).record(started.elapsed().as_secs_f64());
    st.remote.handed(
        id,
        jobs.iter()
            .map(|j| (j.id, j.queue.clone(), j.job_type.clone())),
    );
    let every = heartbeat_every(lease, st.node_dead_after);
    let jobs = jobs.into_iter().map(|j| fetched(j, id, every)).collect();
    Ok(Json(FetchResponse {
        jobs,
        stop: st.remote.is_stopped(id),
    }))
}

fn fetched(job: Job, worker: &str, every: Duration) -> FetchedJob {
    metrics::counter!(telemetry::REMOTE_JOBS, "type" => job.job_type.clone()).increment(1);
    FetchedJob {
        lease: format_lease(job.attempts, worker),
        lease_expires_at: job.lease_expires_at.unwrap_or_else(chrono::Utc::now),
        deadline: deadline(&job),
        heartbeat_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
        job_id: job.id,
        job_type: job.job_type,
        payload: job.payload,
        queue: job.queue,
        provider: job.provider,
        priority: job.priority.get(),
        attempt: job.attempts,
        max_attempts: job.max_attempts,
        workflow_id: job.workflow_id,
        dependency_results: job.dependency_results,
    }
}

/// Ask a remote worker to stop.
#[utoipa::path(post, path = "/api/v1/workers/{worker_id}/stop", tag = "workers",
    params(("worker_id" = String, Path, description = "The worker's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Its waiting fetches answered empty; it fetches no more", body = StopResponse),
        (status = 400, description = "Invalid worker id", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Needs the worker or admin role", body = ErrorBody),
        (status = 404, description = "No such worker on this node", body = ErrorBody),
    ))]
pub async fn stop(
    State(st): State<AppState>,
    caller: Caller,
    worker: Result<Path<String>, PathRejection>,
) -> Result<Json<StopResponse>, ApiError> {
    caller.require_worker()?;
    let worker = path_param(worker, "worker_id")?;
    if !st.remote.stop(&worker) {
        return Err(ApiError::WorkerNotFound);
    }
    if let Some(engine) = &st.engine {
        engine.stop_worker(&worker);
    }
    Ok(Json(StopResponse {
        worker_id: worker,
        stopped: true,
    }))
}
