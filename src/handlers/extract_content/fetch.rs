//! Downloads one page within limits: the guard's checks, a body cap enforced while
//! streaming (a `Content-Length` can lie, and gzip can inflate), HTML content types
//! only, and HTTP statuses mapped to retry classes by [`crate::net::classify`].
//! Time and redirects are limited by the client ([`crate::net::guard`]).

use kyu_actors::JobError;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Client, Url};

use crate::net::classify::{status_error, transport_error};
use crate::net::guard::{NetPolicy, check_response, check_url, refusal};

/// Who the error messages name.
const WHO: &str = "the page";

/// Most bytes of an error page's body read for the error message.
const ERROR_BODY_BYTES: usize = 4096;

/// Media types taken for HTML.
const HTML_TYPES: &[&str] = &["text/html", "application/xhtml+xml"];

/// A downloaded page.
#[derive(Debug)]
pub struct Page {
    /// Where it was found (after redirects).
    pub url: Url,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Fetches `url` with `client` (a [`crate::net::guard::guarded_client`] built with
/// `policy`), reading at most `max_bytes` of body.
pub async fn fetch(
    client: &Client,
    policy: &NetPolicy,
    url: &Url,
    max_bytes: usize,
) -> Result<Page, JobError> {
    check_url(url, policy)?;
    let res = client
        .get(url.clone())
        .header(
            reqwest::header::ACCEPT,
            "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
        )
        .send()
        .await
        .map_err(send_error)?;
    check_response(&res, policy)?;
    let status = res.status();
    let headers = res.headers().clone();
    let final_url = res.url().clone();
    if !status.is_success() {
        let body = read_capped(res, ERROR_BODY_BYTES, false).await?;
        let text = String::from_utf8_lossy(&body);
        return Err(
            status_error(WHO, status, &headers, &text).unwrap_or_else(|| {
                JobError::non_retryable(format!("{WHO} answered {status}, not a page"))
            }),
        );
    }
    let content_type = html_content_type(&headers)?;
    if let Some(len) = res.content_length()
        && len > max_bytes as u64
    {
        return Err(too_large(max_bytes));
    }
    let body = read_capped(res, max_bytes, true).await?;
    Ok(Page {
        url: final_url,
        content_type,
        body,
    })
}

/// A send error: the guard's refusal if it was one, else by the transport's class.
fn send_error(e: reqwest::Error) -> JobError {
    refusal(&e).unwrap_or_else(|| transport_error(WHO, e))
}

/// The Content-Type if it is HTML (or absent: then the body is tried as HTML).
fn html_content_type(headers: &HeaderMap) -> Result<Option<String>, JobError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| JobError::non_retryable("the page's Content-Type is not readable"))?;
    let media = text.split(';').next().unwrap_or("").trim();
    if HTML_TYPES.iter().any(|t| media.eq_ignore_ascii_case(t)) {
        Ok(Some(text.to_owned()))
    } else {
        Err(JobError::non_retryable(format!(
            "the page is {media}, not HTML (text/html or application/xhtml+xml)"
        )))
    }
}

/// Reads the body chunk by chunk, up to `cap` bytes: past it, fails (`strict`) or
/// stops (an error page, quoted only in part).
async fn read_capped(
    mut res: reqwest::Response,
    cap: usize,
    strict: bool,
) -> Result<Vec<u8>, JobError> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(send_error)? {
        if body.len() + chunk.len() > cap {
            if strict {
                return Err(too_large(cap));
            }
            body.extend_from_slice(&chunk[..cap - body.len()]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large(cap: usize) -> JobError {
    JobError::non_retryable(format!(
        "the page is larger than {cap} bytes (KYU_FETCH_MAX_BYTES)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn ct(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_html_types_pass() {
        for ok in [
            "text/html",
            "text/html; charset=Shift_JIS",
            "TEXT/HTML",
            "application/xhtml+xml",
        ] {
            assert_eq!(html_content_type(&ct(ok)).unwrap().as_deref(), Some(ok));
        }
        for bad in [
            "application/pdf",
            "image/png",
            "application/json",
            "text/plain",
        ] {
            let e = html_content_type(&ct(bad)).unwrap_err();
            assert_eq!(e.kind().as_str(), "non_retryable");
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert_eq!(html_content_type(&HeaderMap::new()).unwrap(), None);
    }
}
