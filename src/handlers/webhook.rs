//! The `http` job: calls the application back (a webhook) so work queued in kyu can
//! end in the application's own code.
//!
//! Payload: `{url, method? (GET|POST|PUT|PATCH|DELETE, default POST), headers?
//! (names → string values), body? (a string is sent as text/plain, other JSON as
//! application/json; absent or null sends none)}`. Result: `{status, body,
//! truncated}`, the body JSON when the answer is JSON, else text, capped at 64 KiB.
//!
//! What the answer means: 2xx completes; 429 is `rate_limit` and the
//! engine waits its Retry-After; other 4xx are `non_retryable`; 5xx, 408, timeouts
//! (`KYU_WEBHOOK_TIMEOUT`) and connection errors are `retryable`. Redirects are not
//! followed: a webhook answers directly, and a 3xx is `non_retryable`.
//!
//! Delivery is at least once (a retry after a lost answer calls again), so every
//! request carries `Idempotency-Key: <job id>`, `X-Kyu-Job-Id` and `X-Kyu-Attempt`
//! for the receiver to deduplicate. With `KYU_WEBHOOK_SECRET` set, requests are
//! signed (see [`signature`]): `X-Kyu-Timestamp: <unix seconds>` and
//! `X-Kyu-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body bytes>")>`.
//! The secret never appears in results, errors or logs; neither do the URL or the
//! payload's headers (they may carry credentials).
//!
//! The SSRF guard applies: internal addresses are refused unless
//! `KYU_WEBHOOK_ALLOW_PRIVATE` is set.

pub mod request;
pub mod response;
pub mod signature;

use async_trait::async_trait;
use kyu_actors::{Handler, JobContext, JobError, PayloadError};
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use crate::config::{Secret, WebhookSettings};
use crate::net::classify::{status_error, transport_error};
use crate::net::guard::{AllowedBy, NetPolicy, check_response, check_url, guarded_client, refusal};

use request::WebhookRequest;
use response::AnswerBody;
use signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};

/// How errors name the callee.
const WHO: &str = "webhook";
/// Why a 3xx fails the job.
const NO_REDIRECTS: &str = "redirects are not followed (a webhook must answer directly)";

/// The `http` job type.
pub struct Webhook {
    client: reqwest::Client,
    policy: NetPolicy,
    timeout: std::time::Duration,
    secret: Option<Secret>,
}

impl Webhook {
    pub fn new(s: &WebhookSettings) -> anyhow::Result<Webhook> {
        let policy = NetPolicy {
            allow_private: s.allow_private,
            allow: Vec::new(),
            allowed_by: AllowedBy::Webhook,
        };
        Ok(Webhook {
            client: guarded_client(&policy, s.timeout, 0)?,
            policy,
            timeout: s.timeout,
            // An empty secret (the config file's default) means: do not sign.
            secret: s.secret.clone().filter(|k| !k.expose().is_empty()),
        })
    }

    /// Sends `req` once and reads the answer.
    async fn deliver(&self, ctx: &JobContext, req: WebhookRequest) -> Result<Value, JobError> {
        check_url(&req.url, &self.policy)?;
        let id = ctx.id.to_string();
        let set_type = !req.has_content_type();
        let mut b = self
            .client
            .request(req.method, req.url)
            .timeout(self.timeout)
            .headers(req.headers)
            .header("idempotency-key", &id)
            .header("x-kyu-job-id", &id)
            .header("x-kyu-attempt", ctx.attempt.to_string());
        let bytes = match req.body {
            Some(body) => {
                if set_type {
                    b = b.header(CONTENT_TYPE, body.content_type);
                }
                body.bytes
            }
            None => Vec::new(),
        };
        if let Some(secret) = &self.secret {
            let ts = chrono::Utc::now().timestamp();
            b = b.header(TIMESTAMP_HEADER, ts.to_string()).header(
                SIGNATURE_HEADER,
                sign(secret.expose().as_bytes(), ts, &bytes),
            );
        }
        if !bytes.is_empty() {
            b = b.body(bytes);
        }

        let mut res = b.send().await.map_err(send_error)?;
        check_response(&res, &self.policy)?;
        let status = res.status();
        let headers = res.headers().clone();
        let body = AnswerBody::read(&mut res)
            .await
            .map_err(|e| transport_error(WHO, e))?;
        // Neither the URL nor headers are logged: they may carry credentials.
        tracing::debug!(
            job_id = %ctx.id,
            attempt = ctx.attempt,
            status = status.as_u16(),
            "webhook answered"
        );
        if status.is_redirection() {
            return Err(JobError::non_retryable(format!(
                "{WHO} answered {status}; {NO_REDIRECTS}"
            )));
        }
        if let Some(e) = status_error(WHO, status, &headers, &body.text()) {
            return Err(e);
        }
        Ok(body.result(status.as_u16()))
    }
}

/// A failed send as the job's error: a redirect (the client follows none) and the
/// SSRF guard's refusals are `non_retryable`, the rest as [`transport_error`] says.
fn send_error(e: reqwest::Error) -> JobError {
    // The client is built to follow no redirect, so any redirect error is that one.
    if e.is_redirect() {
        return JobError::non_retryable(format!("{WHO} answered with a redirect; {NO_REDIRECTS}"));
    }
    refusal(&e).unwrap_or_else(|| transport_error(WHO, e))
}

#[async_trait]
impl Handler for Webhook {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let req = WebhookRequest::parse(&ctx.payload)
            .map_err(|e| JobError::non_retryable(e.to_string()))?;
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => {
                Err(JobError::Canceled("canceled while calling the webhook".into()))
            }
            r = self.deliver(&ctx, req) => r,
        }
    }

    fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
        WebhookRequest::parse(payload).map(|_| ())
    }
}

#[cfg(test)]
mod tests;
