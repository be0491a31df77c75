//! `kyu worker` has no API port; with `KYU_METRICS_BIND` it serves `/metrics` and
//! `/healthz` itself, so Prometheus sees the jobs its engine ran (they are counted in
//! its process only). An API-only `kyu serve` takes the jobs; the worker runs them.

mod common;

use std::time::Duration;

use common::api::Server;
use common::{KyuProcess, TempDir, wait_until};
use serde_json::json;

#[tokio::test]
async fn a_worker_serves_the_metrics_of_the_jobs_it_ran() {
    let dir = TempDir::new("worker-metrics");
    let db = format!("sqlite://{}", dir.path().join("kyu.db").display());
    let api = Server::start_on(
        TempDir::new("worker-metrics-api"),
        &db,
        &[("JOB_WORKER_ENABLED", "false".to_owned())],
    )
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut worker = KyuProcess::start(
        &["worker"],
        &[
            ("DATABASE_URL", db.clone()),
            ("JOB_QUEUE_POLL_INTERVAL", "100ms".to_owned()),
            ("KYU_AUTOSCALE", "false".to_owned()),
            ("KYU_METRICS_BIND", format!("127.0.0.1:{port}")),
            ("NO_COLOR", "1".to_owned()),
        ],
        dir.path().join("worker.log"),
    );
    let ids: Vec<String> = futures::future::join_all(
        (0..3).map(|n| api.create(None, json!({"type": "echo", "payload": {"n": n}}))),
    )
    .await;
    for id in &ids {
        api.wait_status(id, None, "completed").await;
    }

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    // `kyu_jobs_finished_total{…} 3` with these labels, in whatever order they render.
    let completed = |l: &str| {
        l.starts_with("kyu_jobs_finished_total{")
            && [
                "outcome=\"completed\"",
                "queue=\"default\"",
                "type=\"echo\"",
            ]
            .iter()
            .all(|label| l.contains(label))
            && l.ends_with("} 3")
    };
    wait_until(
        "the worker's /metrics counts its jobs",
        Duration::from_secs(30),
        || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let Ok(res) = http.get(format!("{base}/metrics")).send().await else {
                    return false;
                };
                let text = res.text().await.unwrap_or_default();
                text.lines().any(completed) && text.contains("kyu_build_info{")
            }
        },
    )
    .await;
    let health = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz answers");
    assert_eq!(health.status(), reqwest::StatusCode::OK);

    worker.signal("TERM");
    let exit = worker.wait_exit(Duration::from_secs(30));
    assert!(
        exit.is_some_and(|s| s.success()),
        "worker did not stop cleanly: {}",
        worker.log_text()
    );
}
