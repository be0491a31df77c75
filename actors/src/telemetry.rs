//! The metric contract: every metric kyu exports, by name, with its
//! HELP text. Dashboards and alerts in `dashboards/` query exactly these names and
//! labels, so they live in one place; code emits through the `metrics` facade (a no-op
//! until a process installs a recorder, as `kyu serve` does).
//!
//! Rules: counters end in `_total`; durations are `_seconds` histograms (the exporter
//! gives every `_seconds` histogram [`SECONDS_BUCKETS`]); labels are bounded sets
//! (queue, type, provider, route …), never job ids.

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram};

use crate::ErrorKind;
use crate::store::Outcome;

pub const BUILD_INFO: &str = "kyu_build_info";
pub const JOBS_ENQUEUED: &str = "kyu_jobs_enqueued_total";
pub const JOBS_FINISHED: &str = "kyu_jobs_finished_total";
pub const JOB_ERRORS: &str = "kyu_job_errors_total";
pub const JOB_RUN_SECONDS: &str = "kyu_job_run_seconds";
pub const JOB_WAIT_SECONDS: &str = "kyu_job_wait_seconds";
pub const QUEUE_JOBS: &str = "kyu_queue_jobs";
pub const QUEUE_OLDEST_AGE: &str = "kyu_queue_oldest_job_age_seconds";
pub const QUEUE_SAMPLE_SECONDS: &str = "kyu_queue_sample_duration_seconds";
pub const KEYS_FULL: &str = "kyu_concurrency_keys_full";
pub const JOBS_HELD_BY_KEY: &str = "kyu_concurrency_jobs_held";
pub const WORKERS: &str = "kyu_workers";
pub const WORKERS_TARGET: &str = "kyu_workers_target";
pub const AUTOSCALER_CPU: &str = "kyu_autoscaler_cpu_ratio";
pub const AUTOSCALER_MEMORY: &str = "kyu_autoscaler_memory_ratio";
pub const ACTOR_RESTARTS: &str = "kyu_actor_restarts_total";
pub const RATE_LIMIT_WAITS: &str = "kyu_rate_limit_waits_total";
pub const RATE_LIMIT_TOKENS: &str = "kyu_rate_limit_tokens";
pub const HTTP_REQUESTS: &str = "kyu_http_requests_total";
pub const HTTP_DURATION: &str = "kyu_http_request_duration_seconds";
pub const STORE_ERRORS: &str = "kyu_store_errors_total";
pub const REDIS_UP: &str = "kyu_redis_up";
pub const API_RATE_LIMITED: &str = "kyu_api_rate_limited_total";
pub const API_RATE_LIMIT_SHARED: &str = "kyu_api_rate_limit_shared";
pub const STORE_UP: &str = "kyu_store_up";
pub const STORAGE_FULL: &str = "kyu_storage_full";
pub const STORE_CONNECTIONS_DISCARDED: &str = "kyu_store_connections_discarded_total";
pub const LEADER: &str = "kyu_leader";
pub const CRON_ENQUEUED: &str = "kyu_cron_enqueued_total";
pub const PROVIDER_REQUESTS: &str = "kyu_provider_requests_total";
pub const SUMMARIES: &str = "kyu_summaries_total";
pub const CLAIMS: &str = "kyu_claims_total";
pub const ACKS_UNWRITTEN: &str = "kyu_acks_unwritten";
pub const REMOTE_FETCHES_WAITING: &str = "kyu_remote_fetches_waiting";
pub const REMOTE_FETCH_WAIT: &str = "kyu_remote_fetch_wait_seconds";
pub const REMOTE_REPORT_SECONDS: &str = "kyu_remote_report_duration_seconds";
pub const REMOTE_JOBS: &str = "kyu_remote_jobs_total";
pub const WORKFLOWS_FINISHED: &str = "kyu_workflows_finished_total";

