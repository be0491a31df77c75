//! Bad input over HTTP: every error code the API hands out for what a client sends,
//! with the field at fault, and never a 5xx. (`store_unavailable`/`not_ready` are in
//! api_resilience.rs, `unauthorized`/`forbidden`/`unique_key_taken` in api_access.rs;
//! `internal` is only for a handler bug and cannot be provoked from outside.)

mod common;

use common::api::Server;
use reqwest::StatusCode;
use serde_json::json;

async fn server() -> Server {
    Server::start(
        "api-errors",
        &[
            ("KYU_MAX_BODY_BYTES", "4096".into()),
            ("KYU_MAX_PAYLOAD_BYTES", "1024".into()),
            ("JOB_WORKER_ENABLED", "false".into()),
        ],
    )
    .await
}

/// Posts raw bytes with a content type.
async fn post_raw(
    s: &Server,
    path: &str,
    ctype: Option<&str>,
    body: Vec<u8>,
) -> common::api::Answer {
    let mut req = s.http.post(s.url(path)).body(body);
    if let Some(c) = ctype {
        req = req.header("content-type", c);
    }
    Server::answer(req.send().await.expect("send")).await
}

fn check(a: &common::api::Answer, status: StatusCode, code: &str, field: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.code(), code, "{}", a.body);
    assert_eq!(a.field(), field, "{}", a.body);
    assert!(!a.message().is_empty(), "{}", a.body);
    assert_eq!(
        a.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_name_the_field() {
    let s = server().await;
    let j = Some("application/json");
    check(
        &post_raw(&s, "/api/v1/jobs", j, b"{\"type\": \"echo\",".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
        "",
    );
    check(
        &post_raw(&s, "/api/v1/jobs", j, b"[1,2]".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
        "",
    );
    check(
        &post_raw(&s, "/api/v1/jobs", j, vec![0xff, 0xfe, 0x00]).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
        "",
    );
    let cases = [
        (json!({"type": "echo", "priority": "high"}), "priority"),
        (json!({"type": 5}), "type"),
        (json!({"payload": {}}), "type"),
        (
            json!({"type": "echo", "delay_seconds": "soon"}),
            "delay_seconds",
        ),
        (json!({"type": "echo", "run_at": "yesterday"}), "run_at"),
        (json!({"type": "echo", "colour": "red"}), "colour"),
    ];
    for (body, field) in cases {
        let a = s.post("/api/v1/jobs", None, body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
        assert!(
            a.code() == "invalid_field" || a.code() == "invalid_json",
            "{body}: {}",
            a.body
        );
        assert_eq!(a.field(), field, "{body}: {}", a.body);
    }
}

#[tokio::test]
async fn out_of_range_values_are_refused() {
    let s = server().await;
    let cases = [
        (json!({"type": "echo", "priority": 11}), "priority"),
        (json!({"type": "echo", "priority": 0}), "priority"),
        (
            json!({"type": "echo", "delay_seconds": -1}),
            "delay_seconds",
        ),
        (json!({"type": "echo", "max_retries": -1}), "max_retries"),
        (
            json!({"type": "echo", "timeout_seconds": 0}),
            "timeout_seconds",
        ),
        (json!({"type": "echo", "queue": ""}), "queue"),
        (json!({"type": "echo", "queue": "q".repeat(101)}), "queue"),
        // PostgreSQL text cannot hold NUL: refused on every backend alike.
        (json!({"type": "echo", "provider": "a\u{0}b"}), "provider"),
        (json!({"type": "echo", "unique_key": "\u{0}"}), "unique_key"),
        (json!({"type": "echo", "payload": [1, 2]}), "payload"),
        (json!({"type": "echo", "payload": "text"}), "payload"),
        (json!({"type": "echo", "priority": 5.5}), "priority"),
        (
            json!({"type": "echo", "delay_seconds": 5, "run_at": "2030-01-01T00:00:00Z"}),
            "run_at",
        ),
        // run_at has delay_seconds' bound: a year from now.
        (
            json!({"type": "echo", "run_at": "9999-12-31T23:59:59Z"}),
            "run_at",
        ),
        (
            json!({"type": "echo", "delay_seconds": 365.0 * 24.0 * 3600.0 + 1.0}),
            "delay_seconds",
        ),
    ];
    for (body, field) in cases {
        let a = s.post("/api/v1/jobs", None, body.clone()).await;
        check(&a, StatusCode::BAD_REQUEST, "invalid_field", field);
    }
    let a = s
        .post("/api/v1/jobs", None, json!({"type": "summon_demon"}))
        .await;
    check(&a, StatusCode::BAD_REQUEST, "unknown_job_type", "type");
    // JSON Schema counts 6.0 as an integer, and so does kyu; 100 characters fit however
    // many bytes they take.
    let id = s
        .create(
            None,
            json!({"type": "echo", "priority": 6.0, "max_retries": 2.0, "queue": "é".repeat(100)}),
        )
        .await;
    let job = s.get(&format!("/api/v1/jobs/{id}"), None).await;
    assert_eq!(job.body["priority"], json!(6), "{}", job.body);
    assert_eq!(job.body["max_attempts"], json!(3), "{}", job.body);
    for known in ["delay_print", "echo", "noop"] {
        assert!(a.message().contains(known), "{}", a.message());
    }
}

#[tokio::test]
async fn a_payload_its_job_type_refuses_is_a_422_naming_the_field() {
    let s = server().await;
    let a = s
        .post(
            "/api/v1/jobs",
            None,
            json!({"type": "delay_print", "payload": {"message": 5}}),
        )
        .await;
    check(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_payload",
        "payload.message",
    );
    let a = s
        .post(
            "/api/v1/jobs/batch",
            None,
            json!({"jobs": [
                {"type": "echo", "payload": {}},
                {"type": "delay_print", "payload": {}},
            ]}),
        )
        .await;
    check(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_payload",
        "jobs[1].payload.message",
    );
    // Nothing of a refused batch is stored.
    let list = s.get("/api/v1/jobs?type=echo", None).await;
    assert_eq!(
        list.body["jobs"].as_array().map(Vec::len),
        Some(0),
        "{}",
        list.body
    );
}

#[tokio::test]
async fn size_limits_and_media_type() {
    let s = server().await;
    let big = "x".repeat(2000);
    let a = s
        .post(
            "/api/v1/jobs",
            None,
            json!({"type": "echo", "payload": {"s": big}}),
        )
        .await;
    check(
        &a,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "payload",
    );
    let huge = "x".repeat(10_000);
    let a = s
        .post(
            "/api/v1/jobs",
            None,
            json!({"type": "echo", "payload": {"s": huge}}),
        )
        .await;
    check(&a, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "");
    let a = post_raw(
        &s,
        "/api/v1/jobs",
        Some("text/plain"),
        b"{\"type\":\"echo\"}".to_vec(),
    )
    .await;
    check(
        &a,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "",
    );
    let a = post_raw(&s, "/api/v1/jobs", None, b"{\"type\":\"echo\"}".to_vec()).await;
    check(
        &a,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "",
    );
    // Nothing was stored by any of it.
    let all = s.get("/api/v1/jobs", None).await;
    assert_eq!(all.body["jobs"], json!([]));
}

#[tokio::test]
async fn queries_cursors_ids_routes_and_methods() {
    let s = server().await;
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=100000", "limit"),
        ("status=exploded", "status"),
        ("queue=", "queue"),
        ("queue=a%00b", "queue"),
    ] {
        let a = s.get(&format!("/api/v1/jobs?{q}"), None).await;
        check(&a, StatusCode::BAD_REQUEST, "invalid_field", field);
    }
    // A repeated parameter is not a value of one.
    let a = s.get("/api/v1/jobs?limit=1&limit=2", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);

    // A real cursor works; an edited or made-up one is a 400.
    for _ in 0..3 {
        s.create(None, json!({"type": "echo"})).await;
    }
    let page = s.get("/api/v1/jobs?limit=1", None).await;
    let cursor = page.body["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let ok = s
        .get(&format!("/api/v1/jobs?limit=1&cursor={cursor}"), None)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let mut edited = cursor.clone().into_bytes();
    let last = edited.len() - 1;
    edited[last] = if edited[last] == b'0' { b'1' } else { b'0' };
    let edited = String::from_utf8(edited).expect("ascii");
    for bad in [
        edited.as_str(),
        "abc",
        "00000000-0000-0000-0000-000000000000",
        "'%20OR%201=1--",
    ] {
        let a = s.get(&format!("/api/v1/jobs?cursor={bad}"), None).await;
        check(&a, StatusCode::BAD_REQUEST, "invalid_cursor", "cursor");
    }

    let a = s.get("/api/v1/jobs/not-a-uuid", None).await;
    check(&a, StatusCode::BAD_REQUEST, "invalid_field", "id");
    let a = s
        .get("/api/v1/jobs/01234567-89ab-7def-8123-456789abcdef", None)
        .await;
    check(&a, StatusCode::NOT_FOUND, "not_found", "");
    let a = s
        .post(
            "/api/v1/jobs/01234567-89ab-7def-8123-456789abcdef/cancel",
            None,
            json!({}),
        )
        .await;
    check(&a, StatusCode::NOT_FOUND, "not_found", "");
    let a = s.get("/api/v1/nothing-here", None).await;
    check(&a, StatusCode::NOT_FOUND, "not_found", "");

    let a = s
        .call(reqwest::Method::DELETE, "/api/v1/jobs", None, None)
        .await;
    check(&a, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "");
    let allow = a
        .headers
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "Allow: {allow}"
    );
}
