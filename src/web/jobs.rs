//! `/jobs`: the jobs the viewer may see (a `user` only its own), newest first, filtered
//! by queue, type and status, a page at a time. The listing, its checks and its cursor
//! are the API's (`GET /api/v1/jobs`): the page only turns empty form fields into "any".

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Html;
use serde::{Deserialize, Serialize};

use crate::api::AppState;
use crate::api::jobs::{ListParams, list_page};
use crate::api::model::JobView;

use super::error::PageError;
use super::session::Viewer;
use super::view::{Chrome, STATUSES, Stamp, status_word};

const PAGE: u32 = 50;

/// The filters as the form sends them (empty = any).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
struct Filters {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    queue: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    job_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

struct Row {
    id: String,
    short_id: String,
    job_type: String,
    queue: String,
    status: &'static str,
    progress: u8,
    attempts: u32,
    max_attempts: u32,
    owner: Option<String>,
    created: Stamp,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    chrome: Chrome,
    title: &'static str,
    filters: Filters,
    types: Vec<String>,
    statuses: [&'static str; 7],
    rows: Vec<Row>,
    /// The query string of the next page, if there is one.
    next: Option<String>,
    /// Whether this is a later page (offer the first).
    later: bool,
    first: String,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// `GET /jobs`
pub(crate) async fn page(
    State(st): State<AppState>,
    viewer: Viewer,
    RawQuery(q): RawQuery,
) -> Result<Html<String>, PageError> {
    let filters: Filters = crate::api::paging::parse_query(q.as_deref())?;
    let (jobs, next_cursor) = list_page(
        &st,
        &viewer.caller,
        ListParams {
            job_type: some(&filters.job_type),
            status: some(&filters.status),
            queue: some(&filters.queue),
            owner: some(&filters.owner),
            limit: Some(PAGE.to_string()),
            cursor: filters.cursor.clone().filter(|c| !c.is_empty()),
        },
    )
    .await?;
    let full = viewer.caller.is_admin();
    let rows = jobs
        .into_iter()
        .map(|j| {
            let v = JobView::new(j, full);
            let id = v.job_id.to_string();
            Row {
                short_id: id
                    .chars()
                    .rev()
                    .take(8)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect(),
                id,
                job_type: v.job_type,
                queue: v.queue,
                status: status_word(v.status),
                progress: v.progress,
                attempts: v.attempts,
                max_attempts: v.max_attempts,
                owner: v.owner,
                created: Stamp::new(v.created_at),
            }
        })
        .collect();
    let query = |cursor: Option<String>| {
        let f = Filters {
            cursor,
            ..filters.clone()
        };
        serde_urlencoded::to_string(&f).unwrap_or_default()
    };
    let page = JobsPage {
        chrome: viewer.chrome(),
        title: "Jobs",
        types: st.job_types.to_vec(),
        statuses: STATUSES,
        rows,
        next: next_cursor.map(|c| query(Some(c))),
        later: filters.cursor.as_deref().is_some_and(|c| !c.is_empty()),
        first: query(None),
        filters,
    };
    Ok(Html(page.render()?))
}
