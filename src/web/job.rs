//! `/jobs/{id}`: one job — payload, result, progress, every attempt's error, times — and
//! its cancel and retry buttons. While the job is not final, the page's script reloads
//! the job card from `/jobs/{id}/live` every 2 s. Another owner's job is a 404, exactly
//! like a job that does not exist (the API's `visible_job`).

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{Html, Redirect};
use kyu_actors::CancelOutcome;
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::api::jobs::{cancel_job, retry_job, visible_job};
use crate::api::model::JobView;
use crate::api::{AppState, path_param};

use super::error::PageError;
use super::form::WebForm;
use super::session::{CsrfOnly, Viewer};
use super::view::{Chrome, JobCard, notice};

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    chrome: Chrome,
    title: String,
    notice: Option<&'static str>,
    job: JobCard,
}

/// The card alone, for polling.
#[derive(Template)]
#[template(path = "job_live.html")]
struct JobLive {
    chrome: Chrome,
    job: JobCard,
}

#[derive(Debug, Default, Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn card(
    st: &AppState,
    viewer: &Viewer,
    id: Result<Path<String>, PathRejection>,
) -> Result<JobCard, PageError> {
    let job = visible_job(st, &viewer.caller, &path_param(id, "id")?).await?;
    Ok(JobCard::new(JobView::new(job, viewer.caller.is_admin())))
}

/// `GET /jobs/{id}`
pub(crate) async fn page(
    State(st): State<AppState>,
    viewer: Viewer,
    id: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Result<Html<String>, PageError> {
    let q: NoticeQuery = serde_urlencoded::from_str(q.as_deref().unwrap_or("")).unwrap_or_default();
    let job = card(&st, &viewer, id).await?;
    let page = JobPage {
        chrome: viewer.chrome(),
        title: format!("Job {}", job.job_type),
        notice: notice(q.notice.as_deref()),
        job,
    };
    Ok(Html(page.render()?))
}

/// `GET /jobs/{id}/live`: the job card as an HTML fragment.
pub(crate) async fn live(
    State(st): State<AppState>,
    viewer: Viewer,
    id: Result<Path<String>, PathRejection>,
) -> Result<Html<String>, PageError> {
    let job = card(&st, &viewer, id).await?;
    Ok(Html(
        JobLive {
            chrome: viewer.chrome(),
            job,
        }
        .render()?,
    ))
}

/// Where to go after an action on job `id`: back to it with the outcome, or (when the
/// job's status no longer allowed the action) with a note saying so.
fn back(id: &str, outcome: Result<&'static str, ApiError>) -> Result<Redirect, PageError> {
    let notice = match outcome {
        Ok(n) => n,
        Err(ApiError::Conflict(_)) => "not_allowed",
        Err(e) => return Err(e.into()),
    };
    // `id` was checked by the action (a UUID), so it is safe in the path.
    Ok(Redirect::to(&format!("/jobs/{id}?notice={notice}")))
}

/// `POST /jobs/{id}/cancel`
pub(crate) async fn cancel(
    State(st): State<AppState>,
    viewer: Viewer,
    id: Result<Path<String>, PathRejection>,
    WebForm(f): WebForm<CsrfOnly>,
) -> Result<Redirect, PageError> {
    viewer.check(&f.csrf)?;
    let id = checked_id(id)?;
    let out = cancel_job(&st, &viewer.caller, &id).await.map(|o| match o {
        CancelOutcome::Canceled(_) => "canceled",
        CancelOutcome::Requested(_) => "cancel_requested",
    });
    back(&id, out)
}

/// `POST /jobs/{id}/retry`
pub(crate) async fn retry(
    State(st): State<AppState>,
    viewer: Viewer,
    id: Result<Path<String>, PathRejection>,
    WebForm(f): WebForm<CsrfOnly>,
) -> Result<Redirect, PageError> {
    viewer.check(&f.csrf)?;
    let id = checked_id(id)?;
    let out = retry_job(&st, &viewer.caller, &id).await.map(|_| "retried");
    back(&id, out)
}

/// The path's id as a canonical UUID string.
fn checked_id(id: Result<Path<String>, PathRejection>) -> Result<String, PageError> {
    let raw = path_param(id, "id")?;
    let id = uuid::Uuid::parse_str(&raw)
        .map_err(|_| ApiError::invalid("id", "not a job id (a UUID)"))?;
    Ok(id.to_string())
}
