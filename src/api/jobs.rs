//! `/api/v1/jobs`: create (one or a batch), read, list, cancel, retry. Ownership is
//! enforced here: a `user` caller creates jobs it owns and sees no other job — another
//! owner's job answers 404, exactly like an id that does not exist.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use kyu_actors::flow::MAX_CONCURRENCY_LIMIT;
use kyu_actors::{CancelOutcome, Enqueued, Job, ListJobs, NewJob, Priority, validate_new_job};
use serde::Deserialize;
use uuid::Uuid;

use axum::extract::rejection::PathRejection;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use super::model::{CreateJob, CreateJobs, CreatedJob, CreatedJobs, JobList, JobView, Status};
use super::{AppState, path_param};

const MAX_DELAY_SECONDS: f64 = 365.0 * 24.0 * 3600.0;
const MAX_TIMEOUT_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// Create a job.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs",
    request_body = CreateJob,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Committed", body = CreatedJob),
        (status = 200, description = "A live job holds this unique_key; it is returned", body = CreatedJob),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 409, description = "The unique_key belongs to another owner's job", body = ErrorBody),
        (status = 413, description = "Body or payload too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "The job type refused the payload (code invalid_payload; field payload.…)", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
        (status = 507, description = "Storage full: nothing was written", body = ErrorBody),
    ))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateJob>,
) -> Result<(StatusCode, Json<CreatedJob>), ApiError> {
    let created = create_one(&st, &caller, req).await?;
    let code = if created.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((code, Json(created)))
}

/// Checks and commits one job for `caller` (the API's create and the web page's form).
pub(crate) async fn create_one(
    st: &AppState,
    caller: &Caller,
    req: CreateJob,
) -> Result<CreatedJob, ApiError> {
    let job = new_job(req, st, caller)?;
    let status = initial_status(&job);
    let e = st.enqueue_one(job).await?;
    created(st, caller, e, status).await
}

/// Create several jobs in one transaction: all are committed, or none.
#[utoipa::path(post, path = "/api/v1/jobs/batch", tag = "jobs",
    request_body = CreateJobs,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "All committed", body = CreatedJobs),
        (status = 400, description = "Invalid input (the field names the job: jobs[i].…)", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 409, description = "A unique_key belongs to another owner's job", body = ErrorBody),
        (status = 413, description = "Body or a payload too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A job type refused its payload (field jobs[i].payload.…)", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
        (status = 507, description = "Storage full: nothing was written", body = ErrorBody),
    ))]
pub async fn create_batch(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateJobs>,
) -> Result<(StatusCode, Json<CreatedJobs>), ApiError> {
    if req.jobs.is_empty() || req.jobs.len() > st.limits.max_batch {
        return Err(ApiError::BadRequest {
            code: "too_many_jobs",
            message: format!("send 1 to {} jobs per batch", st.limits.max_batch),
            field: Some("jobs".into()),
        });
    }
    let mut jobs = Vec::with_capacity(req.jobs.len());
    let mut statuses = Vec::with_capacity(req.jobs.len());
    for (i, r) in req.jobs.into_iter().enumerate() {
        let job = new_job(r, &st, &caller).map_err(|e| e.within(&format!("jobs[{i}]")))?;
        statuses.push(initial_status(&job));
        jobs.push(job);
    }
    let done = st.enqueue(jobs).await?;
    let mut out = Vec::with_capacity(done.len());
    for (e, status) in done.into_iter().zip(statuses) {
        out.push(created(&st, &caller, e, status).await?);
    }
    Ok((StatusCode::CREATED, Json(CreatedJobs { jobs: out })))
}

/// Get a job.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such job, or not yours", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    ))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<JobView>, ApiError> {
    let job = visible_job(&st, &caller, &path_param(id, "id")?).await?;
    let in_workflow = job.workflow_id.is_some();
    let id = job.id;
    let mut view = JobView::new(job, caller.is_admin());
    if in_workflow {
        let deps = st.store.dependencies(id).await?;
        view.dependencies = Some(deps.into_iter().map(Into::into).collect());
    }
    Ok(Json(view))
}

