//! The handler against a loopback receiver (the end-to-end cases through the real
//! binary are in tests/webhook.rs): redirects, the body cap, cancellation, and the
//! secret staying out of errors.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::any;
use serde_json::json;

use super::*;
use crate::config::{Secret, WebhookSettings};

const SECRET: &str = "whsec_unit_do_not_leak";

/// A receiver on 127.0.0.1 serving `app`; its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn webhook(timeout: Duration) -> Webhook {
    Webhook::new(&WebhookSettings {
        secret: Some(Secret(SECRET.into())),
        allow_private: true,
        timeout,
    })
    .unwrap()
}

fn ctx(url: &str) -> JobContext {
    JobContext::detached("http", json!({ "url": url, "body": {"n": 1} }))
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let base = serve(Router::new().route(
        "/",
        any(|| async { (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")], "") }),
    ))
    .await;
    let e = webhook(Duration::from_secs(5))
        .run(ctx(&format!("{base}/")))
        .await
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "non_retryable", "{e}");
    assert!(e.to_string().contains("redirects are not followed"), "{e}");
    assert!(!e.to_string().contains(SECRET));
}

#[tokio::test]
async fn long_answers_are_capped() {
    let big = "x".repeat(response::MAX_BODY_BYTES * 3);
    let base = serve(Router::new().route("/", any(move || async move { big }))).await;
    let v = webhook(Duration::from_secs(5))
        .run(ctx(&format!("{base}/")))
        .await
        .unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["truncated"], true);
    assert_eq!(v["body"].as_str().unwrap().len(), response::MAX_BODY_BYTES);
}

#[tokio::test]
async fn json_answers_stay_json_and_the_request_is_signed() {
    let base = serve(Router::new().route(
        "/",
        any(|h: HeaderMap, body: String| async move {
            let ts: i64 = h["x-kyu-timestamp"].to_str().unwrap().parse().unwrap();
            let sig = h["x-kyu-signature"].to_str().unwrap();
            axum::Json(json!({
                "valid": signature::verify(SECRET.as_bytes(), ts, body.as_bytes(), sig),
                "type": h["content-type"].to_str().unwrap(),
                "attempt": h["x-kyu-attempt"].to_str().unwrap(),
            }))
        }),
    ))
    .await;
    let v = webhook(Duration::from_secs(5))
        .run(ctx(&format!("{base}/")))
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"status": 200, "truncated": false, "body": {
            "valid": true, "type": "application/json", "attempt": "1"
        }})
    );
}

#[tokio::test]
async fn cancellation_stops_a_hanging_call() {
    let (arrived, mut on_arrival) = tokio::sync::mpsc::channel::<()>(1);
    let base = serve(Router::new().route(
        "/",
        any(move || {
            let arrived = arrived.clone();
            async move {
                let _ = arrived.send(()).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
                ""
            }
        }),
    ))
    .await;
    let c = ctx(&format!("{base}/"));
    let cancel = c.cancel.clone();
    let hook = webhook(Duration::from_secs(60));
    let run = tokio::spawn(async move { hook.run(c).await });
    on_arrival.recv().await.expect("the request arrives");
    cancel.cancel();
    let e = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the call stops once canceled")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "canceled");
}

#[tokio::test]
async fn an_empty_secret_does_not_sign() {
    let base = serve(Router::new().route(
        "/",
        any(|h: HeaderMap| async move { h.contains_key("x-kyu-signature").to_string() }),
    ))
    .await;
    let hook = Webhook::new(&WebhookSettings {
        secret: Some(Secret(String::new())),
        allow_private: true,
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let v = hook.run(ctx(&format!("{base}/"))).await.unwrap();
    assert_eq!(v["body"], "false");
}

#[tokio::test]
async fn unreachable_receivers_are_retryable_and_loopback_is_refused_by_default() {
    // A port nothing listens on: bind, note it, drop the listener.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    drop(l);
    let e = webhook(Duration::from_secs(5))
        .run(ctx(&url))
        .await
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "retryable", "{e}");

    let guarded = Webhook::new(&WebhookSettings {
        secret: None,
        allow_private: false,
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let e = guarded.run(ctx(&url)).await.unwrap_err();
    assert_eq!(e.kind().as_str(), "non_retryable", "{e}");
    // The refusal names the webhook's setting, not extract_content's.
    assert!(
        e.to_string().contains("KYU_WEBHOOK_ALLOW_PRIVATE=true"),
        "{e}"
    );
    assert!(!e.to_string().contains("KYU_FETCH"), "{e}");
}
