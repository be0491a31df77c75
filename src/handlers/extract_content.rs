//! `extract_content` (skeleton; the extract_content helper builds it).

use async_trait::async_trait;
use kyu_actors::{Handler, JobContext, JobError};
use tokio_util::sync::CancellationToken;

use crate::config::FetchSettings;

/// An article's main text.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    pub title: Option<String>,
    pub byline: Option<String>,
    pub text: String,
    /// Where it was found (after redirects).
    pub url: String,
}

pub struct ExtractContent {
    _settings: FetchSettings,
}

impl ExtractContent {
    pub fn new(s: &FetchSettings) -> anyhow::Result<ExtractContent> {
        Ok(ExtractContent {
            _settings: s.clone(),
        })
    }

    /// Fetches `url` within the limits and extracts its main text; stops early when
    /// `cancel` fires.
    pub async fn extract(
        &self,
        url: &str,
        cancel: &CancellationToken,
    ) -> Result<Article, JobError> {
        let _ = (url, cancel);
        Err(JobError::non_retryable("not built yet"))
    }
}

#[async_trait]
impl Handler for ExtractContent {
    async fn run(&self, _ctx: JobContext) -> Result<serde_json::Value, JobError> {
        Err(JobError::non_retryable("not built yet"))
    }
}