/// Raw list parameters; each is checked by hand so the error names it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListParams {
    #[serde(rename = "type")]
    pub job_type: Option<String>,
    pub status: Option<String>,
    pub queue: Option<String>,
    pub owner: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// List jobs, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    params(
        ("type" = Option<String>, Query, min_length = 1, max_length = 255, pattern = "^[^\\x00]+$", description = "Only this job type"),
        ("status" = Option<Status>, Query, description = "Only this status"),
        ("queue" = Option<String>, Query, min_length = 1, max_length = 255, pattern = "^[^\\x00]+$", description = "Only this queue"),
        ("owner" = Option<String>, Query, min_length = 1, max_length = 255, pattern = "^[^\\x00]+$", description = "Only this owner (admins; a user always sees its own)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("cursor" = Option<String>, Query, pattern = "^c1_[0-9a-f]{44}$",
            description = "`next_cursor` of the previous page (integrity-checked: any other value is a 400)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, description = "A bad filter or cursor", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    ))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<JobList>, ApiError> {
    let p: ListParams = super::paging::parse_query(query.as_deref())?;
    let (jobs, next_cursor) = list_page(&st, &caller, p).await?;
    let full = caller.is_admin();
    Ok(Json(JobList {
        jobs: jobs.into_iter().map(|j| JobView::new(j, full)).collect(),
        next_cursor,
    }))
}

/// One page of the jobs `caller` may see, newest first, and the (checked) cursor of the
/// next page. Every parameter is validated here, for the API and the web page alike.
pub(crate) async fn list_page(
    st: &AppState,
    caller: &Caller,
    p: ListParams,
) -> Result<(Vec<Job>, Option<String>), ApiError> {
    let name = |field: &'static str, v: Option<String>| -> Result<Option<String>, ApiError> {
        match v {
            Some(v) if v.is_empty() || v.chars().count() > 255 => {
                Err(ApiError::invalid(field, "must be 1 to 255 characters long"))
            }
            Some(v) if v.contains('\0') => Err(ApiError::invalid(field, "must not contain NUL")),
            v => Ok(v),
        }
    };
    let status = p
        .status
        .map(|s| {
            s.parse::<kyu_actors::JobStatus>().map_err(|_| {
                ApiError::invalid(
                    "status",
                    "must be waiting, queued, scheduled, running, completed, failed or canceled",
                )
            })
        })
        .transpose()?;
    let limit = super::paging::page_limit(p.limit)?;
    let cursor = super::paging::page_cursor(p.cursor)?;
    let owner = match caller.scope() {
        Some(me) => Some(me.to_owned()),
        None => name("owner", p.owner)?,
    };
    let page = st
        .store
        .list(&ListJobs {
            job_type: name("type", p.job_type)?,
            status,
            queue: name("queue", p.queue)?,
            owner,
            cursor,
            limit,
        })
        .await?;
    Ok((page.jobs, page.next_cursor.map(super::cursor::encode)))
}

/// Cancel a waiting, queued, scheduled or running job (a running one is asked to stop).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Canceled, or asked to stop if running", body = JobView),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such job, or not yours", body = ErrorBody),
        (status = 409, description = "The job already finished", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
        (status = 507, description = "Storage full: nothing was written", body = ErrorBody),
    ))]
pub async fn cancel(
    State(st): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<JobView>, ApiError> {
    let job = match cancel_job(&st, &caller, &path_param(id, "id")?).await? {
        CancelOutcome::Canceled(j) | CancelOutcome::Requested(j) => j,
    };
    Ok(Json(JobView::new(job, caller.is_admin())))
}

/// Cancels the job `id` names if `caller` may see it (a running one is asked to stop).
pub(crate) async fn cancel_job(
    st: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<CancelOutcome, ApiError> {
    let job = visible_job(st, caller, id).await?;
    Ok(match &st.engine {
        Some(engine) => engine.cancel(job.id).await?,
        None => st.store.request_cancel(job.id).await?,
    })
}

/// Queue a failed or canceled job again.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Queued again", body = JobView),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such job, or not yours", body = ErrorBody),
        (status = 409, description = "The job is not failed or canceled", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
        (status = 507, description = "Storage full: nothing was written", body = ErrorBody),
    ))]
