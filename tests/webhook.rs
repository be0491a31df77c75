//! The `http` (webhook) and `validate_summary` job types through a real `kyu serve`:
//! a loopback receiver (axum on 127.0.0.1:0) records every request and answers as
//! its path says, and the test reads the job back through the API.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::api::Server;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec_e2e_3f9a1c_never_print_me";

/// A request the receiver got.
#[derive(Clone)]
struct Hit {
    path: String,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

/// The loopback receiver. Paths: `/ok` answers 200 with what it checked,
/// `/status/N` answers N, `/busy` answers 429 (Retry-After: 2) once and then 200,
/// `/slow` answers after 5 s.
#[derive(Clone)]
struct Receiver {
    base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(receive).with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { base, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        let all = self.hits.lock().unwrap();
        all.iter().filter(|h| h.path == path).cloned().collect()
    }
}

async fn receive(
    State(hits): State<Arc<Mutex<Vec<Hit>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let hit = Hit {
        path: path.clone(),
        method: method.clone(),
        headers: headers.clone(),
        body: body.clone(),
        at: Instant::now(),
    };
    let seen = {
        let mut all = hits.lock().unwrap();
        all.push(hit.clone());
        all.iter().filter(|h| h.path == path).count()
    };
    match path.as_str() {
        "/ok" => axum::Json(json!({
            "signature_valid": signature_valid(&hit),
            "method": method.as_str(),
            "content_type": hit.header("content-type"),
            "got": String::from_utf8_lossy(&body),
        }))
        .into_response(),
        "/busy" if seen == 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "2")],
            "slow down",
        )
            .into_response(),
        "/busy" => "done".into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late".into_response()
        }
        p => match p.strip_prefix("/status/").and_then(|s| s.parse().ok()) {
            Some(code) => (StatusCode::from_u16(code).unwrap(), "as told").into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

/// The documented scheme, computed here independently of kyu's code:
/// `sha256=hex(HMAC-SHA256(secret, "<X-Kyu-Timestamp>.<body>"))`.
fn signature_valid(hit: &Hit) -> bool {
    let ts = hit.header("x-kyu-timestamp");
    let Some(sig) = hit.header("x-kyu-signature").strip_prefix("sha256=") else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&hit.body);
    let Ok(given) = hex::decode(sig) else {
        return false;
    };
    mac.verify_slice(&given).is_ok()
}

/// `kyu serve` that may call loopback, signs with [`SECRET`] and gives up on a
/// receiver after 1 s.
async fn kyu(tag: &str) -> Server {
    Server::start(
        tag,
        &[
            ("KYU_WEBHOOK_ALLOW_PRIVATE", "true".into()),
            ("KYU_WEBHOOK_SECRET", SECRET.into()),
            ("KYU_WEBHOOK_TIMEOUT", "1s".into()),
        ],
    )
    .await
}

fn error_kinds(job: &Value) -> Vec<&str> {
    job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

fn assert_secret_kept(s: &Server, job: &Value) {
    assert!(
        !job.to_string().contains(SECRET),
        "secret in the job: {job}"
    );
    assert!(!s.log_text().contains(SECRET), "secret in kyu's log");
}

#[tokio::test]
async fn a_2xx_completes_with_the_answer_signed_and_keyed() {
    let r = Receiver::start().await;
    let s = kyu("webhook-ok").await;
    let id = s
        .create(
            None,
            json!({"type": "http", "payload": {
                "url": r.url("/ok"),
                "headers": {"X-Custom": "yes"},
                "body": {"order": 42, "note": "日本語"}
            }}),
        )
        .await;
    let done = s.wait_status(&id, None, "completed").await;
    let answer = &done["result"];
    assert_eq!(answer["status"], 200, "{done}");
    assert_eq!(answer["truncated"], false);
    assert_eq!(answer["body"]["signature_valid"], true, "{done}");
    assert_eq!(answer["body"]["method"], "POST");
    assert_eq!(answer["body"]["content_type"], "application/json");
    let sent: Value = serde_json::from_str(answer["body"]["got"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"order": 42, "note": "日本語"}));

    let hits = r.hits("/ok");
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!(h.method, Method::POST);
    assert_eq!(h.header("idempotency-key"), id);
    assert_eq!(h.header("x-kyu-job-id"), id);
    assert_eq!(h.header("x-kyu-attempt"), "1");
    assert_eq!(h.header("x-custom"), "yes");
    let ts: i64 = h.header("x-kyu-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60, "{ts}");
    assert_secret_kept(&s, &done);

    // A string body goes as text, with the method asked for.
    let id = s
        .create(
            None,
            json!({"type": "http", "payload": {"url": r.url("/ok"), "method": "PUT", "body": "hi"}}),
        )
        .await;
    let done = s.wait_status(&id, None, "completed").await;
    let body = &done["result"]["body"];
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["content_type"], "text/plain; charset=utf-8");
    assert_eq!(body["got"], "hi");
    assert_eq!(body["signature_valid"], true);
}

