//! The one place where a page's failure becomes an answer. API errors keep the API's
//! status code and message (an internal detail is logged, never shown); a missing or
//! revoked sign-in goes to the sign-in form; a bad CSRF token is a 403 page.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::api::error::ApiError;

use super::view::Chrome;

/// Why a page could not be shown or an action was refused.
#[derive(Debug)]
pub(crate) enum PageError {
    /// Anything the API would have answered with an error.
    Api(ApiError),
    /// No valid sign-in: go to the form, then come back to `next` (a local path).
    SignIn { next: String, clear: bool },
    /// A state-changing request without this session's CSRF token.
    Csrf,
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError::Api(e)
    }
}

impl From<kyu_actors::StoreError> for PageError {
    fn from(e: kyu_actors::StoreError) -> PageError {
        PageError::Api(e.into())
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> PageError {
        PageError::Api(ApiError::Internal(format!("template: {e}")))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    title: String,
    status: u16,
    code: &'static str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            PageError::SignIn { next, clear } => {
                let to = format!("/signin?next={}", super::view::url_encode(&next));
                let mut res = Redirect::to(&to).into_response();
                if clear {
                    res.headers_mut()
                        .append(header::SET_COOKIE, super::session::clear_token_cookie());
                }
                return res;
            }
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "csrf",
                "This form has expired or was sent from another site. Go back, reload the \
                 page and try again."
                    .to_owned(),
            ),
            PageError::Api(e) => {
                match &e {
                    ApiError::Internal(detail) => tracing::error!(%detail, "page failed"),
                    ApiError::StoreUnavailable(detail) => {
                        tracing::warn!(%detail, "page failed: store unavailable")
                    }
                    _ => {}
                }
                (e.status(), e.code(), e.to_string())
            }
        };
        let page = ErrorPage {
            chrome: Chrome::bare(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code,
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "error page failed to render");
                (status, "error").into_response()
            }
        }
    }
}
