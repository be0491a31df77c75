//! Form bodies (`application/x-www-form-urlencoded`), read under the API's body limit;
//! a bad or oversized body is an [`ApiError`] shown as a page, like every other failure.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::api::AppState;
use crate::api::error::ApiError;

use super::error::PageError;

/// A form deserialized into `T` (fields the form does not send are `None`/default).
pub(crate) struct WebForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for WebForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let limit = state.limits.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge { limit }
            } else {
                ApiError::BadRequest {
                    code: "invalid_form",
                    message: format!("could not read the form: {r}"),
                    field: None,
                }
            }
        })?;
        serde_urlencoded::from_bytes(&bytes)
            .map(WebForm)
            .map_err(|e| {
                PageError::Api(ApiError::BadRequest {
                    code: "invalid_form",
                    message: format!("bad form: {e}"),
                    field: None,
                })
            })
    }
}
