//! Observability against the real tools (issue 6): the Grafana dashboard's shape; every
//! panel query answered, with data, by a real Prometheus that scraped a real `kyu serve`
//! running a mixed workload (successes, retries, failures, timeouts, cancels, rate-limit
//! waits, and a remote worker speaking the worker protocol); `promtool check metrics` on kyu's /metrics; the alert rules checked and unit
//! tested by promtool; and the alerts whose conditions a test can make quickly seen
//! firing in that Prometheus.
//!
//! Needs `prometheus` and `promtool` on PATH (Debian's `prometheus` package, which .ci/run
//! installs) and Redis (`KYU_TEST_REDIS_URL`): without them a test skips, unless
//! `KYU_REQUIRE_SERVICES=1`, when it fails. Grafana is not in Debian, so the dashboard is
//! checked as JSON against the shape Grafana's schema asks for, and its queries are run
//! through Prometheus's HTTP API with Grafana's variables substituted.
//!
//! The real Prometheus loads a copy of dashboards/alerts.yaml with every `for:` set to 0s:
//! the expressions and thresholds are the file's own, only the waiting goes. The `for:`
//! times themselves are covered by dashboards/alerts_test.yaml (`promtool test rules`).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;
use common::api::Server;
use common::proxy::Proxy;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// What Grafana's interval variables stand for when a test evaluates the panels: a
/// 5-minute view whose rate windows cover the whole workload (it runs in well under 2 m).
const RATE_INTERVAL: &str = "2m";
const INTERVAL: &str = "15s";
const RANGE: &str = "5m";

/// Every metric of the contract (kyu_actors::telemetry); the dashboard queries them all.
const CONTRACT: [&str; 27] = [
    "kyu_build_info",
    "kyu_jobs_enqueued_total",
    "kyu_jobs_finished_total",
    "kyu_job_errors_total",
    "kyu_job_run_seconds",
    "kyu_job_wait_seconds",
    "kyu_queue_jobs",
    "kyu_queue_oldest_job_age_seconds",
    "kyu_workers",
    "kyu_workers_target",
    "kyu_autoscaler_cpu_ratio",
    "kyu_autoscaler_memory_ratio",
    "kyu_actor_restarts_total",
    "kyu_rate_limit_waits_total",
    "kyu_rate_limit_tokens",
    "kyu_http_requests_total",
    "kyu_http_request_duration_seconds",
    "kyu_store_errors_total",
    "kyu_redis_up",
    "kyu_provider_requests_total",
    "kyu_summaries_total",
    "kyu_claims_total",
    "kyu_acks_unwritten",
    "kyu_remote_fetches_waiting",
    "kyu_remote_fetch_wait_seconds",
    "kyu_remote_report_duration_seconds",
    "kyu_remote_jobs_total",
];

/// The alerts dashboards/alerts.yaml must hold.
const ALERTS: [&str; 6] = [
    "KyuQueueGrowing",
    "KyuSuccessRateFalling",
    "KyuNoWorkers",
    "KyuRedisDown",
    "KyuOldestJobTooOld",
    "KyuDown",
];

// --- tools and files ----------------------------------------------------------------------

fn services_required() -> bool {
    std::env::var("KYU_REQUIRE_SERVICES").as_deref() == Ok("1")
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

struct Tools {
    prometheus: PathBuf,
    promtool: PathBuf,
}

/// `prometheus` and `promtool`, or `None` (the test skips) when one is missing and
/// services are not required.
fn tools(test: &str) -> Option<Tools> {
    match (on_path("prometheus"), on_path("promtool")) {
        (Some(prometheus), Some(promtool)) => Some(Tools {
            prometheus,
            promtool,
        }),
        _ => {
            assert!(
                !services_required(),
                "{test}: `prometheus` and `promtool` must be on PATH when \
                 KYU_REQUIRE_SERVICES=1 (Debian package `prometheus`)"
            );
            eprintln!("skipping {test}: prometheus/promtool not on PATH");
            None
        }
    }
}

/// `KYU_TEST_REDIS_URL`, or `None` (the test skips) when unset and not required.
fn redis_url(test: &str) -> Option<String> {
    match std::env::var("KYU_TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                !services_required(),
                "{test}: KYU_TEST_REDIS_URL must be set when KYU_REQUIRE_SERVICES=1"
            );
            eprintln!("skipping {test}: KYU_TEST_REDIS_URL not set");
            None
        }
    }
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("dashboards/kyu-overview.json")).expect("dashboard is JSON")
}

