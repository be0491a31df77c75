//! `/`: every queue with its jobs by status and its pause switch (admins), this
//! process's throughput and failure rate over the last minutes, and the worker pool with
//! the autoscaler's last CPU and memory reading. Like `GET /api/v1/queues`, every signed-in
//! viewer sees the queue counts; pausing is for admins, and so is the list of
//! concurrency keys with queued jobs.
//!
//! Cost per request, whatever the table holds: live counts through the live-jobs index,
//! finished counts from a cache ([`super::queue_counts`]), queue flags from the small
//! `queues` table plus a distinct-queue read of the (queue, status) index.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{Html, Redirect};
use kyu_actors::{JobStatus, LiveCount, QueueState, StoreError};
use serde::Deserialize;

use crate::api::AppState;
use crate::api::concurrency::KeyView;
use crate::api::model::{StatusCounts, WorkersView};
use crate::api::queues::{set_queue_paused, workers_view};

use super::WebState;
use super::error::PageError;
use super::form::WebForm;
use super::queue_counts::Finished;
use super::session::Viewer;
use super::throughput::Rate;
use super::view::{Chrome, Stamp, notice};

/// One queue's line.
struct QueueRow {
    name: String,
    paused: bool,
    counts: StatusCounts,
    /// The oldest due queued job's `run_at`: how long the head of the line has waited.
    oldest_queued: Option<Stamp>,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    title: &'static str,
    notice: Option<&'static str>,
    queues: Vec<QueueRow>,
    totals: StatusCounts,
    finished_at: Stamp,
    rates: Option<Vec<Rate>>,
    workers: WorkersView,
    has_reading: bool,
    cpu: String,
    memory: String,
    /// Concurrency keys with queued jobs, first ones by key (admins).
    keys: Vec<KeyView>,
}

/// Keys the overview lists at most.
const KEYS_SHOWN: u32 = 20;

#[derive(Debug, Default, Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

/// `GET /`
pub(crate) async fn page(
    State(st): State<AppState>,
    Extension(web): Extension<Arc<WebState>>,
    viewer: Viewer,
    RawQuery(q): RawQuery,
) -> Result<Html<String>, PageError> {
    let q: NoticeQuery = serde_urlencoded::from_str(q.as_deref().unwrap_or("")).unwrap_or_default();
    let (flags, live, finished) = match viewer.caller.scope() {
        None => tokio::try_join!(
            st.store.queues(),
            st.store.live_counts(),
            web.counts.finished()
        )?,
        // A user's own jobs only, like `GET /api/v1/queues`.
        Some(owner) => own_counts(&st, owner).await?,
    };
    let (rates, workers) = tokio::join!(web.throughput.rates(), workers_view(&st));
    let keys = match viewer.caller.scope() {
        None => st.store.concurrency_keys(None, KEYS_SHOWN).await?,
        Some(_) => Vec::new(),
    };

    let mut queues: BTreeMap<String, QueueRow> = BTreeMap::new();
    fn row<'a>(queues: &'a mut BTreeMap<String, QueueRow>, name: &str) -> &'a mut QueueRow {
        queues.entry(name.to_owned()).or_insert_with(|| QueueRow {
            name: name.to_owned(),
            paused: false,
            counts: StatusCounts::default(),
            oldest_queued: None,
        })
    }
    for f in flags {
        row(&mut queues, &f.name).paused = f.paused;
    }
    let mut totals = StatusCounts::default();
    for c in live {
        let r = row(&mut queues, &c.queue);
        r.counts.add(c.status, c.count);
        if c.status == JobStatus::Queued {
            r.oldest_queued = c.oldest_run_at.map(Stamp::new);
        }
        totals.add(c.status, c.count);
    }
    for c in finished.rows.iter() {
        row(&mut queues, &c.queue).counts.add(c.status, c.count);
        totals.add(c.status, c.count);
    }
    let reading = workers.autoscaler.as_ref();
    let page = OverviewPage {
        chrome: viewer.chrome(),
        title: "Overview",
        notice: notice(q.notice.as_deref()),
        queues: queues.into_values().collect(),
        totals,
        finished_at: Stamp::new(finished.at),
        rates,
        has_reading: reading.is_some(),
        cpu: reading.map_or("–".into(), |r| format!("{:.0} %", r.cpu_percent)),
        memory: reading.map_or("–".into(), |r| format!("{:.0} %", r.memory_percent)),
        workers,
        keys: keys.into_iter().map(KeyView::new).collect(),
    };
    Ok(Html(page.render()?))
}

/// The overview's numbers for a `user`: the queues holding its jobs and the counts of
/// its jobs only, read now (one grouped count over the owner index).
async fn own_counts(
    st: &AppState,
    owner: &str,
) -> Result<(Vec<QueueState>, Vec<LiveCount>, Finished), StoreError> {
    let (flags, counts) = tokio::try_join!(st.store.queues(), st.store.owner_counts(owner))?;
    let flags = flags
        .into_iter()
        .filter(|q| counts.iter().any(|c| c.queue == q.name))
        .collect();
    let (finished, live): (Vec<_>, Vec<_>) = counts.into_iter().partition(|c| c.status.is_final());
    let live = live
        .into_iter()
        .map(|c| LiveCount {
            queue: c.queue,
            status: c.status,
            count: c.count,
            oldest_run_at: None,
        })
        .collect();
    Ok((flags, live, Finished::fresh(finished)))
}

#[derive(Debug, Deserialize)]
pub(crate) struct QueueForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    queue: String,
}

/// `POST /queues/pause` (admins)
pub(crate) async fn pause(
    st: State<AppState>,
    viewer: Viewer,
    form: WebForm<QueueForm>,
) -> Result<Redirect, PageError> {
    switch(st, viewer, form, true).await
}

/// `POST /queues/resume` (admins)
pub(crate) async fn resume(
    st: State<AppState>,
    viewer: Viewer,
    form: WebForm<QueueForm>,
) -> Result<Redirect, PageError> {
    switch(st, viewer, form, false).await
}

async fn switch(
    State(st): State<AppState>,
    viewer: Viewer,
    WebForm(f): WebForm<QueueForm>,
    paused: bool,
) -> Result<Redirect, PageError> {
    viewer.check(&f.csrf)?;
    set_queue_paused(&st, &viewer.caller, &f.queue, paused).await?;
    Ok(Redirect::to(if paused {
        "/?notice=paused"
    } else {
        "/?notice=resumed"
    }))
}
