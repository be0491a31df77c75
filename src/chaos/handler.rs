//! The `ledger` job type (registered only when `KYU_LEDGER_PATH` is set): records
//! its start, works for `payload.ms` milliseconds, records its end, and returns the
//! pid that ran it. With `payload.progress` = true it reports progress as it works.
//!
//! Failure modes for tests (tests/observability.rs): `payload.fail` = `"non_retryable"`
//! or `"retryable"` (any other string) makes attempts 1..=`payload.fail_attempts`
//! (default: every attempt) return that error before recording anything, so the ledger
//! still lists only runs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kyu_actors::{Handler, JobContext, JobError};

use super::ledger::{Ledger, Phase};

pub struct LedgerJob {
    ledger: Arc<Ledger>,
}

impl LedgerJob {
    pub fn new(ledger: Ledger) -> LedgerJob {
        LedgerJob {
            ledger: Arc::new(ledger),
        }
    }
}

#[async_trait]
impl Handler for LedgerJob {
    async fn run(&self, ctx: JobContext) -> Result<serde_json::Value, JobError> {
        let ms = ctx.payload.get("ms").and_then(|v| v.as_u64()).unwrap_or(0);
        if let Some(kind) = ctx.payload.get("fail").and_then(|v| v.as_str()) {
            let upto = ctx
                .payload
                .get("fail_attempts")
                .and_then(|v| v.as_u64())
                .unwrap_or(u64::MAX);
            if u64::from(ctx.attempt) <= upto {
                let msg = format!("ledger: asked to fail attempt {}", ctx.attempt);
                return Err(match kind {
                    "non_retryable" => JobError::non_retryable(msg),
                    _ => JobError::retryable(msg),
                });
            }
        }
        self.ledger
            .record(ctx.id, ctx.attempt, Phase::Start)
            .map_err(|e| JobError::retryable(format!("ledger: {e}")))?;
        work(&ctx, ms).await;
        self.ledger
            .record(ctx.id, ctx.attempt, Phase::End)
            .map_err(|e| JobError::retryable(format!("ledger: {e}")))?;
        Ok(serde_json::json!({ "pid": std::process::id() }))
    }
}

/// Sleeps `ms`; with `payload.progress` = true, in ten steps, reporting 10 %, 20 %, …
/// through the job's progress reporter (the web page's browser test watches it move).
async fn work(ctx: &JobContext, ms: u64) {
    if ctx.payload.get("progress").and_then(|v| v.as_bool()) != Some(true) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return;
    }
    for step in 1..=10u8 {
        tokio::time::sleep(Duration::from_millis(ms / 10)).await;
        ctx.progress.set(step * 10).await;
    }
}
