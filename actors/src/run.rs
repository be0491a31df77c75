//! One attempt of one job: run the handler in its own task under the job's timeout
//! and cancellation token, catch a panic, and turn what happened into an [`Outcome`].

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::backoff::retry_delay;
use crate::clock::Clock;
use crate::config::EngineConfig;
use crate::error::{AttemptError, ErrorKind, JobError};
use crate::handler::{Handler, JobContext};
use crate::job::Job;
use crate::store::Outcome;

/// How an attempt ended, before retry rules apply.
#[derive(Debug, Clone, PartialEq)]
pub enum RunResult {
    Ok(Value),
    Err(JobError),
    TimedOut(Duration),
    Panicked(String),
    /// The token fired: see the dispatcher for why (cancel, lease lost, shutdown).
    Stopped,
    /// No handler for the job's type.
    Unknown(String),
}

/// Runs `handler` for `ctx` until it returns, times out, panics or is stopped.
pub async fn run_attempt(
    handler: Arc<dyn Handler>,
    ctx: JobContext,
    timeout: Duration,
    cancel: CancellationToken,
) -> RunResult {
    let fut = AssertUnwindSafe(handler.run(ctx)).catch_unwind();
    tokio::select! {
        biased;
        _ = cancel.cancelled() => RunResult::Stopped,
        r = tokio::time::timeout(timeout, fut) => match r {
            Err(_) => RunResult::TimedOut(timeout),
            Ok(Err(panic)) => RunResult::Panicked(panic_message(&panic)),
            Ok(Ok(Ok(v))) => RunResult::Ok(v),
            Ok(Ok(Err(e))) => RunResult::Err(e),
        },
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "handler panicked".to_owned())
}

/// The outcome to store for `result` of `job`'s current attempt. A canceled run is
/// `Canceled`; errors are retried with back-off while attempts remain, rate limits
/// after the provider's wait.
pub fn outcome_for(
    job: &Job,
    result: RunResult,
    canceled: bool,
    clock: &dyn Clock,
    cfg: &EngineConfig,
) -> Outcome {
    let now = clock.now();
    let err = |kind, message: String| AttemptError {
        attempt: job.attempts,
        kind,
        message,
        at: now,
    };
    let (error, rate_wait) = match result {
        RunResult::Ok(v) => return Outcome::Completed { result: v },
        _ if canceled => {
            return Outcome::Canceled {
                error: err(ErrorKind::Canceled, "canceled".into()),
            };
        }
        RunResult::Stopped => {
            return Outcome::Canceled {
                error: err(ErrorKind::Canceled, "canceled".into()),
            };
        }
        RunResult::Err(JobError::Canceled(m)) => {
            return Outcome::Canceled {
                error: err(ErrorKind::Canceled, m),
            };
        }
        RunResult::Unknown(t) => {
            return Outcome::Failed {
                error: err(
                    ErrorKind::NonRetryable,
                    format!("no handler for job type `{t}`"),
                ),
            };
        }
        RunResult::Err(JobError::Snooze { after, .. }) => {
            return Outcome::Snoozed { delay: after };
        }
        RunResult::Err(JobError::NonRetryable(m)) => {
            return Outcome::Failed {
                error: err(ErrorKind::NonRetryable, m),
            };
        }
        RunResult::Err(JobError::Retryable(m)) => (err(ErrorKind::Retryable, m), None),
        RunResult::Err(JobError::RateLimited {
            message,
            retry_after,
        }) => (err(ErrorKind::RateLimit, message), retry_after),
        RunResult::TimedOut(d) => (
            err(
                ErrorKind::Timeout,
                format!("timed out after {} ms", d.as_millis()),
            ),
            None,
        ),
        RunResult::Panicked(m) => (err(ErrorKind::Panic, m), None),
    };
    if job.attempts >= job.max_attempts {
        return Outcome::Failed { error };
    }
    let delay = rate_wait
        .unwrap_or_else(|| retry_delay(job.id, job.attempts, cfg.backoff_base, cfg.backoff_max));
    Outcome::Retry { delay, error }
}
