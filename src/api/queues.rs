//! `/api/v1/queues` and `/api/v1/workers`: counts per queue, pause/resume (admins), and
//! this process's pool and autoscaler reading.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};

use axum::extract::rejection::PathRejection;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::model::{QueueList, QueueView, ResourceReading, StatusCounts, WorkersView};
use super::remote::model::RemoteWorkerView;
use super::{AppState, path_param};

/// Every queue with its counts by status and its pause flag. A `user` sees only the
/// queues holding its own jobs, counted over its own jobs (seed 002: users see only
/// their own jobs); admins see every job.
#[utoipa::path(get, path = "/api/v1/queues", tag = "queues",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The queues", body = QueueList),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    ))]
pub async fn list(State(st): State<AppState>, caller: Caller) -> Result<Json<QueueList>, ApiError> {
    let counts = match caller.scope() {
        None => st.store.counts().await?,
        Some(owner) => st.store.owner_counts(owner).await?,
    };
    let mut queues: BTreeMap<String, QueueView> = BTreeMap::new();
    for q in st.store.queues().await? {
        if caller.scope().is_some() && !counts.iter().any(|c| c.queue == q.name) {
            continue;
        }
        queues.insert(
            q.name.clone(),
            QueueView {
                name: q.name,
                paused: q.paused,
                counts: StatusCounts::default(),
            },
        );
    }
    for c in counts {
        queues
            .entry(c.queue.clone())
            .or_insert_with(|| QueueView {
                name: c.queue.clone(),
                paused: false,
                counts: StatusCounts::default(),
            })
            .counts
            .add(c.status, c.count);
    }
    Ok(Json(QueueList {
        queues: queues.into_values().collect(),
    }))
}

/// Stop claiming jobs from a queue (admins). Running jobs finish.
#[utoipa::path(post, path = "/api/v1/queues/{name}/pause", tag = "queues",
    params(("name" = String, Path, min_length = 1, max_length = 100, pattern = "^[^\\x00]+$", description = "The queue")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Paused", body = QueueView),
        (status = 400, description = "Bad queue name", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
        (status = 507, description = "Storage full: nothing was written", body = ErrorBody),
    ))]
pub async fn pause(
    State(st): State<AppState>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<QueueView>, ApiError> {
    set_paused(st, caller, path_param(name, "name")?, true).await
}

/// Claim jobs from a paused queue again (admins).
#[utoipa::path(post, path = "/api/v1/queues/{name}/resume", tag = "queues",
    params(("name" = String, Path, min_length = 1, max_length = 100, pattern = "^[^\\x00]+$", description = "The queue")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Resumed", body = QueueView),
        (status = 400, description = "Bad queue name", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
        (status = 507, description = "Storage full: nothing was written", body = ErrorBody),
    ))]
pub async fn resume(
    State(st): State<AppState>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<QueueView>, ApiError> {
    set_paused(st, caller, path_param(name, "name")?, false).await
}

async fn set_paused(
    st: AppState,
    caller: Caller,
    name: String,
    paused: bool,
) -> Result<Json<QueueView>, ApiError> {
    set_queue_paused(&st, &caller, &name, paused).await?;
    let mut counts = StatusCounts::default();
    for c in st
        .store
        .counts()
        .await?
        .into_iter()
        .filter(|c| c.queue == name)
    {
        counts.add(c.status, c.count);
    }
    Ok(Json(QueueView {
        name,
        paused,
        counts,
    }))
}

/// Pauses or resumes queue `name` (admins only; the API and the web page).
pub(crate) async fn set_queue_paused(
    st: &AppState,
    caller: &Caller,
    name: &str,
    paused: bool,
) -> Result<(), ApiError> {
    caller.require_admin()?;
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid(
            "name",
            "must be 1 to 100 characters long",
        ));
    }
    if name.contains('\0') {
        return Err(ApiError::invalid("name", "must not contain NUL"));
    }
    st.store.set_queue_paused(name, paused).await?;
    if !paused {
        if let Some(engine) = &st.engine {
            engine.wake();
        }
        // Its queued jobs are claimable again on every node.
        st.wake.publish();
    }
    Ok(())
}

/// This process's worker pool and the autoscaler's last reading.
#[utoipa::path(get, path = "/api/v1/workers", tag = "workers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The pool", body = WorkersView),
        (status = 401, description = "No or bad token", body = ErrorBody),
    ))]
pub async fn workers(State(st): State<AppState>, _caller: Caller) -> Json<WorkersView> {
    Json(workers_view(&st).await)
}

/// This process's pool and autoscaler (the API and the web page's overview).
pub(crate) async fn workers_view(st: &AppState) -> WorkersView {
    let live = st.node_dead_after;
    let served = st.remote.live_types(live);
    let unserved_types: Vec<String> = st
        .job_types
        .iter()
        .filter(|t| st.handlers.is_remote(t) && !served.contains(*t))
        .cloned()
        .collect();
    let remote = st
        .remote
        .snapshot(live)
        .into_iter()
        .map(|w| RemoteWorkerView {
            worker_id: w.id,
            host: w.host,
            version: w.version,
            types: w.types.into_iter().collect(),
            in_flight: w.in_flight.len(),
            waiting: w.waiting > 0,
            stopped: w.stopped,
            last_seen: w.last_seen_at,
        })
        .collect();
    let Some(engine) = &st.engine else {
        return WorkersView {
            remote,
            unserved_types,
            enabled: false,
            running: false,
            pool_size: 0,
            busy: 0,
            target: 0,
            autoscaler: None,
            completed: 0,
            failed: 0,
            retried: 0,
        };
    };
    let stats = engine.stats().await;
    let scaler = engine.autoscaler().await;
    WorkersView {
        remote,
        unserved_types,
        enabled: true,
        running: engine.is_running(),
        pool_size: stats.pool_size,
        busy: stats.busy,
        target: scaler.as_ref().map(|(_, t)| *t).unwrap_or(stats.pool_size),
        autoscaler: scaler.map(|(r, _)| ResourceReading {
            cpu_percent: r.cpu_percent,
            memory_percent: r.memory_percent,
        }),
        completed: stats.completed,
        failed: stats.failed,
        retried: stats.retried,
    }
}
