//! Remote workers (ARCHITECTURE §10): processes in any language that run jobs over the
//! worker protocol. A fetch is served by the engine's one dispatcher and claim path —
//! the same priority order, aging bound, paused queues and provider rate limits as the
//! local pool — with the worker as the lease owner, so a dead worker's jobs go back
//! through the same dead-owner rescue as a dead node's. Heartbeats extend the lease and
//! bring back a requested cancel; reports become the same fenced [`Outcome`]s as local
//! acks, written at once so the worker learns whether its lease still held.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use crate::engine::Engine;
use crate::error::{AttemptError, ErrorKind, JobError};
use crate::job::Job;
use crate::run::{RunResult, outcome_for};
use crate::status::JobStatus;
use crate::store::{Ack, JobLease, Outcome, StoreError};

/// A lease outlives the deadline by this much before a heartbeat ends the attempt as
/// timed out: the worker's own timer fires first.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);

/// What a remote worker asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The worker process: the owner of every lease it gets.
    pub worker_id: String,
    pub types: Vec<String>,
    pub queues: Option<Vec<String>>,
    /// At most this many jobs.
    pub max: u32,
    /// How long each lease lasts unless extended.
    pub lease: Duration,
    /// Long poll: wait this long for a job to become due; zero answers at once.
    pub wait: Duration,
}

/// A fetch on its way to the dispatcher, with where to answer.
pub struct PendingFetch {
    pub request: FetchRequest,
    pub reply: oneshot::Sender<Result<Vec<Job>, StoreError>>,
}

/// How a remote attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    Retryable,
    NonRetryable,
    RateLimit,
    Timeout,
    Canceled,
}

/// A remote worker's report on one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Complete {
        result: serde_json::Value,
    },
    Fail {
        kind: FailKind,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Run again after `delay`; the attempt is not counted and no error is recorded.
    Snooze {
        delay: Duration,
    },
    /// Never started: queued again at once, the attempt not counted.
    Release,
}

/// One report with its lease and, when the caller knows them, the job's queue and
/// type for the outcome metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteReport {
    pub lease: JobLease,
    pub report: Report,
    /// (queue, type)
    pub labels: Option<(String, String)>,
}

/// What became of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportResult {
    /// Written: the job's new status.
    Applied(JobStatus),
    /// The same report was accepted before; nothing changed.
    Duplicate(JobStatus),
    /// The lease is no longer the job's; nothing changed.
    LeaseLost,
    NotFound,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatResult {
    Held {
        lease_expires_at: DateTime<Utc>,
        cancel_requested: bool,
    },
    /// The lease is gone (rescued, finished, re-run) or its deadline passed, in which
    /// case the attempt was ended as timed out.
    LeaseLost,
    NotFound,
}

fn holds(job: &Job, lease: &JobLease) -> bool {
    job.status == JobStatus::Running
        && job.attempts == lease.attempt
        && job.lease_owner.as_deref() == Some(lease.owner.as_str())
}

/// The attempt's deadline: when it started plus the job's timeout.
pub fn deadline(job: &Job) -> Option<DateTime<Utc>> {
    let timeout = chrono::Duration::from_std(job.timeout).ok()?;
    job.started_at?.checked_add_signed(timeout)
}

impl Engine {
    /// Jobs for a remote worker, claimed by the dispatcher in the local pool's order;
    /// waits up to `wait` for one to become due (a waiting fetch runs no query: the
    /// dispatcher claims for it when something may be claimable).
    pub async fn fetch(&self, request: FetchRequest) -> Result<Vec<Job>, StoreError> {
        let wait = request.wait;
        let (reply, mut rx) = oneshot::channel();
        self.send_fetch(PendingFetch { request, reply });
        if wait.is_zero() {
            // No long poll: one claim, answered whatever it found, however long it took.
            return rx.await.unwrap_or_else(|_| Ok(Vec::new()));
        }
        tokio::select! {
            r = &mut rx => r.unwrap_or_else(|_| Ok(Vec::new())),
            _ = tokio::time::sleep(wait) => {
                // Closed first, then read: jobs sent just before are still delivered,
                // and jobs claimed after are released by the dispatcher, never lost.
                rx.close();
                rx.try_recv().unwrap_or_else(|_| Ok(Vec::new()))
            }
        }
    }

