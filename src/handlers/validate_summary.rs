//! `validate_summary` (要約品質チェック, a summary quality check): checks a summary against its
//! source before an application shows it, without calling any model.
//!
//! Payload: `{summary, source, language? ("ja", "en-US", "jpn"), min_chars?,
//! max_chars?}`. Result: `{ok, checks: [{name, ok, detail}]}` with the checks
//! `not_empty`, `length`, `language`, `overlap` and `no_repetition` (see [`checks`]).
//! A failing check still completes the job: the check ran, and its verdict
//! (`ok: false`) is the result. Only a malformed payload fails (422 at enqueue).

pub mod checks;
pub mod text;

use async_trait::async_trait;
use kyu_actors::{Handler, JobContext, JobError, PayloadError};
use serde_json::{Value, json};
use whatlang::Lang;

use super::language as lang;

use checks::Check;

/// The `validate_summary` job type.
pub struct ValidateSummary;

/// A checked payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub summary: String,
    pub source: String,
    /// The language the summary must be in; `None`: the source's.
    pub language: Option<Lang>,
    pub min_chars: Option<usize>,
    pub max_chars: Option<usize>,
}

impl Input {
    /// Reads the payload; the error names the field at fault.
    pub fn parse(payload: &Value) -> Result<Input, PayloadError> {
        if !payload.is_object() {
            return Err(PayloadError::new("", "must be an object"));
        }
        let summary = string(payload, "summary")?;
        let source = string(payload, "source")?;
        if source.trim().is_empty() {
            return Err(PayloadError::new("source", "must not be empty"));
        }
        let language = match payload.get("language") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(lang::parse(s).ok_or_else(|| {
                PayloadError::new(
                    "language",
                    "not a language code kyu can detect (like ja, en)",
                )
            })?),
            Some(_) => return Err(PayloadError::new("language", "must be a string")),
        };
        let min_chars = bound(payload, "min_chars")?;
        let max_chars = bound(payload, "max_chars")?;
        if max_chars == Some(0) {
            return Err(PayloadError::new("max_chars", "must be at least 1"));
        }
        if let (Some(lo), Some(hi)) = (min_chars, max_chars)
            && lo > hi
        {
            return Err(PayloadError::new(
                "min_chars",
                "must not be above max_chars",
            ));
        }
        Ok(Input {
            summary,
            source,
            language,
            min_chars,
            max_chars,
        })
    }

    /// Every check, in order.
    pub fn checks(&self) -> Vec<Check> {
        vec![
            checks::not_empty(&self.summary),
            checks::length(&self.summary, &self.source, self.min_chars, self.max_chars),
            checks::language(&self.summary, &self.source, self.language),
            checks::overlap(&self.summary, &self.source),
            checks::no_repetition(&self.summary),
        ]
    }

    /// The job's result: `{ok, checks}`.
    pub fn report(&self) -> Value {
        let checks = self.checks();
        json!({ "ok": checks.iter().all(|c| c.ok), "checks": checks })
    }
}

fn string(payload: &Value, field: &str) -> Result<String, PayloadError> {
    match payload.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(PayloadError::new(field, "is required")),
        Some(_) => Err(PayloadError::new(field, "must be a string")),
    }
}

fn bound(payload: &Value, field: &str) -> Result<Option<usize>, PayloadError> {
    match payload.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| PayloadError::new(field, "must be a whole number of characters")),
    }
}

#[async_trait]
impl Handler for ValidateSummary {
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let input =
            Input::parse(&ctx.payload).map_err(|e| JobError::non_retryable(e.to_string()))?;
        // Checks are CPU work on texts of bounded size: run them off the async threads.
        tokio::task::spawn_blocking(move || input.report())
            .await
            .map_err(|e| {
                if e.is_panic() {
                    JobError::non_retryable("the checks failed on this input")
                } else {
                    JobError::retryable("the checks were stopped before they finished")
                }
            })
    }

    fn validate(&self, payload: &Value) -> Result<(), PayloadError> {
        Input::parse(payload).map(|_| ())
    }
}

#[cfg(test)]
mod tests;