/// Histogram buckets for every `_seconds` histogram: from 1 ms jobs and requests to
/// 5-minute jobs.
pub const SECONDS_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// Registers HELP text and units with the installed recorder. Call once, after
/// installing it.
pub fn describe() {
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels name the kyu version and the store backend."
    );
    describe_counter!(
        JOBS_ENQUEUED,
        "Jobs committed to the store (a unique-key duplicate is not counted)."
    );
    describe_counter!(
        JOBS_FINISHED,
        "Jobs that reached a final status (completed, failed, canceled)."
    );
    describe_counter!(
        WORKFLOWS_FINISHED,
        "Workflows whose last job became final, by outcome (completed: all completed; failed)."
    );
    describe_counter!(
        JOB_ERRORS,
        "Failed attempts by error kind and what followed (retry, failed, canceled)."
    );
    describe_histogram!(
        JOB_RUN_SECONDS,
        Unit::Seconds,
        "How long one attempt's handler ran."
    );
    describe_histogram!(
        JOB_WAIT_SECONDS,
        Unit::Seconds,
        "From a job's due time (run_at) to the start of its attempt."
    );
    describe_gauge!(
        QUEUE_JOBS,
        "Live jobs per queue and status (queued, scheduled, running), sampled from the store."
    );
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "Age of the queue's oldest due job that has not started (0 when none), sampled."
    );
    describe_gauge!(
        QUEUE_SAMPLE_SECONDS,
        Unit::Seconds,
        "How long the last sample of queue gauges took to read from the store."
    );
    describe_gauge!(
        KEYS_FULL,
        "Concurrency keys running as many jobs as their limit allows while more wait (sampled, first 1,000 keys)."
    );
    describe_gauge!(
        JOBS_HELD_BY_KEY,
        "Queued jobs held back by their concurrency key's limit (sampled, first 1,000 keys)."
    );
    describe_gauge!(
        WORKERS,
        "Workers: kind=local, this node's pool slots, busy (running a job) or idle; kind=remote, remote worker processes connected to this node (state=connected) and the jobs they hold (state=busy)."
    );
    describe_gauge!(
        ACKS_UNWRITTEN,
        "Finished attempts whose outcome this node holds unwritten (buffered or being written); over two ack batches, the node claims no more."
    );
    describe_gauge!(
        WORKERS_TARGET,
        "The pool size the autoscaler wants (the configured size when it is off)."
    );
    describe_gauge!(
        AUTOSCALER_CPU,
        "CPU use (0 to 1) at the autoscaler's last reading."
    );
    describe_gauge!(
        AUTOSCALER_MEMORY,
        "Memory use (0 to 1) at the autoscaler's last reading."
    );
    describe_counter!(
        ACTOR_RESTARTS,
        "Engine actors restarted by the supervisor after a failure."
    );
    describe_counter!(
        RATE_LIMIT_WAITS,
        "Jobs held back because their provider had no rate-limit token."
    );
    describe_gauge!(
        RATE_LIMIT_TOKENS,
        "Tokens left in the provider's bucket after its last use."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "API requests by route template, method and status code."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "API request latency by route template and method."
    );
    describe_counter!(
        STORE_ERRORS,
        "Store calls that failed: unavailable (worth retrying) or backend."
    );
    describe_gauge!(
        REDIS_UP,
        "1 when the configured Redis answered the last PING, else 0."
    );
    describe_counter!(
        API_RATE_LIMITED,
        "API requests refused with 429 rate_limited, by the role of the client (admin, user, worker, anonymous)."
    );
    describe_gauge!(
        API_RATE_LIMIT_SHARED,
        "1 while this node counts API rate limits in Redis (shared by all API nodes); 0 while it counts them in its own memory (storage memory, or Redis away)."
    );
    describe_gauge!(
        LEADER,
        "1 while this node is the leader (runs lease rescue, pruning and cron), else 0."
    );
    describe_counter!(
        CRON_ENQUEUED,
        "Cron ticks this node enqueued as leader, by cron entry."
    );
    describe_counter!(
        PROVIDER_REQUESTS,
        "AI provider calls by provider and outcome (ok, rate_limited, retryable, non_retryable, canceled)."
    );
    describe_counter!(
        SUMMARIES,
        "Summaries made, by the step of the chain that made them (groq, claude, extractive)."
    );
    describe_counter!(
        CLAIMS,
        "Claim queries run (local pool and remote fetches), by whether they found jobs: an idle node's cost."
    );
    describe_gauge!(
        REMOTE_FETCHES_WAITING,
        "Remote workers' long-poll fetches waiting on this node for a job."
    );
    describe_histogram!(
        REMOTE_FETCH_WAIT,
        Unit::Seconds,
        "How long a remote worker's fetch waited before it was answered (with jobs or empty)."
    );
    describe_histogram!(
        REMOTE_REPORT_SECONDS,
        Unit::Seconds,
        "How long a remote worker's call (heartbeat, complete, fail, snooze, release, acks) took, by op."
    );
    describe_counter!(REMOTE_JOBS, "Jobs handed to remote workers, by type.");
    describe_gauge!(
        STORE_UP,
        "1 while the store answers; 0 while its circuit is open (unreachable or full)."
    );
    describe_gauge!(
        STORAGE_FULL,
        "1 while the store is out of space (writes answer 507 storage_full), else 0."
    );
    describe_counter!(
        STORE_CONNECTIONS_DISCARDED,
        "Pooled database connections closed instead of reused because an error left them inside a transaction."
    );
    counter!(STORE_CONNECTIONS_DISCARDED).increment(0);
    // Counters that move only on incidents start at 0 for every known label, so their
    // panels and rate() show 0 rather than "no data" on a healthy node.
    use crate::actor::supervisor::Child;
    for child in [
        Child::Acker,
        Child::Dispatcher,
        Child::Scheduler,
        Child::Autoscaler,
    ] {
        counter!(ACTOR_RESTARTS, "actor" => child.name()).increment(0);
    }
    for kind in ["unavailable", "backend"] {
        counter!(STORE_ERRORS, "kind" => kind).increment(0);
    }
    for provider in ["groq", "claude"] {
        for outcome in [
            "ok",
            "rate_limited",
            "retryable",
            "non_retryable",
            "canceled",
        ] {
            counter!(PROVIDER_REQUESTS, "provider" => provider, "outcome" => outcome).increment(0);
        }
    }
    for provider in ["groq", "claude", "extractive"] {
        counter!(SUMMARIES, "provider" => provider).increment(0);
    }
}

