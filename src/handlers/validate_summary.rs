//! `validate_summary` (skeleton; the webhook/validate helper builds it).

use async_trait::async_trait;
use kyu_actors::{Handler, JobContext, JobError};

pub struct ValidateSummary;

#[async_trait]
impl Handler for ValidateSummary {
    async fn run(&self, _ctx: JobContext) -> Result<serde_json::Value, JobError> {
        Err(JobError::non_retryable("not built yet"))
    }
}
