//! `summarize` (skeleton; the summarize helper builds it).

use std::sync::Arc;

use async_trait::async_trait;
use kyu_actors::{Handler, JobContext, JobError};

use super::extract_content::ExtractContent;
use crate::config::Settings;

pub struct Summarize {
    _extract: Arc<ExtractContent>,
}

impl Summarize {
    pub fn new(s: &Settings, extract: Arc<ExtractContent>) -> anyhow::Result<Summarize> {
        let _ = s;
        Ok(Summarize { _extract: extract })
    }
}

#[async_trait]
impl Handler for Summarize {
    async fn run(&self, _ctx: JobContext) -> Result<serde_json::Value, JobError> {
        Err(JobError::non_retryable("not built yet"))
    }
}
