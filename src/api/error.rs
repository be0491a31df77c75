//! The one place where errors become HTTP answers: `{"error": {"code", "message",
//! "field"?}}` with a stable `code`. Handlers return [`ApiError`]; nothing else writes
//! an error response.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kyu_actors::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input: `code` names the rule, `field` the offending field if there is one.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// The job type's handler refused the payload (422 `invalid_payload`).
    #[error("{message}")]
    InvalidPayload { message: String, field: String },
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the payload is {size} bytes as JSON; at most {limit} are allowed")]
    PayloadTooLarge {
        size: usize,
        limit: usize,
        field: String,
    },
    #[error("expected a body with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("a valid bearer token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    #[error("this needs the admin role")]
    Forbidden,
    /// The job does not exist or is not the caller's (the same answer on purpose).
    #[error("job not found")]
    JobNotFound,
    /// The workflow does not exist or is not the caller's.
    #[error("workflow not found")]
    WorkflowNotFound,
    #[error("no such worker on this node")]
    WorkerNotFound,
    #[error("no route {0}")]
    NoRoute(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The job is in a state that does not allow the action.
    #[error("{0}")]
    Conflict(String),
    #[error("a job with this unique_key exists and belongs to another owner")]
    UniqueKeyTaken,
    /// A worker's lease is no longer the job's (rescued, timed out, canceled, re-run).
    #[error("the lease is no longer this job's; nothing was changed")]
    LeaseLost,
    #[error("the database is unreachable; try again later")]
    StoreUnavailable(String),
    /// The database's disk is full: nothing was written (507 `storage_full`).
    #[error("the database is out of space; nothing was written; try again later")]
    StorageFull(String),
    #[error("not ready: {0}")]
    NotReady(String),
    /// The client used up its requests for this window (429 `rate_limited`, with
    /// `Retry-After` and the `RateLimit-*` headers).
    #[error("too many requests: at most {} in this window; try again in {} s", .0.window.limit, crate::api::rate_limit::ceil_secs(.0.window.reset))]
    RateLimited(crate::api::rate_limit::Decision),
    #[error("internal error")]
    Internal(String),
}

/// The error envelope every 4xx and 5xx answer carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_json`, `invalid_field`, `unknown_job_type`,
    /// `invalid_payload` (422: the job type's own payload check),
    /// `invalid_query`, `invalid_cursor`, `too_many_jobs`, `body_too_large`,
    /// `payload_too_large`, `unsupported_media_type`, `unauthorized`, `forbidden`,
    /// `not_found`, `method_not_allowed`, `invalid_state`, `unique_key_taken`, `lease_lost`,
    /// `rate_limited` (429), `store_unavailable`, `storage_full` (507), `not_ready`,
    /// `unsupported` (the store has no workflows), `internal`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one (`priority`, `jobs[3].type`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// The same error, its field placed under `prefix` (`jobs[2]` + `priority`).
    pub fn within(self, prefix: &str) -> ApiError {
        let join = |f: Option<String>| match f {
            Some(f) => Some(format!("{prefix}.{f}")),
            None => Some(prefix.to_owned()),
        };
        match self {
            ApiError::BadRequest {
                code,
                message,
                field,
            } => ApiError::BadRequest {
                code,
                message,
                field: join(field),
            },
            ApiError::PayloadTooLarge { size, limit, field } => ApiError::PayloadTooLarge {
                size,
                limit,
                field: format!("{prefix}.{field}"),
            },
            ApiError::InvalidPayload { message, field } => ApiError::InvalidPayload {
                message,
                field: format!("{prefix}.{field}"),
            },
            other => other,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::InvalidPayload { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BodyTooLarge { .. } | ApiError::PayloadTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::JobNotFound
            | ApiError::WorkflowNotFound
            | ApiError::NoRoute(_)
            | ApiError::WorkerNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::UniqueKeyTaken | ApiError::LeaseLost => {
                StatusCode::CONFLICT
            }
            ApiError::StoreUnavailable(_) | ApiError::NotReady(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::StorageFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::InvalidPayload { .. } => "invalid_payload",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::JobNotFound
            | ApiError::WorkflowNotFound
            | ApiError::NoRoute(_)
            | ApiError::WorkerNotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "invalid_state",
            ApiError::UniqueKeyTaken => "unique_key_taken",
            ApiError::LeaseLost => "lease_lost",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::StorageFull(_) => "storage_full",
            ApiError::NotReady(_) => "not_ready",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Internal(_) => "internal",
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            ApiError::BadRequest { field, .. } => field.clone(),
            ApiError::PayloadTooLarge { field, .. } | ApiError::InvalidPayload { field, .. } => {
                Some(field.clone())
            }
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                field: self.field(),
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(_) => ApiError::JobNotFound,
            StoreError::InvalidTransition { .. } => ApiError::Conflict(e.to_string()),
            StoreError::Invalid { field, message } => ApiError::invalid(field, message),
            StoreError::InvalidWorkflow(e) => ApiError::invalid(e.field, e.message),
            StoreError::WorkflowNotFound(_) => ApiError::WorkflowNotFound,
            StoreError::Unsupported(what) => ApiError::BadRequest {
                code: "unsupported",
                message: format!("{what} are not supported by this store"),
                field: None,
            },
            StoreError::Unavailable(m) => ApiError::StoreUnavailable(m),
            StoreError::Full(m) => ApiError::StorageFull(m),
            StoreError::Backend(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            // The detail stays in the log; the client gets the code.
            ApiError::Internal(detail) => tracing::error!(%detail, "request failed"),
            ApiError::StoreUnavailable(detail) => {
                tracing::warn!(%detail, "request failed: store unavailable")
            }
            ApiError::StorageFull(detail) => {
                tracing::warn!(%detail, "request failed: storage full")
            }
            _ => {}
        }
        let mut res = (status, Json(self.body())).into_response();
        let retry_after = match self {
            ApiError::StoreUnavailable(_) | ApiError::NotReady(_) => Some("1"),
            // Space comes back when someone frees it: seconds at best.
            ApiError::StorageFull(_) => Some("5"),
            _ => None,
        };
        if let Some(secs) = retry_after {
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(secs),
            );
        }
        if let ApiError::RateLimited(d) = &self {
            crate::api::rate_limit::set_headers(res.headers_mut(), d);
            let secs = crate::api::rate_limit::ceil_secs(d.window.reset);
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        if matches!(self, ApiError::Unauthorized) {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}