/// Runs `promtool args…` (with `stdin` piped in if given) in `dir`; returns (ok, output).
fn promtool(tool: &Path, dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// --- the dashboard as data ----------------------------------------------------------------

/// One query of one panel.
struct PanelQuery {
    panel: String,
    ref_id: String,
    expr: String,
}

/// Data panels (rows are layout only), including those inside collapsed rows.
fn data_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

fn panel_queries(d: &Value) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for p in data_panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(PanelQuery {
                panel: p["title"].as_str().unwrap_or("").to_owned(),
                ref_id: t["refId"].as_str().unwrap_or("").to_owned(),
                expr: t["expr"].as_str().unwrap_or("").to_owned(),
            });
        }
    }
    out
}

/// `expr` as Grafana would send it: interval variables as above, each multi-value query
/// variable as its "All" value.
fn substitute(expr: &str, d: &Value) -> String {
    let mut e = expr.to_owned();
    for (name, value) in [
        ("__rate_interval", RATE_INTERVAL),
        ("__interval", INTERVAL),
        ("__range", RANGE),
    ] {
        e = e
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    let mut vars: Vec<(String, String)> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let all = v["allValue"].as_str().unwrap_or(".*").to_owned();
            (v["name"].as_str().expect("variable name").to_owned(), all)
        })
        .collect();
    // Longer names first, so `$queue` never eats the start of `$queues`.
    vars.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    for (name, value) in vars {
        e = e
            .replace(&format!("${{{name}}}"), &value)
            .replace(&format!("${name}"), &value);
    }
    assert!(!e.contains('$'), "unsubstituted variable left in {e}");
    e
}

/// Whether a data-source reference points at the import input or the variable.
fn ds_ok(ds: &Value) -> bool {
    let ok = |s: &str| matches!(s, "${DS_PROMETHEUS}" | "${datasource}" | "$datasource");
    match ds {
        Value::String(s) => ok(s),
        Value::Object(_) => ds["type"] == "prometheus" && ds["uid"].as_str().is_some_and(ok),
        _ => false,
    }
}

// --- a real Prometheus ------------------------------------------------------------------

/// A Prometheus on a free loopback port with its storage in a temp dir, scraping one
/// target every second and evaluating `rules` every second. Killed on drop.
struct Prometheus {
    child: Child,
    base: String,
    http: reqwest::Client,
    dir: TempDir,
}

impl Prometheus {
    async fn start(bin: &Path, target: &str, rules: &str) -> Prometheus {
        let dir = TempDir::new("prometheus");
        std::fs::write(dir.path().join("alerts.yaml"), rules).expect("write rules");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - alerts.yaml\n\
             scrape_configs:\n  - job_name: kyu\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [\"{target}\"]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let http = reqwest::Client::new();
        // A free port can be taken between our probe and Prometheus's bind: try again.
        for attempt in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let log = dir.path().join(format!("prometheus-{attempt}.log"));
            let mut child = Command::new(bin)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--storage.tsdb.retention.time=1h")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .expect("spawn prometheus");
            let base = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let ready = http.get(format!("{base}/-/ready")).send().await;
                if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                    return Prometheus {
                        child,
                        base,
                        http,
                        dir,
                    };
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "prometheus on port {port} did not come up: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!(
            "prometheus did not start (logs in {})",
            dir.path().display()
        );
    }

    /// An instant query: the result vector, or Prometheus's error.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let res = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = res.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        match body["data"]["resultType"].as_str() {
            Some("vector") | Some("matrix") => Ok(body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()),
            Some("scalar") => Ok(vec![json!({"metric": {}, "value": body["data"]["result"]})]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }

