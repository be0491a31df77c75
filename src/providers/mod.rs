//! AI provider clients for `summarize`: Groq through an OpenAI-compatible
//! chat-completions client, Claude through Anthropic's messages API. Each is a
//! [`SummaryProvider`]; [`Providers`] builds the configured ones from [`Settings`] with
//! one `reqwest::Client` each (`AI_REQUEST_TIMEOUT`) and a process-wide cap on calls in
//! flight (`AI_MAX_CONCURRENT_REQUESTS`). Keys are sensitive headers and are redacted
//! from anything built out of an answer.

pub mod anthropic;
mod call;
pub mod openai;
pub mod prompt;
pub mod redact;

use std::sync::Arc;

use async_trait::async_trait;
use kyu_actors::JobError;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use prompt::{SummaryLength, SummaryRequest};

use crate::config::Settings;

/// Bucket and chain name of Groq (`KYU_RATE_LIMITS=groq=…`).
pub const GROQ: &str = "groq";
/// Bucket and chain name of Claude.
pub const CLAUDE: &str = "claude";
/// Chain name of the offline summary (no bucket: it calls nobody).
pub const EXTRACTIVE: &str = "extractive";

/// Tokens a provider counted for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
}

/// A provider's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    /// The model that answered (as the provider names it, else the configured one).
    pub model: String,
    pub usage: Option<TokenUsage>,
}

impl Completion {
    /// The same with `redactor`'s secret taken out of the text (a provider may echo it).
    fn redacted(self, redactor: &redact::Redactor) -> Completion {
        Completion {
            text: redactor.clean(&self.text),
            model: redactor.clean(&self.model),
            ..self
        }
    }
}

/// A service that writes summaries.
#[async_trait]
pub trait SummaryProvider: Send + Sync {
    /// Its bucket and chain name (`groq`, `claude`).
    fn name(&self) -> &'static str;
    /// The configured model.
    fn model(&self) -> &str;
    /// One summary; `Canceled` as soon as `cancel` fires.
    async fn summarize(
        &self,
        req: &SummaryRequest,
        cancel: &CancellationToken,
    ) -> Result<Completion, JobError>;
}

/// The providers that have a key.
pub struct Providers {
    groq: Option<openai::OpenAiChat>,
    claude: Option<anthropic::AnthropicMessages>,
}

impl Providers {
    pub fn from_settings(s: &Settings) -> anyhow::Result<Providers> {
        let permits = Arc::new(Semaphore::new(s.ai_max_concurrent_requests.max(1)));
        Ok(Providers {
            groq: openai::OpenAiChat::new(GROQ, &s.groq, s.ai_request_timeout, permits.clone())?,
            claude: anthropic::AnthropicMessages::new(
                CLAUDE,
                &s.anthropic,
                s.ai_request_timeout,
                permits,
            )?,
        })
    }

    /// The provider called `name`, if it is configured (has a key).
    pub fn get(&self, name: &str) -> Option<&dyn SummaryProvider> {
        match name {
            GROQ => self.groq.as_ref().map(|p| p as &dyn SummaryProvider),
            CLAUDE => self.claude.as_ref().map(|p| p as &dyn SummaryProvider),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn only_providers_with_a_key_are_built() {
        let mut s = Settings::default();
        assert!(Providers::from_settings(&s).unwrap().get(GROQ).is_none());
        s.groq.api_key = Some(Secret("gsk-1".into()));
        let p = Providers::from_settings(&s).unwrap();
        assert_eq!(p.get(GROQ).map(|p| p.name()), Some(GROQ));
        assert!(p.get(CLAUDE).is_none());
        assert!(p.get(EXTRACTIVE).is_none());
    }

    #[test]
    fn a_key_that_cannot_be_a_header_is_refused_without_quoting_it() {
        let mut s = Settings::default();
        s.anthropic.api_key = Some(Secret("bad\nkey-secret".into()));
        let e = Providers::from_settings(&s).err().unwrap().to_string();
        assert!(
            e.contains("claude API key") && !e.contains("key-secret"),
            "{e}"
        );
    }
}
