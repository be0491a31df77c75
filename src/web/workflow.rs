//! `/workflows/{id}`: one workflow — its status, counts by status and every job with
//! the keys it waits for, each linked to its job page. Another owner's workflow is a
//! 404, like one that does not exist (the API's `visible_workflow`).

use std::collections::HashMap;

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Html;

use crate::api::workflow_model::{WorkflowState, WorkflowView};
use crate::api::workflows::visible_workflow;
use crate::api::{AppState, path_param};

use super::error::PageError;
use super::session::Viewer;
use super::view::{Chrome, Stamp, status_word};

/// One job of the workflow, as a table row.
struct Row {
    id: String,
    key: String,
    job_type: String,
    status: &'static str,
    /// Keys of the jobs it waits for.
    depends_on: String,
}

#[derive(Template)]
#[template(path = "workflow.html")]
struct WorkflowPage {
    chrome: Chrome,
    title: String,
    id: String,
    name: String,
    status: &'static str,
    created: Stamp,
    total: u64,
    /// (status word, count) of the statuses that have jobs.
    counts: Vec<(&'static str, u64)>,
    rows: Vec<Row>,
}

/// `GET /workflows/{id}`
pub(crate) async fn page(
    State(st): State<AppState>,
    viewer: Viewer,
    id: Result<Path<String>, PathRejection>,
) -> Result<Html<String>, PageError> {
    let rec = visible_workflow(&st, &viewer.caller, &path_param(id, "id")?).await?;
    let counts: Vec<(&'static str, u64)> = rec
        .counts
        .iter()
        .map(|(s, n)| (status_word((*s).into()), *n))
        .collect();
    let v = WorkflowView::from(rec);
    let keys: HashMap<uuid::Uuid, String> =
        v.jobs.iter().map(|j| (j.job_id, j.key.clone())).collect();
    let rows = v
        .jobs
        .iter()
        .map(|j| Row {
            id: j.job_id.to_string(),
            key: j.key.clone(),
            job_type: j.job_type.clone(),
            status: status_word(j.status),
            depends_on: j
                .depends_on
                .iter()
                .map(|d| keys.get(d).cloned().unwrap_or_else(|| d.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let name = v.name.clone().unwrap_or_else(|| "workflow".to_owned());
    let page = WorkflowPage {
        chrome: viewer.chrome(),
        title: format!("Workflow {name}"),
        id: v.workflow_id.to_string(),
        name,
        status: match v.status {
            WorkflowState::Running => "running",
            WorkflowState::Completed => "completed",
            WorkflowState::Failed => "failed",
        },
        created: Stamp::new(v.created_at),
        total: v.total,
        counts,
        rows,
    };
    Ok(Html(page.render()?))
}