    /// Polls `expr` until it answers with at least one series.
    async fn wait_data(&self, expr: &str, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.query(expr).await;
            if let Ok(v) = &r
                && !v.is_empty()
            {
                return v.clone();
            }
            assert!(
                Instant::now() < deadline,
                "prometheus: `{expr}` gave no data within {limit:?}: {r:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Active alerts: (alertname, labels, state).
    async fn alerts(&self) -> Vec<(String, Value, String)> {
        let body: Value = self
            .http
            .get(format!("{}/api/v1/alerts", self.base))
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("alerts JSON");
        body["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                    a["labels"].clone(),
                    a["state"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// The state of alert `name` whose labels include `labels`, if active.
    async fn alert_state(&self, name: &str, labels: &[(&str, &str)]) -> Option<String> {
        self.alerts()
            .await
            .into_iter()
            .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
            .map(|(_, _, s)| s)
    }

    /// Polls until alert `name` (with `labels`) is firing; returns how long it took.
    async fn wait_firing(&self, name: &str, labels: &[(&str, &str)], limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.alert_state(name, labels).await.as_deref() == Some("firing") {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "alert {name} {labels:?} did not fire within {limit:?}; active: {:?}",
                self.alerts().await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn log(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.dir.path()).into_iter().flatten() {
            let p = e.expect("dir entry").path();
            if p.extension().is_some_and(|x| x == "log") {
                out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
        out
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dashboards/alerts.yaml with every `for:` set to 0s (and nothing else changed).
fn alerts_without_for() -> String {
    let text = read("dashboards/alerts.yaml");
    let mut n = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("for:") {
                n += 1;
                format!("{}for: 0s", &l[..l.len() - t.len()])
            } else {
                l.to_owned()
            }
        })
        .collect();
    let alerts = text.matches("- alert:").count();
    assert_eq!(n, alerts, "every alert in alerts.yaml has a `for:`");
    out.join("\n") + "\n"
}

/// `host:port` of a `http://host:port` base URL.
fn host_port(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// A value for the table: `v` for one unlabeled series, else `{labels} v; …`.
fn describe(result: &[Value]) -> String {
    let num = |s: &str| match s.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Ok(v) if v.is_finite() => {
            let s = format!("{v:.4}");
            s.trim_end_matches('0').to_owned()
        }
        _ => s.to_owned(),
    };
    let parts: Vec<String> = result
        .iter()
        .map(|s| {
            let v = num(s["value"][1].as_str().unwrap_or("?"));
            let labels: Vec<String> = s["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != "__name__")
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            if labels.is_empty() {
                v
            } else {
                format!("{{{}}} {v}", labels.join(","))
            }
        })
        .collect();
    if parts.len() > 6 {
        format!("{} … (+{} more)", parts[..6].join("; "), parts.len() - 6)
    } else {
        parts.join("; ")
    }
}

fn finite(result: &[Value]) -> bool {
    result.iter().any(|s| {
        s["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    })
}

/// Creates a job due in an hour and cancels it.
async fn cancel_one(s: &Server) {
    let canceled = s
        .create(
            None,
            json!({"type": "echo", "payload": {}, "delay_seconds": 3600}),
        )
        .await;
    let c = s
        .post(&format!("/api/v1/jobs/{canceled}/cancel"), None, json!({}))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
}

/// A small remote worker for the Remote workers row, serving `remote_job` (declared
/// through `KYU_REMOTE_TYPE`): a long poll that an enqueue answers, a heartbeat with
/// progress for each job, one job completed, one failed, two completed in one `acks`
/// batch, and a short fetch that finds nothing. Returns the jobs and their final status.
async fn remote_worker_round(s: &Server) -> Vec<(String, &'static str)> {
    const WORKER: &str = "obs-remote-worker";
    let fetch = |max: usize, wait_ms: u64| async move {
        let a = s
            .post(
                "/api/v1/fetch",
                None,
                json!({"worker_id": WORKER, "types": ["remote_job"], "max": max, "wait_ms": wait_ms}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["jobs"].as_array().cloned().unwrap_or_default()
    };
    // Nothing of the type is queued yet: the fetch waits until the batch arrives.
    let enqueue = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let jobs: Vec<Value> = (0..4)
            .map(|i| json!({"type": "remote_job", "payload": {"i": i}}))
            .collect();
        let b = s
            .post("/api/v1/jobs/batch", None, json!({"jobs": jobs}))
            .await;
        assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    };
    let (mut jobs, ()) = tokio::join!(fetch(4, 10_000), enqueue);
    while jobs.len() < 4 {
        let more = fetch(4 - jobs.len(), 2_000).await;
        assert!(
            !more.is_empty(),
            "remote jobs were enqueued but not fetched"
        );
        jobs.extend(more);
    }
    let id = |j: &Value| j["job_id"].as_str().expect("job_id").to_owned();
    let report = |j: &Value, op: &'static str, mut body: Value| {
        body["lease"] = j["lease"].clone();
        let path = format!("/api/v1/jobs/{}/{op}", id(j));
        async move { s.post(&path, None, body).await }
    };
    for j in &jobs {
        let hb = report(j, "heartbeat", json!({"progress": 50})).await;
        assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);
    }
    let done = report(&jobs[0], "complete", json!({"result": {"ok": true}})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["status"], "completed", "{}", done.body);
    let failed = report(
        &jobs[1],
        "fail",
        json!({"kind": "non_retryable", "message": "bad input"}),
    )
    .await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.body);
    assert_eq!(failed.body["status"], "failed", "{}", failed.body);
    let acks: Vec<Value> = jobs[2..]
        .iter()
        .map(|j| json!({"job_id": id(j), "lease": j["lease"], "op": "complete", "result": null}))
        .collect();
    let a = s.post("/api/v1/acks", None, json!({"acks": acks})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    for r in a.body["results"].as_array().expect("results") {
        assert_eq!(
            (&r["ok"], &r["status"]),
            (&json!(true), &json!("completed")),
            "{r}"
        );
    }
    // Idle: a short long poll that ends empty (an empty claim, a fetch wait of ~200 ms).
    assert!(fetch(1, 200).await.is_empty());
    let statuses = ["completed", "failed", "completed", "completed"];
    jobs.iter().map(id).zip(statuses).collect()
}

/// A 404 and a 400, for the HTTP error panel.
async fn client_errors(s: &Server) {
    let nf = s
        .get(&format!("/api/v1/jobs/{}", uuid::Uuid::now_v7()), None)
        .await;
    assert_eq!(nf.status, StatusCode::NOT_FOUND);
    let bad_req = s
        .post(
            "/api/v1/jobs",
            None,
            json!({"type": "echo", "priority": 99}),
        )
        .await;
    assert!(bad_req.status.is_client_error(), "{}", bad_req.status);
}

// --- tests --------------------------------------------------------------------------------

/// The JSON is what Grafana's dashboard schema asks for: identity, schema version, a
/// Prometheus data-source variable and import input, query variables, and panels with
/// unique ids, an in-bounds non-overlapping grid, and Prometheus targets.
#[test]
fn the_dashboard_has_the_shape_grafana_loads() {
    let d = dashboard();
    assert!(
        d["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && u.len() <= 40)
    );
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 39),
        "schemaVersion {}",
        d["schemaVersion"]
    );
    assert!(d["time"]["from"].is_string() && d["time"]["to"].is_string());
    assert!(d["refresh"].is_string());
    assert!(d["id"].is_null(), "a shared dashboard has no database id");

    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "__inputs names DS_PROMETHEUS: {inputs:?}"
    );

    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds_var = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data-source variable");
    assert_eq!(ds_var["name"], "datasource");
    assert_eq!(ds_var["query"], "prometheus");
    let mut var_names = HashSet::new();
    for v in vars {
        let name = v["name"].as_str().expect("variable name");
        assert!(var_names.insert(name), "variable {name} twice");
        if v["type"] == "query" {
            assert!(
                ds_ok(&v["datasource"]),
                "variable {name}: {}",
                v["datasource"]
            );
            let def = v["definition"].as_str().expect("definition");
            assert!(def.starts_with("label_values("), "variable {name}: {def}");
            assert!(v["allValue"].is_string() && v["includeAll"] == true);
        }
    }

    let mut ids = HashSet::new();
    let mut boxes: Vec<(String, i64, i64, i64, i64)> = Vec::new();
    let mut all = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        all.push(p);
        all.extend(p["panels"].as_array().into_iter().flatten());
    }
    for p in &all {
        let title = p["title"].as_str().expect("panel title").to_owned();
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice ({title})");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().expect("gridPos.x"),
            g["y"].as_i64().expect("gridPos.y"),
            g["w"].as_i64().expect("gridPos.w"),
            g["h"].as_i64().expect("gridPos.h"),
        );
        assert!(
            x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= 24,
            "{title}: gridPos {g}"
        );
        for (other, ox, oy, ow, oh) in &boxes {
            let overlap = x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h;
            assert!(!overlap, "{title} overlaps {other}");
        }
        boxes.push((title, x, y, w, h));
    }

    let panels = data_panels(&d);
    let mut exprs = String::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("");
        assert!(
            matches!(p["type"].as_str(), Some("timeseries" | "stat")),
            "{title}: type {}",
            p["type"]
        );
        assert!(
            ds_ok(&p["datasource"]),
            "{title}: datasource {}",
            p["datasource"]
        );
        assert!(
            p["fieldConfig"]["defaults"].is_object(),
            "{title}: fieldConfig"
        );
        assert!(p["options"].is_object(), "{title}: options");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no targets");
        let mut refs = HashSet::new();
        for t in targets {
            let r = t["refId"].as_str().expect("refId");
            assert!(!r.is_empty() && refs.insert(r), "{title}: refId {r}");
            let expr = t["expr"].as_str().expect("expr");
            assert!(!expr.trim().is_empty(), "{title}: empty expr");
            if t.get("datasource").is_some() {
                assert!(ds_ok(&t["datasource"]), "{title}: target datasource");
            }
            // Rates use Grafana's rate interval (or the whole range), never a fixed window.
            for fun in ["rate(", "increase("] {
                for (i, _) in expr.match_indices(fun) {
                    let rest = &expr[i..];
                    let window = rest.find('[').map(|b| &rest[b..]).unwrap_or("");
                    assert!(
                        window.starts_with("[$__rate_interval]")
                            || window.starts_with("[$__range]"),
                        "{title}: {fun} without $__rate_interval: {expr}"
                    );
                }
            }
            exprs.push_str(expr);
            exprs.push('\n');
        }
    }
    for m in CONTRACT {
        assert!(exprs.contains(m), "no panel queries {m}");
    }
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Queue length by queue and status",
        "Success rate",
        "Throughput by outcome",
        "Wait latency",
        "Run latency",
        "Workers vs target",
        "CPU and memory",
        "Retries and failures by error kind",
        "Rate-limit waits by provider",
        "Oldest job age",
        "HTTP requests",
        "HTTP latency",
        "Actor restarts",
        "Store errors",
        "Remote workers connected",
        "Remote fetch wait",
        "Remote report latency",
        "Jobs handed to remote workers",
        "Claims by found",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(want)),
            "no panel titled {want}…"
        );
    }
}

/// promtool: the alert rules load, their unit tests pass (each alert fires after its
/// `for:` and stays quiet when healthy), config/prometheus.yml loads with them, and every
/// panel query (variables substituted) parses as PromQL.
#[test]
fn alert_rules_config_and_panel_queries_pass_promtool() {
    let Some(t) = tools("alert_rules_config_and_panel_queries_pass_promtool") else {
        return;
    };
    let root = repo_file("");
    let (ok, out) = promtool(
        &t.promtool,
        &root,
        &["check", "rules", "dashboards/alerts.yaml"],
        None,
    );
    assert!(ok, "promtool check rules: {out}");
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
    let text = read("dashboards/alerts.yaml");
    for a in ALERTS {
        assert!(
            text.contains(&format!("- alert: {a}\n")),
            "alerts.yaml lacks {a}"
        );
    }

    let (ok, out) = promtool(
        &t.promtool,
        &repo_file("dashboards"),
        &["test", "rules", "alerts_test.yaml"],
        None,
    );
    assert!(ok, "promtool test rules: {out}");
    // Each alert has a unit test where it fires.
    let tests = read("dashboards/alerts_test.yaml");
    for a in ALERTS {
        let fires = tests
            .split("alertname: ")
            .skip(1)
            .any(|s| s.starts_with(&format!("{a}\n")) && !s.contains("exp_alerts: []"));
        assert!(fires, "alerts_test.yaml never expects {a} to fire");
    }

    let (ok, out) = promtool(
        &t.promtool,
        &root,
        &["check", "config", "config/prometheus.yml"],
        None,
    );
    assert!(ok, "promtool check config: {out}");

    // Every panel query, as Grafana would send it, in a recording-rules file: promtool
    // parses each expression (JSON is YAML).
    let d = dashboard();
    let rules: Vec<Value> = panel_queries(&d)
        .iter()
        .enumerate()
        .map(|(i, q)| json!({"record": format!("kyu_panel_{i}"), "expr": substitute(&q.expr, &d)}))
        .collect();
    let n = rules.len();
    let dir = TempDir::new("panel-rules");
    std::fs::write(
        dir.path().join("panels.yaml"),
        json!({"groups": [{"name": "panels", "rules": rules}]}).to_string(),
    )
    .expect("write panel rules");
    let (ok, out) = promtool(
        &t.promtool,
        dir.path(),
        &["check", "rules", "panels.yaml"],
        None,
    );
    assert!(ok, "a panel query does not parse: {out}");
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
}

/// A real kyu (SQLite, Redis through a cuttable proxy) runs a mixed workload (with a remote
/// worker in each phase) while a real Prometheus scrapes it every second; then every panel
/// query answers with data, its /metrics passes `promtool check metrics`, the success-rate
/// alert fires (and the no-worker, queue and Redis alerts do not), and cutting Redis fires
/// KyuRedisDown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_answers_from_a_prometheus_scraping_a_real_kyu() {
    const TEST: &str = "every_panel_query_answers_from_a_prometheus_scraping_a_real_kyu";
    let Some(t) = tools(TEST) else { return };
    let Some(redis) = redis_url(TEST) else { return };
    let started = Instant::now();

    // Redis through a proxy the test can cut.
    let rest = redis
        .strip_prefix("redis://")
        .expect("KYU_TEST_REDIS_URL is redis://");
    let (auth_host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (auth, host) = match auth_host.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), auth_host),
    };
    let target = tokio::net::lookup_host(host)
        .await
        .expect("redis host resolves")
        .next()
        .expect("redis address");
    let proxy = Proxy::start(target).await;
    let redis_via_proxy = format!("redis://{auth}{}/{path}", proxy.addr);

