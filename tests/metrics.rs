//! `GET /metrics` on a real `kyu serve` (issue 6): after a few jobs, the key series
//! exist with the values the workload implies, routes are templates (never ids), every
//! metric has HELP and TYPE, histograms have buckets, and `promtool check metrics`
//! (when installed) finds nothing to complain about.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::api::{Server, Token};
use common::wait_until;
use kyu::api::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

/// One scrape: `name{labels}` (labels sorted, as written) → value, and the raw text.
struct Scrape {
    text: String,
    series: HashMap<String, f64>,
}

impl Scrape {
    async fn of(s: &Server) -> Scrape {
        let res = s
            .http
            .get(s.url("/metrics"))
            .send()
            .await
            .expect("scrape reaches kyu");
        assert_eq!(res.status(), StatusCode::OK, "no token is needed");
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        let text = res.text().await.expect("body");
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((normalize(k), v.parse().ok()?))
            })
            .collect();
        Scrape { text, series }
    }

    /// The value of `name` with exactly `labels`, if present.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        l.sort();
        let key = if l.is_empty() {
            name.to_owned()
        } else {
            format!("{name}{{{}}}", l.join(","))
        };
        self.series.get(&key).copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in:\n{}", self.text))
    }
}

/// `name{b="2",a="1"}` → `name{a="1",b="2"}` (label values here hold no commas).
fn normalize(k: &str) -> String {
    match k.split_once('{') {
        Some((name, rest)) => {
            let mut l: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
            l.sort();
            format!("{name}{{{}}}", l.join(","))
        }
        None => k.to_owned(),
    }
}

