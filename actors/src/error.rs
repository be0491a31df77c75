//! How an attempt went wrong. A handler returns a [`JobError`]; the engine turns it into
//! an [`AttemptError`] kept in the job's history (every attempt, not only the last).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The class of an attempt's failure, which decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Worth another attempt after back-off (network, 5xx, lease lost).
    Retryable,
    /// Never retried (auth, invalid request, 4xx).
    NonRetryable,
    /// The provider said "too many requests": retried at its next slot.
    RateLimit,
    /// The attempt ran over the job's timeout.
    Timeout,
    /// The handler panicked.
    Panic,
    /// The job was canceled.
    Canceled,
}

impl ErrorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::NonRetryable => "non_retryable",
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Panic => "panic",
            ErrorKind::Canceled => "canceled",
        }
    }

    /// Whether another attempt may follow (if attempts remain).
    pub const fn retries(self) -> bool {
        matches!(
            self,
            ErrorKind::Retryable | ErrorKind::RateLimit | ErrorKind::Timeout | ErrorKind::Panic
        )
    }
}

/// One failed attempt, as kept in the job's error history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    pub attempt: u32,
    pub kind: ErrorKind,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// What a handler returns when it fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    NonRetryable(String),
    /// Rate limited; `retry_after` is the provider's cool-down if it gave one.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Canceled(String),
    /// The handler did not do its work and asks to run again after `after`, without
    /// counting this attempt and without recording an error (River's `JobSnooze`,
    /// Oban's `{:snooze, s}`): e.g. a provider it needs has no rate-limit token yet.
    #[error("snoozed for {} ms: {reason}", after.as_millis())]
    Snooze { reason: String, after: Duration },
}

impl JobError {
    pub fn retryable(msg: impl Into<String>) -> Self {
        JobError::Retryable(msg.into())
    }

    pub fn non_retryable(msg: impl Into<String>) -> Self {
        JobError::NonRetryable(msg.into())
    }

    /// Run again after `after` without counting this attempt.
    pub fn snooze(after: Duration, reason: impl Into<String>) -> Self {
        JobError::Snooze {
            reason: reason.into(),
            after,
        }
    }

    /// The error's class (a snooze is not an error; it reads as `rate_limit`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            JobError::Retryable(_) => ErrorKind::Retryable,
            JobError::NonRetryable(_) => ErrorKind::NonRetryable,
            JobError::RateLimited { .. } => ErrorKind::RateLimit,
            JobError::Canceled(_) => ErrorKind::Canceled,
            JobError::Snooze { .. } => ErrorKind::RateLimit,
        }
    }
}
