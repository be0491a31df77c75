//! The JSON shapes of the worker protocol (`docs/worker-protocol.md`) and their
//! OpenAPI schemas.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::model::Status;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    /// The worker process (fresh per start): owner of every lease it gets.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]+$")]
    pub worker_id: String,
    /// The job types it runs.
    #[schema(min_items = 1, max_items = 100)]
    pub types: Vec<String>,
    /// Only jobs of these queues (default: any).
    #[schema(max_items = 100)]
    pub queues: Option<Vec<String>>,
    /// At most this many jobs (default 1).
    #[serde(default, deserialize_with = "crate::api::model::integer")]
    #[schema(minimum = 1, maximum = 100, value_type = Option<u32>)]
    pub max: Option<i64>,
    /// Long poll: answer when a job is due, or empty after this many ms (default 0).
    #[serde(default, deserialize_with = "crate::api::model::integer")]
    #[schema(minimum = 0, maximum = 30000, value_type = Option<u64>)]
    pub wait_ms: Option<i64>,
    /// How long each lease lasts unless extended (default 30).
    #[schema(minimum = 5, maximum = 3600)]
    pub lease_seconds: Option<f64>,
    #[schema(max_length = 255, pattern = "^[^\\x00]*$")]
    pub host: Option<String>,
    #[schema(max_length = 100, pattern = "^[^\\x00]*$")]
    pub version: Option<String>,
}

/// A job handed to a remote worker.
#[derive(Debug, Serialize, ToSchema)]
pub struct FetchedJob {
    pub job_id: Uuid,
    #[serde(rename = "type")]
    pub job_type: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub queue: String,
    pub provider: Option<String>,
    pub priority: u8,
    /// This attempt's number (counted at fetch).
    pub attempt: u32,
    pub max_attempts: u32,
    /// Send back verbatim with every heartbeat and report.
    pub lease: String,
    pub lease_expires_at: DateTime<Utc>,
    /// When the attempt's timeout ends.
    pub deadline: Option<DateTime<Utc>>,
    /// How often to heartbeat.
    pub heartbeat_ms: u64,
    /// The workflow the job belongs to (absent outside workflows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<Uuid>,
    /// The results of its completed dependencies by workflow key (absent outside
    /// workflows, and for jobs without dependencies).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub dependency_results: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FetchResponse {
    pub jobs: Vec<FetchedJob>,
    /// kyu asked this worker to stop: finish what it holds, fetch no more.
    pub stop: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The lease the fetch handed out, verbatim.
    #[schema(
        min_length = 3,
        max_length = 265,
        pattern = "^[0-9]{1,9}:[^\\x00]{1,255}$"
    )]
    pub lease: String,
    #[serde(default, deserialize_with = "crate::api::model::integer")]
    #[schema(minimum = 0, maximum = 100, value_type = Option<u8>)]
    pub progress: Option<i64>,
    #[schema(minimum = 5, maximum = 3600)]
    pub lease_seconds: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatResponse {
    pub lease_expires_at: DateTime<Utc>,
    /// A cancel was requested: stop the handler and report `fail` with kind `canceled`.
    pub cancel: bool,
    /// kyu asked this worker to stop.
    pub stop: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The lease the fetch handed out, verbatim.
    #[schema(
        min_length = 3,
        max_length = 265,
        pattern = "^[0-9]{1,9}:[^\\x00]{1,255}$"
    )]
    pub lease: String,
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub result: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailKind {
    Retryable,
    NonRetryable,
    RateLimit,
    Timeout,
    Canceled,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// The lease the fetch handed out, verbatim.
    #[schema(
        min_length = 3,
        max_length = 265,
        pattern = "^[0-9]{1,9}:[^\\x00]{1,255}$"
    )]
    pub lease: String,
    pub kind: FailKind,
    #[schema(max_length = 10000)]
    pub message: Option<String>,
    #[schema(minimum = 0, maximum = 31536000)]
    pub retry_after_seconds: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnoozeRequest {
    /// The lease the fetch handed out, verbatim.
    #[schema(
        min_length = 3,
        max_length = 265,
        pattern = "^[0-9]{1,9}:[^\\x00]{1,255}$"
    )]
    pub lease: String,
    #[schema(minimum = 0, maximum = 31536000)]
    pub seconds: f64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The lease the fetch handed out, verbatim.
    #[schema(
        min_length = 3,
        max_length = 265,
        pattern = "^[0-9]{1,9}:[^\\x00]{1,255}$"
    )]
    pub lease: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportResponse {
    pub job_id: Uuid,
    /// The job's status after the report.
    pub status: Status,
    /// The same report was accepted before; nothing changed.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AckOp {
    Complete,
    Fail,
    Snooze,
    Release,
}

/// One report in a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckItem {
    pub job_id: Uuid,
    /// The lease the fetch handed out, verbatim.
    #[schema(
        min_length = 3,
        max_length = 265,
        pattern = "^[0-9]{1,9}:[^\\x00]{1,255}$"
    )]
    pub lease: String,
    pub op: AckOp,
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub result: Option<serde_json::Value>,
    /// For `fail` (default `retryable`).
    pub kind: Option<FailKind>,
    #[schema(max_length = 10000)]
    pub message: Option<String>,
    #[schema(minimum = 0, maximum = 31536000)]
    pub retry_after_seconds: Option<f64>,
    /// For `snooze` (default 0: due again at once).
    #[schema(minimum = 0, maximum = 31536000)]
    pub seconds: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcksRequest {
    #[schema(min_items = 1, max_items = 1000)]
    pub acks: Vec<AckItem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AckResult {
    pub job_id: Uuid,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// Why not: `lease_lost` or `not_found`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcksResponse {
    pub results: Vec<AckResult>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StopResponse {
    pub worker_id: String,
    pub stopped: bool,
}

/// A remote worker connected to this node.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemoteWorkerView {
    pub worker_id: String,
    pub host: String,
    pub version: String,
    pub types: Vec<String>,
    pub in_flight: usize,
    pub waiting: bool,
    pub stopped: bool,
    pub last_seen: DateTime<Utc>,
}