async fn scrape_until(s: &Server, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    for _ in 0..500 {
        let sc = Scrape::of(s).await;
        if cond(&sc) {
            return sc;
        }
        last = Some(sc.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "timed out waiting for {what}; last scrape:\n{}",
        last.unwrap_or_default()
    );
}

#[tokio::test]
async fn metrics_follow_a_small_workload() {
    let admin = Token::new("ops", Role::Admin);
    let s = Server::start(
        "metrics",
        &[
            ("KYU_API_TOKENS", admin.line.clone()),
            ("KYU_METRICS_SAMPLE_INTERVAL", "200ms".into()),
        ],
    )
    .await;
    let t = Some(&admin);

    // 5 single creates and a batch of 3 complete; one job fails for good (a webhook to
    // loopback, refused by the SSRF guard); one delayed job waits, another is canceled
    // while scheduled.
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            s.create(t, json!({"type": "noop", "payload": {"i": i}}))
                .await,
        );
    }
    let b = s
        .post(
            "/api/v1/jobs/batch",
            t,
            json!({"jobs": [
                {"type": "noop", "payload": {"i": 5}},
                {"type": "noop", "payload": {"i": 6}},
                {"type": "noop", "payload": {"i": 7}},
            ]}),
        )
        .await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    let failing = s
        .create(
            t,
            json!({"type": "http", "payload": {"url": "http://127.0.0.1:9/"}, "delay_seconds": 0}),
        )
        .await;
    let later = json!({"type": "echo", "payload": {}, "queue": "later", "delay_seconds": 3600});
    let waiting = s.create(t, later.clone()).await;
    let canceled = s.create(t, later).await;
    let c = s
        .post(&format!("/api/v1/jobs/{canceled}/cancel"), t, json!({}))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    for id in &ids {
        s.wait_status(id, t, "completed").await;
    }
    s.wait_status(&failing, t, "failed").await;
    assert_eq!(
        s.get("/no/such/route", t).await.status,
        StatusCode::NOT_FOUND
    );

    let noop = [("queue", "default"), ("type", "noop")];
    let sc = scrape_until(&s, "8 completed noop jobs and sampled queue gauges", |sc| {
        sc.get(
            "kyu_jobs_finished_total",
            &[noop[0], noop[1], ("outcome", "completed")],
        ) == Some(8.0)
            && sc.get(
                "kyu_queue_jobs",
                &[("queue", "later"), ("status", "scheduled")],
            ) == Some(1.0)
    })
    .await;

    // Jobs.
    assert_eq!(sc.value("kyu_jobs_enqueued_total", &noop), 8.0);
    let later_echo = [("queue", "later"), ("type", "echo")];
    assert_eq!(sc.value("kyu_jobs_enqueued_total", &later_echo), 2.0);
    assert_eq!(
        sc.value(
            "kyu_jobs_finished_total",
            &[later_echo[0], later_echo[1], ("outcome", "canceled")]
        ),
        1.0,
        "a job canceled while scheduled is finished too"
    );
    let dp = [("queue", "default"), ("type", "http")];
    assert_eq!(
        sc.value(
            "kyu_jobs_finished_total",
            &[dp[0], dp[1], ("outcome", "failed")]
        ),
        1.0
    );
    assert_eq!(
        sc.value(
            "kyu_job_errors_total",
            &[
                dp[0],
                dp[1],
                ("kind", "non_retryable"),
                ("disposition", "failed")
            ]
        ),
        1.0
    );
    assert_eq!(sc.value("kyu_job_run_seconds_count", &noop), 8.0);
    assert_eq!(sc.value("kyu_job_wait_seconds_count", &noop), 8.0);
    assert_eq!(
        sc.value(
            "kyu_job_run_seconds_bucket",
            &[noop[0], noop[1], ("le", "300")]
        ),
        8.0,
        "a real histogram with the documented buckets"
    );
    assert!(
        sc.get(
            "kyu_job_run_seconds_bucket",
            &[noop[0], noop[1], ("le", "0.001")]
        )
        .is_some()
    );

    // Queues, sampled from the store (a queue appears once a sample saw live jobs).
    assert_eq!(
        sc.value(
            "kyu_queue_jobs",
            &[("queue", "later"), ("status", "queued")]
        ),
        0.0
    );
    assert_eq!(
        sc.value("kyu_queue_oldest_job_age_seconds", &[("queue", "later")]),
        0.0,
        "a job due in an hour is not waiting yet"
    );

    // Workers and the process.
    assert_eq!(
        sc.value("kyu_workers", &[("kind", "local"), ("state", "busy")]),
        0.0
    );
    assert_eq!(
        sc.value("kyu_workers", &[("kind", "local"), ("state", "idle")]),
        5.0
    );
    assert_eq!(sc.value("kyu_workers_target", &[]), 5.0);
    assert_eq!(
        sc.value(
            "kyu_build_info",
            &[
                ("backend", "sqlite"),
                ("version", env!("CARGO_PKG_VERSION"))
            ]
        ),
        1.0
    );

    // HTTP: route templates, never ids; unknown paths are one label value.
    assert!(
        sc.value(
            "kyu_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/api/v1/jobs/{id}"),
                ("status", "200")
            ]
        ) >= 6.0,
        "a GET per waited job"
    );
    assert_eq!(
        sc.value(
            "kyu_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/v1/jobs"),
                ("status", "201")
            ]
        ),
        8.0
    );
    assert_eq!(
        sc.value(
            "kyu_http_requests_total",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(
        sc.get(
            "kyu_http_request_duration_seconds_count",
            &[("method", "POST"), ("route", "/api/v1/jobs")]
        )
        .is_some()
    );
    for id in ids.iter().chain([&failing, &waiting, &canceled]) {
        assert!(!sc.text.contains(id.as_str()), "job id {id} in a label");
    }
    assert!(!sc.text.contains("/no/such/route"));

    // Exposition: HELP and TYPE for every metric; counters end in _total.
    for line in sc.text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        assert!(name.starts_with("kyu_"), "{line}");
        assert!(
            sc.text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
        if kind == "counter" {
            assert!(name.ends_with("_total"), "{line}");
        }
        assert_ne!(kind, "summary", "{name}: histograms need buckets");
    }
    promtool_check(&sc.text);
}

/// `promtool check metrics` on the scrape, if promtool is installed.
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: skipping its lint");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).expect("feed promtool");
    }
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
}

#[tokio::test]
async fn redis_up_reads_1_when_redis_answers_and_0_when_not() {
    let down = Server::start(
        "metrics-redis-down",
        &[("REDIS_URL", "redis://127.0.0.1:1".into())],
    )
    .await;
    scrape_until(&down, "kyu_redis_up 0", |sc| {
        sc.get("kyu_redis_up", &[]) == Some(0.0)
    })
    .await;
    let Ok(url) = std::env::var("KYU_TEST_REDIS_URL") else {
        eprintln!("KYU_TEST_REDIS_URL not set: skipping the answering half");
        return;
    };
    let up = Server::start("metrics-redis-up", &[("REDIS_URL", url)]).await;
    scrape_until(&up, "kyu_redis_up 1", |sc| {
        sc.get("kyu_redis_up", &[]) == Some(1.0)
    })
    .await;
    // Without REDIS_URL there is no such series at all.
    let none = Server::start("metrics-redis-none", &[]).await;
    wait_until("a first scrape", Duration::from_secs(5), || async {
        Scrape::of(&none)
            .await
            .get(
                "kyu_build_info",
                &[
                    ("backend", "sqlite"),
                    ("version", env!("CARGO_PKG_VERSION")),
                ],
            )
            .is_some()
    })
    .await;
    assert!(Scrape::of(&none).await.get("kyu_redis_up", &[]).is_none());
}
