//! `/enqueue`: a form that creates one job (any registered type, any JSON
//! payload, and optional priority, delay and retries). The script
//! checks the payload is a JSON object before sending; the server checks everything
//! again through the API's own create path (`api::jobs::create_one`), so the rules and
//! messages are the API's. A created job is shown at once (303 to its page).

use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::jobs::create_one;
use crate::api::model::CreateJob;

use super::error::PageError;
use super::form::WebForm;
use super::session::Viewer;
use super::view::Chrome;

/// The form's fields as sent (numbers as text: an empty field means "default").
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct EnqueueForm {
    #[serde(default)]
    csrf: String,
    #[serde(rename = "type", default)]
    job_type: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    delay_seconds: String,
    #[serde(default)]
    max_retries: String,
}

#[derive(Template)]
#[template(path = "enqueue.html")]
struct EnqueuePage {
    chrome: Chrome,
    title: &'static str,
    types: Vec<String>,
    form: EnqueueForm,
    error: Option<String>,
    error_field: Option<String>,
}

/// `GET /enqueue`
pub(crate) async fn form(
    State(st): State<AppState>,
    viewer: Viewer,
) -> Result<Html<String>, PageError> {
    let job_type = if st.job_types.iter().any(|t| t == "echo") {
        "echo".to_owned()
    } else {
        st.job_types.first().cloned().unwrap_or_default()
    };
    let page = EnqueuePage {
        chrome: viewer.chrome(),
        title: "Enqueue",
        types: st.job_types.to_vec(),
        form: EnqueueForm {
            job_type,
            payload: "{\n  \"message\": \"hello\"\n}".into(),
            ..EnqueueForm::default()
        },
        error: None,
        error_field: None,
    };
    Ok(Html(page.render()?))
}

/// `POST /enqueue`: creates the job and shows it, or shows the form again with the error.
pub(crate) async fn submit(
    State(st): State<AppState>,
    viewer: Viewer,
    WebForm(f): WebForm<EnqueueForm>,
) -> Result<Response, PageError> {
    viewer.check(&f.csrf)?;
    let created = match request(&f) {
        Ok(req) => create_one(&st, &viewer.caller, req).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(c) => {
            let notice = if c.duplicate { "duplicate" } else { "created" };
            Ok(Redirect::to(&format!("/jobs/{}?notice={notice}", c.job_id)).into_response())
        }
        Err(
            e @ (ApiError::BadRequest { .. }
            | ApiError::InvalidPayload { .. }
            | ApiError::PayloadTooLarge { .. }
            | ApiError::UniqueKeyTaken),
        ) => {
            let status = e.status();
            let body = e.body().error;
            let page = EnqueuePage {
                chrome: viewer.chrome(),
                title: "Enqueue",
                types: st.job_types.to_vec(),
                form: EnqueueForm {
                    csrf: String::new(),
                    ..f
                },
                error: Some(body.message),
                error_field: body.field,
            };
            Ok((status, Html(page.render()?)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// The API request the form describes; text that is not a number or not JSON is named.
fn request(f: &EnqueueForm) -> Result<CreateJob, ApiError> {
    fn number<T: std::str::FromStr>(field: &str, v: &str) -> Result<Option<T>, ApiError> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(field, format!("`{v}` is not a number")))
    }
    let payload = if f.payload.trim().is_empty() {
        None
    } else {
        Some(
            serde_json::from_str::<serde_json::Value>(&f.payload)
                .map_err(|e| ApiError::invalid("payload", format!("not valid JSON: {e}")))?,
        )
    };
    let queue = f.queue.trim();
    Ok(CreateJob {
        job_type: f.job_type.clone(),
        payload,
        priority: number("priority", &f.priority)?,
        queue: (!queue.is_empty()).then(|| queue.to_owned()),
        provider: None,
        delay_seconds: number("delay_seconds", &f.delay_seconds)?,
        run_at: None,
        max_retries: number("max_retries", &f.max_retries)?,
        timeout_seconds: None,
        unique_key: None,
        concurrency_key: None,
        concurrency_limit: None,
        tier: None,
        tenant: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_bad_field() {
        let f = |payload: &str, priority: &str| EnqueueForm {
            job_type: "echo".into(),
            payload: payload.into(),
            priority: priority.into(),
            ..EnqueueForm::default()
        };
        let field = |r: Result<CreateJob, ApiError>| r.err().and_then(|e| e.body().error.field);
        assert_eq!(field(request(&f("{x", ""))).as_deref(), Some("payload"));
        assert_eq!(
            field(request(&f("{}", "high"))).as_deref(),
            Some("priority")
        );
        let ok = request(&f(" {\"a\": 1} ", " 7 ")).expect("valid");
        assert_eq!(ok.priority, Some(7));
        assert_eq!(ok.payload, Some(serde_json::json!({"a": 1})));
        assert!(request(&f("", "")).expect("valid").payload.is_none());
    }
}