pub async fn retry(
    State(st): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<JobView>, ApiError> {
    let job = retry_job(&st, &caller, &path_param(id, "id")?).await?;
    Ok(Json(JobView::new(job, caller.is_admin())))
}

/// Queues the failed or canceled job `id` names again, if `caller` may see it.
pub(crate) async fn retry_job(st: &AppState, caller: &Caller, id: &str) -> Result<Job, ApiError> {
    let job = visible_job(st, caller, id).await?;
    let job = st.store.retry(job.id).await?;
    if let Some(engine) = &st.engine {
        engine.wake();
    }
    st.wake.publish();
    Ok(job)
}

/// The job `id` names, if it exists and the caller may see it.
pub(crate) async fn visible_job(st: &AppState, caller: &Caller, id: &str) -> Result<Job, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::invalid("id", "not a job id (a UUID)"))?;
    match st.store.get(id).await? {
        Some(job) if caller.may_see(job.owner.as_deref()) => Ok(job),
        _ => Err(ApiError::JobNotFound),
    }
}

/// What a new job's status is once committed (the store decides due-ness by its clock;
/// a future `run_at` makes it scheduled).
fn initial_status(job: &NewJob) -> Status {
    match job.run_at {
        kyu_actors::RunAt::Now => Status::Queued,
        kyu_actors::RunAt::After(d) if d.is_zero() => Status::Queued,
        kyu_actors::RunAt::After(_) => Status::Scheduled,
        kyu_actors::RunAt::At(t) if t <= chrono::Utc::now() => Status::Queued,
        kyu_actors::RunAt::At(_) => Status::Scheduled,
    }
}

/// The answer for one enqueued job. A duplicate is shown as the live job it names, if
/// the caller may see it.
async fn created(
    st: &AppState,
    caller: &Caller,
    e: Enqueued,
    status: Status,
) -> Result<CreatedJob, ApiError> {
    if !e.duplicate {
        return Ok(CreatedJob {
            job_id: e.id,
            status,
            duplicate: false,
        });
    }
    match st.store.get(e.id).await? {
        Some(job) if caller.may_see(job.owner.as_deref()) => Ok(CreatedJob {
            job_id: job.id,
            status: job.status.into(),
            duplicate: true,
        }),
        Some(_) => Err(ApiError::UniqueKeyTaken),
        // Finished and pruned in between: the key is free, but this call did not insert.
        None => Err(ApiError::Conflict(
            "the job holding this unique_key just went away; send again".into(),
        )),
    }
}