    /// Extends a remote lease and records progress; says whether a cancel was asked.
    /// Past the attempt's deadline the attempt ends as timed out instead.
    pub async fn heartbeat(
        &self,
        lease: &JobLease,
        progress: Option<u8>,
        extend: Duration,
    ) -> Result<HeartbeatResult, StoreError> {
        let store = &self.deps.store;
        let Some(job) = store.get(lease.id).await? else {
            return Ok(HeartbeatResult::NotFound);
        };
        if !holds(&job, lease) {
            return Ok(HeartbeatResult::LeaseLost);
        }
        let now = self.deps.clock.now();
        if let Some(d) = deadline(&job)
            && chrono::Duration::from_std(DEADLINE_GRACE)
                .ok()
                .and_then(|g| d.checked_add_signed(g))
                .is_some_and(|end| now > end)
        {
            let outcome = outcome_for(
                &job,
                RunResult::TimedOut(job.timeout),
                false,
                self.deps.clock.as_ref(),
                &self.deps.config,
            );
            store
                .ack(&[Ack {
                    lease: lease.clone(),
                    outcome,
                }])
                .await?;
            return Ok(HeartbeatResult::LeaseLost);
        }
        let state = store
            .extend_leases(std::slice::from_ref(lease), extend)
            .await?;
        let Some(state) = state.first().filter(|s| s.held) else {
            return Ok(HeartbeatResult::LeaseLost);
        };
        if let Some(p) = progress {
            store.set_progress(lease, p.min(100)).await?;
        }
        let until = chrono::Duration::from_std(extend)
            .ok()
            .and_then(|e| now.checked_add_signed(e))
            .unwrap_or(now);
        Ok(HeartbeatResult::Held {
            lease_expires_at: until,
            cancel_requested: state.cancel_requested,
        })
    }

    /// Writes remote reports in one transaction, each fenced by its lease. A report
    /// whose lease no longer holds is a duplicate when the job shows exactly what
    /// that report made of it, else [`ReportResult::LeaseLost`].
    pub async fn report(&self, reports: &[RemoteReport]) -> Result<Vec<ReportResult>, StoreError> {
        let store = &self.deps.store;
        let now = self.deps.clock.now();
        let mut acks = Vec::with_capacity(reports.len());
        for RemoteReport { lease, report, .. } in reports {
            let outcome = match report {
                Report::Complete { result } => Outcome::Completed {
                    result: result.clone(),
                },
                Report::Snooze { delay } => Outcome::Snoozed { delay: *delay },
                Report::Release => Outcome::Released { uncount: true },
                Report::Fail { kind, message, .. } if !kind.may_retry() => {
                    let error = AttemptError {
                        attempt: lease.attempt,
                        kind: kind.error_kind(),
                        message: message.clone(),
                        at: now,
                    };
                    match kind {
                        FailKind::Canceled => Outcome::Canceled { error },
                        _ => Outcome::Failed { error },
                    }
                }
                Report::Fail {
                    kind,
                    message,
                    retry_after,
                } => {
                    // Whether another attempt is left is the job's to say.
                    let Some(job) = store.get(lease.id).await? else {
                        acks.push(None);
                        continue;
                    };
                    let result = match kind {
                        FailKind::Timeout => RunResult::TimedOut(job.timeout),
                        FailKind::RateLimit => RunResult::Err(JobError::RateLimited {
                            message: message.clone(),
                            retry_after: *retry_after,
                        }),
                        _ => RunResult::Err(JobError::Retryable(message.clone())),
                    };
                    let mut outcome = outcome_for(
                        &job,
                        result,
                        false,
                        self.deps.clock.as_ref(),
                        &self.deps.config,
                    );
                    if let Outcome::Retry { error, .. } | Outcome::Failed { error } = &mut outcome {
                        // The lease's attempt, not the row's: a stale report must not
                        // borrow a newer attempt's number.
                        error.attempt = lease.attempt;
                        if *kind == FailKind::Timeout {
                            error.message = message.clone();
                        }
                    }
                    if let (FailKind::RateLimit, Some(after), Some(provider)) =
                        (kind, retry_after, &job.provider)
                        && let Some(until) = chrono::Duration::from_std(*after)
                            .ok()
                            .and_then(|d| now.checked_add_signed(d))
                    {
                        self.deps.limiter.cool_down(provider, until).await;
                    }
                    outcome
                }
            };
            acks.push(Some(Ack {
                lease: lease.clone(),
                outcome,
            }));
        }
        let written: Vec<Ack> = acks.iter().flatten().cloned().collect();
        let mut applied = store.ack(&written).await?.into_iter();
        let mut out = Vec::with_capacity(reports.len());
        let mut due = Vec::new();
        for (r, ack) in reports.iter().zip(&acks) {
            let (lease, report) = (&r.lease, &r.report);
            let Some(ack) = ack else {
                out.push(ReportResult::NotFound);
                continue;
            };
            if applied.next().unwrap_or(false) {
                if let Outcome::Retry { delay, .. } | Outcome::Snoozed { delay } = &ack.outcome
                    && let Some(at) = chrono::Duration::from_std(*delay)
                        .ok()
                        .and_then(|d| now.checked_add_signed(d))
                {
                    due.push(at);
                }
                if let Some((queue, job_type)) = &r.labels {
                    crate::telemetry::record_outcome(queue, job_type, &ack.outcome);
                }
                out.push(ReportResult::Applied(status_after(&ack.outcome)));
                continue;
            }
            out.push(match store.get(lease.id).await? {
                None => ReportResult::NotFound,
                Some(job) if was_applied(&job, lease, report) => {
                    ReportResult::Duplicate(job.status)
                }
                Some(_) => ReportResult::LeaseLost,
            });
        }
        self.due_at(due);
        if out.iter().any(|r| matches!(r, ReportResult::Applied(_))) {
            // A released job (or a retry due now) is claimable again, and a job that
            // stopped running may have freed its concurrency key (or met a workflow
            // dependency) for another.
            self.wake();
        }
        Ok(out)
    }

