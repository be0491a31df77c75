//! The query string of a list endpoint (jobs, workflows, the web page's job list):
//! parsed in one place so every list answers a bad `limit`, `cursor` or stray
//! parameter with the same 400.

use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::cursor;
use super::error::ApiError;

/// The raw query as `T`; anything it cannot hold is a 400 `invalid_query`.
pub(crate) fn parse_query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| ApiError::BadRequest {
        code: "invalid_query",
        message: e.to_string(),
        field: None,
    })
}

/// `limit`: 1 to [`kyu_actors::MAX_PAGE`], 50 when absent.
pub(crate) fn page_limit(raw: Option<String>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(50),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=kyu_actors::MAX_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::invalid("limit", format!("must be 1 to {}", kyu_actors::MAX_PAGE))
            }),
    }
}

/// `cursor`: a `next_cursor` this API handed out, or none.
pub(crate) fn page_cursor(raw: Option<String>) -> Result<Option<Uuid>, ApiError> {
    raw.map(|c| {
        cursor::decode(&c).ok_or_else(|| ApiError::BadRequest {
            code: "invalid_cursor",
            message: "the cursor is not one this API handed out".into(),
            field: Some("cursor".into()),
        })
    })
    .transpose()
}
