//! The handler in-process: chains without keys, the job's provider as the start, the
//! local token check before another provider, cancellation during a slow request.
//! Engine-level paths (real binary, HTTP) are in `tests/summarize.rs`.

use std::time::Duration;

use kyu_actors::{Limit, RateLimits};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::config::Secret;

const EN: &str = "Kyu runs jobs. It keeps them in a database. It retries failures.";
const JA: &str = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。";

fn handler(s: &Settings) -> Summarize {
    let extract = Arc::new(ExtractContent::new(&s.fetch).unwrap());
    Summarize::new(s, extract).unwrap()
}

fn ctx(payload: Value) -> JobContext {
    JobContext::detached("summarize", payload)
}

fn groq_answer(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "model": "fake-llama",
        "choices": [{"message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2}
    }))
}

async fn groq_server(answer: ResponseTemplate) -> (MockServer, Settings) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(answer)
        .mount(&server)
        .await;
    let mut s = Settings::default();
    s.groq.api_key = Some(Secret("gsk-unit".into()));
    s.groq.base_url = server.uri();
    (server, s)
}

fn chain_of(result: &Value) -> Vec<(String, String)> {
    result["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().unwrap().to_owned(),
                a["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn without_keys_the_offline_summary_answers() {
    let h = handler(&Settings::default());
    let r = h
        .run(ctx(json!({"text": EN, "article_id": 7, "length": "short"})))
        .await
        .unwrap();
    assert_eq!(r["provider"], "extractive");
    assert_eq!(r["model"], EXTRACTIVE_MODEL);
    assert_eq!(r["language"], "en");
    assert_eq!(r["article_id"], 7);
    assert!(EN.starts_with(r["summary"].as_str().unwrap()));
    assert!(r.get("token_usage").is_none());
    assert_eq!(
        chain_of(&r),
        pairs(&[
            ("groq", "skipped"),
            ("claude", "skipped"),
            ("extractive", "ok")
        ])
    );
    chrono::DateTime::parse_from_rfc3339(r["generated_at"].as_str().unwrap()).unwrap();
}

#[tokio::test]
async fn japanese_is_detected_and_kept() {
    let h = handler(&Settings::default());
    let r = h
        .run(ctx(json!({"text": JA, "providers": ["extractive"]})))
        .await
        .unwrap();
    assert_eq!(r["language"], "ja");
    assert_eq!(r["summary"], JA);
    assert_eq!(chain_of(&r), pairs(&[("extractive", "ok")]));
}

#[tokio::test]
async fn a_claude_bound_job_starts_at_claude() {
    let (server, s) = groq_server(groq_answer("never")).await;
    let h = handler(&s);
    let mut c = ctx(json!({"text": EN}));
    c.provider = Some("claude".into());
    let r = h.run(c).await.unwrap();
    assert_eq!(
        chain_of(&r),
        pairs(&[("claude", "skipped"), ("extractive", "ok")])
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn groq_answers_with_model_usage_and_the_requested_language() {
    let (_server, s) = groq_server(groq_answer("A summary.")).await;
    let r = handler(&s)
        .run(ctx(json!({"text": JA, "language": "en"})))
        .await
        .unwrap();
    assert_eq!(r["summary"], "A summary.");
    assert_eq!(r["provider"], "groq");
    assert_eq!(r["model"], "fake-llama");
    assert_eq!(r["language"], "en");
    assert_eq!(r["source_language"], "ja");
    assert_eq!(r["token_usage"], json!({"input": 10, "output": 2}));
}

#[tokio::test]
async fn no_token_for_another_provider_falls_back_or_reschedules() {
    let (server, mut s) = groq_server(groq_answer("A summary.")).await;
    let limits = RateLimits::local(Limit {
        per_minute: 1,
        burst: 1,
    });
    let with_limits = |payload: Value| {
        let mut c = ctx(payload);
        c.limits = limits.clone();
        c
    };
    let h = handler(&s);
    let first = h.run(with_limits(json!({"text": EN}))).await.unwrap();
    assert_eq!(first["provider"], "groq");
    let second = h.run(with_limits(json!({"text": EN}))).await.unwrap();
    assert_eq!(second["provider"], "extractive");
    assert_eq!(chain_of(&second)[0], ("groq".into(), "rate_limited".into()));

    // Without fallback the job snoozes: nothing was asked of Groq, so no attempt is
    // spent waiting for its token.
    s.ai_fallback_enabled = false;
    match handler(&s).run(with_limits(json!({"text": EN}))).await {
        Err(JobError::Snooze { after, .. }) => {
            assert!(after > Duration::from_secs(1), "{after:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn cancel_stops_a_slow_request() {
    let (server, s) = groq_server(groq_answer("late").set_delay(Duration::from_secs(30))).await;
    let h = Arc::new(handler(&s));
    let c = ctx(json!({"text": EN}));
    let cancel = c.cancel.clone();
    let run = tokio::spawn({
        let h = h.clone();
        async move { h.run(c).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.received_requests().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no request arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("canceled promptly")
        .unwrap();
    assert!(matches!(r, Err(JobError::Canceled(_))), "{r:?}");
}

#[test]
fn summaries_are_high_priority_and_payloads_are_checked() {
    let h = handler(&Settings::default());
    assert_eq!(h.defaults().priority, Some(7));
    assert!(h.validate(&json!({"text": "x"})).is_ok());
    assert_eq!(
        h.validate(&json!({"url": "file:///etc"}))
            .unwrap_err()
            .field,
        "url"
    );
}

#[tokio::test]
async fn a_429_cools_the_provider_down_then_falls_back_or_not() {
    let (_server, mut s) = groq_server(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "7")
            .set_body_string("slow down"),
    )
    .await;
    let limits = RateLimits::local(Limit {
        per_minute: 600,
        burst: 10,
    });
    let mut c = ctx(json!({"text": EN}));
    c.limits = limits.clone();
    let r = handler(&s).run(c.clone()).await.unwrap();
    assert_eq!(r["provider"], "extractive");
    assert_eq!(chain_of(&r)[0], ("groq".into(), "rate_limited".into()));
    let wait = limits.try_acquire("groq").await.unwrap_err();
    assert!(wait > Duration::from_secs(5), "{wait:?}");
    assert!(
        limits.try_acquire("claude").await.is_ok(),
        "only groq cools down"
    );

    s.ai_fallback_enabled = false;
    c.provider = Some("groq".into());
    match handler(&s).run(c).await {
        Err(JobError::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn without_fallback_a_401_is_final_and_redacted() {
    let (_server, mut s) = groq_server(
        ResponseTemplate::new(401).set_body_string("Incorrect API key provided: gsk-unit"),
    )
    .await;
    s.ai_fallback_enabled = false;
    match handler(&s).run(ctx(json!({"text": EN}))).await {
        Err(JobError::NonRetryable(m)) => {
            assert!(m.contains("401") && m.contains("[redacted]"), "{m}");
            assert!(!m.contains("gsk-unit"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}