    /// Ends a worker's waiting fetches at once (it was asked to stop).
    pub fn stop_worker(&self, worker_id: &str) {
        self.send_stop_worker(worker_id.to_owned());
    }
}

impl FailKind {
    fn may_retry(self) -> bool {
        matches!(
            self,
            FailKind::Retryable | FailKind::RateLimit | FailKind::Timeout
        )
    }

    fn error_kind(self) -> ErrorKind {
        match self {
            FailKind::Retryable => ErrorKind::Retryable,
            FailKind::NonRetryable => ErrorKind::NonRetryable,
            FailKind::RateLimit => ErrorKind::RateLimit,
            FailKind::Timeout => ErrorKind::Timeout,
            FailKind::Canceled => ErrorKind::Canceled,
        }
    }
}

/// The status an applied outcome leaves.
fn status_after(outcome: &Outcome) -> JobStatus {
    match outcome {
        Outcome::Completed { .. } => JobStatus::Completed,
        Outcome::Retry { .. } | Outcome::Snoozed { .. } => JobStatus::Scheduled,
        Outcome::Failed { .. } => JobStatus::Failed,
        Outcome::Canceled { .. } => JobStatus::Canceled,
        Outcome::Released { .. } => JobStatus::Queued,
    }
}

/// Whether `job` shows exactly what `report`, made under `lease`, would have written:
/// then a repeat of it is harmless. A rescue, a re-run or another worker's report leaves
/// another attempt number, status or error behind.
fn was_applied(job: &Job, lease: &JobLease, report: &Report) -> bool {
    let last_error = job.errors.last();
    match report {
        Report::Complete { .. } => {
            job.status == JobStatus::Completed && job.attempts == lease.attempt
        }
        Report::Fail { kind, message, .. } => {
            let final_or_waiting = matches!(
                job.status,
                JobStatus::Scheduled | JobStatus::Failed | JobStatus::Canceled
            );
            final_or_waiting
                && job.attempts == lease.attempt
                && last_error.is_some_and(|e| {
                    e.attempt == lease.attempt
                        && e.kind == kind.error_kind()
                        && e.message == *message
                })
        }
        Report::Snooze { .. } => {
            job.status == JobStatus::Scheduled && job.attempts + 1 == lease.attempt
        }
        Report::Release => job.status == JobStatus::Queued && job.attempts + 1 == lease.attempt,
    }
}