#[tokio::test]
async fn a_404_fails_at_once_as_non_retryable() {
    let r = Receiver::start().await;
    let s = kyu("webhook-404").await;
    let id = s
        .create(
            None,
            json!({"type": "http", "payload": {"url": r.url("/status/404")}, "max_retries": 3}),
        )
        .await;
    let failed = s.wait_status(&id, None, "failed").await;
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert_eq!(error_kinds(&failed), ["non_retryable"]);
    assert!(failed["error"]["message"].as_str().unwrap().contains("404"));
    assert_eq!(r.hits("/status/404").len(), 1);
}

#[tokio::test]
async fn a_500_is_retried_with_the_same_idempotency_key() {
    let r = Receiver::start().await;
    let s = kyu("webhook-500").await;
    let id = s
        .create(
            None,
            json!({"type": "http", "payload": {"url": r.url("/status/500")}, "max_retries": 1}),
        )
        .await;
    let failed = s.wait_status(&id, None, "failed").await;
    assert_eq!(failed["attempts"], 2, "{failed}");
    assert_eq!(error_kinds(&failed), ["retryable", "retryable"]);
    let hits = r.hits("/status/500");
    let attempts: Vec<&str> = hits.iter().map(|h| h.header("x-kyu-attempt")).collect();
    assert_eq!(attempts, ["1", "2"]);
    assert!(hits.iter().all(|h| h.header("idempotency-key") == id));
    assert_secret_kept(&s, &failed);
}

