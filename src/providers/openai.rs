//! An OpenAI-compatible chat-completions client (`POST {base}/chat/completions`, bearer
//! key): Groq by default, any compatible server by `GROQ_BASE_URL`. Hand-written wire
//! structs: only the fields a summary needs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kyu_actors::JobError;
use reqwest::header::AUTHORIZATION;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::call::Caller;
use super::prompt::SummaryRequest;
use super::{Completion, SummaryProvider, TokenUsage};
use crate::config::ProviderSettings;

/// A chat-completions endpoint with its key and model.
pub struct OpenAiChat {
    caller: Caller,
    url: String,
    model: String,
}

impl OpenAiChat {
    /// `None` when `s` has no key (the provider is then skipped).
    pub fn new(
        name: &'static str,
        s: &ProviderSettings,
        timeout: Duration,
        permits: Arc<Semaphore>,
    ) -> anyhow::Result<Option<OpenAiChat>> {
        let Some(key) = &s.api_key else {
            return Ok(None);
        };
        let auth = (AUTHORIZATION, format!("Bearer {}", key.expose()));
        Ok(Some(OpenAiChat {
            caller: Caller::new(name, timeout, permits, key.expose(), auth)?,
            url: format!("{}/chat/completions", s.base_url.trim_end_matches('/')),
            model: s.model.clone(),
        }))
    }
}

#[async_trait]
impl SummaryProvider for OpenAiChat {
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
        let body = chat_request(&self.model, req);
        let request = self.caller.post_json(&self.url, &body);
        let answer: ChatResponse = self.caller.send_json(request, cancel).await?;
        self.caller
            .finish(completion(answer, &self.model, self.caller.who))
    }
}

#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: [ChatMessage<'a>; 2],
    max_tokens: u32,
    temperature: f32,
}

#[derive(Debug, Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: std::borrow::Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

fn chat_request<'a>(model: &'a str, req: &'a SummaryRequest) -> ChatRequest<'a> {
    ChatRequest {
        model,
        messages: [
            ChatMessage {
                role: "system",
                content: req.instructions().into(),
            },
            ChatMessage {
                role: "user",
                content: req.article().into(),
            },
        ],
        max_tokens: req.length.max_tokens(),
        temperature: 0.2,
    }
}

/// The first choice's text; an answer without one is worth another try.
fn completion(
    answer: ChatResponse,
    default_model: &str,
    who: &str,
) -> Result<Completion, JobError> {
    let text = answer
        .choices
        .into_iter()
        .next()
        .and_then(|c| c.message.content)
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| JobError::retryable(format!("{who} answered without a summary")))?;
    Ok(Completion {
        text,
        model: answer.model.unwrap_or_else(|| default_model.to_owned()),
        usage: answer.usage.map(|u| TokenUsage {
            input: u.prompt_tokens,
            output: u.completion_tokens,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::prompt::SummaryLength;
    use serde_json::json;

    #[test]
    fn request_has_system_and_user_messages() {
        let r = SummaryRequest::new("The article.", SummaryLength::Short, "en", Some("English"));
        let v = serde_json::to_value(chat_request("llama", &r)).unwrap();
        assert_eq!(v["model"], "llama");
        assert_eq!(v["messages"][0]["role"], "system");
        assert!(
            v["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("English")
        );
        assert_eq!(
            v["messages"][1],
            json!({"role": "user", "content": "The article."})
        );
        assert_eq!(v["max_tokens"], SummaryLength::Short.max_tokens());
    }

    #[test]
    fn parses_text_model_and_usage() {
        let a: ChatResponse = serde_json::from_value(json!({
            "id": "x", "object": "chat.completion", "model": "llama-3.1-8b-instant",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": " Sum. "},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
        }))
        .unwrap();
        let c = completion(a, "default", "groq").unwrap();
        assert_eq!(c.text, "Sum.");
        assert_eq!(c.model, "llama-3.1-8b-instant");
        assert_eq!(
            c.usage,
            Some(TokenUsage {
                input: 12,
                output: 3
            })
        );
    }

    #[test]
    fn an_answer_without_text_is_retryable() {
        for v in [
            json!({"choices": []}),
            json!({"choices": [{"message": {"content": null}}]}),
            json!({"choices": [{"message": {"content": "  "}}]}),
        ] {
            let a: ChatResponse = serde_json::from_value(v).unwrap();
            let e = completion(a, "m", "groq").unwrap_err();
            assert_eq!(e.kind().as_str(), "retryable");
        }
    }
}
