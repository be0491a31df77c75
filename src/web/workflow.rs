//! `/workflows/{id}`: one workflow — its status, counts by status and every job by
//! stage with the keys it waits for, each linked to its job page; the card follows
//! the workflow live (`/workflows/{id}/live`, polled like a job's) until it ends.
//! Another owner's workflow is a 404, like one that does not exist (the API's
//! `visible_workflow`).

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
    /// 1 for jobs that wait for nothing, else one more than the latest they wait for.
    stage: usize,
    /// Keys of the jobs it waits for.
    depends_on: String,
}

/// The part of the page that follows the workflow as it runs.
struct Card {
    status: &'static str,
    /// Final: the page stops asking for news.
    done: bool,
    created: Stamp,
    total: u64,
    /// (status word, count) of the statuses that have jobs.
    counts: Vec<(&'static str, u64)>,
    /// By stage, then as created.
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "workflow.html")]
struct WorkflowPage {
    chrome: Chrome,
    title: String,
    id: String,
    name: String,
    card: Card,
}

#[derive(Template)]
#[template(path = "workflow_live.html")]
struct WorkflowLive {
    card: Card,
}

/// Each job's stage: Kahn's order over the dependency edges (a workflow is a DAG).
fn stages(v: &WorkflowView) -> HashMap<uuid::Uuid, usize> {
    let mut waiting: HashMap<uuid::Uuid, usize> = v
        .jobs
        .iter()
        .map(|j| (j.job_id, j.depends_on.len()))
        .collect();
    let mut dependents: HashMap<uuid::Uuid, Vec<uuid::Uuid>> = HashMap::new();
    for j in &v.jobs {
        for d in &j.depends_on {
            dependents.entry(*d).or_default().push(j.job_id);
        }
    }
    let mut stage: HashMap<uuid::Uuid, usize> = HashMap::new();
    let mut ready: Vec<uuid::Uuid> = v
        .jobs
        .iter()
        .filter(|j| j.depends_on.is_empty())
        .map(|j| j.job_id)
        .collect();
    for id in &ready {
        stage.insert(*id, 1);
    }
    while let Some(id) = ready.pop() {
        let next = stage.get(&id).copied().unwrap_or(1) + 1;
        for d in dependents.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
            let s = stage.entry(*d).or_insert(next);
            *s = (*s).max(next);
            if let Some(n) = waiting.get_mut(d) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    ready.push(*d);
                }
            }
        }
    }
    stage
}

async fn card(
    st: &AppState,
    viewer: &Viewer,
    id: Result<Path<String>, PathRejection>,
) -> Result<(WorkflowView, Card), PageError> {
    let rec = visible_workflow(st, &viewer.caller, &path_param(id, "id")?).await?;
    let counts: Vec<(&'static str, u64)> = rec
        .counts
        .iter()
        .map(|(s, n)| (status_word((*s).into()), *n))
        .collect();
    let v = WorkflowView::from(rec);
    let keys: HashMap<uuid::Uuid, String> =
        v.jobs.iter().map(|j| (j.job_id, j.key.clone())).collect();
    let stage = stages(&v);
    let mut rows: Vec<Row> = v
        .jobs
        .iter()
        .map(|j| Row {
            id: j.job_id.to_string(),
            key: j.key.clone(),
            job_type: j.job_type.clone(),
            status: status_word(j.status),
            stage: stage.get(&j.job_id).copied().unwrap_or(1),
            depends_on: j
                .depends_on
                .iter()
                .map(|d| keys.get(d).cloned().unwrap_or_else(|| d.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    rows.sort_by_key(|r| r.stage);
    let (status, done) = match v.status {
        WorkflowState::Running => ("running", false),
        WorkflowState::Completed => ("completed", true),
        WorkflowState::Failed => ("failed", true),
    };
    let card = Card {
        status,
        done,
        created: Stamp::new(v.created_at),
        total: v.total,
        counts,
        rows,
    };
    Ok((v, card))
}

/// `GET /workflows/{id}`
pub(crate) async fn page(
    State(st): State<AppState>,
    viewer: Viewer,
    id: Result<Path<String>, PathRejection>,
) -> Result<Html<String>, PageError> {
    let (v, card) = card(&st, &viewer, id).await?;
    let name = v.name.clone().unwrap_or_else(|| "workflow".to_owned());
    let page = WorkflowPage {
        chrome: viewer.chrome(),
        title: format!("Workflow {name}"),
        id: v.workflow_id.to_string(),
        name,
        card,
    };
    Ok(Html(page.render()?))
}

/// `GET /workflows/{id}/live`: the card alone, polled by the page while it runs.
pub(crate) async fn live(
    State(st): State<AppState>,
    viewer: Viewer,
    id: Result<Path<String>, PathRejection>,
) -> Result<Html<String>, PageError> {
    let (_, card) = card(&st, &viewer, id).await?;
    Ok(Html(WorkflowLive { card }.render()?))
}