#[tokio::test]
async fn a_429_is_rate_limit_and_the_retry_waits_for_retry_after() {
    let r = Receiver::start().await;
    let s = kyu("webhook-429").await;
    let id = s
        .create(
            None,
            json!({"type": "http", "payload": {"url": r.url("/busy")}, "max_retries": 2}),
        )
        .await;
    let done = s.wait_status(&id, None, "completed").await;
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(error_kinds(&done), ["rate_limit"]);
    assert_eq!(done["result"]["body"], "done");
    let hits = r.hits("/busy");
    assert_eq!(hits.len(), 2);
    // Retry-After: 2 — longer than the ~1 s back-off a retryable error would get.
    let gap = hits[1].at - hits[0].at;
    assert!(gap >= Duration::from_millis(1950), "retried after {gap:?}");
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_retryable() {
    let r = Receiver::start().await;
    let s = kyu("webhook-slow").await;
    let id = s
        .create(
            None,
            json!({"type": "http", "payload": {"url": r.url("/slow")}, "max_retries": 0}),
        )
        .await;
    let failed = s.wait_status(&id, None, "failed").await;
    assert_eq!(error_kinds(&failed), ["retryable"], "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{failed}"
    );
    assert_eq!(r.hits("/slow").len(), 1);
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let r = Receiver::start().await;
    let s = Server::start("webhook-guard", &[]).await;
    let port = r.base.rsplit(':').next().unwrap().to_owned();
    for url in [
        r.url("/ok"),
        format!("http://localhost:{port}/ok"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok"),
    ] {
        let id = s
            .create(
                None,
                json!({"type": "http", "payload": {"url": url}, "max_retries": 3}),
            )
            .await;
        let failed = s.wait_status(&id, None, "failed").await;
        assert_eq!(failed["attempts"], 1, "{url}: {failed}");
        assert_eq!(error_kinds(&failed), ["non_retryable"], "{url}: {failed}");
    }
    assert!(r.hits("/ok").is_empty(), "a request reached the receiver");
}

#[tokio::test]
async fn bad_payloads_are_refused_at_enqueue() {
    let s = Server::start("webhook-422", &[]).await;
    let cases = [
        (json!({}), "payload.url"),
        (json!({"url": "not a url"}), "payload.url"),
        (json!({"url": "file:///etc/passwd"}), "payload.url"),
        (
            json!({"url": "https://example.com", "method": "TRACE"}),
            "payload.method",
        ),
        (
            json!({"url": "https://example.com", "headers": ["X-A"]}),
            "payload.headers",
        ),
        (
            json!({"url": "https://example.com", "headers": {"X-A": 1}}),
            "payload.headers.X-A",
        ),
        (
            json!({"url": "https://example.com", "headers": {"Host": "evil"}}),
            "payload.headers.Host",
        ),
        (
            json!({"url": "https://example.com", "headers": {"X-Kyu-Signature": "forged"}}),
            "payload.headers.X-Kyu-Signature",
        ),
        (
            json!({"url": "https://example.com", "headers": {"X-Bad": "a\nb"}}),
            "payload.headers.X-Bad",
        ),
    ];
    for (payload, field) in cases {
        let a = s
            .post(
                "/api/v1/jobs",
                None,
                json!({"type": "http", "payload": payload}),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{payload}: {}",
            a.body
        );
        assert_eq!(a.code(), "invalid_payload", "{payload}");
        assert_eq!(a.field(), field, "{payload}: {}", a.body);
    }
    for (payload, field) in [
        (json!({"source": "text"}), "payload.summary"),
        (json!({"summary": "s", "source": 3}), "payload.source"),
        (
            json!({"summary": "s", "source": "t", "min_chars": 9, "max_chars": 3}),
            "payload.min_chars",
        ),
    ] {
        let a = s
            .post(
                "/api/v1/jobs",
                None,
                json!({"type": "validate_summary", "payload": payload}),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{payload}: {}",
            a.body
        );
        assert_eq!(a.field(), field, "{payload}: {}", a.body);
    }
}

#[tokio::test]
async fn validate_summary_runs_through_the_api() {
    let s = Server::start("validate-summary", &[]).await;
    let source = "市議会は火曜日、公共の自転車シェアリング事業を来年の春までに全ての地区へ\
        拡大する案を可決した。費用は約四百万ドルで、大部分は地域の交通補助金でまかなわれる。\
        市長は年内にバスに関する別の計画を示すと約束した。";
    let summary = "市議会は自転車シェアリング事業を全ての地区へ拡大する案を可決した。";
    let id = s
        .create(
            None,
            json!({"type": "validate_summary", "payload": {
                "summary": summary, "source": source, "language": "ja"
            }}),
        )
        .await;
    let done = s.wait_status(&id, None, "completed").await;
    assert_eq!(done["result"]["ok"], true, "{done:#}");
    let names: Vec<&str> = done["result"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "not_empty",
            "length",
            "language",
            "overlap",
            "no_repetition"
        ]
    );

    // A failing verdict still completes the job.
    let id = s
        .create(
            None,
            json!({"type": "validate_summary", "payload": {"summary": "", "source": source}}),
        )
        .await;
    let done = s.wait_status(&id, None, "completed").await;
    assert_eq!(done["result"]["ok"], false, "{done:#}");
}
