//! `GET /api/v1/concurrency`: the concurrency keys that have queued jobs, each with its
//! limit, running jobs, and the queued jobs its limit holds back (admins).

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::paging::{page_limit, parse_query};

/// One key with queued jobs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyView {
    pub key: String,
    /// At most this many of its jobs run at once.
    pub limit: u32,
    pub running: u64,
    pub queued: u64,
    /// Queued jobs that cannot start until one of the running ones ends.
    pub held: u64,
}

/// A page of keys, in key order.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyQuery {
    after: Option<String>,
    limit: Option<String>,
}

impl KeyView {
    pub fn new(k: kyu_actors::store::KeyState) -> KeyView {
        KeyView {
            held: k.held(),
            key: k.key,
            limit: k.limit,
            running: k.running,
            queued: k.queued,
        }
    }
}

/// Concurrency keys with queued jobs (admins).
#[utoipa::path(get, path = "/api/v1/concurrency", tag = "flow control",
    params(
        ("after" = Option<String>, Query, max_length = 255, description = "Keys after this one"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Keys per page (default 50)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Keys with queued jobs", body = KeyList),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    ))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<KeyList>, ApiError> {
    caller.require_admin()?;
    let q: KeyQuery = parse_query(raw.as_deref())?;
    let limit = page_limit(q.limit)?;
    if q.after
        .as_ref()
        .is_some_and(|a| a.chars().count() > 255 || a.contains('\0'))
    {
        return Err(ApiError::invalid(
            "after",
            "must be a key: at most 255 characters, no NUL",
        ));
    }
    let keys = st.store.concurrency_keys(q.after, limit).await?;
    let next_after = (keys.len() == limit as usize)
        .then(|| keys.last().map(|k| k.key.clone()))
        .flatten();
    Ok(Json(KeyList {
        keys: keys.into_iter().map(KeyView::new).collect(),
        next_after,
    }))
}
