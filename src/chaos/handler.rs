//! The `ledger` job type (registered only when `KYU_LEDGER_PATH` is set): records
//! its start, works for `payload.ms` milliseconds, records its end, and returns the
//! pid that ran it.

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
        self.ledger
            .record(ctx.id, ctx.attempt, Phase::Start)
            .map_err(|e| JobError::retryable(format!("ledger: {e}")))?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.ledger
            .record(ctx.id, ctx.attempt, Phase::End)
            .map_err(|e| JobError::retryable(format!("ledger: {e}")))?;
        Ok(serde_json::json!({ "pid": std::process::id() }))
    }
}