/// Counts a written outcome: finished jobs and failed attempts. Release and snooze
/// (attempt given back or never started) count nothing.
pub fn record_outcome(queue: &str, job_type: &str, outcome: &Outcome) {
    let (finished, error) = match outcome {
        Outcome::Completed { .. } => (Some("completed"), None),
        Outcome::Retry { error, .. } => (None, Some((error.kind, "retry"))),
        Outcome::Failed { error } => (Some("failed"), Some((error.kind, "failed"))),
        Outcome::Canceled { error } => (Some("canceled"), Some((error.kind, "canceled"))),
        Outcome::Released { .. } | Outcome::Snoozed { .. } => (None, None),
    };
    if let Some(outcome) = finished {
        record_finished(queue, job_type, outcome);
    }
    if let Some((kind, disposition)) = error {
        record_error(queue, job_type, kind, disposition);
    }
}

/// Counts one failed attempt of kind `kind`; `disposition` is what became of the job
/// (`retry`, `failed`, `canceled`).
pub fn record_error(queue: &str, job_type: &str, kind: ErrorKind, disposition: &'static str) {
    counter!(JOB_ERRORS,
        "queue" => queue.to_owned(), "type" => job_type.to_owned(),
        "kind" => kind.as_str(), "disposition" => disposition)
    .increment(1);
}

/// Counts a job a lease rescue just wrote: its attempt failed (its node died or
/// stalled), and it either waits for another attempt or, out of attempts, failed.
pub fn record_rescued(job: &crate::Job) {
    let kind = job.errors.last().map_or(ErrorKind::Retryable, |e| e.kind);
    if job.status == crate::JobStatus::Failed {
        record_finished(&job.queue, &job.job_type, "failed");
        record_error(&job.queue, &job.job_type, kind, "failed");
    } else {
        record_error(&job.queue, &job.job_type, kind, "retry");
    }
}

/// Counts a job that reached the final status `outcome` (`completed`, `failed`,
/// `canceled`).
pub fn record_finished(queue: &str, job_type: &str, outcome: &'static str) {
    counter!(JOBS_FINISHED,
        "queue" => queue.to_owned(), "type" => job_type.to_owned(), "outcome" => outcome)
    .increment(1);
}
