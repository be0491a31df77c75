//! A remote worker's calls about the jobs it holds: heartbeat (extend the lease, record
//! progress, learn of a cancel), complete, fail, snooze, release, and `acks` for many
//! reports in one transaction. Every one is fenced by the lease: a lease that is no
//! longer the job's is a 409 `lease_lost` and changes nothing; a repeat of an accepted
//! report is answered as a duplicate.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use kyu_actors::remote::{
    FailKind as EngineFailKind, HeartbeatResult, RemoteReport, Report, ReportResult,
};
use kyu_actors::{JobLease, telemetry};
use uuid::Uuid;

use super::fetch::{engine, lease_length};
use super::lease::parse_lease;
use super::model::{
    AckItem, AckOp, AckResult, AcksRequest, AcksResponse, CompleteRequest, FailKind, FailRequest,
    HeartbeatRequest, HeartbeatResponse, ReleaseRequest, ReportResponse, SnoozeRequest,
};
use crate::api::auth::Caller;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::json::ApiJson;
use crate::api::{AppState, path_param};

const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;
const MAX_ACKS: usize = 1000;

fn job_id(p: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    let id = path_param(p, "id")?;
    Uuid::parse_str(&id).map_err(|_| ApiError::invalid("id", "not a job id (a UUID)"))
}

fn seconds(v: f64, field: &str) -> Result<Duration, ApiError> {
    if !v.is_finite() || !(0.0..=MAX_SECONDS).contains(&v) {
        return Err(ApiError::invalid(field, "must be 0 to 31536000 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn record(op: &'static str, started: Instant) {
    metrics::histogram!(telemetry::REMOTE_REPORT_SECONDS, "op" => op)
        .record(started.elapsed().as_secs_f64());
}

/// Extend a remote lease; carries progress, answers with a requested cancel.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/heartbeat", tag = "workers",
    params(("id" = Uuid, Path, description = "The job id")),
    request_body = HeartbeatRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The lease holds until `lease_expires_at`", body = HeartbeatResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Needs the worker or admin role", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "lease_lost: stop the handler, report nothing", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Database unreachable, or no engine on this node", body = ErrorBody),
    ))]
pub async fn heartbeat(
    State(st): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let started = Instant::now();
    caller.require_worker()?;
    let id = job_id(id)?;
    let lease = parse_lease(id, &req.lease, "lease")?;
    let progress = match req.progress {
        Some(p) if (0..=100).contains(&p) => Some(p as u8),
        Some(_) => return Err(ApiError::invalid("progress", "must be 0 to 100")),
        None => None,
    };
    let extend = lease_length(req.lease_seconds, "lease_seconds")?;
    let engine = engine(&st)?;
    st.remote.seen(&lease.owner);
    let r = engine.heartbeat(&lease, progress, extend).await?;
    record("heartbeat", started);
    match r {
        HeartbeatResult::Held {
            lease_expires_at,
            cancel_requested,
        } => Ok(Json(HeartbeatResponse {
            lease_expires_at,
            cancel: cancel_requested,
            stop: st.remote.is_stopped(&lease.owner),
        })),
        HeartbeatResult::LeaseLost => {
            st.remote.finished(&lease.owner, id);
            Err(ApiError::LeaseLost)
        }
        HeartbeatResult::NotFound => Err(ApiError::JobNotFound),
    }
}

