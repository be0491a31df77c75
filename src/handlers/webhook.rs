//! `http` webhook (skeleton; the webhook/validate helper builds it).

use async_trait::async_trait;
use kyu_actors::{Handler, JobContext, JobError};

use crate::config::WebhookSettings;

pub struct Webhook {
    _settings: WebhookSettings,
}

impl Webhook {
    pub fn new(s: &WebhookSettings) -> anyhow::Result<Webhook> {
        Ok(Webhook {
            _settings: s.clone(),
        })
    }
}

#[async_trait]
impl Handler for Webhook {
    async fn run(&self, _ctx: JobContext) -> Result<serde_json::Value, JobError> {
        Err(JobError::non_retryable("not built yet"))
    }
}
