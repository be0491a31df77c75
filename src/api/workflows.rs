//! `/api/v1/workflows`: create (a DAG of jobs with callbacks, all or nothing), read,
//! list, cancel. Owned like jobs: a `user` creates workflows it owns (and the jobs in
//! them), and another owner's workflow answers 404, like one that does not exist.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use kyu_actors::workflow::{ListWorkflows, MAX_WORKFLOW_JOBS, WorkflowSummary};
use kyu_actors::{NewWorkflow, StoreError, WorkflowRecord};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::jobs::new_job;
use super::json::ApiJson;
use super::workflow_model::{
    CanceledWorkflow, CreateWorkflow, CreatedWorkflow, WorkflowList, WorkflowView,
};
use super::{AppState, path_param};

/// Create a workflow.
#[utoipa::path(post, path = "/api/v1/workflows", tag = "workflows",
    request_body = CreateWorkflow,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Committed: every job, edge and callback", body = CreatedWorkflow),
        (status = 400, description = "Invalid input: a cycle, an unknown or repeated key, a bad job (field: jobs[i].…)", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 413, description = "Body or a payload too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A job type refused its payload (field jobs[i].payload.…)", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
        (status = 507, description = "Storage full: nothing was written", body = ErrorBody),
    ))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateWorkflow>,
) -> Result<(StatusCode, Json<CreatedWorkflow>), ApiError> {
    if req.jobs.is_empty() || req.jobs.len() > MAX_WORKFLOW_JOBS {
        return Err(ApiError::BadRequest {
            code: "too_many_jobs",
            message: format!("send 1 to {MAX_WORKFLOW_JOBS} jobs per workflow"),
            field: Some("jobs".into()),
        });
    }
    let mut wf = NewWorkflow::new();
    if let Some(name) = req.name {
        wf = wf.name(name);
    }
    if let Some(o) = caller.owner() {
        wf = wf.owner(o);
    }
    for (i, j) in req.jobs.iter().enumerate() {
        let at = format!("jobs[{i}]");
        let job = new_job(j.job(), &st, &caller).map_err(|e| e.within(&at))?;
        wf = wf
            .job(j.key.clone(), job)
            .depends_on(j.depends_on.iter().cloned())
            .on_dependency_failure(j.on_dependency_failure.into());
    }
    if let Some(cb) = req.on_complete {
        wf = wf.on_complete(new_job(cb, &st, &caller).map_err(|e| e.within("on_complete"))?);
    }
    if let Some(cb) = req.on_success {
        wf = wf.on_success(new_job(cb, &st, &caller).map_err(|e| e.within("on_success"))?);
    }
    // Checked here too, so a bad graph is a 400 naming the field before any write.
    wf.validate().map_err(StoreError::from)?;
    let created = st.store.enqueue_workflow(wf).await?;
    if let Some(engine) = &st.engine {
        engine.wake();
    }
    st.wake.publish();
    Ok((
        StatusCode::CREATED,
        Json(CreatedWorkflow {
            workflow_id: created.id,
            jobs: created.jobs,
        }),
    ))
}

/// Get a workflow: its status, counts by status and each job with its dependencies.
#[utoipa::path(get, path = "/api/v1/workflows/{id}", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The workflow", body = WorkflowView),
        (status = 400, description = "Not a workflow id", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such workflow, or not yours", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    ))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<WorkflowView>, ApiError> {
    let r = visible_workflow(&st, &caller, &path_param(id, "id")?).await?;
    Ok(Json(r.into()))
}

/// The workflow `id` names, if it exists and the caller may see it.
pub(crate) async fn visible_workflow(
    st: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<WorkflowRecord, ApiError> {
    match st.store.workflow(workflow_id(id)?).await? {
        Some(r) if caller.may_see(r.summary.owner.as_deref()) => Ok(r),
        _ => Err(ApiError::WorkflowNotFound),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ListParams {
    owner: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// List workflows, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows",
    params(
        ("owner" = Option<String>, Query, min_length = 1, max_length = 255, pattern = "^[^\\x00]+$", description = "Only this owner (admins; a user always sees its own)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("cursor" = Option<String>, Query, pattern = "^c1_[0-9a-f]{44}$",
            description = "`next_cursor` of the previous page (integrity-checked: any other value is a 400)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of workflows", body = WorkflowList),
        (status = 400, description = "A bad filter or cursor", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    ))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<WorkflowList>, ApiError> {
    let p: ListParams = super::paging::parse_query(query.as_deref())?;
    let limit = super::paging::page_limit(p.limit)?;
    let cursor = super::paging::page_cursor(p.cursor)?;
    let owner = match caller.scope() {
        Some(me) => Some(me.to_owned()),
        None => match p.owner {
            Some(o) if o.is_empty() || o.chars().count() > 255 || o.contains('\0') => {
                return Err(ApiError::invalid(
                    "owner",
                    "must be 1 to 255 characters long, without NUL",
                ));
            }
            o => o,
        },
    };
    let page = st
        .store
        .list_workflows(&ListWorkflows {
            owner,
            cursor,
            limit,
        })
        .await?;
    Ok(Json(WorkflowList {
        workflows: page
            .workflows
            .into_iter()
            .map(|w: WorkflowSummary| w.into())
            .collect(),
        next_cursor: page.next_cursor.map(super::cursor::encode),
    }))
}

/// Cancel every job of a workflow that is not final (running ones are asked to stop).
#[utoipa::path(post, path = "/api/v1/workflows/{id}/cancel", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Canceled (running jobs asked to stop)", body = CanceledWorkflow),
        (status = 400, description = "Not a workflow id", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such workflow, or not yours", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
        (status = 507, description = "Storage full: nothing was written", body = ErrorBody),
    ))]
pub async fn cancel(
    State(st): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<CanceledWorkflow>, ApiError> {
    let id = visible_workflow(&st, &caller, &path_param(id, "id")?)
        .await?
        .summary
        .id;
    let canceled = st.store.cancel_workflow(id).await?;
    Ok(Json(CanceledWorkflow {
        workflow_id: id,
        canceled,
    }))
}

fn workflow_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::invalid("id", "not a workflow id (a UUID)"))
}
