//! One provider call, the part both wire formats share: wait for a slot of the
//! process-wide cap on concurrent provider calls, send, read a capped body, turn a
//! non-2xx answer into the job's error class, parse the JSON — all while watching the
//! job's cancellation. Every message leaving here has the key redacted, and every call
//! is counted in `kyu_provider_requests_total{provider,outcome}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kyu_actors::JobError;
use kyu_actors::telemetry::PROVIDER_REQUESTS;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Completion;
use super::redact::Redactor;
use crate::net::classify::{status_error, transport_error};

/// Most bytes of a provider answer read; a summary is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;

/// Longest wait for a TCP/TLS connection (within the request timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a provider's requests, each with its key header.
pub struct Caller {
    /// The provider's bucket name, used in messages and metrics.
    pub who: &'static str,
    http: reqwest::Client,
    /// The header carrying the key (marked sensitive: never printed).
    auth: (HeaderName, HeaderValue),
    permits: Arc<Semaphore>,
    redactor: Redactor,
}

impl Caller {
    /// A client whose requests time out after `timeout`, share `permits` with every
    /// other provider client of the process and carry `auth` (a header and its value,
    /// built from `secret`); `secret` is redacted from all messages.
    pub fn new(
        who: &'static str,
        timeout: Duration,
        permits: Arc<Semaphore>,
        secret: &str,
        auth: (HeaderName, String),
    ) -> anyhow::Result<Caller> {
        let (name, value) = auth;
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| anyhow::anyhow!("the {who} API key is not a valid header value"))?;
        value.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            // An API endpoint does not redirect; following one would carry the key along.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Caller {
            who,
            http,
            auth: (name, value),
            permits,
            redactor: Redactor::new(secret),
        })
    }

    /// A POST to `url` with the key header and `body` as JSON.
    pub fn post_json(&self, url: &str, body: &impl Serialize) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .header(self.auth.0.clone(), self.auth.1.clone())
            .json(body)
    }

    /// A provider's parsed answer with the key taken out of whatever it echoed.
    pub fn finish(&self, r: Result<Completion, JobError>) -> Result<Completion, JobError> {
        r.map(|c| c.redacted(&self.redactor))
            .map_err(|e| self.redact(e))
    }

    /// Sends `request` and parses a 2xx answer as `T`. Canceled as soon as `cancel`
    /// fires, also while waiting for a slot.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        cancel: &CancellationToken,
    ) -> Result<T, JobError> {
        let started = Instant::now();
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                Err(JobError::Canceled(format!("{} call canceled", self.who)))
            }
            r = self.call(request) => r,
        };
        let result = result.map_err(|e| self.redact(e));
        let outcome = outcome(&result);
        metrics::counter!(PROVIDER_REQUESTS, "provider" => self.who, "outcome" => outcome)
            .increment(1);
        tracing::debug!(
            provider = self.who,
            outcome,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "provider call"
        );
        result
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, JobError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| JobError::retryable("provider calls are shutting down"))?;
        let mut res = request
            .send()
            .await
            .map_err(|e| transport_error(self.who, e))?;
        let status = res.status();
        let headers = res.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| transport_error(self.who, e))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(JobError::retryable(format!(
                    "{} sent an answer larger than {MAX_ANSWER_BYTES} bytes",
                    self.who
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let text = self.redactor.clean(&String::from_utf8_lossy(&body));
        if let Some(e) = status_error(self.who, status, &headers, &text) {
            return Err(e);
        }
        serde_json::from_slice(&body).map_err(|e| {
            JobError::retryable(format!(
                "{} sent an answer that is not the expected JSON: {e}",
                self.who
            ))
        })
    }

    /// The same error with the key taken out of its message.
    pub fn redact(&self, e: JobError) -> JobError {
        let clean = |m: String| self.redactor.clean(&m);
        match e {
            JobError::Retryable(m) => JobError::Retryable(clean(m)),
            JobError::NonRetryable(m) => JobError::NonRetryable(clean(m)),
            JobError::Canceled(m) => JobError::Canceled(clean(m)),
            JobError::Snooze { reason, after } => JobError::Snooze {
                reason: clean(reason),
                after,
            },
            JobError::RateLimited {
                message,
                retry_after,
            } => JobError::RateLimited {
                message: clean(message),
                retry_after,
            },
        }
    }
}

/// The metric label of a call's result.
fn outcome<T>(r: &Result<T, JobError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(JobError::RateLimited { .. } | JobError::Snooze { .. }) => "rate_limited",
        Err(JobError::Retryable(_)) => "retryable",
        Err(JobError::NonRetryable(_)) => "non_retryable",
        Err(JobError::Canceled(_)) => "canceled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_error_kind() {
        let c = Caller::new(
            "groq",
            Duration::from_secs(1),
            Arc::new(Semaphore::new(1)),
            "k-1",
            (reqwest::header::AUTHORIZATION, "Bearer k-1".into()),
        )
        .unwrap();
        for e in [
            JobError::retryable("a k-1"),
            JobError::non_retryable("a k-1"),
            JobError::Canceled("a k-1".into()),
            JobError::RateLimited {
                message: "a k-1".into(),
                retry_after: None,
            },
        ] {
            let kind = e.kind();
            let e = c.redact(e);
            assert_eq!(e.kind(), kind);
            assert_eq!(e.to_string(), "a [redacted]");
        }
    }

    #[tokio::test]
    async fn cancel_wins_over_a_slot_wait() {
        let permits = Arc::new(Semaphore::new(0));
        let auth = (reqwest::header::AUTHORIZATION, "Bearer k".into());
        let c = Caller::new("groq", Duration::from_secs(1), permits, "k", auth).unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let req = c.post_json("http://127.0.0.1:9/never", &serde_json::json!({}));
        let r: Result<serde_json::Value, _> = c.send_json(req, &cancel).await;
        assert!(matches!(r, Err(JobError::Canceled(_))), "{r:?}");
    }
}
