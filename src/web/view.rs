//! What the templates are given: plain strings and numbers prepared here, so templates
//! hold no logic beyond loops and conditions. Everything from a job reaches the page
//! through askama's HTML escaping; nothing here builds markup.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::api::model::{JobView, Status};

/// The parts of the layout every page shares: who is signed in, and the CSRF token the
/// sign-out form (and every other form) carries.
pub(crate) struct Chrome {
    /// The signed-in token's name; `None` when nobody is (or in open mode).
    pub user: Option<String>,
    pub role: &'static str,
    pub admin: bool,
    /// No tokens are configured: everyone is admin (loopback only).
    pub open: bool,
    pub csrf: String,
    /// Show the navigation (not on the sign-in and error pages).
    pub nav: bool,
}

impl Chrome {
    /// A page with no navigation and no session (errors).
    pub fn bare() -> Chrome {
        Chrome {
            user: None,
            role: "",
            admin: false,
            open: false,
            csrf: String::new(),
            nav: false,
        }
    }
}

/// A timestamp: `iso` for `<time datetime>` (the script shows it in the viewer's local
/// time) and `utc` for the text without script and the hover title.
pub(crate) struct Stamp {
    pub iso: String,
    pub utc: String,
}

impl Stamp {
    pub fn new(t: DateTime<Utc>) -> Stamp {
        Stamp {
            iso: t.to_rfc3339_opts(SecondsFormat::Millis, true),
            utc: t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        }
    }

    pub fn maybe(t: Option<DateTime<Utc>>) -> Option<Stamp> {
        t.map(Stamp::new)
    }
}

/// A status word (also the CSS class that colours it).
pub(crate) fn status_word(s: Status) -> &'static str {
    match s {
        Status::Waiting => "waiting",
        Status::Queued => "queued",
        Status::Scheduled => "scheduled",
        Status::Running => "running",
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Canceled => "canceled",
    }
}

pub(crate) const STATUSES: [&str; 7] = [
    "waiting",
    "queued",
    "scheduled",
    "running",
    "completed",
    "failed",
    "canceled",
];

/// Indented JSON for `<pre>` (escaped by the template).
pub(crate) fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Percent-encodes a query-string value.
pub(crate) fn url_encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|q| q.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// A short message after an action, chosen by a fixed key so nothing from the URL is
/// shown; `None` for an unknown key.
pub(crate) fn notice(key: Option<&str>) -> Option<&'static str> {
    Some(match key? {
        "created" => "Job created.",
        "duplicate" => "A live job with this unique key exists; here it is.",
        "canceled" => "Job canceled.",
        "cancel_requested" => "The job is running: it was asked to stop.",
        "retried" => "Job queued again.",
        "not_allowed" => "Not done: the job's status no longer allows that.",
        "paused" => "Queue paused: no new jobs start from it.",
        "resumed" => "Queue resumed.",
        "signed_out" => "Signed out.",
        _ => return None,
    })
}

/// One failed attempt as the page shows it.
pub(crate) struct AttemptError {
    pub attempt: Option<u32>,
    pub kind: String,
    pub message: String,
    pub at: Option<Stamp>,
}

/// A job's changing part (status, progress, result, errors, times, actions): the whole
/// of `/jobs/{id}/live`, and the middle of `/jobs/{id}`.
pub(crate) struct JobCard {
    pub id: String,
    pub job_type: String,
    pub queue: String,
    pub provider: Option<String>,
    pub owner: Option<String>,
    pub priority: u8,
    pub status: &'static str,
    pub progress: u8,
    pub payload: String,
    pub result: Option<String>,
    pub errors: Vec<AttemptError>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub timeout_seconds: f64,
    pub unique_key: Option<String>,
    pub concurrency_key: Option<String>,
    /// The workflow the job belongs to (its page), and its key there.
    pub workflow: Option<(String, String)>,
    pub cancel_requested: bool,
    pub created: Stamp,
    pub run_at: Stamp,
    pub started: Option<Stamp>,
    pub finished: Option<Stamp>,
    pub updated: Stamp,
    /// Final: the page stops polling.
    pub done: bool,
    pub can_cancel: bool,
    pub can_retry: bool,
}

impl JobCard {
    pub fn new(v: JobView) -> JobCard {
        let status = v.status;
        let done = matches!(
            status,
            Status::Completed | Status::Failed | Status::Canceled
        );
        JobCard {
            id: v.job_id.to_string(),
            job_type: v.job_type,
            queue: v.queue,
            provider: v.provider,
            owner: v.owner,
            priority: v.priority,
            status: status_word(status),
            progress: v.progress.min(100),
            payload: pretty(&v.payload),
            result: v.result.as_ref().map(pretty),
            errors: v
                .errors
                .into_iter()
                .map(|e| AttemptError {
                    attempt: e.attempt,
                    kind: e.kind,
                    message: e.message,
                    at: Stamp::maybe(e.at),
                })
                .collect(),
            attempts: v.attempts,
            max_attempts: v.max_attempts,
            timeout_seconds: v.timeout_seconds,
            unique_key: v.unique_key,
            concurrency_key: v.concurrency_key,
            workflow: v
                .workflow_id
                .map(|w| (w.to_string(), v.workflow_key.unwrap_or_default())),
            can_cancel: !done && !v.cancel_requested,
            cancel_requested: v.cancel_requested,
            created: Stamp::new(v.created_at),
            run_at: Stamp::new(v.run_at),
            started: Stamp::maybe(v.started_at),
            finished: Stamp::maybe(v.finished_at),
            updated: Stamp::new(v.updated_at),
            done,
            can_retry: matches!(status, Status::Failed | Status::Canceled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_values() {
        assert_eq!(url_encode("/jobs?a=b&c"), "%2Fjobs%3Fa%3Db%26c");
        assert_eq!(url_encode("x y"), "x+y");
        assert_eq!(notice(Some("<script>")), None);
        assert_eq!(notice(Some("retried")), Some("Job queued again."));
    }
}
