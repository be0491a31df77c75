//! Fake AI providers on loopback for the `summarize` tests: wiremock servers that speak
//! Groq's (OpenAI chat completions) and Anthropic's (messages) wire formats. Each checks
//! the request as the real API would (path, key header, `anthropic-version`, required
//! body fields), answers as the test says (a summary, 429 with Retry-After, 500, a slow
//! answer, malformed JSON, a 401 that echoes the key back), and records when every
//! request arrived, so tests count requests per provider and per minute.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// How the fake answers the next requests.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this summary.
    Summary(String),
    /// 429 with `Retry-After: secs`.
    RateLimited { retry_after_secs: u64 },
    /// 500.
    ServerError,
    /// A summary, but only after this long.
    Slow(Duration),
    /// 200 with a body that is not JSON.
    Malformed,
    /// 401 whose message quotes the key it was sent.
    Unauthorized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    OpenAi,
    Anthropic,
}

struct State {
    wire: Wire,
    key: String,
    reply: Mutex<Reply>,
    hits: Mutex<Vec<Instant>>,
    bad_requests: AtomicUsize,
}

/// One fake provider.
pub struct FakeProvider {
    pub server: MockServer,
    state: Arc<State>,
}

impl FakeProvider {
    /// Groq: `POST /openai/v1/chat/completions` with `Authorization: Bearer <key>`.
    pub async fn groq(key: &str) -> FakeProvider {
        Self::start(
            Wire::OpenAi,
            key,
            "/openai/v1/chat/completions",
            "groq summary",
        )
        .await
    }

    /// Anthropic: `POST /v1/messages` with `x-api-key` and `anthropic-version`.
    pub async fn claude(key: &str) -> FakeProvider {
        Self::start(Wire::Anthropic, key, "/v1/messages", "claude summary").await
    }

    async fn start(wire: Wire, key: &str, at: &str, summary: &str) -> FakeProvider {
        let server = MockServer::builder()
            .body_print_limit(wiremock::BodyPrintLimit::Limited(200))
            .disable_request_recording()
            .start()
            .await;
        let state = Arc::new(State {
            wire,
            key: key.to_owned(),
            reply: Mutex::new(Reply::Summary(summary.to_owned())),
            hits: Mutex::new(Vec::new()),
            bad_requests: AtomicUsize::new(0),
        });
        Mock::given(method("POST"))
            .and(path(at))
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        FakeProvider { server, state }
    }

    /// How to answer from now on.
    pub fn reply(&self, r: Reply) {
        *self.state.reply.lock().unwrap() = r;
    }

    /// Requests that reached the API path.
    pub fn hits(&self) -> usize {
        self.state.hits.lock().unwrap().len()
    }

    /// When each request arrived, in order.
    pub fn hit_times(&self) -> Vec<Instant> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Requests the real API would have refused (missing header or field).
    pub fn bad_requests(&self) -> usize {
        self.state.bad_requests.load(Ordering::SeqCst)
    }

    /// The env that points kyu at this fake, with its key.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self.state.wire {
            Wire::OpenAi => vec![
                ("GROQ_BASE_URL", format!("{}/openai/v1", self.server.uri())),
                ("GROQ_API_KEY", self.state.key.clone()),
                ("GROQ_MODEL", "fake-llama".into()),
            ],
            Wire::Anthropic => vec![
                ("ANTHROPIC_BASE_URL", self.server.uri()),
                ("ANTHROPIC_API_KEY", self.state.key.clone()),
                ("ANTHROPIC_MODEL", "fake-claude".into()),
            ],
        }
    }
}

struct Responder(Arc<State>);

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let s = &self.0;
        s.hits.lock().unwrap().push(Instant::now());
        let reply = s.reply.lock().unwrap().clone();
        let sent_key = match s.wire {
            Wire::OpenAi => header(req, "authorization")
                .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned)),
            Wire::Anthropic => header(req, "x-api-key"),
        };
        if let Reply::Unauthorized = reply {
            let echoed = sent_key.unwrap_or_default();
            return error(401, &format!("Incorrect API key provided: {echoed}"));
        }
        if sent_key.as_deref() != Some(s.key.as_str()) {
            return error(401, "missing or wrong key");
        }
        if let Err(why) = check_body(s.wire, req) {
            s.bad_requests.fetch_add(1, Ordering::SeqCst);
            return error(400, why);
        }
        match reply {
            Reply::Summary(text) => ResponseTemplate::new(200).set_body_json(answer(s.wire, &text)),
            Reply::Slow(d) => ResponseTemplate::new(200)
                .set_body_json(answer(s.wire, "slow summary"))
                .set_delay(d),
            Reply::RateLimited { retry_after_secs } => error(429, "rate limit reached")
                .insert_header("retry-after", retry_after_secs.to_string().as_str()),
            Reply::ServerError => error(500, "internal error"),
            Reply::Malformed => {
                ResponseTemplate::new(200).set_body_raw("{\"choices\": [", "application/json")
            }
            Reply::Unauthorized => unreachable!("answered above"),
        }
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// What the real API insists on.
fn check_body(wire: Wire, req: &Request) -> Result<(), &'static str> {
    let body: Value = serde_json::from_slice(&req.body).map_err(|_| "body is not JSON")?;
    if !body["model"].is_string() {
        return Err("model is required");
    }
    let messages = body["messages"].as_array().ok_or("messages is required")?;
    let last = messages.last().ok_or("messages is empty")?;
    if last["role"] != "user" || last["content"].as_str().is_none_or(str::is_empty) {
        return Err("the last message must be the user's text");
    }
    if wire == Wire::Anthropic {
        if header(req, "anthropic-version").as_deref() != Some("2023-06-01") {
            return Err("anthropic-version header is required");
        }
        if body["max_tokens"].as_u64().is_none_or(|n| n == 0) {
            return Err("max_tokens is required");
        }
    }
    Ok(())
}

fn answer(wire: Wire, text: &str) -> Value {
    match wire {
        Wire::OpenAi => json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "fake-llama",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        }),
        Wire::Anthropic => json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "fake-claude",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 120, "output_tokens": 12}
        }),
    }
}

fn error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"type": "error", "error": {"type": "error", "message": message}}))
}