    let dir = TempDir::new("obs");
    let db = format!("sqlite://{}", dir.path().join("kyu.db").display());
    let ledger = dir.path().join("ledger.jsonl");
    let s = Server::start_on(
        dir,
        &db,
        &[
            ("KYU_LEDGER_PATH", ledger.display().to_string()),
            ("KYU_METRICS_SAMPLE_INTERVAL", "250ms".into()),
            ("REDIS_URL", redis_via_proxy),
            ("KYU_AUTOSCALE", "true".into()),
            ("JOB_QUEUE_WORKER_COUNT", "4".into()),
            // One token a second, burst 1: three jobs on one provider make it wait.
            ("RATE_LIMIT_REQUESTS_PER_MINUTE", "60".into()),
            ("RATE_LIMIT_BURST_SIZE", "1".into()),
            // A type only remote workers run, for the Remote workers row.
            ("KYU_REMOTE_TYPE", r#"[{"name": "remote_job"}]"#.into()),
        ],
    )
    .await;
    let prom = Prometheus::start(&t.prometheus, &host_port(&s.base), &alerts_without_for()).await;
    prom.wait_data("kyu_build_info == 1", Duration::from_secs(30))
        .await;

    // Phase 1: every kind of job once, so each series exists before the bulk.
    let ledger_job = |payload: Value, extra: Value| {
        let mut j = json!({"type": "ledger", "payload": payload});
        for (k, v) in extra.as_object().into_iter().flatten() {
            j[k] = v.clone();
        }
        j
    };
    let retry_then_ok = || {
        ledger_job(
            json!({"fail": "retryable", "fail_attempts": 1}),
            json!({"max_retries": 2}),
        )
    };
    let bad = || ledger_job(json!({"fail": "non_retryable"}), json!({"max_retries": 3}));
    // Retryable every time, one retry: fails after ~1 s of back-off.
    let exhausted = || ledger_job(json!({"fail": "retryable"}), json!({"max_retries": 1}));
    // Runs over its timeout.
    let timed_out = || {
        ledger_job(
            json!({"ms": 5000}),
            json!({"timeout_seconds": 0.2, "max_retries": 0}),
        )
    };
    let mut expect: Vec<(String, &str)> = Vec::new();
    for (body, status) in [
        (
            json!({"type": "echo", "payload": {"text": "hi"}}),
            "completed",
        ),
        (
            json!({"type": "noop", "payload": {}, "queue": "mail"}),
            "completed",
        ),
        (retry_then_ok(), "completed"),
        (bad(), "failed"),
        (exhausted(), "failed"),
        (timed_out(), "failed"),
    ] {
        expect.push((s.create(None, body).await, status));
    }
    for _ in 0..3 {
        let id = s
            .create(
                None,
                json!({"type": "noop", "payload": {}, "provider": "acme"}),
            )
            .await;
        expect.push((id, "completed"));
    }
    // A canceled job, one left scheduled, and a paused queue holding two ready jobs, so
    // the queue gauges have something in each status at the end.
    cancel_one(&s).await;
    s.create(
        None,
        json!({"type": "echo", "payload": {}, "delay_seconds": 3600}),
    )
    .await;
    let p = s.post("/api/v1/queues/parked/pause", None, json!({})).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    for _ in 0..2 {
        s.create(
            None,
            json!({"type": "echo", "payload": {}, "queue": "parked"}),
        )
        .await;
    }
    client_errors(&s).await;
    expect.extend(remote_worker_round(&s).await);
    for (id, status) in &expect {
        s.wait_status(id, None, status).await;
    }
    let phase1 = expect.len();
    prom.wait_data(
        &format!("sum(kyu_jobs_finished_total{{outcome=~\"completed|failed\"}}) >= {phase1}"),
        Duration::from_secs(30),
    )
    .await;

    // Phase 2: the bulk, in one batch: successes, failures and retries.
    let mut batch = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        batch.push(json!({"type": "echo", "payload": {"text": "bulk"}}));
        statuses.push("completed");
    }
    for _ in 0..25 {
        batch.push(bad());
        statuses.push("failed");
    }
    for _ in 0..3 {
        batch.push(retry_then_ok());
        statuses.push("completed");
        batch.push(json!({"type": "noop", "payload": {}, "provider": "acme"}));
        statuses.push("completed");
    }
    // And once more each kind phase 1 had, so every series moves after its first scrape.
    for (job, status) in [
        (exhausted(), "failed"),
        (timed_out(), "failed"),
        (
            json!({"type": "noop", "payload": {}, "queue": "mail"}),
            "completed",
        ),
    ] {
        batch.push(job);
        statuses.push(status);
    }
    let b = s
        .post("/api/v1/jobs/batch", None, json!({"jobs": batch}))
        .await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    for (j, status) in b.body["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .zip(statuses)
    {
        let id = j["job_id"].as_str().expect("job_id").to_owned();
        expect.push((id, status));
    }
    cancel_one(&s).await;
    client_errors(&s).await;
    expect.extend(remote_worker_round(&s).await);
    for (id, status) in &expect[phase1..] {
        s.wait_status(id, None, status).await;
    }
    let total = expect.len();
    prom.wait_data(
        &format!("sum(kyu_jobs_finished_total{{outcome=~\"completed|failed\"}}) >= {total}"),
        Duration::from_secs(30),
    )
    .await;
    prom.wait_data(
        "max(kyu_queue_jobs{queue=\"parked\", status=\"queued\"}) == 2",
        Duration::from_secs(30),
    )
    .await;
    let workload_done = started.elapsed();

    // Every panel query, as Grafana would send it.
    let d = dashboard();
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for q in panel_queries(&d) {
        let expr = substitute(&q.expr, &d);
        match prom.query(&expr).await {
            Ok(r) if finite(&r) => table.push((q, expr, describe(&r))),
            Ok(r) => failures.push(format!(
                "{} [{}]: no finite data from `{expr}`: {r:?}",
                q.panel, q.ref_id
            )),
            Err(e) => failures.push(format!("{} [{}]: `{expr}`: {e}", q.panel, q.ref_id)),
        }
    }
    // The query variables' label_values(metric, label) as Prometheus sees them.
    for v in d["templating"]["list"].as_array().expect("vars") {
        if v["type"] != "query" {
            continue;
        }
        let def = substitute(v["definition"].as_str().expect("definition"), &d);
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .expect("label_values(metric, label)");
        let (metric, label) = inner.rsplit_once(',').expect("metric, label");
        let expr = format!("count by ({}) ({metric})", label.trim());
        match prom.query(&expr).await {
            Ok(r) if !r.is_empty() => {}
            other => failures.push(format!("variable {}: `{expr}`: {other:?}", v["name"])),
        }
    }
    println!(
        "\n| panel | ref | query (Grafana variables substituted: $__rate_interval={RATE_INTERVAL}, \
         $__interval={INTERVAL}, $__range={RANGE}, $job/$queue=All) | value |"
    );
    println!("|---|---|---|---|");
    for (q, expr, value) in &table {
        let one_line = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        println!(
            "| {} | {} | `{}` | {} |",
            q.panel,
            q.ref_id,
            one_line.replace('|', "\\|"),
            value.replace('|', "\\|")
        );
    }
    assert!(
        failures.is_empty(),
        "panel queries without data:\n{}\nkyu log:\n{}",
        failures.join("\n"),
        s.log_text()
    );

    // kyu's own exposition is lint-clean.
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(metrics.status(), StatusCode::OK);
    let body = metrics.bytes().await.expect("metrics body");
    let (ok, out) = promtool(
        &t.promtool,
        Path::new("."),
        &["check", "metrics"],
        Some(&body),
    );
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}"
    );

    // Alerts: the workload failed about half its jobs in queue default.
    let took = prom
        .wait_firing(
            "KyuSuccessRateFalling",
            &[("queue", "default")],
            Duration::from_secs(30),
        )
        .await;
    println!("KyuSuccessRateFalling firing after {took:?}");
    // Healthy on the other counts: workers are there, queues are small, Redis answers.
    for quiet in [
        "KyuNoWorkers",
        "KyuQueueGrowing",
        "KyuRedisDown",
        "KyuOldestJobTooOld",
        "KyuDown",
    ] {
        assert_eq!(
            prom.alert_state(quiet, &[]).await,
            None,
            "{quiet} is active on a healthy kyu"
        );
    }
    prom.wait_data("kyu_redis_up == 1", Duration::from_secs(10))
        .await;

    // Redis goes away: kyu's 2-second ping fails and KyuRedisDown fires.
    proxy.cut();
    let took = prom
        .wait_firing("KyuRedisDown", &[], Duration::from_secs(30))
        .await;
    println!("KyuRedisDown firing {took:?} after the cut");
    proxy.restore();
    prom.wait_data("kyu_redis_up == 1", Duration::from_secs(30))
        .await;
    println!(
        "workload done after {workload_done:?}; test took {:?}",
        started.elapsed()
    );
}

