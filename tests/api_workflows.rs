//! Workflows over HTTP on a real `kyu serve` (SQLite): seed 004's three steps as a
//! chain run by a remote worker that sees each step's inputs, seed 000's batch of 50
//! summaries feeding one digest, the checks that name the field at fault, ownership,
//! cancel, and a 10,000-job fan-out/fan-in measured against as many plain jobs.

mod common;

use std::time::{Duration, Instant};

use common::api::{Server, Token};
use kyu::api::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const REMOTE_TYPES: &str = r#"[{"name": "collect_stock_data"}, {"name": "rs_ratings"}, {"name": "canslim"}, {"name": "digest"}, {"name": "join"}]"#;

async fn start(tag: &str, extra: &[(&str, String)]) -> Server {
    let mut env = vec![("KYU_REMOTE_TYPE", REMOTE_TYPES.to_owned())];
    env.extend(extra.iter().cloned());
    Server::start(tag, &env).await
}

/// Long-polls for one job of `types` (as a remote worker would).
async fn fetch_one(s: &Server, types: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = s
            .post(
                "/api/v1/fetch",
                None,
                json!({"worker_id": "wf-worker", "types": types, "max": 1, "wait_ms": 5000}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        if let Some(j) = a.body["jobs"].as_array().and_then(|j| j.first()) {
            return j.clone();
        }
        assert!(Instant::now() < deadline, "no {types:?} job came");
    }
}

async fn complete(s: &Server, job: &Value, result: Value) {
    let id = job["job_id"].as_str().unwrap_or_default();
    let a = s
        .post(
            &format!("/api/v1/jobs/{id}/complete"),
            None,
            json!({"lease": job["lease"], "result": result}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

async fn workflow(s: &Server, id: &str) -> Value {
    let a = s.get(&format!("/api/v1/workflows/{id}"), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

/// Polls the workflow until its status is `status`.
async fn wait_workflow(s: &Server, id: &str, status: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let w = workflow(s, id).await;
        if w["status"] == status {
            return w;
        }
        assert!(
            Instant::now() < deadline,
            "workflow never {status}: {}",
            w["counts"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn seed_004_steps_run_in_order_and_each_sees_the_last_ones_result() {
    let s = start("wf-004", &[]).await;
    let a = s
        .post(
            "/api/v1/workflows",
            None,
            json!({
                "name": "screening",
                "jobs": [
                    {"key": "collect", "type": "collect_stock_data", "payload": {"symbols": ["7203", "6758"]}},
                    {"key": "rank", "type": "rs_ratings", "depends_on": ["collect"]},
                    {"key": "screen", "type": "canslim", "depends_on": ["rank"]},
                ],
            }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let wf = a.body["workflow_id"]
        .as_str()
        .expect("workflow_id")
        .to_owned();
    let ids = a.body["jobs"].clone();
    let rank_id = ids["rank"].as_str().expect("rank id");

    let w = workflow(&s, &wf).await;
    assert_eq!(w["status"], "running");
    assert_eq!(w["counts"]["queued"], 1);
    assert_eq!(w["counts"]["waiting"], 2);
    let job = s.get(&format!("/api/v1/jobs/{rank_id}"), None).await.body;
    assert_eq!(job["status"], "waiting");
    assert_eq!(job["workflow_id"], wf.as_str());
    assert_eq!(job["workflow_key"], "rank");
    assert_eq!(job["dependencies"][0]["job_id"], ids["collect"]);
    assert_eq!(job["dependencies"][0]["key"], "collect");
    assert_eq!(job["dependencies"][0]["on_failure"], "cancel");

    let all = ["collect_stock_data", "rs_ratings", "canslim"];
    let collect = fetch_one(&s, &all).await;
    assert_eq!(
        collect["type"], "collect_stock_data",
        "only the first step is due"
    );
    complete(
        &s,
        &collect,
        json!({"prices": {"7203": [1, 2, 3], "6758": [3, 2, 1]}}),
    )
    .await;
    let rank = fetch_one(&s, &all).await;
    assert_eq!(rank["type"], "rs_ratings");
    assert_eq!(rank["workflow_id"], wf.as_str());
    assert_eq!(
        rank["dependency_results"]["collect"]["prices"]["7203"],
        json!([1, 2, 3])
    );
    complete(&s, &rank, json!({"rs": {"7203": 99, "6758": 12}})).await;
    let screen = fetch_one(&s, &all).await;
    assert_eq!(screen["type"], "canslim");
    assert_eq!(screen["dependency_results"]["rank"]["rs"]["7203"], 99);
    complete(&s, &screen, json!({"picks": ["7203"]})).await;
    let w = wait_workflow(&s, &wf, "completed", Duration::from_secs(10)).await;
    assert_eq!(w["counts"]["completed"], 3);
    let listed = s.get("/api/v1/workflows", None).await;
    assert_eq!(listed.body["workflows"][0]["workflow_id"], wf.as_str());
    assert_eq!(listed.body["workflows"][0]["name"], "screening");

    // The web page: the workflow's jobs with what they wait for; a job links to it.
    let html = |path: String| {
        let http = s.http.clone();
        let url = s.url(&path);
        async move {
            let res = http.get(url).send().await.expect("page");
            assert_eq!(res.status(), StatusCode::OK);
            res.text().await.unwrap_or_default()
        }
    };
    let page = html(format!("/workflows/{wf}")).await;
    assert!(page.contains("id=\"workflow-status\">completed"), "{page}");
    for key in ["collect", "rank", "screen"] {
        assert!(page.contains(&format!(">{key}</a>")), "{key}: {page}");
    }
    let job = html(format!("/jobs/{rank_id}")).await;
    assert!(job.contains(&format!("href=\"/workflows/{wf}\"")), "{job}");
}

#[tokio::test]
async fn seed_000_batch_of_50_summaries_feeds_one_digest_and_callbacks_run_once() {
    let s = start("wf-000", &[]).await;
    let text = "Kyu runs jobs durably. It retries failures with back-off. \
                It limits providers by rate. It scales workers with the load. \
                Workflows chain jobs and fan them out and in.";
    let mut jobs: Vec<Value> = (0..50)
        .map(|i| {
            json!({"key": format!("article-{i}"), "type": "summarize",
                   "payload": {"text": text, "providers": ["extractive"], "article_id": format!("a{i}")}})
        })
        .collect();
    jobs.push(json!({"key": "digest", "type": "digest",
                     "depends_on": (0..50).map(|i| format!("article-{i}")).collect::<Vec<_>>()}));
    let a = s
        .post(
            "/api/v1/workflows",
            None,
            json!({"name": "daily digest", "jobs": jobs,
                   "on_complete": {"type": "echo", "payload": {"callback": "complete"}},
                   "on_success": {"type": "echo", "payload": {"callback": "success"}}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let wf = a.body["workflow_id"].as_str().expect("id").to_owned();
    let digest = fetch_one(&s, &["digest"]).await;
    let results = digest["dependency_results"]
        .as_object()
        .expect("results")
        .clone();
    assert_eq!(results.len(), 50, "the digest gets all 50 summaries");
    for (k, r) in &results {
        assert!(k.starts_with("article-"), "{k}");
        assert_eq!(r["provider"], "extractive", "{r}");
        assert!(r["summary"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
    }
    complete(&s, &digest, json!({"articles": results.len()})).await;
    wait_workflow(&s, &wf, "completed", Duration::from_secs(30)).await;
    for cb in ["$on_complete", "$on_success"] {
        let id = a.body["jobs"][cb].as_str().expect("callback id");
        let job = s.wait_status(id, None, "completed").await;
        assert_eq!(job["attempts"], 1, "{cb} ran once");
    }
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    let finished: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("kyu_workflows_finished_total{"))
        .collect();
    assert_eq!(
        finished,
        ["kyu_workflows_finished_total{outcome=\"completed\"} 1"],
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_graphs_name_the_field_and_write_nothing() {
    let s = start("wf-bad", &[]).await;
    let cases = [
        (
            json!({"jobs": [{"key": "a", "type": "echo"}, {"key": "b", "type": "echo", "depends_on": ["a", "zz"]}]}),
            "jobs[1].depends_on[1]",
        ),
        (
            json!({"jobs": [{"key": "a", "type": "echo"}, {"key": "a", "type": "echo"}]}),
            "jobs[1].key",
        ),
        (
            json!({"jobs": [{"key": "a", "type": "echo", "depends_on": ["b"]}, {"key": "b", "type": "echo", "depends_on": ["a"]}]}),
            "jobs[0].depends_on",
        ),
        (
            json!({"jobs": [{"key": "a", "type": "echo"}, {"key": "b", "type": "nope"}]}),
            "jobs[1].type",
        ),
        (
            json!({"jobs": [{"key": "a", "type": "echo", "priority": 11}]}),
            "jobs[0].priority",
        ),
        (json!({"jobs": []}), "jobs"),
        (
            json!({"jobs": [{"key": "a", "type": "echo"}], "on_success": {"type": "nope"}}),
            "on_success.type",
        ),
    ];
    for (body, field) in cases {
        let a = s.post("/api/v1/workflows", None, body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
        assert_eq!(a.field(), field, "{body}: {}", a.body);
    }
    let listed = s.get("/api/v1/workflows", None).await;
    assert_eq!(listed.body["workflows"], json!([]));
    let jobs = s.get("/api/v1/jobs", None).await;
    assert_eq!(jobs.body["jobs"], json!([]));
    let a = s.get("/api/v1/workflows/not-a-uuid", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = s
        .get(&format!("/api/v1/workflows/{}", uuid::Uuid::now_v7()), None)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn workflows_are_owned_and_cancel_stops_every_job() {
    let admin = Token::new("ops", Role::Admin);
    let alice = Token::new("alice", Role::User);
    let bob = Token::new("bob", Role::User);
    let tokens = [&admin, &alice, &bob]
        .iter()
        .map(|t| t.line.clone())
        .collect::<Vec<_>>()
        .join(",");
    let s = start("wf-owned", &[("KYU_API_TOKENS", tokens)]).await;
    let a = s
        .post(
            "/api/v1/workflows",
            Some(&alice),
            json!({"jobs": [
                {"key": "a", "type": "delay_print", "payload": {"message": "later"}, "delay_seconds": 3600},
                {"key": "b", "type": "echo", "depends_on": ["a"]},
            ]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let wf = a.body["workflow_id"].as_str().expect("id").to_owned();
    let b = a.body["jobs"]["b"].as_str().expect("b").to_owned();
    let path = format!("/api/v1/workflows/{wf}");
    assert_eq!(s.get(&path, Some(&bob)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.post(&format!("{path}/cancel"), Some(&bob), json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let mine = s.get("/api/v1/workflows", Some(&bob)).await;
    assert_eq!(mine.body["workflows"], json!([]));
    let job_b = s.get(&format!("/api/v1/jobs/{b}"), Some(&alice)).await;
    assert_eq!(job_b.body["owner"], "alice");
    assert_eq!(job_b.body["status"], "waiting");

    let c = s
        .post(&format!("{path}/cancel"), Some(&alice), json!({}))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert_eq!(c.body["canceled"], 2);
    let w = s.get(&path, Some(&admin)).await.body;
    assert_eq!(w["status"], "failed");
    assert_eq!(w["counts"]["canceled"], 2);
}

/// root → 10,000 → join: the join runs once and receives 10,000 results. Prints the
/// time per job against 10,002 plain jobs on the same server.
#[tokio::test]
async fn fan_out_to_10000_and_in_again() {
    const N: usize = 10_000;
    let s = start(
        "wf-fanout",
        &[("KYU_MAX_BODY_BYTES", (64 * 1024 * 1024).to_string())],
    )
    .await;

    // Plain jobs first: the same number, in batches.
    let started = Instant::now();
    let mut last = String::new();
    for _ in 0..(N + 2).div_ceil(1000) {
        let jobs: Vec<Value> = (0..1000)
            .map(|i| json!({"type": "noop", "payload": {"i": i}}))
            .collect();
        let a = s
            .post("/api/v1/jobs/batch", None, json!({"jobs": jobs}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        last = a.body["jobs"][999]["job_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let q = s.get("/api/v1/jobs?status=completed&limit=1", None).await;
        let done = s.get(&format!("/api/v1/jobs/{last}"), None).await;
        let queues = s.get("/api/v1/queues", None).await;
        let c = &queues.body["queues"][0]["counts"];
        if done.body["status"] == "completed" && c["queued"] == 0 && c["running"] == 0 {
            let _ = q;
            break;
        }
        assert!(Instant::now() < deadline, "plain jobs never drained: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let plain = started.elapsed();

    let mut jobs = vec![json!({"key": "root", "type": "noop"})];
    jobs.extend((0..N).map(|i| json!({"key": format!("leaf-{i}"), "type": "noop", "payload": {"i": i}, "depends_on": ["root"]})));
    jobs.push(json!({"key": "join", "type": "join",
                     "depends_on": (0..N).map(|i| format!("leaf-{i}")).collect::<Vec<_>>()}));
    let started = Instant::now();
    let a = s
        .post("/api/v1/workflows", None, json!({"jobs": jobs}))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let created = started.elapsed();
    let wf = a.body["workflow_id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let w = workflow(&s, &wf).await;
        if w["counts"]["completed"] == N + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leaves never finished: {}",
            w["counts"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let join = fetch_one(&s, &["join"]).await;
    let released = started.elapsed();
    let results = join["dependency_results"].as_object().expect("results");
    assert_eq!(results.len(), N, "the join receives every leaf's result");
    complete(&s, &join, json!({"leaves": results.len()})).await;
    let w = wait_workflow(&s, &wf, "completed", Duration::from_secs(60)).await;
    assert_eq!(w["counts"]["completed"], N + 2);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / (N + 2) as f64;
    eprintln!(
        "fan-out/fan-in {N}: created in {:.2}s, join released after {:.2}s ({:.0} µs/job); \
         {} plain jobs drained in {:.2}s ({:.0} µs/job)",
        created.as_secs_f64(),
        released.as_secs_f64(),
        per(released),
        N + 2,
        plain.as_secs_f64(),
        per(plain),
    );
}
