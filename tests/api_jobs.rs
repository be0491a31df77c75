//! Every endpoint of the HTTP API on a real `kyu serve` (SQLite, no tokens: the caller
//! is an admin on loopback): create, batch, read, list and page, cancel, retry, queues,
//! workers, health and the OpenAPI document.

mod common;

use std::collections::HashSet;

use common::api::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn a_created_job_runs_and_reads_back_completed() {
    let s = Server::start("api-echo", &[]).await;
    let a = s
        .post(
            "/api/v1/jobs",
            None,
            json!({"type": "echo", "payload": {"text": "hello"}, "priority": 8}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["status"], "queued");
    assert_eq!(a.body["duplicate"], false);
    let id = a.body["job_id"].as_str().expect("job_id");
    let job = s.wait_status(id, None, "completed").await;
    assert_eq!(job["job_id"], id);
    assert_eq!(job["type"], "echo");
    assert_eq!(job["priority"], 8);
    assert_eq!(job["queue"], "default");
    assert_eq!(job["result"], json!({"text": "hello"}));
    assert_eq!(job["progress"], 100);
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["error"], Value::Null);
    for k in ["created_at", "started_at", "finished_at"] {
        assert!(job[k].is_string(), "{k} missing: {job}");
    }
}

#[tokio::test]
async fn a_delayed_job_is_scheduled_and_can_be_canceled_then_retried() {
    let s = Server::start("api-cancel", &[]).await;
    let a = s
        .post(
            "/api/v1/jobs",
            None,
            json!({"type": "echo", "payload": {}, "delay_seconds": 3600}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body["status"], "scheduled");
    let id = a.body["job_id"].as_str().expect("id").to_owned();

    let c = s
        .post(&format!("/api/v1/jobs/{id}/cancel"), None, json!({}))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert_eq!(c.body["status"], "canceled");
    // Canceling again: the job is final.
    let again = s
        .post(&format!("/api/v1/jobs/{id}/cancel"), None, json!({}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "invalid_state");

    let r = s
        .post(&format!("/api/v1/jobs/{id}/retry"), None, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body["status"] == "queued" || r.body["status"] == "scheduled",
        "{}",
        r.body
    );
}

#[tokio::test]
async fn a_failed_job_keeps_its_error_and_can_be_retried() {
    let s = Server::start("api-retry", &[]).await;
    // A webhook to a loopback address (not allowed by default: SSRF guard) fails for good.
    let id = s
        .create(
            None,
            json!({"type": "http", "payload": {"url": "http://127.0.0.1:9/"}, "delay_seconds": 0}),
        )
        .await;
    let job = s.wait_status(&id, None, "failed").await;
    assert_eq!(job["error"]["kind"], "non_retryable");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("127.0.0.1"),
        "{job}"
    );
    assert_eq!(job["errors"].as_array().map(Vec::len), Some(1));

    let done = s.create(None, json!({"type": "noop", "payload": {}})).await;
    s.wait_status(&done, None, "completed").await;
    let r = s
        .post(&format!("/api/v1/jobs/{done}/retry"), None, json!({}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "a completed job is not retried"
    );
    assert_eq!(r.code(), "invalid_state");

    let r = s
        .post(&format!("/api/v1/jobs/{id}/retry"), None, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let job = s.wait_status(&id, None, "failed").await;
    assert_eq!(job["errors"].as_array().map(Vec::len), Some(2), "{job}");
}

#[tokio::test]
async fn a_repeated_unique_key_answers_with_the_live_job() {
    let s = Server::start("api-unique", &[]).await;
    let body = json!({"type": "echo", "payload": {}, "unique_key": "room-7", "delay_seconds": 600});
    let first = s.post("/api/v1/jobs", None, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = s.post("/api/v1/jobs", None, body).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body["duplicate"], true);
    assert_eq!(second.body["job_id"], first.body["job_id"]);
    let all = s.get("/api/v1/jobs?limit=10", None).await;
    assert_eq!(all.body["jobs"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_batch_is_created_whole_or_not_at_all() {
    let s = Server::start("api-batch", &[("KYU_MAX_BATCH", "5".into())]).await;
    let ok = s
        .post(
            "/api/v1/jobs/batch",
            None,
            json!({"jobs": [
                {"type": "noop", "payload": {"i": 1}},
                {"type": "echo", "payload": {"i": 2}, "delay_seconds": 600},
            ]}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    let jobs = ok.body["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[1]["status"], "scheduled");

    let bad = s
        .post(
            "/api/v1/jobs/batch",
            None,
            json!({"jobs": [
                {"type": "noop", "payload": {}},
                {"type": "noop", "payload": {}, "priority": 0},
            ]}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.code(), "invalid_field");
    assert_eq!(bad.field(), "jobs[1].priority");

    let too_many = s
        .post(
            "/api/v1/jobs/batch",
            None,
            json!({"jobs": (0..6).map(|_| json!({"type": "noop"})).collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_many.code(), "too_many_jobs");
    assert_eq!(too_many.field(), "jobs");

    let empty = s
        .post("/api/v1/jobs/batch", None, json!({"jobs": []}))
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);

    // Only the first batch landed.
    let all = s.get("/api/v1/jobs?limit=50", None).await;
    assert_eq!(
        all.body["jobs"].as_array().map(Vec::len),
        Some(2),
        "{}",
        all.body
    );
}

#[tokio::test]
async fn listing_filters_and_pages_stably_while_jobs_arrive() {
    let s = Server::start("api-list", &[]).await;
    let mut ids = HashSet::new();
    for i in 0..7 {
        let q = if i % 2 == 0 { "even" } else { "odd" };
        ids.insert(
            s.create(
                None,
                json!({"type": "echo", "payload": {"i": i}, "queue": q, "delay_seconds": 600}),
            )
            .await,
        );
    }
    let odd = s.get("/api/v1/jobs?queue=odd&status=scheduled", None).await;
    assert_eq!(odd.status, StatusCode::OK);
    let odd = odd.body["jobs"].as_array().expect("jobs").clone();
    assert_eq!(odd.len(), 3);
    assert!(odd.iter().all(|j| j["queue"] == "odd"));
    let none = s.get("/api/v1/jobs?type=noop", None).await;
    assert_eq!(none.body["jobs"], json!([]));

    // Page by 3; a job created between pages does not shift the pages.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/jobs?limit=3&cursor={c}"),
            None => "/api/v1/jobs?limit=3".to_owned(),
        };
        let page = s.get(&path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for j in page.body["jobs"].as_array().expect("jobs") {
            seen.push(j["job_id"].as_str().expect("id").to_owned());
        }
        pages += 1;
        if pages == 1 {
            s.create(None, json!({"type": "echo", "delay_seconds": 600}))
                .await;
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a job appeared twice: {seen:?}");
    assert_eq!(unique, ids, "pages missed or added jobs");
}

#[tokio::test]
async fn queues_pause_resume_and_count() {
    let s = Server::start("api-queues", &[]).await;
    let p = s.post("/api/v1/queues/mail/pause", None, json!({})).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(p.body["paused"], true);
    let id = s
        .create(None, json!({"type": "echo", "queue": "mail"}))
        .await;
    let q = s.get("/api/v1/queues", None).await;
    assert_eq!(q.status, StatusCode::OK);
    let mail = q.body["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["name"] == "mail")
        .cloned()
        .expect("mail queue listed");
    assert_eq!(mail["paused"], true);
    assert_eq!(mail["counts"]["queued"], 1);

    let r = s.post("/api/v1/queues/mail/resume", None, json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["paused"], false);
    s.wait_status(&id, None, "completed").await;
}

#[tokio::test]
async fn workers_health_readiness_and_openapi_answer() {
    let s = Server::start("api-misc", &[("JOB_QUEUE_WORKER_COUNT", "3".into())]).await;
    let w = s.get("/api/v1/workers", None).await;
    assert_eq!(w.status, StatusCode::OK);
    assert_eq!(w.body["enabled"], true);
    assert_eq!(w.body["pool_size"], 3);
    assert!(
        w.body["busy"].is_u64() && w.body["target"].is_u64(),
        "{}",
        w.body
    );

    let h = s.get("/healthz", None).await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.body["status"], "ok");
    let r = s.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["engine"], "running");

    let doc = s.get("/api/v1/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap_or("").starts_with("3."));
    for p in [
        "/api/v1/jobs",
        "/api/v1/jobs/batch",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/cancel",
        "/api/v1/jobs/{id}/retry",
        "/api/v1/queues",
        "/api/v1/queues/{name}/pause",
        "/api/v1/queues/{name}/resume",
        "/api/v1/workers",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc.body["paths"][p].is_object(), "{p} not documented");
    }
    // The known job types are in the schema.
    let text = doc.body.to_string();
    assert!(text.contains("delay_print") && text.contains("echo"));
}

#[tokio::test]
async fn api_only_mode_stores_jobs_without_running_them() {
    let s = Server::start("api-only", &[("JOB_WORKER_ENABLED", "false".into())]).await;
    let id = s.create(None, json!({"type": "echo"})).await;
    let r = s.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["engine"], "disabled");
    let w = s.get("/api/v1/workers", None).await;
    assert_eq!(w.body["enabled"], false);
    let job = s.get(&format!("/api/v1/jobs/{id}"), None).await;
    assert_eq!(job.body["status"], "queued");
    // A HEAD on a GET route works like GET without a body.
    let head = s.call(Method::HEAD, "/healthz", None, None).await;
    assert_eq!(head.status, StatusCode::OK);
}

#[tokio::test]
async fn a_job_type_brings_its_own_defaults() {
    let s = Server::start("api-defaults", &[("JOB_WORKER_ENABLED", "false".into())]).await;
    // Seed 001: delay_print waits 180 s and retries 10 times unless told otherwise.
    let a = s
        .post(
            "/api/v1/jobs",
            None,
            json!({"type": "delay_print", "payload": {"message": "hi"}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body["status"], "scheduled");
    let id = a.body["job_id"].as_str().expect("id");
    let job = s.get(&format!("/api/v1/jobs/{id}"), None).await.body;
    assert_eq!(job["max_attempts"], 11);
    let created = chrono::DateTime::parse_from_rfc3339(job["created_at"].as_str().expect("t"))
        .expect("created_at");
    let run_at =
        chrono::DateTime::parse_from_rfc3339(job["run_at"].as_str().expect("t")).expect("run_at");
    let wait = (run_at - created).num_seconds();
    assert!((179..=181).contains(&wait), "waits {wait} s");
    // Others take the configured default (JOB_QUEUE_MAX_RETRIES = 3).
    let id = s.create(None, json!({"type": "echo"})).await;
    let job = s.get(&format!("/api/v1/jobs/{id}"), None).await.body;
    assert_eq!(job["max_attempts"], 4);
}