/// Checks a request and builds the job it asks for.
pub(crate) fn new_job(
    mut req: CreateJob,
    st: &AppState,
    caller: &Caller,
) -> Result<NewJob, ApiError> {
    if !st.job_types.contains(&req.job_type) && !st.remote.serves(&req.job_type) {
        return Err(ApiError::BadRequest {
            code: "unknown_job_type",
            message: format!(
                "unknown job type `{}`; known types: {}",
                req.job_type,
                st.job_types.join(", ")
            ),
            field: Some("type".into()),
        });
    }
    let payload = match req.payload.take() {
        None | Some(serde_json::Value::Null) => serde_json::json!({}),
        Some(p @ serde_json::Value::Object(_)) => p,
        Some(_) => {
            return Err(ApiError::invalid(
                "payload",
                "payload must be a JSON object",
            ));
        }
    };
    let size = json_size(&payload);
    if size > st.limits.max_payload_bytes {
        return Err(ApiError::PayloadTooLarge {
            size,
            limit: st.limits.max_payload_bytes,
            field: "payload".into(),
        });
    }
    if let Err(e) = st.handlers.validate(&req.job_type, &payload) {
        let field = if e.field.is_empty() {
            "payload".to_owned()
        } else {
            format!("payload.{}", e.field)
        };
        return Err(ApiError::InvalidPayload {
            message: e.message,
            field,
        });
    }
    let defaults = st.handlers.defaults(&req.job_type).unwrap_or_default();
    let concurrency = concurrency(st, &req, &payload)?;
    // A user's tier and tenant are its token's: naming others would game the shares.
    for (field, given) in [("tier", &req.tier), ("tenant", &req.tenant)] {
        if given.is_some() && caller.owner().is_some() && !caller.is_admin() {
            return Err(ApiError::invalid(
                field,
                "only an admin token may set it (a user's comes from its token)",
            ));
        }
    }
    if let Some(t) = &req.tier
        && (t.is_empty() || t.chars().count() > 100 || t.contains('\0'))
    {
        return Err(ApiError::invalid(
            "tier",
            "must be 1 to 100 characters long, without NUL",
        ));
    }
    let tier = caller
        .owner()
        .and_then(|name| st.tiers.get(name))
        .or(req.tier.as_ref());
    let tier_priority = tier.and_then(|t| st.flow.tier_priority(t, &req.job_type));
    let mut job = NewJob::new(req.job_type, payload);
    if let Some(p) = tier_priority.or_else(|| {
        defaults
            .priority
            .and_then(|p| Priority::new(i64::from(p)).ok())
    }) {
        job = job.priority(p);
    }
    if let Some(c) = concurrency {
        job = job.concurrency(c.key, c.limit);
    }
    if let Some(p) = req.priority {
        job = job
            .priority(Priority::new(p).map_err(|e| ApiError::invalid("priority", e.to_string()))?);
    }
    if let Some(q) = req.queue.or(defaults.queue.clone()) {
        job = job.queue(q);
    }
    if let Some(p) = req.provider {
        job = job.provider(p);
    }
    match (req.delay_seconds, req.run_at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "run_at",
                "give delay_seconds or run_at, not both",
            ));
        }
        (Some(d), None) => {
            if !d.is_finite() || !(0.0..=MAX_DELAY_SECONDS).contains(&d) {
                return Err(ApiError::invalid(
                    "delay_seconds",
                    format!("must be 0 to {MAX_DELAY_SECONDS} seconds"),
                ));
            }
            job = job.delay(Duration::from_secs_f64(d));
        }
        (None, Some(t)) => {
            // The same bound as delay_seconds: a year from now at most.
            let latest = chrono::Utc::now() + chrono::Duration::seconds(MAX_DELAY_SECONDS as i64);
            if t > latest {
                return Err(ApiError::invalid(
                    "run_at",
                    format!("must be at most {MAX_DELAY_SECONDS} seconds (a year) from now"),
                ));
            }
            job = job.run_at(t);
        }
        (None, None) => {
            if let Some(d) = defaults.delay {
                job = job.delay(d);
            }
        }
    }
    let retries = match req.max_retries {
        Some(r) if (0..=999).contains(&r) => r as u32,
        Some(_) => return Err(ApiError::invalid("max_retries", "must be 0 to 999")),
        None => defaults
            .max_retries
            .unwrap_or(st.limits.default_max_retries),
    };
    job = job.max_attempts(retries + 1);
    if let Some(t) = req.timeout_seconds {
        if !t.is_finite() || t <= 0.0 || t > MAX_TIMEOUT_SECONDS {
            return Err(ApiError::invalid(
                "timeout_seconds",
                format!("must be more than 0 and at most {MAX_TIMEOUT_SECONDS}"),
            ));
        }
        job = job.timeout(Duration::from_secs_f64(t));
    } else if let Some(t) = defaults.timeout {
        job = job.timeout(t);
    }
    if let Some(k) = req.unique_key {
        job = job.unique_key(k);
    }
    if let Some(o) = caller.owner() {
        job = job.owner(o);
    }
    if let Some(t) = req.tenant {
        job = job.tenant(t);
    }
    validate_new_job(&job)?;
    Ok(job)
}

/// The concurrency key a request asks for, or its type makes from the payload.
fn concurrency(
    st: &AppState,
    req: &CreateJob,
    payload: &serde_json::Value,
) -> Result<Option<kyu_actors::ConcurrencyKey>, ApiError> {
    let limit = match req.concurrency_limit {
        None => None,
        Some(n) if (1..=i64::from(MAX_CONCURRENCY_LIMIT)).contains(&n) => Some(n as u32),
        Some(_) => {
            return Err(ApiError::invalid(
                "concurrency_limit",
                format!("must be 1 to {MAX_CONCURRENCY_LIMIT}"),
            ));
        }
    };
    st.flow
        .concurrency(&req.job_type, payload, req.concurrency_key.clone(), limit)
        .map_err(|e| {
            if e.field.starts_with("payload") {
                ApiError::InvalidPayload {
                    message: e.message,
                    field: e.field,
                }
            } else {
                ApiError::invalid(&e.field, e.message)
            }
        })
}

/// Bytes of `v` as compact JSON, without building the string.
fn json_size(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}
