//! SSRF guard (owned by the extract_content helper; this is the agreed signature).

use std::net::SocketAddr;
use std::time::Duration;

use kyu_actors::JobError;
use reqwest::Url;

/// Which addresses an outbound job may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPolicy {
    /// Loopback, private, link-local and other internal addresses are allowed.
    pub allow_private: bool,
    /// Internal addresses allowed even when `allow_private` is false (exact IP:port).
    pub allow: Vec<SocketAddr>,
}

/// Refuses a URL that is not http(s), or (by `policy`) whose host is an IP literal in
/// a loopback, private, link-local, unique-local, CGNAT, multicast, unspecified or
/// documentation range. `Err` is `non_retryable`.
pub fn check_url(url: &Url, policy: &NetPolicy) -> Result<(), JobError> {
    let _ = (url, policy);
    Err(JobError::non_retryable("not built yet"))
}

/// A client that refuses internal addresses at DNS resolution (by `policy`), follows
/// at most `max_redirects` redirects, each checked by [`check_url`], and gives up
/// after `timeout`.
pub fn guarded_client(
    policy: &NetPolicy,
    timeout: Duration,
    max_redirects: usize,
) -> anyhow::Result<reqwest::Client> {
    let _ = (policy, max_redirects);
    Ok(reqwest::Client::builder().timeout(timeout).build()?)
}
