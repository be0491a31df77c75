//! The provider chain of `summarize`: Groq → Claude → extractive by
//! default or as the payload overrides it, started at the job's own provider, and the
//! record of what each step did (`chain` in the result, and the error when every step
//! failed).

use std::time::Duration;

use kyu_actors::JobError;
use serde::Serialize;

use crate::providers::{CLAUDE, EXTRACTIVE, GROQ};

/// One step of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Groq,
    Claude,
    Extractive,
}

/// The chain when the payload does not say.
pub const DEFAULT_CHAIN: [Step; 3] = [Step::Groq, Step::Claude, Step::Extractive];

impl Step {
    pub fn parse(name: &str) -> Option<Step> {
        match name {
            GROQ => Some(Step::Groq),
            CLAUDE => Some(Step::Claude),
            EXTRACTIVE => Some(Step::Extractive),
            _ => None,
        }
    }

    /// The chain and bucket name.
    pub fn name(self) -> &'static str {
        match self {
            Step::Groq => GROQ,
            Step::Claude => CLAUDE,
            Step::Extractive => EXTRACTIVE,
        }
    }
}

/// The steps to try: `chain` from the job's own provider on (a Claude-bound job skips
/// Groq), or all of it when the job's provider is not in it.
pub fn plan(chain: &[Step], job_provider: Option<&str>) -> Vec<Step> {
    let start = job_provider
        .and_then(|p| chain.iter().position(|s| s.name() == p))
        .unwrap_or(0);
    chain[start..].to_vec()
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Skipped,
    RateLimited,
    Failed,
}

/// One line of the result's `chain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub provider: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

/// The steps tried so far and the errors they gave.
#[derive(Debug, Default)]
pub struct Record {
    pub attempts: Vec<Attempt>,
    errors: Vec<JobError>,
}

impl Record {
    pub fn ok(&mut self, step: Step, detail: impl Into<String>) {
        self.push(step, Outcome::Ok, detail.into());
    }

    pub fn skipped(&mut self, step: Step, detail: impl Into<String>) {
        self.push(step, Outcome::Skipped, detail.into());
    }

    /// A step that failed; its error decides the job's error if no later step answers.
    pub fn failed(&mut self, step: Step, e: JobError) {
        let outcome = match e {
            JobError::RateLimited { .. } => Outcome::RateLimited,
            _ => Outcome::Failed,
        };
        self.push(step, outcome, e.to_string());
        self.errors.push(e);
    }

    fn push(&mut self, step: Step, outcome: Outcome, detail: String) {
        self.attempts.push(Attempt {
            provider: step.name(),
            outcome,
            detail,
        });
    }

    /// The job's error when no step answered: rate-limited (at the soonest wait) if any
    /// step was, else retryable if any step may do better later, else non-retryable
    /// (all refused for good, or nothing was configured).
    pub fn exhausted(&self) -> JobError {
        let steps: Vec<String> = self
            .attempts
            .iter()
            .map(|a| format!("{} {}: {}", a.provider, outcome_word(a.outcome), a.detail))
            .collect();
        let message = format!("no provider could summarize ({})", steps.join("; "));
        let soonest: Option<Duration> = self
            .errors
            .iter()
            .filter_map(|e| match e {
                JobError::RateLimited { retry_after, .. } => *retry_after,
                _ => None,
            })
            .min();
        if self
            .errors
            .iter()
            .any(|e| matches!(e, JobError::RateLimited { .. }))
        {
            JobError::RateLimited {
                message,
                retry_after: soonest,
            }
        } else if self
            .errors
            .iter()
            .any(|e| matches!(e, JobError::Retryable(_)))
        {
            JobError::Retryable(message)
        } else {
            JobError::NonRetryable(message)
        }
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Skipped => "skipped",
        Outcome::RateLimited => "rate_limited",
        Outcome::Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_provider_picks_the_start() {
        assert_eq!(plan(&DEFAULT_CHAIN, None), DEFAULT_CHAIN.to_vec());
        assert_eq!(plan(&DEFAULT_CHAIN, Some("groq")), DEFAULT_CHAIN.to_vec());
        assert_eq!(
            plan(&DEFAULT_CHAIN, Some("claude")),
            vec![Step::Claude, Step::Extractive]
        );
        assert_eq!(plan(&DEFAULT_CHAIN, Some("openai")), DEFAULT_CHAIN.to_vec());
        assert_eq!(
            plan(&[Step::Extractive], Some("groq")),
            vec![Step::Extractive]
        );
    }

    #[test]
    fn names_round_trip() {
        for s in DEFAULT_CHAIN {
            assert_eq!(Step::parse(s.name()), Some(s));
        }
        assert_eq!(Step::parse("gpt"), None);
    }

    #[test]
    fn exhausted_chains_say_what_to_do_next() {
        let mut r = Record::default();
        r.skipped(Step::Groq, "no API key configured");
        assert_eq!(r.exhausted().kind().as_str(), "non_retryable");
        r.failed(Step::Claude, JobError::retryable("claude answered 503"));
        assert_eq!(r.exhausted().kind().as_str(), "retryable");
        r.failed(
            Step::Groq,
            JobError::RateLimited {
                message: "429".into(),
                retry_after: Some(Duration::from_secs(9)),
            },
        );
        match r.exhausted() {
            JobError::RateLimited {
                message,
                retry_after,
            } => {
                assert_eq!(retry_after, Some(Duration::from_secs(9)));
                assert!(message.contains("groq skipped: no API key configured"));
                assert!(message.contains("claude failed: claude answered 503"));
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(r.attempts[2].outcome, Outcome::RateLimited);
    }
}
