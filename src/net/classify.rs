//! An HTTP answer or transport error → the job's [`JobError`]: 429 is
//! `rate_limit` with the server's Retry-After, 408 and 5xx are `retryable`, other 4xx
//! `non_retryable`; timeouts and connection errors are `retryable`. Messages carry the
//! status and a short, cleaned excerpt of the body, never request headers.

use std::time::Duration;

use kyu_actors::JobError;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Most characters of a response body quoted in an error message.
const EXCERPT_CHARS: usize = 200;

/// The error for a non-2xx answer; `None` for 2xx. `who` names the callee in the message.
pub fn status_error(
    who: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> Option<JobError> {
    if status.is_success() {
        return None;
    }
    let message = format!("{who} answered {status}{}", excerpt(body));
    Some(if status == StatusCode::TOO_MANY_REQUESTS {
        JobError::RateLimited {
            message,
            retry_after: retry_after(headers),
        }
    } else if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        JobError::retryable(message)
    } else {
        JobError::non_retryable(message)
    })
}

/// The error for a request that got no (complete) answer. The URL is left out: it
/// may carry credentials in its query.
pub fn transport_error(who: &str, e: reqwest::Error) -> JobError {
    let e = e.without_url();
    if e.is_timeout() {
        JobError::retryable(format!("{who} timed out"))
    } else if e.is_builder() || e.is_redirect() {
        JobError::non_retryable(format!("{who}: {}", error_chain(&e)))
    } else if e.is_decode() {
        JobError::retryable(format!(
            "{who} sent a body that could not be read: {}",
            error_chain(&e)
        ))
    } else {
        JobError::retryable(format!("{who} unreachable: {}", error_chain(&e)))
    }
}

/// A reqwest error's text followed by its sources (the cause is often only there:
/// "connection refused", "dns error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// ` — "<first 200 chars of the body, whitespace collapsed>"`, or nothing.
pub fn excerpt(body: &str) -> String {
    let cleaned: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(EXCERPT_CHARS)
        .collect();
    if cleaned.is_empty() {
        String::new()
    } else {
        format!(": {cleaned}")
    }
}

/// Retry-After as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(retry).unwrap());
        h
    }

    #[test]
    fn statuses_map_to_kinds() {
        let none = HeaderMap::new();
        let kind = |s: u16| {
            status_error("p", StatusCode::from_u16(s).unwrap(), &none, "")
                .map(|e| e.kind().as_str())
        };
        assert_eq!(kind(200), None);
        assert_eq!(kind(429), Some("rate_limit"));
        for s in [400, 401, 403, 404, 422] {
            assert_eq!(kind(s), Some("non_retryable"), "{s}");
        }
        for s in [408, 500, 502, 503, 504] {
            assert_eq!(kind(s), Some("retryable"), "{s}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(retry_after(&headers("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers("1.5")),
            Some(Duration::from_millis(1500))
        );
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let d = retry_after(&headers(&httpdate::fmt_http_date(later))).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(retry_after(&headers("soon")), None);
        match status_error(
            "groq",
            StatusCode::TOO_MANY_REQUESTS,
            &headers("3"),
            "slow down",
        ) {
            Some(JobError::RateLimited {
                retry_after,
                message,
            }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
                assert!(message.contains("429") && message.contains("slow down"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn excerpts_are_short_and_flat() {
        let long = "x ".repeat(1000);
        assert!(excerpt(&long).chars().count() <= EXCERPT_CHARS + 2);
        assert_eq!(excerpt("  a\n  b "), ": a b");
        assert_eq!(excerpt(""), "");
    }
}
