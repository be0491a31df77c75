//! Job listings: the filters and the cursor page, the same on every backend.
//!
//! Jobs come newest first by id (UUID v7 sorts by creation time); a page ends where the
//! cursor says, so jobs added meanwhile never shift the pages that follow.

use kyu_actors::Job;
use kyu_actors::StoreError;
use kyu_actors::store::{JobPage, ListJobs};
use sqlx::QueryBuilder;

use super::row::JobRow;

/// Appends the listing's filters (shared shape across backends: `$n`/`?` from the builder).
pub(crate) fn push_list_filters<DB>(qb: &mut QueryBuilder<DB>, q: &ListJobs)
where
    DB: sqlx::Database,
    String: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if let Some(t) = &q.job_type {
        qb.push(" AND job_type = ").push_bind(t.clone());
    }
    if let Some(s) = q.status {
        qb.push(" AND status = ").push_bind(s.as_str().to_owned());
    }
    if let Some(queue) = &q.queue {
        qb.push(" AND queue = ").push_bind(queue.clone());
    }
    if let Some(o) = &q.owner {
        qb.push(" AND owner = ").push_bind(o.clone());
    }
    if let Some(c) = q.cursor {
        qb.push(" AND id < ").push_bind(c.to_string());
    }
}

/// Builds a page from `limit + 1` rows: the extra row only says there is a next page.
pub(crate) fn page_from_rows(mut rows: Vec<JobRow>, limit: u32) -> Result<JobPage, StoreError> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let jobs = rows
        .into_iter()
        .map(Job::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if more {
        jobs.last().map(|j| j.id)
    } else {
        None
    };
    Ok(JobPage { jobs, next_cursor })
}