/// Writes one report and answers it as the single-report endpoints do.
async fn report_one(
    st: &AppState,
    op: &'static str,
    lease: JobLease,
    report: Report,
) -> Result<Json<ReportResponse>, ApiError> {
    let started = Instant::now();
    let engine = engine(st)?;
    st.remote.seen(&lease.owner);
    let job_id = lease.id;
    let labels = st.remote.labels(&lease.owner, job_id);
    let r = engine
        .report(&[RemoteReport {
            lease: lease.clone(),
            report,
            labels,
        }])
        .await?;
    record(op, started);
    let (status, duplicate) = match r.first() {
        Some(ReportResult::Applied(s)) => (*s, false),
        Some(ReportResult::Duplicate(s)) => (*s, true),
        Some(ReportResult::LeaseLost) => {
            st.remote.finished(&lease.owner, job_id);
            return Err(ApiError::LeaseLost);
        }
        Some(ReportResult::NotFound) | None => return Err(ApiError::JobNotFound),
    };
    st.remote.finished(&lease.owner, job_id);
    Ok(Json(ReportResponse {
        job_id,
        status: status.into(),
        duplicate,
    }))
}

fn fail_report(
    kind: FailKind,
    message: Option<String>,
    retry_after: Option<f64>,
    field: &str,
) -> Result<Report, ApiError> {
    let retry_after = retry_after
        .map(|s| seconds(s, &format!("{field}retry_after_seconds")))
        .transpose()?;
    if message.as_ref().is_some_and(|m| m.chars().count() > 10_000) {
        return Err(ApiError::invalid(
            format!("{field}message"),
            "at most 10000 characters",
        ));
    }
    let kind = match kind {
        FailKind::Retryable => EngineFailKind::Retryable,
        FailKind::NonRetryable => EngineFailKind::NonRetryable,
        FailKind::RateLimit => EngineFailKind::RateLimit,
        FailKind::Timeout => EngineFailKind::Timeout,
        FailKind::Canceled => EngineFailKind::Canceled,
    };
    let message = message.unwrap_or_else(|| match kind {
        EngineFailKind::Canceled => "canceled".into(),
        EngineFailKind::Timeout => "timed out".into(),
        _ => "failed".into(),
    });
    Ok(Report::Fail {
        kind,
        message,
        retry_after,
    })
}

/// Report a job completed.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/complete", tag = "workers",
    params(("id" = Uuid, Path, description = "The job id")),
    request_body = CompleteRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Completed (or a repeat of an accepted report)", body = ReportResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Needs the worker or admin role", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "lease_lost: nothing changed", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Database unreachable, or no engine on this node", body = ErrorBody),
    ))]
pub async fn complete(
    State(st): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<ReportResponse>, ApiError> {
    caller.require_worker()?;
    let lease = parse_lease(job_id(id)?, &req.lease, "lease")?;
    let result = req.result.unwrap_or(serde_json::Value::Null);
    report_one(&st, "complete", lease, Report::Complete { result }).await
}

/// Report a failed attempt.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/fail", tag = "workers",
    params(("id" = Uuid, Path, description = "The job id")),
    request_body = FailRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Recorded: scheduled for another attempt, failed or canceled", body = ReportResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Needs the worker or admin role", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "lease_lost: nothing changed", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Database unreachable, or no engine on this node", body = ErrorBody),
    ))]
pub async fn fail(
    State(st): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<FailRequest>,
) -> Result<Json<ReportResponse>, ApiError> {
    caller.require_worker()?;
    let lease = parse_lease(job_id(id)?, &req.lease, "lease")?;
    let report = fail_report(req.kind, req.message, req.retry_after_seconds, "")?;
    report_one(&st, "fail", lease, report).await
}

/// Run the job again later without counting the attempt.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/snooze", tag = "workers",
    params(("id" = Uuid, Path, description = "The job id")),
    request_body = SnoozeRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Scheduled after `seconds`", body = ReportResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Needs the worker or admin role", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "lease_lost: nothing changed", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Database unreachable, or no engine on this node", body = ErrorBody),
    ))]
pub async fn snooze(
    State(st): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<SnoozeRequest>,
) -> Result<Json<ReportResponse>, ApiError> {
    caller.require_worker()?;
    let lease = parse_lease(job_id(id)?, &req.lease, "lease")?;
    let delay = seconds(req.seconds, "seconds")?;
    report_one(&st, "snooze", lease, Report::Snooze { delay }).await
}

