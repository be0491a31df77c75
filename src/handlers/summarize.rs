//! `summarize`: an AI summary of an article through a provider chain
//! with fallback — Groq → Claude → the offline extractive summary by default. The job's
//! own provider (whose token the dispatcher already took) starts the chain; any other
//! provider is asked for a token first. A provider without a key is skipped, a 429 puts
//! that provider in a cool-down, and with `AI_FALLBACK_ENABLED=false` the first
//! provider's error is the job's (a 429 reschedules it, a 401 fails it for good).
//! The result says which provider answered and what every step did.

mod chain;
mod payload;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kyu_actors::{Handler, JobContext, JobDefaults, JobError, PayloadError};
use serde_json::{Value, json};

use self::chain::{DEFAULT_CHAIN, Record, Step};
use self::payload::{Source, SummarizePayload};
use super::extract_content::ExtractContent;
use super::{extractive, language};
use crate::config::Settings;
use crate::providers::{Completion, Providers, SummaryRequest};
use kyu_actors::telemetry::SUMMARIES;

/// A provider's cool-down after a 429 that gave no Retry-After.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(30);

/// The longest cool-down a provider's Retry-After may impose (a bad value must not
/// park a provider for days).
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(3600);

/// Seed 000 §3.2: summaries are HIGH priority (a user is waiting).
pub const DEFAULT_PRIORITY: u8 = 7;

/// What `model` says for the offline summary.
const EXTRACTIVE_MODEL: &str = "leading-sentences";

pub struct Summarize {
    providers: Providers,
    fallback: bool,
    extract: Arc<ExtractContent>,
}

impl Summarize {
    pub fn new(s: &Settings, extract: Arc<ExtractContent>) -> anyhow::Result<Summarize> {
        Ok(Summarize {
            providers: Providers::from_settings(s)?,
            fallback: s.ai_fallback_enabled,
            extract,
        })
    }

    /// The article text: the payload's, or fetched from its URL.
    async fn source_text(&self, source: &Source, ctx: &JobContext) -> Result<String, JobError> {
        let text = match source {
            Source::Text(t) => return Ok(t.clone()),
            Source::Url(url) => self.extract.extract(url, &ctx.cancel).await?.text,
        };
        ctx.check_canceled()?;
        if text.trim().is_empty() {
            return Err(JobError::non_retryable("the page has no article text"));
        }
        Ok(text)
    }

    /// Asks one provider. `Ok(None)`: go on to the next step (recorded in `record`);
    /// `Err`: the job's error (fallback off, or canceled).
    async fn ask(
        &self,
        step: Step,
        req: &SummaryRequest,
        ctx: &JobContext,
        record: &mut Record,
    ) -> Result<Option<Completion>, JobError> {
        let name = step.name();
        let Some(provider) = self.providers.get(name) else {
            record.skipped(step, "no API key configured");
            return Ok(None);
        };
        if ctx.provider.as_deref() != Some(name)
            && let Err(wait) = ctx.limits.try_acquire(name).await
        {
            let reason = format!(
                "{name}: no rate-limit token for another {} ms",
                wait.as_millis()
            );
            // Nothing was asked of the provider: with fallback off the job waits for
            // the token without spending an attempt.
            let e = if self.fallback {
                JobError::RateLimited {
                    message: reason,
                    retry_after: Some(wait),
                }
            } else {
                JobError::snooze(wait, reason)
            };
            return self.fall_back(step, e, record);
        }
        match provider.summarize(req, &ctx.cancel).await {
            Ok(c) => Ok(Some(c)),
            Err(e @ JobError::Canceled(_)) => Err(e),
            Err(JobError::RateLimited {
                message,
                retry_after,
            }) => {
                let wait = retry_after.unwrap_or(DEFAULT_COOL_DOWN).min(MAX_COOL_DOWN);
                ctx.limits.cool_down(name, wait).await;
                tracing::info!(
                    provider = name,
                    cool_down_ms = wait.as_millis() as u64,
                    "provider rate-limited"
                );
                let e = JobError::RateLimited {
                    message,
                    retry_after: Some(wait),
                };
                self.fall_back(step, e, record)
            }
            Err(e) => self.fall_back(step, e, record),
        }
    }

    /// With fallback on, records `e` and goes on; with it off, `e` is the job's error.
    fn fall_back(
        &self,
        step: Step,
        e: JobError,
        record: &mut Record,
    ) -> Result<Option<Completion>, JobError> {
        if !self.fallback {
            return Err(e);
        }
        tracing::info!(provider = step.name(), error = %e, "provider failed; falling back");
        record.failed(step, e);
        Ok(None)
    }
}

#[async_trait]
impl Handler for Summarize {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let p = SummarizePayload::parse(&ctx.payload)
            .map_err(|e| JobError::non_retryable(e.to_string()))?;
        ctx.progress.set(5).await;
        let text = self.source_text(&p.source, &ctx).await?;
        ctx.progress.set(20).await;
        let source_language = language::detect_tag(&text);
        let language = p
            .language
            .clone()
            .or(source_language.map(str::to_owned))
            .unwrap_or_else(|| "en".to_owned());
        let req = SummaryRequest::new(
            &text,
            p.length,
            &language,
            language::english_name(&language),
        );
        let steps = chain::plan(
            p.providers.as_deref().unwrap_or(&DEFAULT_CHAIN),
            ctx.provider.as_deref(),
        );
        let mut record = Record::default();
        for (i, &step) in steps.iter().enumerate() {
            ctx.check_canceled()?;
            ctx.progress
                .set((20 + 70 * i / steps.len()).min(90) as u8)
                .await;
            let (summary, model, usage, summary_language) = match step {
                Step::Extractive => (
                    extractive::summarize(&text, p.length.extractive_chars()),
                    EXTRACTIVE_MODEL.to_owned(),
                    None,
                    // The text's own sentences: in the text's language.
                    source_language.map_or_else(|| language.clone(), str::to_owned),
                ),
                _ => match self.ask(step, &req, &ctx, &mut record).await? {
                    Some(c) => (c.text, c.model, c.usage, language.clone()),
                    None => continue,
                },
            };
            record.ok(step, format!("model {model}"));
            metrics::counter!(SUMMARIES, "provider" => step.name()).increment(1);
            tracing::debug!(provider = step.name(), chain = ?record.attempts, "summarized");
            ctx.progress.set(100).await;
            let mut result = json!({
                "summary": summary,
                "provider": step.name(),
                "model": model,
                "generated_at": chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "language": summary_language,
                "length": p.length,
                "chain": record.attempts,
            });
            if let Some(u) = usage {
                result["token_usage"] = json!(u);
            }
            if let Some(id) = &p.article_id {
                result["article_id"] = id.clone();
            }
            if let Some(l) = source_language {
                result["source_language"] = json!(l);
            }
            return Ok(result);
        }
        Err(record.exhausted())
    }

    fn defaults(&self) -> JobDefaults {
        JobDefaults {
            priority: Some(DEFAULT_PRIORITY),
            ..JobDefaults::default()
        }
    }

    fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
        SummarizePayload::parse(payload).map(|_| ())
    }
}

#[cfg(test)]
mod tests;
