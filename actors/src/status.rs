//! Job status and the lifecycle's legal moves.
//!
//! The store enforces transitions in SQL; this module is the one place that names them,
//! so the API, the web page and the tests agree on what "final" means.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// A workflow job whose dependencies are not done yet: the completion that meets
    /// its last dependency makes it `queued` (see [`crate::workflow`]).
    Waiting,
    /// Due and waiting for a worker.
    Queued,
    /// Waiting for its `run_at` (delayed job or retry back-off).
    Scheduled,
    /// Claimed by a node under a lease.
    Running,
    /// Finished successfully (final).
    Completed,
    /// Attempts used up or a non-retryable error (final).
    Failed,
    /// Canceled before or while running (final).
    Canceled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Waiting,
        JobStatus::Queued,
        JobStatus::Scheduled,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Canceled,
    ];

    /// The lowercase name stored in the database and shown by the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::Waiting => "waiting",
            JobStatus::Queued => "queued",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    /// A final status never changes again, except by an explicit retry of a
    /// failed or canceled job.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Canceled
        )
    }

    /// Whether a job in this status may be retried through the API.
    pub const fn is_retryable_by_user(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Canceled)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of [`JobStatus::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown job status `{0}` (expected one of waiting, queued, scheduled, running, completed, failed, canceled)"
)]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for st in JobStatus::ALL {
            assert_eq!(st.as_str().parse::<JobStatus>(), Ok(st));
        }
        assert!("done".parse::<JobStatus>().is_err());
    }

    #[test]
    fn final_statuses() {
        let finals: Vec<_> = JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            [JobStatus::Completed, JobStatus::Failed, JobStatus::Canceled]
        );
    }
}
