//! An Anthropic messages client (`POST {base}/v1/messages` with `x-api-key`,
//! `anthropic-version: 2023-06-01` and the required `max_tokens`): the chain's second
//! provider, `claude`. Hand-written wire structs: only the fields a summary needs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kyu_actors::JobError;
use reqwest::header::HeaderName;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::call::Caller;
use super::prompt::SummaryRequest;
use super::{Completion, SummaryProvider, TokenUsage};
use crate::config::ProviderSettings;

/// The API version kyu speaks.
pub const API_VERSION: &str = "2023-06-01";

/// A messages endpoint with its key and model.
pub struct AnthropicMessages {
    caller: Caller,
    url: String,
    model: String,
}

impl AnthropicMessages {
    /// `None` when `s` has no key (the provider is then skipped).
    pub fn new(
        name: &'static str,
        s: &ProviderSettings,
        timeout: Duration,
        permits: Arc<Semaphore>,
    ) -> anyhow::Result<Option<AnthropicMessages>> {
        let Some(secret) = &s.api_key else {
            return Ok(None);
        };
        let auth = (
            HeaderName::from_static("x-api-key"),
            secret.expose().to_owned(),
        );
        Ok(Some(AnthropicMessages {
            caller: Caller::new(name, timeout, permits, secret.expose(), auth)?,
            url: format!("{}/v1/messages", s.base_url.trim_end_matches('/')),
            model: s.model.clone(),
        }))
    }
}

#[async_trait]
impl SummaryProvider for AnthropicMessages {
    fn name(&self) -> &'static str {
        self.caller.who
    }

    fn model(&self) -> &str {
        &self.model
    }

    async fn summarize(
        &self,
        req: &SummaryRequest,
        cancel: &CancellationToken,
    ) -> Result<Completion, JobError> {
        let body = messages_request(&self.model, req);
        let request = self
            .caller
            .post_json(&self.url, &body)
            .header("anthropic-version", API_VERSION);
        let answer: MessagesResponse = self.caller.send_json(request, cancel).await?;
        self.caller
            .finish(completion(answer, &self.model, self.caller.who))
    }
}

#[derive(Debug, Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    system: String,
    messages: [Message<'a>; 1],
    temperature: f32,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Debug, Deserialize)]
struct MessagesResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<ContentBlock>,
    #[serde(default)]
    usage: Option<Usage>,
}

/// A block of the answer; only `text` blocks carry the summary.
#[derive(Debug, Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
}

fn messages_request<'a>(model: &'a str, req: &'a SummaryRequest) -> MessagesRequest<'a> {
    MessagesRequest {
        model,
        max_tokens: req.length.max_tokens(),
        system: req.instructions(),
        messages: [Message {
            role: "user",
            content: req.article(),
        }],
        temperature: 0.2,
    }
}

/// The text blocks joined; an answer without text is worth another try.
fn completion(
    answer: MessagesResponse,
    default_model: &str,
    who: &str,
) -> Result<Completion, JobError> {
    let text: String = answer
        .content
        .into_iter()
        .filter(|b| b.kind == "text")
        .filter_map(|b| b.text)
        .collect::<Vec<_>>()
        .join("\n");
    let text = text.trim();
    if text.is_empty() {
        return Err(JobError::retryable(format!(
            "{who} answered without a summary"
        )));
    }
    Ok(Completion {
        text: text.to_owned(),
        model: answer.model.unwrap_or_else(|| default_model.to_owned()),
        usage: answer.usage.map(|u| TokenUsage {
            input: u.input_tokens,
            output: u.output_tokens,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::prompt::SummaryLength;
    use serde_json::json;

    #[test]
    fn request_has_max_tokens_system_and_one_user_message() {
        let r = SummaryRequest::new("記事。", SummaryLength::Long, "ja", Some("Japanese"));
        let v = serde_json::to_value(messages_request("claude-haiku-4-5", &r)).unwrap();
        assert_eq!(v["model"], "claude-haiku-4-5");
        assert_eq!(v["max_tokens"], SummaryLength::Long.max_tokens());
        assert!(v["system"].as_str().unwrap().contains("Japanese"));
        assert_eq!(
            v["messages"],
            json!([{"role": "user", "content": "記事。"}])
        );
    }

    #[test]
    fn parses_text_blocks_model_and_usage() {
        let a: MessagesResponse = serde_json::from_value(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "thinking", "thinking": "…"}, {"type": "text", "text": "要約。"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 20, "output_tokens": 5}
        }))
        .unwrap();
        let c = completion(a, "default", "claude").unwrap();
        assert_eq!(c.text, "要約。");
        assert_eq!(c.model, "claude-x");
        assert_eq!(
            c.usage,
            Some(TokenUsage {
                input: 20,
                output: 5
            })
        );
    }

    #[test]
    fn an_answer_without_text_is_retryable() {
        for v in [
            json!({"content": []}),
            json!({"content": [{"type": "tool_use", "id": "t"}]}),
            json!({"content": [{"type": "text", "text": ""}]}),
        ] {
            let a: MessagesResponse = serde_json::from_value(v).unwrap();
            let e = completion(a, "m", "claude").unwrap_err();
            assert_eq!(e.kind().as_str(), "retryable");
        }
    }
}