/// Give a job back unstarted.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/release", tag = "workers",
    params(("id" = Uuid, Path, description = "The job id")),
    request_body = ReleaseRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Queued again in its old place, the attempt not counted", body = ReportResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Needs the worker or admin role", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "lease_lost: nothing changed", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Database unreachable, or no engine on this node", body = ErrorBody),
    ))]
pub async fn release(
    State(st): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<ReleaseRequest>,
) -> Result<Json<ReportResponse>, ApiError> {
    caller.require_worker()?;
    let lease = parse_lease(job_id(id)?, &req.lease, "lease")?;
    report_one(&st, "release", lease, Report::Release).await
}

fn ack_report(item: AckItem, i: usize) -> Result<RemoteReport, ApiError> {
    let at = |f: &str| format!("acks[{i}].{f}");
    // Every field given is checked, whether or not its op reads it.
    if let Some(s) = item.seconds {
        seconds(s, &at("seconds"))?;
    }
    if let Some(s) = item.retry_after_seconds {
        seconds(s, &at("retry_after_seconds"))?;
    }
    if item
        .message
        .as_ref()
        .is_some_and(|m| m.chars().count() > 10_000)
    {
        return Err(ApiError::invalid(at("message"), "at most 10000 characters"));
    }
    let lease = parse_lease(item.job_id, &item.lease, &at("lease"))?;
    let report = match item.op {
        AckOp::Complete => Report::Complete {
            result: item.result.unwrap_or(serde_json::Value::Null),
        },
        AckOp::Fail => fail_report(
            item.kind.unwrap_or(FailKind::Retryable),
            item.message,
            item.retry_after_seconds,
            &at(""),
        )?,
        AckOp::Snooze => Report::Snooze {
            delay: seconds(item.seconds.unwrap_or(0.0), &at("seconds"))?,
        },
        AckOp::Release => Report::Release,
    };
    Ok(RemoteReport {
        lease,
        report,
        labels: None,
    })
}

/// Many reports in one transaction.
#[utoipa::path(post, path = "/api/v1/acks", tag = "workers",
    request_body = AcksRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One result per ack, in order", body = AcksResponse),
        (status = 400, description = "Invalid input (the field names the ack: acks[i].…)", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Needs the worker or admin role", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Database unreachable, or no engine on this node", body = ErrorBody),
    ))]
pub async fn acks(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<AcksRequest>,
) -> Result<Json<AcksResponse>, ApiError> {
    let started = Instant::now();
    caller.require_worker()?;
    if req.acks.is_empty() || req.acks.len() > MAX_ACKS {
        return Err(ApiError::invalid("acks", "send 1 to 1000 acks"));
    }
    let mut reports = Vec::with_capacity(req.acks.len());
    for (i, item) in req.acks.into_iter().enumerate() {
        reports.push(ack_report(item, i)?);
    }
    for r in &mut reports {
        r.labels = st.remote.labels(&r.lease.owner, r.lease.id);
    }
    let engine = engine(&st)?;
    if let Some(first) = reports.first() {
        st.remote.seen(&first.lease.owner);
    }
    let results = engine.report(&reports).await?;
    record("acks", started);
    let results = reports
        .iter()
        .zip(results)
        .map(|(r, res)| {
            st.remote.finished(&r.lease.owner, r.lease.id);
            let (status, duplicate, code) = match res {
                ReportResult::Applied(s) => (Some(s.into()), false, None),
                ReportResult::Duplicate(s) => (Some(s.into()), true, None),
                ReportResult::LeaseLost => (None, false, Some("lease_lost".to_owned())),
                ReportResult::NotFound => (None, false, Some("not_found".to_owned())),
            };
            AckResult {
                job_id: r.lease.id,
                ok: code.is_none(),
                status,
                duplicate,
                code,
            }
        })
        .collect();
    Ok(Json(AcksResponse { results }))
}