/// A node with the engine off (`JOB_WORKER_ENABLED=false`) takes jobs it never runs:
/// KyuNoWorkers fires for the backlog; past 500 ready jobs and still growing,
/// KyuQueueGrowing fires; a job due 20 minutes ago fires KyuOldestJobTooOld; killing
/// the node fires KyuDown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_without_workers_fires_the_queue_alerts() {
    let Some(t) = tools("a_backlog_without_workers_fires_the_queue_alerts") else {
        return;
    };
    let started = Instant::now();
    let mut s = Server::start(
        "obs-noworkers",
        &[
            ("JOB_WORKER_ENABLED", "false".into()),
            ("KYU_METRICS_SAMPLE_INTERVAL", "250ms".into()),
        ],
    )
    .await;
    let prom = Prometheus::start(&t.prometheus, &host_port(&s.base), &alerts_without_for()).await;
    prom.wait_data("kyu_build_info == 1", Duration::from_secs(30))
        .await;

    let batch = |n: usize| {
        let jobs: Vec<Value> = (0..n)
            .map(|i| json!({"type": "echo", "payload": {"i": i}, "queue": "backlog"}))
            .collect();
        json!({ "jobs": jobs })
    };
    let b = s.post("/api/v1/jobs/batch", None, batch(300)).await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    prom.wait_data(
        "max(kyu_queue_jobs{queue=\"backlog\", status=\"queued\"}) == 300",
        Duration::from_secs(30),
    )
    .await;
    let took = prom
        .wait_firing(
            "KyuNoWorkers",
            &[("queue", "backlog")],
            Duration::from_secs(30),
        )
        .await;
    println!("KyuNoWorkers firing after {took:?}");
    // 300 ready jobs are not yet a growing backlog worth a page.
    assert_eq!(prom.alert_state("KyuQueueGrowing", &[]).await, None);
    assert_eq!(prom.alert_state("KyuOldestJobTooOld", &[]).await, None);

    let b = s.post("/api/v1/jobs/batch", None, batch(300)).await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    prom.wait_data(
        "max(kyu_queue_jobs{queue=\"backlog\", status=\"queued\"}) == 600",
        Duration::from_secs(30),
    )
    .await;
    let took = prom
        .wait_firing(
            "KyuQueueGrowing",
            &[("queue", "backlog")],
            Duration::from_secs(30),
        )
        .await;
    println!("KyuQueueGrowing firing after {took:?}");

    // A job that was due 20 minutes ago and has not started.
    let due = chrono::Utc::now() - chrono::Duration::minutes(20);
    s.create(
        None,
        json!({"type": "echo", "payload": {}, "queue": "late", "run_at": due.to_rfc3339()}),
    )
    .await;
    let took = prom
        .wait_firing(
            "KyuOldestJobTooOld",
            &[("queue", "late")],
            Duration::from_secs(30),
        )
        .await;
    println!("KyuOldestJobTooOld firing after {took:?}");

    let mut states = BTreeMap::new();
    for (name, labels, state) in prom.alerts().await {
        states.insert(format!("{name} {}", labels["queue"]), state);
    }
    println!("alerts: {states:?}");

    // The node goes away: its scrape fails and KyuDown fires.
    s.proc.kill9();
    let took = prom
        .wait_firing("KyuDown", &[("job", "kyu")], Duration::from_secs(30))
        .await;
    println!("KyuDown firing {took:?} after kyu was killed");

    println!("test took {:?}", started.elapsed());
}
