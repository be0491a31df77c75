//! Flow control over HTTP on a real `kyu serve` (SQLite), as seeds 000 and 002 use it:
//! a type's key made from the payload (`chatwork:{payload.user_id}`), its limit from a
//! pattern, priority by the token's tier (or the request's), a remote worker that gets
//! one job per key at a time, the key listing, the held-jobs gauge, and the 4xx answers
//! that name the field at fault.

mod common;

use std::time::Duration;

use common::api::{Server, Token};
use kyu::api::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn start(tokens: &[&Token]) -> Server {
    let lines: Vec<&str> = tokens.iter().map(|t| t.line.as_str()).collect();
    let env = [
        ("KYU_REMOTE_TYPE", r#"[{"name": "sync_rooms"}]"#.to_owned()),
        (
            "KYU_CONCURRENCY",
            r#"[{"key": "chatwork:*", "limit": 1}, {"key": "openai", "limit": 3}]"#.to_owned(),
        ),
        (
            "KYU_CONCURRENCY_KEY",
            r#"[{"type": "sync_rooms", "key": "chatwork:{payload.user_id}"}]"#.to_owned(),
        ),
        (
            "KYU_TIER_PRIORITY",
            r#"[{"tier": "pro", "type": "sync_rooms", "priority": 9}]"#.to_owned(),
        ),
        ("KYU_TIERS", "alice=pro".to_owned()),
        ("KYU_API_TOKENS", lines.join(",")),
        ("KYU_METRICS_SAMPLE_INTERVAL", "100ms".to_owned()),
    ];
    Server::start("api-flow", &env).await
}

async fn fetch(s: &Server, token: &Token, max: u32) -> Vec<Value> {
    let a = s
        .post(
            "/api/v1/fetch",
            Some(token),
            json!({"worker_id": "rooms-worker", "types": ["sync_rooms"], "max": max, "wait_ms": 0}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["jobs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_limits_and_tiers_over_http() {
    let admin = Token::new("ops", Role::Admin);
    let alice = Token::new("alice", Role::User);
    let bob = Token::new("bob", Role::User);
    let worker = Token::new("rooms", Role::Worker);
    let s = start(&[&admin, &alice, &bob, &worker]).await;

    // Alice (tier pro by her token): three syncs of user 7's rooms, at priority 9.
    let mut alice_jobs = Vec::new();
    for _ in 0..3 {
        alice_jobs.push(
            s.create(
                Some(&alice),
                json!({"type": "sync_rooms", "payload": {"user_id": 7}}),
            )
            .await,
        );
    }
    let job = s
        .get(&format!("/api/v1/jobs/{}", alice_jobs[0]), Some(&alice))
        .await;
    assert_eq!(job.body["concurrency_key"], "chatwork:7", "{}", job.body);
    assert_eq!(job.body["priority"], 9);
    // Bob (no tier on his token): the type's default priority; he may not name a
    // tier, an admin creating for a pro user may.
    let bob_plain = s
        .create(
            Some(&bob),
            json!({"type": "sync_rooms", "payload": {"user_id": 8}}),
        )
        .await;
    let job = s
        .get(&format!("/api/v1/jobs/{bob_plain}"), Some(&bob))
        .await;
    assert_eq!(job.body["priority"], 5, "{}", job.body);
    let a = s
        .post(
            "/api/v1/jobs",
            Some(&bob),
            json!({"type": "sync_rooms", "payload": {"user_id": 9}, "tier": "pro"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(a.field(), "tier");
    let pro = s
        .create(
            Some(&admin),
            json!({"type": "sync_rooms", "payload": {"user_id": 9}, "tier": "pro", "tenant": "carol"}),
        )
        .await;
    let job = s.get(&format!("/api/v1/jobs/{pro}"), Some(&admin)).await;
    assert_eq!(job.body["priority"], 9, "{}", job.body);

    // Bad input names the field.
    let a = s
        .post(
            "/api/v1/jobs",
            Some(&alice),
            json!({"type": "sync_rooms", "payload": {"room": 1}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(a.field(), "payload.user_id");
    let a = s
        .post(
            "/api/v1/jobs",
            Some(&alice),
            json!({"type": "sync_rooms", "payload": {"user_id": 1}, "concurrency_limit": 0}),
        )
        .await;
    assert!(a.status.is_client_error(), "{}", a.body);
    assert_eq!(a.field(), "concurrency_limit", "{}", a.body);
    let a = s
        .post(
            "/api/v1/jobs",
            Some(&alice),
            json!({"type": "sync_rooms", "payload": {"user_id": 1}, "concurrency_key": ""}),
        )
        .await;
    assert!(a.status.is_client_error(), "{}", a.body);
    assert_eq!(a.field(), "concurrency_key", "{}", a.body);

    // A remote worker asking for 10 gets one job per key: user 7, 8 and 9.
    let got = fetch(&s, &worker, 10).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(fetch(&s, &worker, 10).await.is_empty());

    let keys = s.get("/api/v1/concurrency", Some(&admin)).await;
    assert_eq!(keys.status, StatusCode::OK, "{}", keys.body);
    assert_eq!(
        keys.body["keys"],
        json!([{"key": "chatwork:7", "limit": 1, "running": 1, "queued": 2, "held": 2}]),
    );
    assert_eq!(
        s.get("/api/v1/concurrency", Some(&alice)).await.status,
        StatusCode::FORBIDDEN
    );
    let bad = s.get("/api/v1/concurrency?limit=0", Some(&admin)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.field(), "limit");

    // The held jobs show in /metrics.
    let metrics_url = s.url("/metrics");
    common::wait_until("the held gauge", Duration::from_secs(20), || {
        let http = s.http.clone();
        let url = metrics_url.clone();
        let secret = admin.secret.clone();
        async move {
            let text = http
                .get(&url)
                .bearer_auth(secret)
                .send()
                .await
                .ok()
                .map(|r| r.text());
            match text {
                Some(t) => t
                    .await
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l == "kyu_concurrency_jobs_held 2"),
                None => false,
            }
        }
    })
    .await;

    // Completing user 7's job lets the next one go.
    let first = got
        .iter()
        .find(|j| alice_jobs.contains(&j["job_id"].as_str().unwrap_or("").to_owned()))
        .expect("one of alice's jobs")
        .clone();
    let id = first["job_id"].as_str().unwrap_or_default();
    let a = s
        .post(
            &format!("/api/v1/jobs/{id}/complete"),
            Some(&worker),
            json!({"lease": first["lease"], "result": {"ok": true}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let next = fetch(&s, &worker, 10).await;
    assert_eq!(next.len(), 1, "{next:?}");
    assert!(alice_jobs.contains(&next[0]["job_id"].as_str().unwrap_or("").to_owned()));
}
